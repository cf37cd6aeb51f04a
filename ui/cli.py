"""Registers `rag ui` with the command line (entry point `paper_rag.commands`)."""

from __future__ import annotations

import argparse

from rag.errors import RagError
from rag.library import Library


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser, **_: object) -> None:
    ui = commands.add_parser("ui", parents=[common], help="open the chat in the browser (Gradio, 127.0.0.1)")
    ui.add_argument("--host", help="address to bind (default: ui.host = 127.0.0.1)")
    ui.add_argument("--port", type=int, help="port (default: ui.port = 7860)")
    ui.set_defaults(handler=_cmd_ui)


def _cmd_ui(library: Library, args: argparse.Namespace) -> int:
    try:
        from paper_rag_ui.app import launch
    except ImportError as exc:
        raise RagError(f"the browser app needs gradio ({exc}); run `pip install -e .` in this environment") from None
    library.stats()  # a missing or foreign index is reported here, before the page opens
    launch(library.settings, host=args.host, port=args.port)
    return 0
