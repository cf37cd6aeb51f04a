"""The layers under `rag serve`'s routes, on a real uvicorn over a socket: what its HTTP parsers refuse
(httptools and h11) comes back in the JSON error shape, `//` paths and HEAD reach the routes, and a
mounted app's default 404/405 bodies take the same shape. A small app stands in for the API; the whole
server is tested in tests/test_serve.py."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI

from rag.server import errors
from rag.server.protocol import H11_HEAD_BYTES, Normalised, with_json_errors
from tests.servers import free_port


def small_app() -> FastAPI:
    app = FastAPI()
    errors.install(app, body_limits="at most 1 kB")

    @app.get("/v1/echo")
    async def echo(q: str):
        return {"chars": len(q)}

    mounted = FastAPI()  # as the chat page is mounted at "/": FastAPI's own {"detail": ...} errors

    @mounted.get("/page")
    async def page():
        return {"page": True}

    app.mount("/", mounted)
    app.add_middleware(Normalised)
    return app


def protocols() -> list:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    found = [pytest.param(H11Protocol, id="h11")]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return found
    return [*found, pytest.param(HttpToolsProtocol, id="httptools")]


@pytest.fixture(scope="module", params=protocols())
def server(request):
    port = free_port()
    protocol = with_json_errors(request.param)
    config = uvicorn.Config(small_app(), host="127.0.0.1", port=port, log_level="error", http=protocol,
                            h11_max_incomplete_event_size=H11_HEAD_BYTES)  # fmt: skip
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    running.should_exit = True
    thread.join(10)


def exchange(port: int, raw: bytes, piece: int = 8192) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes in small pieces (as a network delivers them), read the reply until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for start in range(0, len(raw), piece):
            try:
                sock.sendall(raw[start : start + piece])
            except OSError:  # the server answered and closed before reading it all
                break
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


def test_a_url_the_parser_cannot_take_is_414_in_the_json_error_shape(server):
    status, headers, body = exchange(server, get("/v1/echo?q=" + "x" * 100_000))
    assert status == 414 and headers["content-type"] == "application/json", body
    error = json.loads(body)["error"]
    assert error["code"] == "uri_too_long" and "65,535 bytes" in error["message"]
    status, _, body = exchange(server, get("/v1/echo?q=" + "x" * 60_000))  # under the limit: the route answers
    assert status == 200 and json.loads(body) == {"chars": 60_000}


def test_a_long_url_that_arrives_in_one_read_is_414_too(server):
    """h11 refuses only a request line it has not finished; one that arrives whole it parsed (CI: 200, not 414)."""
    for _ in range(3):
        status, headers, body = exchange(server, get("/v1/echo?q=" + "x" * 100_000), piece=1 << 20)
        assert status == 414 and headers["content-type"] == "application/json", body
        assert json.loads(body)["error"]["code"] == "uri_too_long"


def test_what_is_not_http_is_400_in_the_json_error_shape(server):
    status, headers, body = exchange(server, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and headers["content-type"] == "application/json", body
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_double_slashes_and_head_reach_the_routes(server):
    for path in ("//v1/echo?q=abc", "/v1//echo?q=abc", "///v1/echo?q=abc"):
        status, _, body = exchange(server, get(path))
        assert status == 200 and json.loads(body) == {"chars": 3}, (path, body)
    status, headers, body = exchange(server, get("/v1/echo?q=abcd", "HEAD"))
    assert status == 200 and body == b"" and headers["content-length"] == str(len(b'{"chars":4}'))
    status, _, body = exchange(server, get("/page", "HEAD"))
    assert status == 200 and body == b""


def test_the_mounted_apps_404_and_405_take_the_json_error_shape(server):
    status, _, body = exchange(server, get("/nowhere"))
    wanted = {"message": "no such endpoint: GET /nowhere (see /docs)", "type": "not_found_error", "code": "not_found"}
    assert status == 404 and json.loads(body) == {"error": wanted}
    status, _, body = exchange(server, get("/page", "DELETE"))
    assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"
    status, _, body = exchange(server, get("/v1/echo"))  # FastAPI's own validation: ours already
    assert status == 422 and json.loads(body)["error"]["message"] == "q: Field required"
