"""The FastAPI app behind `rag serve`: the API, the OpenAI endpoint and the chat page over one `Service`.

Security defaults: 127.0.0.1; an API key when $RAG_API_KEY (server.api_key_env) holds one, compared in
constant time and never logged; CORS off unless server.cors_origins names origins, and state-changing
requests from other origins refused (server/origins.py); request bodies limited; every error one JSON
line (server/errors.py), also for what the HTTP parser refuses (server/protocol.py).
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import ipaddress
import os
import sys
import threading
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Match

from rag import __version__
from rag.config import Settings
from rag.errors import RagError
from rag.library import Library
from rag.server import docs, errors, openai_api, routes
from rag.server.errors import ApiError
from rag.server.origins import CrossSiteGuard
from rag.server.protocol import H11_HEAD_BYTES, Normalised, json_errors_protocol
from rag.server.responses import Health, Readiness, ok
from rag.service import Service


def api_key(settings: Settings) -> str | None:
    """The key from $RAG_API_KEY (server.api_key_env); one that is not ASCII is refused before the server starts.

    HTTP clients send header bytes as Latin-1 or UTF-8 as they please: such a key would never match, and a
    server that accepts it refuses every request with no hint why.
    """
    key = os.environ.get(settings.server.api_key_env) or None
    if key is not None and (not key.isascii() or not key.strip() or not key.isprintable()):
        raise RagError(
            f"${settings.server.api_key_env} holds characters that are not printable ASCII (or only spaces); an "
            "HTTP header cannot carry them reliably. Use letters, digits and punctuation, e.g. $(openssl rand -hex 24)"
        )
    return key


def _has_key(request: Request, key: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())


def key_check(key: str | None):
    """A dependency: with a key configured, `Authorization: Bearer KEY` or 401."""
    expected = key.encode() if key else None

    async def check(request: Request) -> None:
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise ApiError(
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def create_app(service: Service, *, chat_page: bool | None = None, key: str | None = None) -> FastAPI:
    settings = service.settings.server
    ui = service.settings.ui
    json_limit = settings.max_body_kb * 1024
    upload_limit = int(settings.max_upload_files * ui.max_upload_mb * 1e6) + (1 << 20)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Models load in the background: /healthz answers at once, /readyz once the index and model are in.
        threading.Thread(target=service.warm_up, name="rag-warm-up", daemon=True).start()
        yield

    app = FastAPI(
        title="paper-rag",
        version=__version__,
        summary="Cited, verified answers over research-paper abstracts.",
        description="Ask questions of the indexed papers and get answers whose `[n]` citations are checked against "
        "the abstracts; search; read papers; add papers. An OpenAI-compatible endpoint serves the same answers "
        "to chat clients. With an API key configured, `/v1/*` needs `Authorization: Bearer KEY`.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    errors.install(
        app,
        body_limits=f"at most {settings.max_body_kb} kB of JSON (server.max_body_kb), or "
        f"{settings.max_upload_files} files of {ui.max_upload_mb:g} MB to /v1/ingest",
    )
    # Always ours, even with no origins listed: then no origin gets CORS headers, and the chat page's own
    # CORS layer (Gradio's, which allows any http://localhost:* page) stands aside for it.
    from fastapi.middleware.cors import CORSMiddleware

    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["Retry-After", "Location"],
    )
    app.add_middleware(CrossSiteGuard, allowed=settings.cors_origins)  # refused before anything runs
    app.add_middleware(Normalised)  # outermost: `//v1/x` is `/v1/x`, HEAD is GET, for every layer inside

    @app.get("/healthz", tags=["health"], summary="The process is up", responses=ok(Health))
    async def healthz():
        return {"status": "ok", "version": __version__}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="The index is open and the model loaded (503 until then)",
        responses={**ok(Readiness), 503: {"model": Readiness, "description": "Not ready yet"}},
    )
    async def readyz(request: Request):
        ready, detail = service.readiness()
        if key is not None and not _has_key(request, key):
            detail.pop("ingest", None)  # what runs is the key holder's business
        return JSONResponse({"status": "ready" if ready else "not ready", **detail}, status_code=200 if ready else 503,
                            headers=None if ready else {"Retry-After": "5"})  # fmt: skip

    guarded = [Depends(key_check(key))]
    app.include_router(
        routes.router(service, json_limit=json_limit, upload_limit=upload_limit, max_files=settings.max_upload_files),
        dependencies=guarded,
    )
    app.include_router(openai_api.router(service, json_limit=json_limit), dependencies=guarded)

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def no_such_endpoint(request: Request):
        path = request.url.path
        api_routes = app.router.routes[: app.router.routes.index(catch_all)]
        allowed = [m for m in ("GET", "POST") if any(
            r.matches({**request.scope, "method": m})[0] == Match.FULL for r in api_routes)]  # fmt: skip
        if allowed:
            raise ApiError(405, f"{request.method} is not allowed on {path}; use {', '.join(allowed)}",
                           headers={"Allow": ", ".join(allowed)})  # fmt: skip
        raise ApiError(404, f"no such endpoint: {request.method} {path} (see /docs)")

    catch_all = app.router.routes[-1]

    docs.install(app)
    if settings.chat_page if chat_page is None else chat_page:
        from paper_rag_ui.app import mount

        mount(app, service, path="/", api_key=key)
    return app


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def serve(library: Library, *, host: str | None = None, port: int | None = None, chat_page: bool | None = None) -> None:
    """`rag serve`: build the service over `library`, print where it listens, run uvicorn until Ctrl-C."""
    import uvicorn

    settings = library.settings
    host = host or settings.server.host
    port = port or settings.server.port
    key = api_key(settings)
    service = Service(settings, library=library, progress=lambda msg: print(f"rag: {msg}", file=sys.stderr))
    app = create_app(service, chat_page=chat_page, key=key)
    if not _loopback(host) and not key:
        print(f"rag: warning: serving on {host} without an API key; set ${settings.server.api_key_env}, or keep "
              "127.0.0.1 behind a reverse proxy", file=sys.stderr)  # fmt: skip
    page = settings.server.chat_page if chat_page is None else chat_page
    print(
        f"paper-rag serve: http://{host}:{port}  (API /v1, OpenAI /v1/chat/completions, docs /docs"
        + (", chat page /" if page else "")
        + f"; API key {'required' if key else 'off'})  Ctrl-C stops it",
        flush=True,
    )
    # The server's own lines (a dropped question, an unexpected error's traceback) go where uvicorn's go.
    logs = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    logs["loggers"]["rag.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5, log_config=logs,
                            http=json_errors_protocol(), h11_max_incomplete_event_size=H11_HEAD_BYTES)  # fmt: skip
    try:
        uvicorn.Server(config).run()
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise RagError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from None
