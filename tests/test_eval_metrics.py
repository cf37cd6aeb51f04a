"""Scoring one answer against one golden item: pure functions on hand-written answers."""

from __future__ import annotations

from paper_rag_eval.harness import load_golden
from paper_rag_eval.metrics import GoldenItem, fact_present, score_item, summarize

ITEM = GoldenItem(
    id="q1",
    kind="numeric",
    question="What accuracy?",
    gold_titles=["Paper A: Things"],
    must_include=["51.06", "MMVM|visual matching"],
)


def _answer(text: str, cited: list[tuple[str, str, bool]], refused: bool = False) -> dict:
    return {
        "answer": text,
        "refused": refused,
        "grounded": 1.0 if cited else 0.0,
        "citations": [{"paper_id": pid, "title": title, "supported": ok} for pid, title, ok in cited],
        "sources": [{"paper_id": "a", "title": "Paper A: Things"}, {"paper_id": "b", "title": "Paper B"}],
        "timings": {"first_token_ms": 10.0, "total_ms": 20.0},
        "mode": "generate",
    }


def test_fact_matching_is_case_insensitive_with_alternatives():
    assert fact_present("MMVM|visual matching", "a Visual Matching benchmark")
    assert fact_present("51.06%", "reaches 51.06\\% accuracy")
    assert not fact_present("51.06", "reaches 51.6 accuracy")


def test_a_correct_cited_answer():
    score = score_item(ITEM, _answer("CoLVA reaches 51.06% on MMVM [1].", [("a", "paper a - things", True)]))
    assert (score.cites_expected, score.facts_found, score.citations_verified) == (True, 2, True)


def test_a_refusal_on_an_answerable_item_scores_no_facts():
    score = score_item(ITEM, _answer("The indexed abstracts do not cover this. 51.06 MMVM", [], refused=True))
    assert score.refused and not score.correct_refusal and score.facts_found == 0


def test_a_citation_outside_the_sources_is_not_verified():
    score = score_item(ITEM, _answer("51.06 [1].", [("zzz", "Other", True)]))
    assert not score.citations_verified and not score.cites_expected


def test_summary_rates():
    unanswerable = GoldenItem(id="u1", kind="unanswerable", question="?", gold_titles=[], must_include=[])
    scores = [
        score_item(ITEM, _answer("51.06 MMVM [1].", [("a", "Paper A: Things", True)])),
        score_item(ITEM, _answer("", [], refused=True)),
        score_item(unanswerable, _answer("no", [], refused=True)),
    ]
    summary = summarize(scores)
    assert summary["answer_rate"] == 0.5
    assert summary["refusal_accuracy_unanswerable"] == 1.0
    assert summary["must_include_rate"] == 0.5  # 2 of 4 facts over the two answerable items
    assert summary["cites_expected_paper"] == 0.5


def test_shipped_golden_splits_check_out_against_their_collections(seed_corpus, tmp_path):
    from paper_rag_eval.collections import COLLECTIONS, SPLIT_COLLECTION, write_subset
    from paper_rag_eval.harness import GOLDEN_SPLITS, check_golden
    from rag.sources import load_corpus

    for dev_name, test_name in (("dev", "test"), ("scifact-dev", "scifact-test")):
        dev, test = (load_golden(GOLDEN_SPLITS[name]) for name in (dev_name, test_name))
        assert len(dev) + len(test) >= 150
        assert not {item.id for item in dev} & {item.id for item in test}
        assert not {item.final_question for item in dev} & {item.final_question for item in test}
    for name, path in GOLDEN_SPLITS.items():
        collection = SPLIT_COLLECTION[name]
        papers = seed_corpus.papers
        if collection:
            subset = write_subset(COLLECTIONS[collection], tmp_path / f"{collection}.jsonl")
            papers = load_corpus([subset]).papers
            assert len(papers) == 300
        assert check_golden(path, papers) == [], name


