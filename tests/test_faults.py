"""Faults at the edges: an LLM endpoint that answers garbage, secrets that must never leak, and an
index folder that is read-only or fills up mid-ingest.

Each endpoint below is a real HTTP server on 127.0.0.1; `rag ask` runs as a user runs it. The answer
falls back to the extractive one, the retrieved papers are still printed, one `rag: error:` line says
what went wrong, and the API key appears nowhere in what the user sees or in eval reports.
"""

from __future__ import annotations

import http.server
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO, make_library, run_cli, write_jsonl

pytestmark = pytest.mark.slow

SECRET = "sk-test-DO-NOT-LEAK-8f3a9c"
QUESTION = "How many languages does the mOSCAR corpus cover?"
MOSCAR = "mOSCAR: A Large-scale Multilingual and Multimodal Document-level Corpus"

# What a broken endpoint sends back: (status, content type, body)
GARBAGE = {
    "html-error-page": (502, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "not-json": (200, "application/json", b"this is not json at all {{{"),
    "sse-garbage": (200, "text/event-stream", b"data: {broken json\n\ndata: [DONE]\n\n"),
    "empty-200": (200, "application/json", b""),
    "wrong-shape": (200, "application/json", json.dumps({"unexpected": [1, 2, 3]}).encode()),
    "error-echoing-key": (401, "application/json", json.dumps({"error": {"message": f"bad key {SECRET}"}}).encode()),
}


def _handler(status: int, content_type: str, body: bytes):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


@contextmanager
def endpoint(kind: str) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(*GARBAGE[kind]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()


def _hosted_env(base_url: str) -> dict:
    return {
        "RAG_PROFILE": "hosted",
        "RAG_LLM__BASE_URL": base_url,
        "RAG_LLM__TIMEOUT_S": "10",
        "OPENAI_API_KEY": SECRET,
    }


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_from_the_llm_endpoint_is_one_line_and_papers_are_still_shown(seed_library, kind):
    with endpoint(kind) as base_url:
        result = run_cli("ask", QUESTION, index=seed_library.settings.index_path, extra_env=_hosted_env(base_url))
    assert result.returncode == 1, (result.returncode, result.stderr[-800:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("rag: error:")]
    assert len(errors) == 1, result.stderr[-800:]
    assert "Traceback" not in result.stderr
    assert MOSCAR in result.stdout  # the extractive answer and the references are printed
    assert SECRET not in result.stdout + result.stderr


def test_api_key_never_reaches_json_answers_or_eval_reports(seed_library, tmp_path):
    with endpoint("error-echoing-key") as base_url:
        env = _hosted_env(base_url)
        asked = run_cli("ask", QUESTION, "--json", index=seed_library.settings.index_path, extra_env=env)
        out = tmp_path / "report"
        evaluated = run_cli(
            "eval", "--mode", "answer", "--ids", "s01,u01", "--out", str(out),
            index=seed_library.settings.index_path, extra_env=env,
        )  # fmt: skip
    assert asked.returncode == 1 and json.loads(asked.stdout)["error"]
    assert SECRET not in asked.stdout + asked.stderr
    assert evaluated.returncode in (0, 1), evaluated.stderr[-800:]
    written = "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.suffix in (".json", ".md", ".jsonl"))
    assert written and SECRET not in written + evaluated.stdout + evaluated.stderr


# --- the index folder: read-only, or a disk that fills up mid-ingest -------------------------------------


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make a folder read-only for this process: permissions for a normal user, a read-only bind mount for root."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for path in modes:
            path.chmod(modes[path] & ~0o222)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"root without mount rights cannot make a read-only folder here: {bind.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True, capture_output=True)


def test_read_only_index_is_one_clear_line_for_every_command(seed_library, tmp_path, seed_corpus):
    """Chroma writes to its folder even to search, so every command refuses, in one line that says why."""
    index = tmp_path / "index"
    shutil.copytree(seed_library.settings.index_path, index)
    before = sorted((p.name, p.stat().st_size) for p in index.rglob("*") if p.is_file())
    new_paper = write_jsonl(tmp_path / "new.jsonl", seed_corpus.papers[:1])
    with read_only(index):
        results = [
            run_cli("ingest", str(new_paper), index=index),
            run_cli("search", "visual correspondence benchmark for MLLMs", index=index),
            run_cli("ask", "How many languages does the mOSCAR corpus cover?", "--extractive", index=index),
        ]
    for result in results:
        assert result.returncode == 2, (result.args, result.stderr[-800:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-800:]
        assert f"the index at {index} is read-only" in lines[0], lines[0]
    assert sorted((p.name, p.stat().st_size) for p in index.rglob("*") if p.is_file()) == before  # untouched
    writable = run_cli("search", "visual correspondence benchmark for MLLMs", index=index)
    assert writable.returncode == 0 and "Are They the Same?" in writable.stdout  # fine once writable again


def test_disk_full_mid_ingest_is_one_line_and_the_resume_completes(tmp_path, embedder, seed_corpus):
    """Files may not grow past 1.5 MB (RLIMIT_FSIZE): Chroma's writes fail part-way, as on a full disk."""
    corpus = write_jsonl(tmp_path / "corpus.jsonl", seed_corpus.papers[:60])
    index = tmp_path / "index"
    limit = 1_500_000

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"RAG_INDEX__PATH": str(index), "RAG_INDEX__BATCH_PAPERS": "4", "RAG_INDEX__SENTENCE_VECTORS": "false"})
    full = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ingest", str(corpus)],
        capture_output=True, text=True, cwd=REPO, env=env, preexec_fn=small_disk, timeout=600,
    )  # fmt: skip
    assert full.returncode == 2, (full.returncode, full.stderr[-1500:])
    errors = [line for line in full.stderr.splitlines() if line.startswith("rag: error:")]
    assert len(errors) == 1 and "Traceback" not in full.stderr, full.stderr[-1500:]
    assert str(index) in errors[0]

    resumed = run_cli("ingest", str(corpus), index=index, extra_env={"RAG_INDEX__SENTENCE_VECTORS": "false"})
    assert resumed.returncode == 0, resumed.stderr[-800:]
    clean = tmp_path / "clean"
    make_library(clean, embedder, **{"index.sentence_vectors": False}).ingest([corpus], progress=False)
    assert make_library(index).stats().chunks == make_library(clean).stats().chunks
    assert make_library(index).stats().papers == 60
