"""Pure scoring of one answer against one golden item; no model, no index."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from statistics import median

KINDS = ("single", "numeric", "multi", "unanswerable", "followup")


@dataclass(frozen=True)
class GoldenItem:
    """One line of a golden set; gold papers are matched by normalised title, so it survives re-indexing."""

    id: str
    kind: str
    gold_titles: list[str]
    must_include: list[str]  # each fact must appear, case-insensitive; "a|b" accepts either spelling
    question: str = ""  # absent for followup items
    turns: list[str] | None = None  # followup only: earlier questions, then the one that is scored
    notes: str = ""

    @property
    def answerable(self) -> bool:
        return self.kind != "unanswerable"

    @property
    def final_question(self) -> str:
        return self.turns[-1] if self.turns else self.question

    @property
    def earlier_turns(self) -> list[str]:
        return list(self.turns[:-1]) if self.turns else []


def title_key(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower().replace("\\%", "%")).strip()


def fact_present(fact: str, answer: str) -> bool:
    text = _norm(answer)
    return any(_norm(alt) in text for alt in fact.split("|"))


@dataclass(frozen=True)
class ItemScore:
    id: str
    answerable: bool
    refused: bool
    correct_refusal: bool  # refused exactly when the item is unanswerable
    cites_expected: bool  # an expected paper is among the citations (answerable items)
    facts_found: int
    facts_total: int
    citations_verified: bool  # every citation marked supported and every cited paper among the sources
    grounded: float
    mode: str
    first_token_ms: float
    total_ms: float
    citation_precision: float | None = None  # cited papers (each once) that are gold; None when nothing is cited
    citation_recall: float = 0.0  # gold papers cited (answerable items)

    @property
    def passed(self) -> bool:
        """One line of verdict per item, for flips against a baseline."""
        if not self.answerable:
            return self.refused
        return not self.refused and self.cites_expected and self.facts_found == self.facts_total


def score_item(item: GoldenItem, answer: dict) -> ItemScore:
    """`answer` is the `rag ask --json` object."""
    cited = {c["paper_id"] for c in answer["citations"]}
    cited_titles = {title_key(c["title"]) for c in answer["citations"]}
    source_ids = {s["paper_id"] for s in answer["sources"]}
    facts = [f for f in item.must_include if fact_present(f, answer["answer"])] if not answer["refused"] else []
    gold = {title_key(t) for t in item.gold_titles}
    return ItemScore(
        id=item.id,
        answerable=item.answerable,
        refused=answer["refused"],
        correct_refusal=answer["refused"] != item.answerable,
        cites_expected=bool(cited_titles & {title_key(t) for t in item.gold_titles}),
        facts_found=len(facts),
        facts_total=len(item.must_include),
        citations_verified=all(c["supported"] for c in answer["citations"]) and cited <= source_ids,
        grounded=answer["grounded"],
        mode=answer.get("mode", ""),
        first_token_ms=answer["timings"]["first_token_ms"],
        total_ms=answer["timings"]["total_ms"],
        citation_precision=round(len(cited_titles & gold) / len(cited_titles), 4) if cited_titles else None,
        citation_recall=round(len(cited_titles & gold) / len(gold), 4) if gold else 0.0,
    )


def summarize(scores: list[ItemScore]) -> dict[str, float]:
    answerable = [s for s in scores if s.answerable]
    unanswerable = [s for s in scores if not s.answerable]
    answered = [s for s in answerable if not s.refused]
    facts_total = sum(s.facts_total for s in answerable)

    def share(items, flag) -> float:
        return round(sum(flag(s) for s in items) / len(items), 3) if items else 0.0

    return {
        "items": len(scores),
        "answer_rate": share(answerable, lambda s: not s.refused),
        "refusal_accuracy_unanswerable": share(unanswerable, lambda s: s.refused),
        "cites_expected_paper": share(answerable, lambda s: s.cites_expected),
        "must_include_rate": round(sum(s.facts_found for s in answerable) / facts_total, 3) if facts_total else 0.0,
        "all_citations_verified": share(answered, lambda s: s.citations_verified),
        "mean_grounded": round(sum(s.grounded for s in answered) / len(answered), 3) if answered else 0.0,
        "fallback_rate": share(answered, lambda s: s.mode == "fallback"),
        "median_first_token_ms": _median([s.first_token_ms for s in scores]),
        "median_total_ms": _median([s.total_ms for s in scores]),
        # refusals return in milliseconds and would flatter the medians above; these are answers only
        "answered_median_first_token_ms": _median([s.first_token_ms for s in answered]),
        "answered_median_total_ms": _median([s.total_ms for s in answered]),
        "answered_p95_total_ms": _percentile([s.total_ms for s in answered], 95),
        "citation_precision": _mean_of([s.citation_precision for s in scores if s.citation_precision is not None]),
        "citation_recall": _mean_of([s.citation_recall for s in answerable]),
        "false_refusal_rate": share(answerable, lambda s: s.refused),
        "p50_total_ms": _percentile([s.total_ms for s in scores], 50),
        "p95_total_ms": _percentile([s.total_ms for s in scores], 95),
        "p50_first_token_ms": _percentile([s.first_token_ms for s in scores], 50),
        "p95_first_token_ms": _percentile([s.first_token_ms for s in scores], 95),
        "pass_rate": share(scores, lambda s: s.passed),
    }


def _mean_of(values: list[float]) -> float:
    return round(sum(values) / len(values), 3) if values else 0.0


# --- retrieval scoring of one golden item -------------------------------------------------------------

RETRIEVAL_METRICS = ("hit@1", "hit@5", "recall@10", "mrr")


def score_retrieval(item: GoldenItem, retrieved_titles: list[str]) -> dict[str, float] | None:
    """hit@1, hit@5, recall@10 and MRR of the gold papers among ranked titles; None for unanswerable items."""
    if not item.answerable or not item.gold_titles:
        return None
    ranked = [title_key(t) for t in retrieved_titles]
    gold = {title_key(t) for t in item.gold_titles}
    return {
        "hit@1": hit_at_k(ranked, gold, 1),
        "hit@5": hit_at_k(ranked, gold, 5),
        "recall@10": recall_at_k(ranked, gold, 10),
        "mrr": mrr_at_k(ranked, gold, 10),
    }


def summarize_retrieval(scored: list[tuple[str, dict[str, float] | None]]) -> dict:
    """Means over answerable items, overall and by kind; `scored` holds (kind, scores) pairs."""
    kept = [(kind, s) for kind, s in scored if s is not None]

    def means(rows: list[dict[str, float]]) -> dict[str, float]:
        return {m: round(mean([r[m] for r in rows]), 3) for m in RETRIEVAL_METRICS} | {"items": len(rows)}

    by_kind = {}
    for kind in KINDS:
        rows = [s for k, s in kept if k == kind]
        if rows:
            by_kind[kind] = means(rows)
    return {"overall": means([s for _, s in kept]), "by_kind": by_kind}


def _median(values: list[float]) -> float:
    return round(median(values), 1) if values else 0.0


def _percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return round(ordered[rank - 1], 1)


# --- retrieval metrics over ranked ids (pure; BEIR conventions: gain = relevance, log2 discount) ---


def ndcg_at_k(ranked: list[str], relevance: dict[str, int], k: int) -> float:
    """nDCG@k as trec_eval computes it: gain = graded relevance, discount log2(rank + 1)."""
    gains = [relevance.get(doc, 0) for doc in _unique(ranked)[:k]]
    dcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1) if g > 0)
    ideal = sorted((r for r in relevance.values() if r > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranked: list[str], relevant: set[str], k: int) -> float:
    """Share of the relevant items found in the top k (0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    return len(set(_unique(ranked)[:k]) & relevant) / len(relevant)


def hit_at_k(ranked: list[str], relevant: set[str], k: int) -> float:
    """1 when any relevant item is in the top k."""
    return 1.0 if set(_unique(ranked)[:k]) & relevant else 0.0


def mrr_at_k(ranked: list[str], relevant: set[str], k: int) -> float:
    """1 / rank of the first relevant item within the top k, else 0."""
    for rank, doc in enumerate(_unique(ranked)[:k], start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def _unique(ranked: list[str]) -> list[str]:
    """A ranking counts each item once, at its best rank (a duplicate earns nothing twice)."""
    return list(dict.fromkeys(ranked))


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def percentile(values: list[float], pct: float) -> float:
    return _percentile(values, pct)
