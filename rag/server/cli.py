"""Registers `rag serve` with the command line (entry point `paper_rag.commands`)."""

from __future__ import annotations

import argparse

from rag.library import Library


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser, **_: object) -> None:
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="HTTP API, OpenAI-compatible endpoint and chat page on one port (127.0.0.1)",
    )
    serve.add_argument("--host", help="address to bind (default: server.host = 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: server.port = 8080)")
    serve.add_argument("--no-ui", action="store_true", help="the API only, without the chat page at /")
    serve.set_defaults(handler=_cmd_serve)


def _cmd_serve(library: Library, args: argparse.Namespace) -> int:
    from rag.server.app import serve

    library.stats()  # a missing or foreign index is reported here, before the server starts
    serve(library, host=args.host, port=args.port, chat_page=False if args.no_ui else None)
    return 0
