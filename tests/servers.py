"""Real servers for tests, each on 127.0.0.1 and stopped afterwards: Chroma's, llama-cpp-python's, `rag ui`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The questions the load tests (chat page, rag serve) put to a server, round robin.
LOAD_QUESTIONS = [
    "Is there work that drops all visual tokens partway through an MLLM?",
    "How many languages does the mOSCAR corpus cover?",
    "Is there a benchmark for matching objects across images for MLLMs?",
    "How can visual token pruning speed up multimodal models?",
    "What datasets are used for multimodal entity linking?",
]


def rss_mb(pid: int) -> float:
    """A process's resident memory, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(process: subprocess.Popen, port: int, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {timeout_s:.0f}s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def chroma_binary() -> str:
    found = Path(sys.executable).with_name("chroma")
    return str(found) if found.exists() else (shutil.which("chroma") or "chroma")


def start_chroma(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """`chroma run` (the server inside the chromadb wheel) on 127.0.0.1:port, storing in data_dir."""
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    process = subprocess.Popen(
        [chroma_binary(), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(data_dir)],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    wait_listening(process, port, log, timeout_s=60)
    return process


@contextmanager
def chroma_server(data_dir: Path, log: Path) -> Iterator[str]:
    port = free_port()
    process = start_chroma(data_dir, port, log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@contextmanager
def llama_server(gguf: Path, alias: str, log: Path, *, n_ctx: int = 4096) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server; yields its /v1 base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--model_alias",
            alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(n_ctx),
            "--chat_format",
            "chatml",
        ],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    try:
        wait_listening(process, port, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


def start_rag_ui(repo: Path, index: Path, log: Path, extra_env: dict) -> tuple[subprocess.Popen, str, int]:
    """`rag ui` on a free loopback port over `index`; returns once the page answers (a login page counts)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"RAG_INDEX__PATH": str(index), "PYTHONUNBUFFERED": "1", **extra_env})
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "ui", "--port", str(port)],
        cwd=repo,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rag ui exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url, port
        except urllib.error.HTTPError:
            return process, url, port  # it answers; a login page may say 401
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("rag ui did not answer within 180 s")


def listening_addresses(port: int) -> set[str]:
    """Local addresses listening on a port, from /proc/net/tcp{,6} (hex, as the kernel writes them)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if int(hex_port, 16) == port and state == "0A":  # 0A = LISTEN
                found.add(address)
    return found


def start_rag_serve(
    repo: Path, index: Path, log: Path, extra_env: dict, args: tuple[str, ...] = (), ready_s: float = 300
) -> tuple[subprocess.Popen, str, int]:
    """`rag serve` on a free loopback port over `index`; returns once /readyz says the index and model are in."""
    import json

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"RAG_INDEX__PATH": str(index), "PYTHONUNBUFFERED": "1", **extra_env})
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", "--port", str(port), *args],
        cwd=repo,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rag serve exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                if json.load(response)["status"] == "ready":
                    return process, url, port
        except urllib.error.HTTPError as exc:
            if exc.code != 503:  # 503 = still loading
                process.kill()
                raise RuntimeError(f"/readyz answered {exc.code}") from None
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"rag serve was not ready within {ready_s:.0f} s: {log.read_text()[-2000:]}")


def http_call(request: urllib.request.Request, timeout: float = 300) -> tuple[int, object, object]:
    """(status, headers, parsed JSON or text) for one request, whatever its status."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, got, text = response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, got, text = exc.code, exc.headers, exc.read().decode()
    try:
        return status, got, json.loads(text)
    except ValueError:
        return status, got, text
