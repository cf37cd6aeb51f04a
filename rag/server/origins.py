"""Cross-site requests: a page on another site must not write through a visitor's browser.

Without an API key the server trusts whoever can reach 127.0.0.1, and a browser can reach it on
behalf of any page it shows: a multipart POST needs no CORS preflight, so a page on evil.example
could add papers (`/v1/ingest`) or spend the model (`/v1/ask`). Browsers say where a request comes
from (`Origin`, `Sec-Fetch-Site`); a state-changing request (POST, PUT, PATCH, DELETE) from another
origin is refused with 403 unless `server.cors_origins` lists that origin. Clients that are not
browsers (curl, the openai client, scripts) send neither header and are not affected; the chat page
posts from its own origin.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from rag.server.errors import error_json

_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _netloc(origin: str) -> str:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return ""
    return (parts.netloc or "").lower() if parts.scheme in ("http", "https") else ""


class CrossSiteGuard:
    """ASGI middleware: 403 (one JSON line) for state-changing requests from origins other than this one."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allow_all = "*" in allowed
        self.allowed = {origin.rstrip("/").lower() for origin in allowed}

    def refusal(self, headers: Headers) -> str | None:
        origin = headers.get("origin")
        site = (headers.get("sec-fetch-site") or "").lower()
        if origin is not None:
            if self.allow_all or origin.rstrip("/").lower() in self.allowed:
                return None
            own = {h.lower() for h in (headers.get("host"), headers.get("x-forwarded-host")) if h}
            if _netloc(origin) and _netloc(origin) in own:
                return None
            shown = origin[:200]
            return f"cross-site request refused: the origin {shown} is not this server's and not in server.cors_origins"
        if site in ("cross-site", "same-site"):
            return f"cross-site request refused (Sec-Fetch-Site: {site}); list the page's origin in server.cors_origins"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _UNSAFE:
            await self.app(scope, receive, send)
            return
        message = self.refusal(Headers(scope=scope))
        if message is None:
            await self.app(scope, receive, send)
            return
        body = error_json(403, message, "cross_site")
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})
