"""Client/server: the index on a real Chroma server (`chroma run` on 127.0.0.1), and several
concurrent questions answered through a real OpenAI-compatible server (llama-cpp-python's)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from paper_rag_ui.app import stats_markdown
from rag.answering import Assistant
from rag.config import load_settings
from rag.errors import IndexStoreError
from rag.library import Library
from rag.types import Answer
from tests.conftest import DYVTE_TITLE, run_cli, write_jsonl
from tests.servers import free_port, start_chroma, stop

pytestmark = pytest.mark.slow

CORRESPONDENCE = "Are They the Same? Exploring Visual Correspondence Shortcomings of Multimodal LLMs"
MOSCAR = "mOSCAR: A Large-scale Multilingual and Multimodal Document-level Corpus"


@pytest.fixture(scope="module")
def subset(seed_corpus, tmp_path_factory):
    """24 built-in papers, the ones the questions below are about among them."""
    wanted = {DYVTE_TITLE, CORRESPONDENCE, MOSCAR}
    papers = [p for p in seed_corpus.papers if p.title in wanted]
    papers += [p for p in seed_corpus.papers if p.title not in wanted][:21]
    assert len(papers) == 24
    return write_jsonl(tmp_path_factory.mktemp("subset") / "subset.jsonl", papers)


@pytest.fixture(scope="module")
def chroma(tmp_path_factory):
    """A Chroma server on a free loopback port; yields (url, port, data folder, log, process holder)."""
    root = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    server = {"url": f"http://127.0.0.1:{port}", "port": port, "data": root / "data", "log": root / "server.log"}
    server["process"] = start_chroma(server["data"], port, server["log"])
    yield server  # the same dict the tests see: a test that restarts the server leaves the new process here
    stop(server["process"])


def _server_env(chroma, client_dir) -> dict:
    return {"RAG_INDEX__SERVER": chroma["url"], "RAG_INDEX__PATH": str(client_dir)}


def test_ingest_search_and_ask_through_a_chroma_server(chroma, subset, tmp_path):
    client = tmp_path / "client"
    env = _server_env(chroma, client)
    ingest = run_cli("ingest", str(subset), "--profile", "test", index=client, extra_env=env)
    assert ingest.returncode == 0, ingest.stderr
    assert "24 embedded (64 chunks)" in ingest.stdout
    # The vectors live in the server's folder; the client keeps only its BM25 catalog and lock.
    assert (chroma["data"] / "chroma.sqlite3").exists()
    assert not (client / "chroma.sqlite3").exists()

    stats = run_cli("stats", index=client, extra_env=env)
    assert stats.returncode == 0, stats.stderr
    assert "24" in stats.stdout and chroma["url"] in stats.stdout and "held by the server" in stats.stdout

    search = run_cli(
        "search",
        "Is there work that drops all visual tokens partway through an MLLM?",
        "--json",
        index=client,
        extra_env=env,
    )
    assert search.returncode == 0, search.stderr
    assert DYVTE_TITLE in [r["title"] for r in json.loads(search.stdout)["results"][:3]]

    ask = run_cli(
        "ask",
        "How many languages does the mOSCAR corpus cover?",
        "--json",
        "--profile",
        "test",
        index=client,
        extra_env=env,
    )
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert not answer["refused"] and "163" in answer["answer"]
    assert [c["title"] for c in answer["citations"]] == [MOSCAR]
    assert {c["paper_id"] for c in answer["citations"]} <= {s["paper_id"] for s in answer["sources"]}


def test_second_client_rebuilds_its_keyword_catalog_from_the_server(chroma, subset, tmp_path, embedder):
    first = Library(load_settings(overrides={"index.server": chroma["url"], "index.path": str(tmp_path / "a")}, env={}))
    first._embedder = embedder
    first.ingest([subset], progress=False)
    second = Library(
        load_settings(overrides={"index.server": chroma["url"], "index.path": str(tmp_path / "b")}, env={})
    )
    second._embedder = embedder
    hits = second.search("multilingual multimodal document corpus languages", mode="bm25", k=3)
    assert hits[0].title == MOSCAR
    assert "on the server" in stats_markdown(second) and "24 papers" in stats_markdown(second)


def test_unreachable_server_is_one_line_naming_host_and_port(tmp_path):
    port = free_port()
    result = run_cli(
        "search", "anything", index=tmp_path / "client", extra_env={"RAG_INDEX__SERVER": f"http://127.0.0.1:{port}"}
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "chroma run" in lines[0]


def test_server_stopped_mid_session_then_back(chroma, subset, tmp_path, embedder):
    library = Library(load_settings(overrides={"index.server": chroma["url"], "index.path": str(tmp_path)}, env={}))
    library._embedder = embedder
    library.ingest([subset], progress=False)
    question = "visual correspondence benchmark for multimodal LLMs"
    assert library.search(question, k=3)[0].title == CORRESPONDENCE

    stop(chroma["process"])
    with pytest.raises(IndexStoreError) as lost:
        library.search(question, k=3)
    assert f"127.0.0.1:{chroma['port']}" in str(lost.value) and "\n" not in str(lost.value)

    chroma["process"] = start_chroma(chroma["data"], chroma["port"], chroma["log"])
    assert library.search(question, k=3)[0].title == CORRESPONDENCE  # the same objects recover


def test_concurrent_questions_through_an_openai_compatible_server(seed_library, openai_server, monkeypatch):
    """Three users ask at once through the hosted backend; the server queues them, none fails."""
    monkeypatch.setenv("TEST_OPENAI_KEY", "not-a-real-key")
    settings = load_settings(
        overrides={
            "index.path": str(seed_library.settings.index_path),
            "llm.backend": "openai",
            "llm.base_url": openai_server,
            "llm.model": "qwen-0.5b",
            "llm.api_key_env": "TEST_OPENAI_KEY",
            "llm.timeout_s": 240,
            "llm.temperature": 0.0,
            "llm.max_tokens": 80,
            "answer.mode": "generate",
        },
        env={},
    )
    library = Library(settings)
    library._embedder = seed_library.embedder
    assistant = Assistant.from_config(library=library)
    questions = {
        "How many languages does the mOSCAR corpus cover?": MOSCAR,
        "Is there a benchmark for matching objects across images for MLLMs?": CORRESPONDENCE,
        "Is there work that drops all visual tokens partway through an MLLM?": DYVTE_TITLE,
    }
    answers: dict[str, Answer] = {}
    errors: list[BaseException] = []

    def ask(question: str) -> None:
        try:
            answers[question] = assistant.ask(question)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=ask, args=(q,)) for q in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    elapsed = time.monotonic() - started
    assert len(answers) == 3, f"only {len(answers)} answers in {elapsed:.0f}s"
    for question, gold in questions.items():
        answer = answers[question]
        # A reply that fails verification falls back to the extractive answer: still no error.
        assert answer.error is None and answer.model.startswith("openai:qwen-0.5b"), answer.to_json()
        assert answer.mode in ("generate", "fallback")
        assert gold in [c.title for c in answer.citations], (question, answer.answer)