def test_golden_check_names_each_problem(tmp_path, seed_corpus):
    import json

    from paper_rag_eval.harness import check_golden

    real = seed_corpus.papers[0]
    lines = [
        {"id": "x1", "kind": "single", "question": "q?", "gold_titles": ["No Such Paper"], "must_include": []},
        {
            "id": "x1",
            "kind": "single",
            "question": f"about {real.title}?",
            "gold_titles": [real.title],
            "must_include": ["zzqx-not-there"],
        },
        {"id": "x3", "kind": "followup", "question": "q?", "gold_titles": [real.title], "must_include": []},
        {"id": "x4", "kind": "unanswerable", "question": "q?", "gold_titles": [real.title], "must_include": []},
        {"id": "x5", "kind": "weird", "question": "q?", "gold_titles": [], "must_include": []},
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    problems = "\n".join(check_golden(path, seed_corpus.papers))
    for expected in (
        "bad.jsonl:1: gold title not in the corpus",
        "bad.jsonl:2: duplicate id x1",
        "bad.jsonl:2: the question quotes the title",
        "bad.jsonl:2: fact 'zzqx-not-there' is in none",
        "bad.jsonl:3: a followup has 2+ turns",
        "bad.jsonl:4: an unanswerable item has no gold",
        "bad.jsonl:5: kind 'weird'",
        "at least 25 wanted",
    ):
        assert expected in problems, expected


def test_nearest_rank_percentile():
    from paper_rag_eval.metrics import _percentile

    assert _percentile(list(range(1, 21)), 95) == 19
    assert _percentile([5.0], 95) == 5.0
    assert _percentile([], 95) == 0.0


MULTI = GoldenItem(
    id="m1", kind="multi", question="Which?", gold_titles=["Paper A: Things", "Paper C"], must_include=[]
)


def test_citation_precision_and_recall_count_each_paper_once():
    duplicate = _answer(
        "x [1]. y [1]. z [2].", [("a", "Paper A: Things", True), ("a", "Paper A: Things", True), ("b", "Paper B", True)]
    )
    score = score_item(MULTI, duplicate)
    assert score.citation_precision == 0.5  # A is gold, B is not; A's second citation adds nothing
    assert score.citation_recall == 0.5  # A of {A, C}


def test_empty_answer_and_refusal_on_answerable():
    empty = score_item(MULTI, _answer("", []))
    assert empty.citation_precision is None and empty.citation_recall == 0.0 and not empty.passed
    refused = score_item(MULTI, _answer("The indexed abstracts do not cover this.", [], refused=True))
    summary = summarize([refused, empty])
    assert summary["false_refusal_rate"] == 0.5
    assert summary["citation_precision"] == 0.0  # nothing cited anywhere: no precision to average
    assert summary["citation_recall"] == 0.0 and summary["pass_rate"] == 0.0


def test_retrieval_scores_by_title_and_skip_unanswerable():
    from paper_rag_eval.metrics import score_retrieval, summarize_retrieval

    scores = score_retrieval(MULTI, ["Paper B", "paper c", "Paper A - things"])
    assert scores == {"hit@1": 0.0, "hit@5": 1.0, "recall@10": 1.0, "mrr": 0.5}
    unanswerable = GoldenItem(id="u1", kind="unanswerable", question="?", gold_titles=[], must_include=[])
    assert score_retrieval(unanswerable, ["Paper B"]) is None
    summary = summarize_retrieval(
        [
            ("multi", scores),
            ("unanswerable", None),
            ("single", {"hit@1": 1.0, "hit@5": 1.0, "recall@10": 1.0, "mrr": 1.0}),
        ]
    )
    assert summary["overall"]["items"] == 2 and summary["overall"]["hit@1"] == 0.5
    assert summary["by_kind"]["multi"]["mrr"] == 0.5 and "unanswerable" not in summary["by_kind"]
