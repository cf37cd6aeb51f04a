"""Run golden questions through an `Assistant` and score them (the library does the work)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from eval.metrics import GoldenItem, ItemScore, score_item

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
DEFAULT_GOLDEN = GOLDEN_DIR / "seed_papers.jsonl"


def load_golden(path: Path = DEFAULT_GOLDEN) -> list[GoldenItem]:
    items = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            items.append(GoldenItem(**record))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a golden item ({exc})") from None
    return items


def run_items(
    assistant, items: Iterable[GoldenItem], on_item: Callable[[GoldenItem, dict, ItemScore], None] | None = None
) -> list[tuple[dict, ItemScore]]:
    results = []
    for item in items:
        history = [assistant.ask(earlier) for earlier in item.earlier_turns]
        answer = assistant.ask(item.final_question, history=history).to_json()
        score = score_item(item, answer)
        if on_item:
            on_item(item, answer, score)
        results.append((answer, score))
    return results
