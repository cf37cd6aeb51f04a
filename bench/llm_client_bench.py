"""Should the hand-written OpenAI-compatible client give way to the `openai` package or to LlamaIndex?

Three clients stream the same chat completion from a local fake server (127.0.0.1, instant
replies), so only the client's own cost is measured: `rag.llm.OpenAICompatibleModel` (httpx),
the `openai` package, and `llm.backend: llamaindex` with `OpenAILike` (which uses `openai`).

- overhead: median / p95 wall time of one streamed request (20 chunks), after a warm-up;
- import: seconds to import each client in a fresh interpreter;
- 429 then 200, 503 then 200, and 500 for ever: what the caller gets and after how long;
- whether the API key (which the fake server echoes in its error) reaches the caller's message.

    .venv/bin/python bench/llm_client_bench.py      # writes bench/results/llm-clients.{json,md}
"""

from __future__ import annotations

import http.server
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results"
MESSAGES = [{"role": "user", "content": "Say hello."}]
KEY = "sk-bench-0123456789"
CHUNKS = 20


class FakeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[tuple[int, dict]] = []  # statuses to answer before streaming, with headers
        self.requests = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request, client_address) -> None:
        pass  # a client that closes its connection early is not news here

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 - http.server's naming
        server: FakeServer = self.server  # type: ignore[assignment]
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server.requests += 1
        if server.script:
            status, headers = server.script[0] if server.script[0][0] == 500 else server.script.pop(0)
            body = json.dumps({"error": {"message": f"status {status} for {self.headers.get('Authorization')}"}})
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(CHUNKS):
            event = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}],
            }
            self._chunk(f"data: {json.dumps(event)}\n\n")
        self._chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def log_message(self, *args):
        pass


def clients(base_url: str) -> dict:
    import os

    from openai import OpenAI

    from rag.config import LLMSettings
    from rag.llm import load_chat_model

    os.environ["BENCH_KEY"] = KEY
    ours = load_chat_model(LLMSettings(backend="openai", base_url=base_url, model="m", api_key_env="BENCH_KEY"))
    llamaindex = load_chat_model(
        LLMSettings(
            backend="llamaindex",
            api_key_env="BENCH_KEY",
            llamaindex_kwargs={"model": "m", "api_base": base_url, "is_chat_model": True},
        )
    )
    sdk = OpenAI(base_url=base_url, api_key=KEY)

    def openai_package():
        stream = sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True, max_tokens=8, temperature=0)
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    return {
        "hand-written (httpx)": lambda: "".join(ours.stream(MESSAGES, max_tokens=8, temperature=0)),
        "openai package": openai_package,
        "llamaindex OpenAILike": lambda: "".join(llamaindex.stream(MESSAGES, max_tokens=8, temperature=0)),
    }


def overhead(fn, n: int = 200) -> dict:
    for _ in range(10):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        text = fn()
        times.append((time.perf_counter() - t0) * 1000)
    assert text.startswith("w0 "), text
    times.sort()
    return {"median_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * len(times))], 2)}


def import_seconds(statement: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, cwd=REPO)
        best = min(best, time.perf_counter() - t0)
    return round(best, 2)


def faults(server: FakeServer, fn) -> dict:
    out = {}
    for name, script in {
        "429 (Retry-After: 1) then 200": [(429, {"Retry-After": "1"})],
        "503 then 200": [(503, {})],
        "500 for ever": [(500, {})],
    }.items():
        server.script, server.requests = list(script), 0
        t0 = time.perf_counter()
        try:
            fn()
            outcome = "answered"
        except Exception as exc:  # noqa: BLE001 - what the caller sees is the measurement
            outcome = f"{type(exc).__name__}: {str(exc)[:140]}"
        out[name] = {
            "outcome": outcome,
            "seconds": round(time.perf_counter() - t0, 2),
            "requests": server.requests,
            "key_shown": KEY in outcome,
        }
    server.script = []
    return out


def main() -> None:
    server = FakeServer()
    fns = clients(server.base_url)
    results = {name: {"overhead": overhead(fn), "faults": faults(server, fn)} for name, fn in fns.items()}
    results["hand-written (httpx)"]["import_s"] = import_seconds("import httpx, rag.llm")
    results["openai package"]["import_s"] = import_seconds("import openai")
    results["llamaindex OpenAILike"]["import_s"] = import_seconds("import rag.llm; import llama_index.llms.openai_like")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "llm-clients.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "| client | import | request median / p95 | 429 then 200 | 503 then 200 | 500 for ever |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results.items():
        cells = []
        for fault in row["faults"].values():
            verdict = "answered" if fault["outcome"] == "answered" else "error"
            cells.append(f"{verdict} after {fault['seconds']} s ({fault['requests']} requests)")
        o = row["overhead"]
        lines.append(
            f"| {name} | {row['import_s']} s | {o['median_ms']} / {o['p95_ms']} ms | " + " | ".join(cells) + " |"
        )
    (OUT / "llm-clients.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(
        json.dumps({n: {k: v["outcome"][:100] for k, v in r["faults"].items()} for n, r in results.items()}, indent=1)
    )
    server.shutdown()


if __name__ == "__main__":
    main()
