"""Locks: one writer per index, and a command that is refused changes nothing.

The writer here is an ingest running in this process; the second command is `rag ingest` in its own
process, started while the first holds the lock (from its progress callback, after a committed batch).
"""

from __future__ import annotations

import pytest

from rag.store import ChromaStore
from tests.conftest import make_library, run_cli, write_jsonl

pytestmark = pytest.mark.slow

FAST = {"index.batch_papers": 8, "index.sentence_vectors": False}


def _papers_in(index) -> int:
    store = ChromaStore(index, "papers", create=False)
    store.open_for("all-MiniLM-L6-v2", None, create=False)
    return len(store.indexed_papers())


def test_rebuild_refused_while_an_ingest_writes_drops_nothing(tmp_path, embedder, seed_corpus):
    big = write_jsonl(tmp_path / "big.jsonl", seed_corpus.papers[:40])
    small = write_jsonl(tmp_path / "small.jsonl", seed_corpus.papers[200:203])
    index = tmp_path / "index"
    library = make_library(index, embedder, **FAST)
    seen: list = []

    def midway(done: int, total: int, chunks: int) -> None:
        if seen:
            return
        env = {"RAG_INDEX__SENTENCE_VECTORS": "0"}
        refused = run_cli("ingest", "--rebuild", str(small), index=index, extra_env=env)
        seen.append((done, refused, _papers_in(index)))

    report = library.ingest([big], progress=midway)
    done, refused, papers_then = seen[0]
    assert refused.returncode == 2, refused.stderr[-800:]
    assert "another ingest is writing" in refused.stderr and "Traceback" not in refused.stderr
    assert papers_then == done  # the refused rebuild dropped nothing that was committed
    assert report.papers_embedded == 40 and library.stats().papers == 40  # and the first ingest finished
    again = run_cli("ingest", str(big), index=index, extra_env={"RAG_INDEX__SENTENCE_VECTORS": "0"})
    assert "0 embedded (0 chunks), 40 unchanged" in again.stdout, again.stdout + again.stderr[-500:]


def test_rebuild_when_nobody_writes_replaces_the_index(tmp_path, embedder, seed_corpus):
    first = write_jsonl(tmp_path / "first.jsonl", seed_corpus.papers[:5])
    second = write_jsonl(tmp_path / "second.jsonl", seed_corpus.papers[5:8])
    library = make_library(tmp_path / "index", embedder, **FAST)
    library.ingest([first], progress=False)
    assert library.search(seed_corpus.papers[0].title, k=1, mode="bm25")[0].title == seed_corpus.papers[0].title
    library.ingest([second], rebuild=True, progress=False)
    assert library.stats().papers == 3
    titles = {p.title for p in seed_corpus.papers[5:8]}
    assert {h.title for h in library.search(seed_corpus.papers[0].title, k=5, mode="bm25")} <= titles
