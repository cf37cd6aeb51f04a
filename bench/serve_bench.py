"""`rag serve` throughput and latency, against the same calls made in-process, in one run.

    .venv/bin/python bench/serve_bench.py [--index PATH] [--seconds 20] [--out bench/results]

Starts `rag serve --profile extractive --no-ui` on 127.0.0.1 over an index of the built-in corpus
(`--index`, else one is built in a temporary folder first), then measures:
  1. and 2. `Service.search` / `Service.ask` (extractive) in this process and the same call over HTTP (one
     client, one keep-alive connection), alternately, one at a time: the HTTP layer's overhead is the
     median of the paired differences;
  3. GET /v1/search and POST /v1/ask (extractive) with 1, 5 and 20 concurrent clients for `--seconds`
     each: requests/s, p50, p95, errors.
Clients are threads in this process, on the same 2 cores as the server: the figures include their cost.
Writes serve.json and serve.md to the output folder. Every request goes to 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.config import load_settings  # noqa: E402
from rag.service import Service  # noqa: E402

QUESTIONS = [
    "Is there work that drops all visual tokens partway through an MLLM?",
    "How many languages does the mOSCAR corpus cover?",
    "Is there a benchmark for matching objects across images for MLLMs?",
    "How can visual token pruning speed up multimodal models?",
    "What datasets are used for multimodal entity linking?",
    "Which papers study hallucination in vision-language models?",
    "How do mixture-of-experts models reduce inference cost?",
    "Is there a dataset of interleaved image and text documents?",
]
LEVELS = (1, 5, 20)
ROUNDS = 5  # paired in-process / HTTP calls per question


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def summary(latencies: list[float], seconds: float | None = None, errors: int = 0) -> dict:
    out = {
        "requests": len(latencies),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "errors": errors,
    }
    if seconds:
        out["per_s"] = round(len(latencies) / seconds, 1)
    return out


class Client:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, kind: str, question: str) -> int:
        if kind == "search":
            self.connection.request("GET", f"/v1/search?{urllib.parse.urlencode({'q': question, 'k': 5})}")
        else:
            body = json.dumps({"question": question})
            self.connection.request("POST", "/v1/ask", body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.connection.close()


def load(port: int, kind: str, clients: int, seconds: float) -> dict:
    """`clients` threads calling one endpoint for `seconds`; each stops by itself."""
    latencies: list[float] = []
    errors = [0]
    stop_at = time.monotonic() + seconds

    def run(number: int) -> None:
        client = Client(port)
        i = number
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                status = client.call(kind, QUESTIONS[i % len(QUESTIONS)])
            except OSError:
                status = 0
                client.close()
                client = Client(port)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors[0] += 1
            i += 1
        client.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 180)
    return summary(latencies, seconds, errors[0])


def start_server(index: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_INDEX__PATH": str(index)}
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", "--profile", "extractive", "--no-ui", "--port", str(port)],
        cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"rag serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("rag serve was not ready within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, help="an index of the built-in corpus (default: build one)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each load level")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rag-serve-bench-"))
    index = work / "index"
    if args.index:
        shutil.copytree(args.index.expanduser(), index)  # the server may write (catalog, cache); not into yours
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_INDEX__PATH": str(index)}
        subprocess.run([sys.executable, "-m", "rag.cli", "ingest", "-q"], check=True, env=env, cwd=REPO)

    port = int(os.environ.get("RAG_BENCH_PORT", "0")) or _free_port()
    server = start_server(index, port, work / "serve.log")
    try:
        # 1 and 2. The same call in-process and over HTTP, alternately (paired, so background load on a
        # shared machine hits both alike); one call at a time, after a warm-up of each.
        service = Service(load_settings("extractive", overrides={"index.path": str(index)}, env={}))
        service.warm_up()
        calls = {"search": lambda q: service.search(q, k=5), "ask": service.ask}
        client = Client(port)
        in_process: dict[str, dict] = {}
        http_one: dict[str, dict] = {}
        paired: dict[str, list[float]] = {}
        for kind, call in calls.items():
            for question in QUESTIONS:
                call(question)
                client.call(kind, question)
            local, remote = [], []
            for _ in range(ROUNDS):
                for question in QUESTIONS:
                    started = time.perf_counter()
                    call(question)
                    local.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    assert client.call(kind, question) == 200
                    remote.append(time.perf_counter() - started)
            in_process[kind], http_one[kind] = summary(local), summary(remote)
            paired[kind] = [r - x for r, x in zip(remote, local, strict=True)]
        client.close()
        # 3. Under load (the in-process service stays loaded, idle).
        levels = {kind: {str(n): load(port, kind, n, args.seconds) for n in LEVELS} for kind in ("search", "ask")}
    finally:
        server.terminate()
        server.wait(30)
    overhead = {
        kind: {
            "in_process_p50_ms": in_process[kind]["p50_ms"],
            "http_p50_ms": http_one[kind]["p50_ms"],
            "overhead_median_paired_ms": round(1000 * statistics.median(paired[kind]), 1),
            "ratio": round(http_one[kind]["p50_ms"] / in_process[kind]["p50_ms"], 2),
        }
        for kind in ("search", "ask")
    }
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        "seconds_per_level": args.seconds,
        "in_process": in_process,
        "http_one_client": http_one,
        "http_overhead": overhead,
        "levels": levels,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# rag serve: throughput and latency (extractive profile)",
        "",
        f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f}; {args.seconds:g} s per level.",
        "",
        "| endpoint | clients | requests/s | p50 ms | p95 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for kind, path in (("search", "GET /v1/search"), ("ask", "POST /v1/ask")):
        for n, row in levels[kind].items():
            lines.append(f"| {path} | {n} | {row['per_s']} | {row['p50_ms']} | {row['p95_ms']} | {row['errors']} |")
    lines += ["", "| call | in-process p50 ms | HTTP p50 ms (1 client) | HTTP overhead ms (median of pairs) | ratio |"]
    lines += ["|---|---|---|---|---|"]
    for kind, row in overhead.items():
        cells = [row["in_process_p50_ms"], row["http_p50_ms"], row["overhead_median_paired_ms"], row["ratio"]]
        lines.append(f"| {kind} | " + " | ".join(map(str, cells)) + " |")
    (args.out / "serve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
