"""Fit the answer judge (rag/answer/judge.py) on the dev splits of two fields, and say how well it separates.

Each considered paper of each dev question is one row: the judge's features, and whether the paper is one
of the question's gold papers (an unanswerable question's papers are all negatives). A logistic model
with a little L2 is fitted by Newton's method; the question is answerable when its best paper's
probability clears `answer.judge_threshold`. Only dev splits are ever read here.

    python -m eval.fit_judge                      # dev + scifact-dev, writes rag/answer/judge_weights.json
    python -m eval.fit_judge --dry-run            # report only
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.collections import SPLIT_COLLECTION, ensure_index
from eval.harness import GOLDEN_DIR, load_golden
from eval.metrics import title_key
from rag.answer.judge import FEATURE_NAMES, WEIGHTS_FILE
from rag.answering import Assistant

DEV_SPLITS = ("dev", "scifact-dev")


@dataclass
class Row:
    split: str
    item: str
    kind: str
    rank: int  # the paper's place in the judge's input order (retrieval + answer score)
    features: list[float]
    gold: bool
    missing: list[tuple[str, float, int]] = ()  # (stem, weight, document frequency) of the terms it lacks
    similarity_rank: int = 0


def collect(split: str, limit: int | None = None) -> list[Row]:
    collection = SPLIT_COLLECTION[split]
    overrides = {"answer.mode": "extractive"}
    if collection:
        overrides["index.path"] = str(ensure_index(collection))
    assistant = Assistant.from_config(overrides=overrides)
    rows: list[Row] = []
    items = load_golden(GOLDEN_DIR / f"{split}.jsonl")[:limit]
    for number, item in enumerate(items, start=1):
        history = [assistant.ask(turn) for turn in item.earlier_turns]
        gold = {title_key(t) for t in item.gold_titles}
        candidates = sorted(assistant.candidates(item.final_question, history), key=lambda c: -c.score)
        for rank, candidate in enumerate(candidates):
            if candidate.features is None:
                continue
            missing = [(t.stem, round(t.weight, 4), t.df) for t in candidate.features.missing]
            is_gold = title_key(candidate.hit.title) in gold
            rows.append(Row(split, item.id, item.kind, rank, candidate.features.vector(), is_gold, missing))
        print(f"\r{split}: {number}/{len(items)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def fit(x: np.ndarray, y: np.ndarray, l2: float = 0.5, steps: int = 50) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method; the intercept is not penalised."""
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -30, 30)))
        gradient = design.T @ (p - y) + penalty * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        w -= np.linalg.solve(hessian, gradient)
    return w[:-1], float(w[-1])


def auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def question_report(rows: list[Row], coefficients: np.ndarray, intercept: float, threshold: float) -> dict:
    """Per split: separation of answerable from unanswerable questions, refusals, and top-1 by judge vs input."""
    out = {}
    for split in sorted({r.split for r in rows}):
        by_item: dict[str, list[Row]] = {}
        for row in rows:
            if row.split == split:
                by_item.setdefault(row.item, []).append(row)
        best, answerable, top_judge, top_input, with_gold = [], [], 0, 0, 0
        for item_rows in by_item.values():
            probs = [1 / (1 + np.exp(-(intercept + np.dot(coefficients, r.features)))) for r in item_rows]
            is_answerable = item_rows[0].kind != "unanswerable"
            best.append(max(probs))
            answerable.append(is_answerable)
            if is_answerable and any(r.gold for r in item_rows):
                with_gold += 1
                top_judge += item_rows[int(np.argmax(probs))].gold
                top_input += min(item_rows, key=lambda r: r.rank).gold
        refused_unanswerable = sum(b < threshold for b, a in zip(best, answerable, strict=True) if not a)
        refused_answerable = sum(b < threshold for b, a in zip(best, answerable, strict=True) if a)
        out[split] = {
            "questions": len(by_item),
            "auc_answerable": round(auc(best, answerable), 3),
            "unanswerable_refused": f"{refused_unanswerable} of {answerable.count(False)}",
            "false_refusals": f"{refused_answerable} of {answerable.count(True)}",
            "top1_judge": f"{top_judge} of {with_gold}",
            "top1_input_order": f"{top_input} of {with_gold}",
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default=",".join(DEV_SPLITS))
    parser.add_argument("--limit", type=int, help="first N items per split (a quick look)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--l2", type=float, default=0.5)
    parser.add_argument("--dry-run", action="store_true", help="report with the current weights; write nothing")
    parser.add_argument("--rows-dir", help="keep each split's collected rows in DIR/SPLIT.json (and reuse them)")
    args = parser.parse_args(argv)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if any(s.endswith("test") for s in splits):
        parser.error("the judge is fitted on dev splits only")
    rows: list[Row] = []
    for split in splits:
        cached = Path(args.rows_dir) / f"{split}.json" if args.rows_dir else None
        if cached and cached.exists():
            rows += [Row(**r) for r in json.loads(cached.read_text())]
            continue
        collected = collect(split, args.limit)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps([r.__dict__ for r in collected]))
        rows += collected
    x = np.array([r.features for r in rows])
    y = np.array([float(r.gold) for r in rows])
    current = json.loads(WEIGHTS_FILE.read_text())
    if args.dry_run:
        coefficients, intercept = np.array(current["coefficients"]), float(current["intercept"])
    else:
        # Two fields weigh the same, whatever their question counts.
        coefficients, intercept = fit(x, y, args.l2)
    report = question_report(rows, coefficients, intercept, args.threshold)
    print(json.dumps({"coefficients": dict(zip(FEATURE_NAMES, np.round(coefficients, 3).tolist(), strict=True)),
                      "intercept": round(intercept, 3), "by_split": report}, indent=1))  # fmt: skip
    if not args.dry_run:
        WEIGHTS_FILE.write_text(
            json.dumps(
                {
                    "features": list(FEATURE_NAMES),
                    "coefficients": [round(float(c), 4) for c in coefficients],
                    "intercept": round(intercept, 4),
                    "fitted_on": splits,
                    "l2": args.l2,
                    "separation": report,
                },
                indent=1,
            )
            + "\n"
        )
        print(f"wrote {WEIGHTS_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
