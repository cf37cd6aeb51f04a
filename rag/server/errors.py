"""One JSON shape for every error, the OpenAI one: {"error": {"message", "type", "code"}}.

The message is one readable line; stack traces stay in the server's log. 422 for bad input, 401 for
a missing or wrong key, 404, 413 for a body over the limit, 503 with Retry-After when the model is
busy or the index is unavailable, 500 for anything unexpected.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.errors import IndexStoreError, LLMError, RagError
from rag.service import Abandoned, Busy, UploadRefused

log = logging.getLogger("rag.serve")

_TYPES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthorized"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "too_large"),
    414: ("invalid_request_error", "uri_too_long"),
    415: ("invalid_request_error", "unsupported_media_type"),
    499: ("invalid_request_error", "client_closed_request"),  # nginx's code; nobody reads it, the log does
    422: ("invalid_request_error", "invalid_input"),
    502: ("server_error", "backend_error"),
    503: ("server_error", "unavailable"),
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers


def error_body(status: int, message: str, code: str | None = None) -> dict:
    kind, default_code = _TYPES.get(status, ("server_error", "internal"))
    return {"error": {"message": message, "type": kind, "code": code or default_code}}


def error_json(status: int, message: str, code: str | None = None) -> bytes:
    """The error body as bytes, compact as JSONResponse writes it, for the layers below the route handlers."""
    return json.dumps(error_body(status, message, code), separators=(",", ":")).encode()


def error_response(status: int, message: str, *, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)


def validation_message(exc: RequestValidationError | ValidationError) -> str:
    """'question: Field required; k: Input should be greater than or equal to 1' - where, then what."""
    parts = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            parts.append(f"the body is not valid JSON{f' ({reason})' if reason else ''}")
            continue
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(dict.fromkeys(parts)) or "invalid request"


def status_of(exc: RagError) -> int:
    if isinstance(exc, Busy | IndexStoreError | LLMError):
        return 503
    if isinstance(exc, Abandoned):
        return 499
    if isinstance(exc, UploadRefused) and exc.too_large:
        return 413
    return 422


def install(app: FastAPI, *, body_limits: str) -> None:
    """Register the handlers; `body_limits` says what a 413 means on this server."""
    app.add_middleware(PlainErrorsAsJson, body_limits=body_limits)

    @app.exception_handler(ApiError)
    async def _api(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, code=exc.code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path} (see /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        elif exc.status_code == 413:
            message = f"the request body is too large: {body_limits}"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RagError)
    async def _rag(request: Request, exc: RagError) -> JSONResponse:
        status = status_of(exc)
        if isinstance(exc, Abandoned):
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        headers = None
        if isinstance(exc, Busy):
            headers = {"Retry-After": str(exc.retry_after_s)}
        elif status == 503:
            headers = {"Retry-After": "30"}
        return error_response(status, str(exc), code="busy" if isinstance(exc, Busy) else None, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); the server log has the details")


class PlainErrorsAsJson:
    """ASGI middleware for the errors no handler of ours writes: the body-size limiter's plain-text 413 (before
    any route runs) on /v1, and the chat page's mount's 404 and 405 (FastAPI's `{"detail": "Not Found"}`, for
    any path no route of ours takes) become the JSON error shape."""

    def __init__(self, app: ASGIApp, body_limits: str) -> None:
        self.app = app
        self.body = error_json(413, f"the request body is too large: {body_limits}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/v1/")
        held: Message | None = None  # a 404/405 start, kept until its body shows whose it is
        parts: list[bytes] = []
        passing = True

        async def replace(status: int, body: bytes, headers: list) -> None:
            kept = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-length")]
            kept += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": kept})
            await send({"type": "http.response.body", "body": body})

        async def sending(message: Message) -> None:
            nonlocal held, passing
            if message["type"] == "http.response.start":
                status = message["status"]
                kind = dict(message.get("headers") or []).get(b"content-type", b"")
                if api and status == 413 and kind.startswith(b"text/plain"):
                    passing = False
                    await replace(413, self.body, [])
                    return
                if status in (404, 405) and kind.startswith(b"application/json"):
                    held = message
                    return
            if held is not None and message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                start, held = held, None
                body = b"".join(parts)
                if body in _DEFAULT_BODIES:
                    status = start["status"]
                    method, path = scope["method"], scope["path"]
                    message_text = (
                        f"no such endpoint: {method} {path} (see /docs)"
                        if status == 404
                        else f"{method} is not allowed on {path} (see /docs)"
                    )
                    await replace(status, error_json(status, message_text), start["headers"])
                    return
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            if passing:
                await send(message)

        await self.app(scope, receive, sending)


_DEFAULT_BODIES = {b'{"detail":"Not Found"}', b'{"detail":"Method Not Allowed"}'}  # FastAPI's, compact JSON
