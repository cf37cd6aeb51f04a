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
from rag.service import Busy, UploadRefused

log = logging.getLogger("rag.serve")

_TYPES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthorized"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
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
    async def _rag(_request: Request, exc: RagError) -> JSONResponse:
        status = status_of(exc)
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
    """ASGI middleware: the body-size limiter answers 413 in plain text before any route runs; on /v1 that
    answer becomes the JSON error shape too."""

    def __init__(self, app: ASGIApp, body_limits: str) -> None:
        self.app = app
        self.body = json.dumps(error_body(413, f"the request body is too large: {body_limits}")).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        replaced = False

        async def sending(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                kind = dict(message.get("headers") or []).get(b"content-type", b"")
                if kind.startswith(b"text/plain"):
                    replaced = True
                    length = str(len(self.body)).encode()
                    headers = [(b"content-type", b"application/json"), (b"content-length", length)]
                    await send({"type": "http.response.start", "status": 413, "headers": headers})
                    await send({"type": "http.response.body", "body": self.body})
                    return
            if not replaced:
                await send(message)

        await self.app(scope, receive, sending)
