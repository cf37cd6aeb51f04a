"""The OpenAI-compatible backend's failure modes against real sockets, and its stream parsing."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading

import pytest

from rag.config import LLMSettings
from rag.errors import LLMError
from rag.llm import OpenAICompatibleModel, parse_sse_line

MESSAGES = [{"role": "user", "content": "hi"}]


def test_sse_lines():
    chunk = {"choices": [{"delta": {"content": "Hello"}}]}
    assert parse_sse_line("data: " + json.dumps(chunk)) == "Hello"
    assert parse_sse_line(": keep-alive") is None
    assert parse_sse_line('data: {"choices": [{"delta": {}}]}') is None
    assert parse_sse_line("data: [DONE]") is not None and not isinstance(parse_sse_line("data: [DONE]"), str)
    with pytest.raises(LLMError, match="overloaded"):
        parse_sse_line('data: {"error": {"message": "overloaded"}}')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_is_one_line():
    model = OpenAICompatibleModel(LLMSettings(backend="openai", base_url=f"http://127.0.0.1:{_free_port()}/v1"))
    with pytest.raises(LLMError, match="cannot reach the LLM endpoint") as caught:
        list(model.stream(MESSAGES, max_tokens=8, temperature=0))
    assert "\n" not in str(caught.value)


def test_silent_server_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    port = listener.getsockname()[1]
    model = OpenAICompatibleModel(LLMSettings(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", timeout_s=0.5))
    try:
        with pytest.raises(LLMError, match=r"did not answer within 0.5s"):
            list(model.stream(MESSAGES, max_tokens=8, temperature=0))
    finally:
        listener.close()


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        self.server.seen_auth = self.headers.get("Authorization")  # type: ignore[attr-defined]
        body = json.dumps({"error": {"message": "Invalid API key provided"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_error_shows_the_servers_reason_but_never_the_key(monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TEST_RAG_KEY", "sk-secret-123")
    settings = LLMSettings(
        backend="openai", base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key_env="TEST_RAG_KEY"
    )
    try:
        with pytest.raises(LLMError, match="HTTP 401: Invalid API key provided") as caught:
            list(OpenAICompatibleModel(settings).stream(MESSAGES, max_tokens=8, temperature=0))
    finally:
        server.shutdown()
    assert server.seen_auth == "Bearer sk-secret-123"
    assert "sk-secret" not in str(caught.value)


def test_malformed_event_is_an_error_not_silence():
    with pytest.raises(LLMError, match="malformed event"):
        parse_sse_line("data: {broken json")


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers the statuses in server.script first (429 with Retry-After, 500, ...), then a stream."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        server.requests += 1  # type: ignore[attr-defined]
        if server.script:  # type: ignore[attr-defined]
            status = server.script.pop(0)  # type: ignore[attr-defined]
            body = json.dumps({"error": {"message": f"status {status}"}}).encode()
            self.send_response(status)
            self.send_header("Retry-After", "0.2")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        chunk = {"choices": [{"delta": {"content": "ok"}}]}
        body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    ("script", "answered", "requests"),
    [([429, 503], True, 3), ([429, 429, 429], False, 3), ([500], False, 1), ([401], False, 1)],
)
def test_rate_limits_and_overload_are_retried_other_errors_are_not(script, answered, requests):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Flaky)
    server.script, server.requests = list(script), 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    model = OpenAICompatibleModel(LLMSettings(backend="openai", base_url=f"http://127.0.0.1:{server.server_port}/v1"))
    try:
        if answered:
            assert "".join(model.stream(MESSAGES, max_tokens=8, temperature=0)) == "ok"
        else:
            with pytest.raises(LLMError, match=f"HTTP {script[-1]}: status {script[-1]}"):
                list(model.stream(MESSAGES, max_tokens=8, temperature=0))
    finally:
        server.shutdown()
    assert server.requests == requests  # type: ignore[attr-defined]


def test_retry_delay_honours_retry_after_within_a_cap():
    from rag.llm import retry_delay

    assert retry_delay("2", 0) == 2.0 and retry_delay(None, 0) == 0.5 and retry_delay(None, 2) == 2.0
    assert retry_delay("3600", 0) == 10.0 and retry_delay("Wed, 21 Oct 2015 07:28:00 GMT", 1) == 1.0


@pytest.mark.slow
def test_prompt_prefix_state_is_kept_on_disk_and_restored_exactly(tmp_path):
    """Two requests teach the shared prefix; a new model instance restores it and answers as a cold one does.

    It also generates with the installed llama.cpp build, which is how an AMX crash would show.
    """
    from rag.config import load_settings
    from rag.llm import LlamaCppModel
    from rag.models import PACKAGED_MODELS, ensure_joined
    from rag.prompt_cache import MIN_TOKENS

    settings = load_settings(env={}).llm
    gguf = ensure_joined(PACKAGED_MODELS[settings.model], settings.model_dir)
    (tmp_path / gguf.name).symlink_to(gguf)
    stamp = gguf.with_suffix(".verified.json")
    (tmp_path / stamp.name).write_text(stamp.read_text())
    cached = settings.model_copy(update={"model_dir": str(tmp_path), "prompt_cache": True})
    system = "You answer questions about papers. " * 12

    def ask(model, question):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        return "".join(model.stream(messages, max_tokens=12, temperature=0))

    teacher = LlamaCppModel(cached)
    ask(teacher, "Which paper drops visual tokens?")
    assert not list(tmp_path.glob("prompt-cache/*.state"))  # one request teaches nothing yet
    ask(teacher, "Name a benchmark for matching objects.")
    saved = len(teacher._prefix_cache.saved)
    assert saved >= MIN_TOKENS and len(list(tmp_path.glob("prompt-cache/*.state"))) == 1
    del teacher

    question = "What is attention sink?"
    cold = ask(LlamaCppModel(settings.model_copy(update={"prompt_cache": False})), question)
    restored = LlamaCppModel(cached)
    restored.load()
    assert len(restored._prefix_cache.saved) == saved
    assert ask(restored, question) == cold and cold.strip()


class _Echo:
    """A chat-only backend whose reply repeats the answer's last line before continuing it."""

    name = "echo"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.asked = None

    def stream(self, messages, *, max_tokens, temperature):
        self.asked = messages
        yield from re.findall(r"\S+\s*", self.reply)


def test_continuation_by_chat_drops_the_echoed_start_and_stops_at_a_stop_string():
    from rag.llm import continue_by_chat

    model = _Echo("Yes — **DyVTE**: it drops all visual tokens after one layer.\n- **Next** —")
    prefix = "Yes — **DyVTE**: "
    pieces = list(continue_by_chat(model, MESSAGES, prefix, max_tokens=30, temperature=0, stop=["\n"]))
    assert "".join(pieces).strip() == "it drops all visual tokens after one layer."
    assert model.asked[-1]["role"] == "user" and model.asked[-1]["content"].endswith(prefix)
