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


def score_item(item: GoldenItem, answer: dict) -> ItemScore:
    """`answer` is the `rag ask --json` object."""
    cited = {c["paper_id"] for c in answer["citations"]}
    cited_titles = {title_key(c["title"]) for c in answer["citations"]}
    source_ids = {s["paper_id"] for s in answer["sources"]}
    facts = [f for f in item.must_include if fact_present(f, answer["answer"])] if not answer["refused"] else []
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
    }


def _median(values: list[float]) -> float:
    return round(median(values), 1) if values else 0.0


def _percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return round(ordered[rank - 1], 1)
