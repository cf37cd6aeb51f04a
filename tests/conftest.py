"""Shared fixtures: the real embedding model, a real Chroma index of the built-in corpus, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.config import EmbeddingSettings, load_settings
from rag.embedding import load_embedder
from rag.library import Library
from rag.sources import builtin_corpus_paths, load_corpus

REPO = Path(__file__).resolve().parent.parent
DYVTE_TITLE = "Accelerating Multimodal Large Language Models via Dynamic Visual-Token Exit and the Empirical Findings"


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """The suite ends with every server and CLI it started stopped; a leftover is killed and fails the run."""
    yield
    import psutil

    left = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())
    ]
    described = [f"{p.pid}: {' '.join(p.cmdline())[:160]}" for p in left]
    for process in left:
        process.kill()
    assert not left, f"processes left running by the tests (now killed): {described}"


@pytest.fixture(scope="session")
def seed_corpus():
    return load_corpus(builtin_corpus_paths())


@pytest.fixture(scope="session")
def embedder():
    """The default encoder (`embedding.backend: auto`: onnxruntime on a CPU)."""
    return load_embedder(EmbeddingSettings())


def make_library(index_path: Path, embedder=None, **overrides) -> Library:
    settings = load_settings(overrides={"index.path": str(index_path), **overrides}, env={})
    library = Library(settings)
    if embedder is not None:
        library._embedder = embedder  # share one loaded model across tests
    return library


@pytest.fixture(scope="session")
def seed_library(tmp_path_factory, embedder):
    """The built-in corpus ingested once into a real persistent Chroma index."""
    library = make_library(tmp_path_factory.mktemp("seed-index"), embedder)
    report = library.ingest(progress=False)
    assert (report.records_read, report.papers_embedded, report.problems) == (370, 275, [])
    return library


@pytest.fixture(scope="session")
def openai_server(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server with the embedded model, on 127.0.0.1."""
    from rag.models import PACKAGED_MODELS, ensure_joined
    from tests.servers import llama_server

    gguf = ensure_joined(PACKAGED_MODELS["qwen2.5-coder-0.5b-instruct"], load_settings(env={}).llm.model_dir)
    with llama_server(gguf, "qwen-0.5b", tmp_path_factory.mktemp("llama-server") / "server.log") as base_url:
        yield base_url


def write_jsonl(path: Path, papers) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for paper in papers:
            handle.write(json.dumps({"id": paper.paper_id, "title": paper.title, "abstract": paper.abstract}) + "\n")
    return path


def run_cli(
    *args: str, index: Path, extra_env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"RAG_INDEX__PATH": str(index), **(extra_env or {})})
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO
    )
