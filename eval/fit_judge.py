"""Fit the answer judge (rag/answer/judge.py) on the dev splits of two fields, and say how well it separates.

Each considered paper of each dev question is one row: the judge's features, and whether the paper is one
of the question's gold papers (an unanswerable question's papers are all negatives). A logistic model
with a little L2 is fitted by Newton's method; the question is answerable when its best paper's
probability clears `answer.judge_threshold`. Inside `answer.judge_band` the judge model reads the best
candidate; a second logistic model over (the statistics' logit, the model's log-odds) is fitted on the dev
questions inside the band. Only dev splits are ever read here.

    python -m paper_rag_eval.fit_judge --rows-dir ROWS --with-model --band-low 0.3 --band-high 0.8
                                                        # dev + scifact-dev, writes rag/answer/judge_weights.json
    python -m paper_rag_eval.fit_judge --rows-dir ROWS --dry-run   # report only (rows kept in ROWS are reused)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paper_rag_eval.collections import SPLIT_COLLECTION, ensure_index
from paper_rag_eval.harness import GOLDEN_DIR, load_golden
from paper_rag_eval.metrics import title_key
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


def dev_assistant(split: str) -> Assistant:
    """Extractive answers over the split's collection, the statistics alone judging: the rows' features and
    order do not depend on the judge model, so asking it while collecting would only cost time."""
    collection = SPLIT_COLLECTION[split]
    overrides = {"answer.mode": "extractive", "answer.judge_model": None}
    if collection:
        overrides["index.path"] = str(ensure_index(collection))
    return Assistant.from_config(overrides=overrides)


def collect(split: str, limit: int | None = None) -> list[Row]:
    assistant = dev_assistant(split)
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


def collect_model(split: str, limit: int | None = None) -> list[dict]:
    """The judge model's Yes/No log-odds on each dev question's first candidate (the statistics' order), as the
    answer would ask it: ~5 s a question on 2 cores, so kept in --rows-dir as model-SPLIT.json."""
    from rag.answer.conversation import is_follow_up, refers_back
    from rag.answer.judge import best_sentences
    from rag.answer.model_judge import load_judge_model
    from rag.config import load_settings

    assistant = dev_assistant(split)
    judge = load_judge_model(load_settings())
    if judge is None:
        raise SystemExit("answer.judge_model is not set: there is no model to collect")
    records = []
    items = load_golden(GOLDEN_DIR / f"{split}.jsonl")[:limit]
    for number, item in enumerate(items, start=1):
        history = [assistant.ask(turn) for turn in item.earlier_turns]
        candidates = assistant.candidates(item.final_question, history)
        if history and is_follow_up(item.final_question) and refers_back(item.final_question):
            continue  # "its ...": the judge asks no model about a follow-up on the papers already chosen
        if candidates:
            top = candidates[0]
            question = assistant.ask(item.final_question, history).standalone_question
            log_odds = judge.log_odds(question, top.hit.title, best_sentences(top))
            records.append({"item": item.id, "kind": item.kind, "cands": [{"log_odds": round(log_odds, 3)}]})
        print(f"\r{split} (model): {number}/{len(items)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return records


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


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def fit_all(
    rows: list[Row], model_rows: dict[tuple[str, str], float], l2: float, band: tuple[float, float] = (0.0, 1.0)
) -> dict:
    """The logistic models of rag.answer.judge.JudgeWeights, from dev rows."""
    by_item: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        by_item.setdefault((row.split, row.item), []).append(row)
    # Fitted on each question's first candidate in answer-score order (answerable or not); the judge then puts the
    # candidate this model finds likeliest first, and answers from it when its probability clears the threshold.
    answer_score = FEATURE_NAMES.index("answer_score")
    first = {key: max(rs, key=lambda r: r.features[answer_score]) for key, rs in by_item.items()}
    keys = list(first)
    x = np.array([first[k].features for k in keys])
    y = np.array([float(first[k].kind != "unanswerable") for k in keys])
    ans_c, ans_b = fit(x, y, l2)
    tops = {key: max(rs, key=lambda r: float(np.dot(ans_c, r.features))) for key, rs in by_item.items()}
    out = {"answers": (ans_c, ans_b), "tops": tops}
    # The model logistic is fitted where the judge asks the model (inside the band): the easy questions far
    # outside it would otherwise lead it.
    inside = {k: float(_sigmoid(np.dot(ans_c, tops[k].features) + ans_b)) for k in keys if k in model_rows}
    asked = [k for k, p in inside.items() if band[0] <= p <= band[1]]
    if asked:
        p = np.array([inside[k] for k in asked])
        xm = np.column_stack([np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1)),
                              [model_rows[k] for k in asked]])  # fmt: skip
        ym = np.array([float(tops[k].kind != "unanswerable") for k in asked])
        out["model"] = fit(xm, ym, l2)
    return out


def question_report(fitted: dict, model_rows: dict[tuple[str, str], float], threshold: float,
                    band: tuple[float, float]) -> dict:  # fmt: skip
    """Per split: separation of answerable from unanswerable questions, refusals at the threshold (with the
    model asked inside the band where its reading is known), and how often the first paper is a gold one."""
    ans_c, ans_b = fitted["answers"]
    out = {}
    tops = fitted["tops"]
    for split in sorted({k[0] for k in tops}):
        keys = [k for k in tops if k[0] == split]
        probs, labels, asked = [], [], 0
        for key in keys:
            p = float(_sigmoid(np.dot(ans_c, tops[key].features) + ans_b))
            if "model" in fitted and key in model_rows and band[0] <= p <= band[1]:
                (a, b), c = fitted["model"]
                p = float(_sigmoid(c + a * np.log(max(p, 1e-6) / max(1 - p, 1e-6)) + b * model_rows[key]))
                asked += 1
            probs.append(p)
            labels.append(tops[key].kind != "unanswerable")
        unanswerable = [p for p, a in zip(probs, labels, strict=True) if not a]
        answerable = [p for p, a in zip(probs, labels, strict=True) if a]
        with_gold = [k for k in keys if tops[k].kind != "unanswerable"]
        out[split] = {
            "questions": len(keys),
            "auc_answerable": round(auc(probs, labels), 3),
            "unanswerable_refused": f"{sum(p < threshold for p in unanswerable)} of {len(unanswerable)}",
            "false_refusals": f"{sum(p < threshold for p in answerable)} of {len(answerable)}",
            "model_asked": asked,
            "top1_gold": f"{sum(tops[k].gold for k in with_gold)} of {len(with_gold)}",
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default=",".join(DEV_SPLITS))
    parser.add_argument("--limit", type=int, help="first N items per split (a quick look)")
    parser.add_argument("--threshold", type=float, default=0.3, help="refuse below this, the model asked in the band")
    parser.add_argument("--threshold-alone", type=float, default=0.45, help="refuse below this without a model")
    parser.add_argument("--l2", type=float, default=0.5)
    parser.add_argument("--band-low", type=float, default=0.0, help="the model is asked above this probability")
    parser.add_argument("--band-high", type=float, default=1.0, help="... and below this one")
    parser.add_argument(
        "--with-model",
        action="store_true",
        help="collect the judge model's log-odds into --rows-dir (slow)",
    )
    parser.add_argument("--dry-run", action="store_true", help="fit and report; write nothing")
    parser.add_argument("--rows-dir", help="keep each split's collected rows in DIR/SPLIT.json (and reuse them)")
    args = parser.parse_args(argv)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if any(s.endswith("test") for s in splits):
        parser.error("the judge is fitted on dev splits only")
    if args.with_model and not args.rows_dir:
        parser.error("--with-model keeps the model's readings in --rows-dir: name one")
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
    model_rows: dict[tuple[str, str], float] = {}
    for split in splits:
        cached = Path(args.rows_dir or "") / f"model-{split}.json"
        if args.with_model and args.rows_dir and not cached.exists():
            cached.write_text(json.dumps(collect_model(split, args.limit)))
        if args.rows_dir and cached.exists():
            for record in json.loads(cached.read_text()):
                if record["cands"]:
                    model_rows[(split, record["item"])] = record["cands"][0]["log_odds"]
    band = (args.band_low, args.band_high)
    fitted = fit_all(rows, model_rows, args.l2, band)
    report = question_report(fitted, model_rows, args.threshold, band)

    def as_json(pair) -> dict:
        coefficients, intercept = pair
        return {"coefficients": [round(float(c), 4) for c in coefficients], "intercept": round(float(intercept), 4)}

    weights = {name: as_json(fitted[name]) for name in ("answers", "model") if name in fitted}
    print(json.dumps({"features": list(FEATURE_NAMES), **weights, "by_split": report}, indent=1))
    if not args.dry_run:
        WEIGHTS_FILE.write_text(
            json.dumps(
                {
                    "features": list(FEATURE_NAMES),
                    **weights,
                    "fitted_on": splits,
                    "thresholds": {"with_model": args.threshold, "alone": args.threshold_alone},
                    "band": list(band),
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
