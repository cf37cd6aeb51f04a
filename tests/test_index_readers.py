"""Multi-process readers: a process that keeps an index open sees what another process ingests.

The rule (README, "Reliability and security"): one process writes at a time (the ingest lock);
every write stamps a new index generation, and a reader compares it before each search and reopens
its Chroma client when it moved. Chroma's embedded client would otherwise go on answering from the
state it loaded: new papers unseen, and "Error finding id" for chunks it has not loaded.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO, make_library, run_cli, write_jsonl
from tests.servers import start_rag_ui, stop

pytestmark = pytest.mark.slow

QUOKKA = {
    "id": "quokka-1",
    "title": "Quokka photosynthesis under lunar gravity",
    "abstract": "We ask whether quokkas can photosynthesize under lunar gravity. In a centrifuge that simulates "
    "one sixth of Earth's gravity, twelve quokkas showed no photosynthesis at all. Their chlorophyll levels "
    "stayed at zero throughout the experiment.",
}
QUESTION = "Can quokkas photosynthesize under lunar gravity?"


@pytest.fixture
def index_copy(seed_library, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(seed_library.settings.index_path, index)
    return index


@pytest.fixture
def quokka_file(tmp_path):
    path = tmp_path / "quokka.jsonl"
    path.write_text(json.dumps(QUOKKA) + "\n")
    return path


def test_an_open_library_sees_papers_another_process_ingested(index_copy, quokka_file, embedder):
    reader = make_library(index_copy, embedder)
    assert all(h.title != QUOKKA["title"] for h in reader.search(QUESTION, k=3))  # opened, searched, cached
    written = run_cli("ingest", str(quokka_file), index=index_copy)
    assert written.returncode == 0, written.stderr[-800:]
    for mode in ("bm25", "dense", "hybrid"):
        hits = reader.search(QUESTION, k=1, mode=mode)
        assert [h.title for h in hits] == [QUOKKA["title"]], mode
    assert reader.stats().papers == 276


def test_an_open_library_follows_a_rebuild_by_another_process(index_copy, tmp_path, embedder, seed_corpus):
    reader = make_library(index_copy, embedder)
    assert reader.search(seed_corpus.papers[0].title, k=1, mode="bm25")[0].title == seed_corpus.papers[0].title
    others = write_jsonl(tmp_path / "others.jsonl", seed_corpus.papers[100:104])
    rebuilt = run_cli("ingest", "--rebuild", str(others), index=index_copy)
    assert rebuilt.returncode == 0, rebuilt.stderr[-800:]
    wanted = {p.title for p in seed_corpus.papers[100:104]}
    for mode in ("bm25", "dense", "hybrid"):
        assert {h.title for h in reader.search(seed_corpus.papers[0].title, k=10, mode=mode)} <= wanted, mode
    assert reader.stats().papers == 4


def test_the_chat_page_sees_papers_a_cli_ingest_added(index_copy, quokka_file, tmp_path):
    from gradio_client import Client

    process, url, _port = start_rag_ui(REPO, index_copy, tmp_path / "ui.log", {"RAG_PROFILE": "extractive"})
    try:
        client = Client(url, verbose=False)

        def ask(mode: str) -> str:
            chat, cards, _ = client.predict(QUESTION, [], "extractive", 3, mode, False, "", api_name="/respond")
            return f"{chat[-1]['content']}\n{cards}"

        modes = ("bm25", "dense", "hybrid")
        before = {mode: ask(mode) for mode in modes}  # every mode's assistant has the index open
        assert all(QUOKKA["title"] not in page for page in before.values())
        written = run_cli("ingest", str(quokka_file), index=index_copy)
        assert written.returncode == 0, written.stderr[-800:]
        for mode in modes:
            page = ask(mode)
            assert "rag-error" not in page, page[:600]
            assert QUOKKA["title"] in page and "lunar gravity" in page, (mode, page[:600])
    finally:
        stop(process)


def test_an_open_library_ingests_after_another_process_wrote(index_copy, quokka_file, tmp_path, embedder, seed_corpus):
    """A long-lived writer (the server's upload jobs) whose Chroma client predates another process's ingest must
    read the index as it is now before probing it, or the papers it has not loaded look like lost vectors."""
    writer = make_library(index_copy, embedder)
    assert writer.search(QUESTION, k=1)  # the client is open and has loaded the vector index
    others = [
        {"id": f"extra-{n}", "title": f"{p.title} (extra {n})", "abstract": p.abstract}
        for n, p in enumerate(seed_corpus.papers[:40])
    ]
    extra_file = tmp_path / "extra.jsonl"
    extra_file.write_text("".join(json.dumps(o) + "\n" for o in others))
    written = run_cli("ingest", str(extra_file), index=index_copy)
    assert written.returncode == 0, written.stderr[-800:]
    report = writer.ingest([quokka_file], progress=False)
    assert report.papers_seen == 1
    assert writer.reopened().stats().papers == 275 + 40 + 1
