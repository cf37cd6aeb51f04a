"""`rag eval` end to end on the real index: reports, resume, baseline flips and the regression gate."""

from __future__ import annotations

import json

import pytest

from paper_rag_eval.runner import check_thresholds, compare, run_golden
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def golden_report(seed_library, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-out")
    result = run_cli("eval", "--out", str(out), "--fail-under", "hit@5=0.9", index=seed_library.settings.index_path)
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "report.json").read_text()), result


def test_retrieval_report_has_the_documented_shape(golden_report):
    out, report, result = golden_report
    assert {"retrieval", "retrieval_by_kind"} <= set(report["summary"])
    assert set(report["summary"]["retrieval"]) >= {"hit@1", "hit@5", "recall@10", "mrr"}
    assert report["config"]["retrieval"]["mode"] == "hybrid"
    assert report["meta"]["prompt_version"] and len(report["meta"]["index_fingerprint"]) == 16
    assert len(report["items"]) >= 80
    item = report["items"][0]
    assert {"id", "kind", "question", "retrieved_titles", "answer", "refused", "citations", "scores", "timings"} <= set(
        item
    )
    assert 1 <= len(item["retrieved_titles"]) <= 10
    for name in ("report.md", "metrics_by_kind.png", "latency.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "metrics_by_kind.png").read_bytes()[:4] == b"\x89PNG"
    assert "| single |" in (out / "report.md").read_text()
    assert "retrieval: hit@1=" in result.stdout


def test_report_items_recompute_the_summary(golden_report):
    from paper_rag_eval.harness import load_golden
    from paper_rag_eval.metrics import GoldenItem, score_retrieval, summarize_retrieval

    _, report, _ = golden_report
    by_id: dict[str, GoldenItem] = {item.id: item for item in load_golden()}
    recomputed = summarize_retrieval(
        [(r["kind"], score_retrieval(by_id[r["id"]], r["retrieved_titles"])) for r in report["items"]]
    )
    assert recomputed["overall"] == report["summary"]["retrieval"]


class OnePaperRetriever:
    """A deliberately broken retriever: k=1, whatever the caller asks for."""

    def __init__(self, real) -> None:
        self.real = real

    def search(self, question, k=None, **options):
        return self.real.search(question, k=1, **options)


class ShuffledRetriever:
    """Another: the right papers, in a scrambled order with strangers in front."""

    def __init__(self, real) -> None:
        self.real = real

    def search(self, question, k=None, **options):
        import random

        hits = self.real.search(question, k=k, **options)
        strangers = self.real.search("protein folding in yeast under heat stress", k=k)
        mixed = [h for h in strangers if h.paper_id not in {x.paper_id for x in hits}][:5] + hits
        random.Random(question).shuffle(mixed[5:])
        return mixed[:k]


@pytest.mark.parametrize("broken", [OnePaperRetriever, ShuffledRetriever])
def test_a_broken_retriever_fails_the_gate_and_flips_items(golden_report, seed_library, tmp_path, broken):
    _, good, _ = golden_report
    report = run_golden(
        seed_library, _golden(), "retrieval", tmp_path, retriever=broken(seed_library.retriever()), resume=False
    )
    assert report["summary"]["retrieval"]["hit@5"] < good["summary"]["retrieval"]["hit@5"]
    gate = {"hit@5": round(good["summary"]["retrieval"]["hit@5"] - 0.02, 3)}  # a gate set just below the good run
    assert check_thresholds(report, gate) != []
    assert check_thresholds(good, gate) == []
    deltas, flipped, regressions = compare(report, good, max_drop=0.02)
    assert flipped and regressions and any(line.startswith("retrieval.hit@5:") for line in deltas)


def test_cli_gate_exit_codes_and_baseline_output(golden_report, seed_library, tmp_path):
    _, good, _ = golden_report
    missing = run_cli(
        "eval",
        "--out",
        str(tmp_path),
        "--baseline",
        str(tmp_path / "missing.json"),
        index=seed_library.settings.index_path,
    )
    assert missing.returncode == 2 and "cannot read baseline" in missing.stderr
    # A baseline that was better than today: every drop beyond eval.max_drop fails the run.
    better = json.loads(json.dumps(good))
    better["summary"]["retrieval"]["hit@1"] = 1.0
    better["items"][0]["scores"]["retrieval"] = {"hit@1": 1.0, "hit@5": 1.0, "recall@10": 1.0, "mrr": 1.0}
    (tmp_path / "better.json").write_text(json.dumps(better))
    result = run_cli(
        "eval",
        "--out",
        str(tmp_path),
        "--baseline",
        str(tmp_path / "better.json"),
        "--fail-under",
        "mrr=0.99",
        index=seed_library.settings.index_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rag: gate failed: retrieval.hit@1 fell from 1.000" in result.stderr
    assert "rag: gate failed: retrieval.mrr = " in result.stderr
    assert "against the baseline:" in result.stdout and "retrieval.hit@1: 1.000 ->" in result.stdout


def test_unknown_gate_metric_is_a_clear_error(golden_report, seed_library, tmp_path):
    _, report, _ = golden_report
    with pytest.raises(ValueError, match="unknown metric 'hit@7'"):
        check_thresholds(report, {"hit@7": 0.5})
    result = run_cli("eval", "--out", str(tmp_path), "--fail-under", "hit5", index=seed_library.settings.index_path)
    assert result.returncode == 2 and "bad --fail-under 'hit5'" in result.stderr


def test_an_interrupted_run_resumes_without_redoing_items(seed_library, tmp_path):
    first = run_golden(seed_library, _golden(), "retrieval", tmp_path, limit=12)
    partial = (tmp_path / "partial.jsonl").read_text().splitlines()
    assert len(partial) == 13 and json.loads(partial[-1])["complete"]  # 12 items, then the end mark
    again = run_golden(seed_library, _golden(), "retrieval", tmp_path, limit=12)
    assert again["meta"]["resumed_items"] == 0  # a finished run is not resumed
    # Interrupted after 5 items, the last line cut off mid-write.
    (tmp_path / "partial.jsonl").write_text("\n".join(partial[:5]) + "\n" + partial[5][:40])
    resumed = run_golden(seed_library, _golden(), "retrieval", tmp_path, limit=12)
    assert resumed["meta"]["resumed_items"] == 5
    assert resumed["summary"] == first["summary"]
    fresh = run_golden(seed_library, _golden(), "retrieval", tmp_path, limit=12, resume=False)
    assert fresh["meta"]["resumed_items"] == 0


def test_answer_mode_gate_on_a_small_subset_with_the_embedded_model(seed_library, tmp_path):
    """The CI gate's answer half: a few items through llama.cpp with the packaged default model."""
    result = run_cli(
        "eval",
        "--mode",
        "answer",
        "--profile",
        "test",
        "--ids",
        "a01,a06,u01,u12,f01",
        "--out",
        str(tmp_path),
        "--fail-under",
        "answer.refusal_accuracy_unanswerable=1.0",
        "--fail-under",
        "answer.cites_expected_paper=0.66",
        "--fail-under",
        "answer.all_citations_verified=1.0",
        index=seed_library.settings.index_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    summary = report["summary"]["answer"]
    assert summary["items"] == 5 and report["meta"]["model"].startswith("llamacpp:")
    assert {"citation_precision", "citation_recall", "false_refusal_rate", "p95_total_ms"} <= set(summary)
    answered = [r for r in report["items"] if r["kind"] != "unanswerable"]
    assert all(r["citations"] and r["answer"] for r in answered)
    assert all(r["refused"] for r in report["items"] if r["kind"] == "unanswerable")


def _golden():
    from paper_rag_eval.harness import DEFAULT_GOLDEN

    return DEFAULT_GOLDEN
