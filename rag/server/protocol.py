"""What reaches the app, and what a request that never reaches it gets back.

- Repeated slashes in a path are one: `//v1/stats` is `/v1/stats` (a client that joins a base URL ending
  in "/" with "/v1/..." reaches the API and its key check, not the chat page's mount and its 404).
- HEAD is GET without the body: FastAPI routes answer GET only, and the chat page's mount at "/" took
  every HEAD to a 404.
- uvicorn answers a request its HTTP parser refuses before any route runs, in plain text ("Invalid HTTP
  request received."); `json_errors_protocol` gives that answer the JSON error shape too, 414 when the
  URL is longer than the parser takes (64 kB: httptools cannot address more). h11 takes a longer URL when
  the whole request arrives in one read, so `Normalised` answers that one with the same 414.
"""

from __future__ import annotations

import asyncio
import re
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.server.errors import error_json

MAX_URL_BYTES = 65_535  # httptools' URL parser keeps offsets in 16 bits; h11 is given the same room
H11_HEAD_BYTES = MAX_URL_BYTES + 16 * 1024  # the request line and the headers, for h11
URL_TOO_LONG = f"the URL is longer than {MAX_URL_BYTES:,} bytes (a question may have 4,000 characters)"
_SLASHES = re.compile(r"/{2,}")


class Normalised:
    """ASGI middleware, outermost: one slash where a path has several, and HEAD answered as GET without a body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string") or b"")
        if url_bytes > MAX_URL_BYTES:  # h11 parsed it in one read; httptools would have refused it
            body = error_json(414, URL_TOO_LONG)
            headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
            await send({"type": "http.response.start", "status": 414, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if "//" in scope["path"]:
            scope = {**scope, "path": _SLASHES.sub("/", scope["path"])}
            if scope.get("raw_path"):
                scope["raw_path"] = re.sub(rb"/{2,}", b"/", scope["raw_path"])
        if scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


def json_errors_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools where installed, else h11, as uvicorn picks) with its plain-text 400
    as the JSON error shape; pass it as `uvicorn.Config(http=...)`."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    return with_json_errors(base)


def with_json_errors(base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    class JsonErrors(base):  # type: ignore[misc, valid-type]
        def send_400_response(self, msg: str) -> None:
            if _url_bytes(self) > MAX_URL_BYTES:
                status = 414
                message = URL_TOO_LONG
            else:
                status, message = 400, f"the request is not valid HTTP/1.1 ({msg.rstrip('.')})"
            body = error_json(status, message)
            lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
            lines += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
            lines += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                      b"connection: close\r\n\r\n", body]  # fmt: skip
            self.transport.write(b"".join(lines))
            self.transport.close()

    JsonErrors.__name__ = JsonErrors.__qualname__ = f"JsonErrors{base.__name__}"
    return JsonErrors


def _url_bytes(protocol: object) -> int:
    """How long the refused request's URL is: httptools' protocol gathers it in `url`; h11 keeps the bytes it
    could not parse, the request line first."""
    url = getattr(protocol, "url", None)
    if isinstance(url, bytes):
        return len(url)
    conn = getattr(protocol, "conn", None)
    try:
        buffered = conn.trailing_data[0]  # type: ignore[union-attr]
    except (AttributeError, IndexError, TypeError):
        return 0
    line = buffered.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return len(parts[1]) if len(parts) >= 2 else len(line)
