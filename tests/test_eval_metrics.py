"""Scoring one answer against one golden item: pure functions on hand-written answers."""

from __future__ import annotations

from eval.harness import load_golden
from eval.metrics import GoldenItem, fact_present, score_item, summarize

ITEM = GoldenItem(id="q1", kind="numeric", question="What accuracy?", gold_titles=["Paper A: Things"],
                  must_include=["51.06", "MMVM|visual matching"])


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


def test_shipped_golden_set_loads_and_names_real_papers(seed_corpus):
    titles = {p.title for p in seed_corpus.papers}
    items = load_golden()
    assert len(items) >= 30
    for item in items:
        assert item.kind in {"single", "numeric", "multi", "unanswerable", "followup"}
        assert set(item.gold_titles) <= titles, item.id
        abstracts = " ".join(p.abstract for p in seed_corpus.papers if p.title in item.gold_titles)
        for fact in item.must_include:
            assert fact_present(fact, abstracts), (item.id, fact)


def test_nearest_rank_percentile():
    from eval.metrics import _percentile

    assert _percentile(list(range(1, 21)), 95) == 19
    assert _percentile([5.0], 95) == 5.0
    assert _percentile([], 95) == 0.0
