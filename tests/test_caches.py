"""Caches: the BM25 matrix cached beside the index is used only for the very papers it was built from.

It used to be keyed by the catalog's generation counter, which `--rebuild` starts again: ingest A,
ingest B, search (cache of A+B written), rebuild with C, ingest D, and keyword search answered from
A+B's cache, never finding D.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_library, write_jsonl

pytestmark = pytest.mark.slow

FAST = {"index.sentence_vectors": False}


def test_keyword_search_after_a_rebuild_finds_the_new_papers(tmp_path, embedder, seed_corpus):
    papers = seed_corpus.papers
    parts = {name: write_jsonl(tmp_path / f"{name}.jsonl", papers[i * 3 : i * 3 + 3]) for i, name in enumerate("ABCD")}
    index = tmp_path / "index"

    def fresh():  # a new process each step, as with the CLI: only the files on disk carry state
        return make_library(index, embedder, **FAST)

    fresh().ingest([parts["A"]], progress=False)
    fresh().ingest([parts["B"]], progress=False)
    assert fresh().search(papers[4].title, mode="bm25", k=1)[0].title == papers[4].title  # cache written
    fresh().ingest([parts["C"]], rebuild=True, progress=False)
    fresh().ingest([parts["D"]], progress=False)
    wanted = papers[10].title
    library = fresh()
    assert [h.title for h in library.search(wanted, mode="bm25", k=1)] == [wanted]
    assert wanted in [h.title for h in library.search(wanted, mode="hybrid", k=3)]
    assert {h.title for h in library.search(wanted, mode="bm25", k=10)} <= {p.title for p in papers[6:12]}


def test_a_cache_that_names_other_papers_is_not_used(tmp_path, embedder, seed_corpus):
    papers = seed_corpus.papers[:6]
    index = tmp_path / "index"
    make_library(index, embedder, **FAST).ingest([write_jsonl(tmp_path / "six.jsonl", papers)], progress=False)
    make_library(index, embedder, **FAST).search("anything at all", mode="bm25")
    (cached,) = [p for p in (index / ".bm25-cache").iterdir() if p.is_dir()]
    ids = json.loads((cached / "paper_ids.json").read_text())
    (cached / "paper_ids.json").write_text(json.dumps(list(reversed(ids))))  # same count, wrong rows
    hit = make_library(index, embedder, **FAST).search(papers[2].title, mode="bm25", k=1)[0]
    assert hit.title == papers[2].title
