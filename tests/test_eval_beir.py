"""Retrieval metrics on hand-computed cases, and the BEIR runner on a small real slice of SciFact."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from paper_rag_eval.beir import beir_table, load_beir, run_beir, score_run, write_slice
from paper_rag_eval.metrics import hit_at_k, mrr_at_k, ndcg_at_k, recall_at_k
from tests.conftest import REPO, make_library

# The benchmark stays outside the project (non-commercial licence): ../shared beside the checkout, or
# wherever RAG_SCIFACT_DIR points (a clone elsewhere, e.g. in CI, finds this machine's copy).
SCIFACT = next(
    (
        path
        for path in (
            Path(os.environ.get("RAG_SCIFACT_DIR", "/nonexistent")),
            REPO.parent / "shared" / "benchmarks" / "scifact",
            Path("/work/shared/benchmarks/scifact"),
        )
        if (path / "corpus.jsonl").exists()
    ),
    REPO.parent / "shared" / "benchmarks" / "scifact",
)


def test_ndcg_hand_computed():
    assert ndcg_at_k(["d1", "d2", "d3"], {"d2": 1, "d4": 1}, 10) == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )
    # graded relevance, gain = grade
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, 10) == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert ndcg_at_k(["d2", "d4"], {"d2": 1, "d4": 1}, 10) == pytest.approx(1.0)
    assert ndcg_at_k([], {"d2": 1}, 10) == 0.0
    assert ndcg_at_k(["x"], {}, 10) == 0.0
    # cut-off: the relevant item at rank 3 is outside @2
    assert ndcg_at_k(["a", "b", "c"], {"c": 1}, 2) == 0.0


def test_duplicates_earn_nothing_twice():
    assert ndcg_at_k(["d2", "d2", "d4"], {"d2": 1, "d4": 1}, 2) == pytest.approx(1.0)
    assert recall_at_k(["a", "a", "a"], {"a", "b"}, 3) == 0.5


def test_recall_hit_mrr_hand_computed():
    ranked = ["d1", "d2", "d3"]
    assert recall_at_k(ranked, {"d2", "d4"}, 2) == 0.5
    assert recall_at_k(ranked, set(), 2) == 0.0
    assert hit_at_k(ranked, {"d2"}, 1) == 0.0 and hit_at_k(ranked, {"d2"}, 2) == 1.0
    assert mrr_at_k(ranked, {"d3", "d2"}, 10) == 0.5
    assert mrr_at_k(ranked, {"d3"}, 2) == 0.0


def test_score_run_averages_over_judged_queries():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    metrics = score_run({"q1": ["a"], "q3": ["b"]}, qrels)  # q2 has no ranking: scores 0
    assert metrics["ndcg@10"] == 0.5 and metrics["hit@1"] == 0.5 and metrics["recall@100"] == 0.5


@pytest.mark.slow
@pytest.mark.skipif(not SCIFACT.exists(), reason="../shared/benchmarks/scifact is not on this machine")
def test_beir_runner_on_a_scifact_slice(tmp_path, embedder):
    data = load_beir(SCIFACT)
    assert len(data.queries) == 300
    small = load_beir(write_slice(data, tmp_path / "slice", n_queries=8, extra_docs=40))
    assert len(small.queries) == 8 and all(small.qrels.values())
    library = make_library(tmp_path / "index", embedder, **{"index.sentence_vectors": True})
    report = library.ingest([small.corpus_path], progress=False)
    assert report.problems == [] and report.papers_embedded >= 48
    result = run_beir(library, small, ["bm25", "dense", "hybrid", "hybrid+rerank"], depth=20)
    for name, mode in result["modes"].items():
        metrics = mode["metrics"]
        assert all(0.0 <= value <= 1.0 for value in metrics.values()), name
        # 8 claims among ~50 abstracts: every mode finds most of the cited abstracts
        assert metrics["recall@10"] >= 0.6, (name, metrics)
        assert metrics["ndcg@10"] >= 0.4, (name, metrics)
        # the report's rankings reproduce its metrics
        assert score_run(mode["rankings"], small.qrels)["ndcg@10"] == metrics["ndcg@10"]
        assert mode["latency_ms"]["p50"] > 0
    table = beir_table(result)
    assert "| hybrid |" in table and "published" not in table  # the slice has no published figures
    assert Path(small.corpus_path).exists()
