"""`rag eval`: run a golden set (or a BEIR folder) through the library and write report.json + report.md.

Items are appended to `<out>/partial.jsonl` as they finish; a run interrupted with the same golden
file, mode and settings picks up where it stopped. The finished report records the settings, the
prompt version, the model and a fingerprint of the index, so two reports can be told apart.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from paper_rag_eval.harness import GOLDEN_SPLITS, answer_item, load_golden
from paper_rag_eval.metrics import KINDS, GoldenItem, ItemScore, score_retrieval, summarize, summarize_retrieval
from rag.answer.conversation import concat_standalone
from rag.types import Turn

PARTIAL = "partial.jsonl"


def default_golden(split: str = "dev") -> Path:
    return GOLDEN_SPLITS[split]


def index_fingerprint(library) -> str:
    stats = library.stats()
    catalog_generation = library.catalog().generation
    text = f"{stats.model}|{stats.dimension}|{stats.papers}|{stats.chunks}|{catalog_generation}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _run_key(golden: Path, mode: str, settings_dump: dict, ids: list[str]) -> str:
    text = json.dumps([golden.read_text(encoding="utf-8"), mode, settings_dump, ids], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def retrieval_question(item: GoldenItem) -> str:
    """What the retriever sees: a follow-up is joined to the turn before it, as the assistant does."""
    if item.earlier_turns:
        return concat_standalone(item.final_question, Turn(item.earlier_turns[-1], ""))
    return item.final_question


def _load_partial(out: Path, key: str) -> dict[str, dict]:
    path = out / PARTIAL
    if not path.exists():
        return {}
    done: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut off by the interruption
        if record.get("run_key") != key:
            continue
        if record.get("complete"):
            return {}  # that run finished; the same command now is a new run, not a resumption
        done[record["item"]["id"]] = record["item"]
    return done


def run_golden(
    library,
    golden: Path,
    mode: str,
    out: Path,
    *,
    ids: list[str] | None = None,
    kinds: list[str] | None = None,
    limit: int | None = None,
    resume: bool = True,
    assistant=None,
    retriever=None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Evaluate every selected golden item; returns the report (also written to `out`)."""
    items = load_golden(golden)
    unknown_kinds = sorted(set(kinds or ()) - set(KINDS))
    if unknown_kinds:
        raise ValueError(f"unknown kind {', '.join(unknown_kinds)} in --kinds; kinds are {', '.join(KINDS)}")
    if ids:
        wanted = set(ids)
        items = [i for i in items if i.id in wanted]
    if kinds:
        items = [i for i in items if i.kind in kinds]
    if limit:
        items = items[:limit]
    if not items:
        raise ValueError(f"no golden items selected from {golden}")
    settings_dump = library.settings.model_dump(mode="json")
    out.mkdir(parents=True, exist_ok=True)
    key = _run_key(Path(golden), mode, settings_dump, [i.id for i in items])
    done = _load_partial(out, key) if resume else {}
    if not done and (out / PARTIAL).exists():
        (out / PARTIAL).unlink()
    if mode == "answer" and assistant is None:
        from rag.answering import Assistant

        assistant = Assistant.from_config(library=library)
        assistant.warm_up(prime=True)  # model loaded before the first item is timed
    retriever = retriever or library.retriever()
    records: list[dict] = []
    with (out / PARTIAL).open("a", encoding="utf-8") as partial:
        for number, item in enumerate(items, start=1):
            if item.id in done:
                records.append(done[item.id])
            else:
                record = _evaluate(item, mode, retriever, assistant)
                partial.write(json.dumps({"run_key": key, "item": record}) + "\n")
                partial.flush()
                records.append(record)
            if progress:
                progress(number, len(items))
        partial.write(json.dumps({"run_key": key, "complete": True}) + "\n")
    report = build_report(library, golden, mode, items, records, settings_dump, resumed=len(done))
    return report


def _evaluate(item: GoldenItem, mode: str, retriever, assistant) -> dict:
    question = retrieval_question(item)
    started = time.perf_counter()
    hits = retriever.search(question, k=10)
    retrieve_ms = (time.perf_counter() - started) * 1000
    retrieved = [h.title for h in hits]
    record: dict = {
        "id": item.id,
        "kind": item.kind,
        "question": item.final_question,
        "turns": item.turns,
        "retrieved_titles": retrieved,
        "scores": {"retrieval": score_retrieval(item, retrieved)},
        "timings": {"retrieve_ms": round(retrieve_ms, 1)},
        "answer": None,
        "refused": None,
        "citations": [],
    }
    if mode == "answer":
        answer, score = answer_item(assistant, item)
        record.update(
            answer=answer["answer"],
            refused=answer["refused"],
            citations=[{"title": c["title"], "supported": c["supported"]} for c in answer["citations"]],
            mode=answer["mode"],
            grounded=answer["grounded"],
            error=answer["error"],
        )
        record["scores"]["answer"] = asdict(score)
        record["timings"] = answer["timings"] | {"retrieve_only_ms": round(retrieve_ms, 1)}
    return record


def build_report(
    library, golden: Path, mode: str, items, records: list[dict], settings_dump: dict, resumed: int
) -> dict:
    from rag.prompts import PROMPT_VERSION

    retrieval = summarize_retrieval([(r["kind"], r["scores"]["retrieval"]) for r in records])
    summary: dict = {"retrieval": retrieval["overall"], "retrieval_by_kind": retrieval["by_kind"]}
    model = "none (retrieval only)"
    if mode == "answer":
        scores = [ItemScore(**r["scores"]["answer"]) for r in records]
        summary["answer"] = summarize(scores)
        summary["answer_by_kind"] = {
            kind: summarize([s for s, r in zip(scores, records, strict=True) if r["kind"] == kind])
            for kind in sorted({r["kind"] for r in records})
        }
        s = library.settings
        model = "extractive" if s.answer.mode == "extractive" else f"{s.llm.backend}:{s.llm.model}"
    return {
        "summary": summary,
        "config": settings_dump,
        "meta": {
            "golden": str(golden),
            "mode": mode,
            "items": len(records),
            "resumed_items": resumed,
            "prompt_version": PROMPT_VERSION,
            "model": model,
            "embedding_model": library.settings.embedding.model,
            "retrieval_mode": library.settings.retrieval.mode,
            "index_fingerprint": index_fingerprint(library),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
        "items": records,
    }


# --- gate and baseline -------------------------------------------------------------------------------

LOWER_IS_BETTER = ("false_refusal_rate",)
NOT_QUALITY = ("items", "_ms")  # counts and latencies are reported, not gated on by --max-drop


def flat_metrics(report: dict) -> dict[str, float]:
    """`retrieval.hit@5`, `answer.must_include_rate`, ... from a report's summary."""
    flat = {}
    for section in ("retrieval", "answer"):
        for name, value in report.get("summary", {}).get(section, {}).items():
            if isinstance(value, int | float):
                flat[f"{section}.{name}"] = float(value)
    return flat


def resolve_metric(name: str, metrics: dict[str, float]) -> str:
    if name in metrics:
        return name
    matches = [key for key in metrics if key.split(".", 1)[1] == name]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted(metrics))
    raise ValueError(f"unknown metric '{name}' for this report; known: {known}")


def check_thresholds(report: dict, thresholds: dict[str, float]) -> list[str]:
    """Failures as one line each: a metric under its floor (or over it, for lower-is-better metrics)."""
    metrics = flat_metrics(report)
    failures = []
    for name, floor in thresholds.items():
        key = resolve_metric(name, metrics)
        value = metrics[key]
        worse = value > floor if key.endswith(LOWER_IS_BETTER) else value < floor
        if worse:
            relation = "above the ceiling" if key.endswith(LOWER_IS_BETTER) else "under the floor"
            failures.append(f"{key} = {value:.3f} is {relation} {floor:.3f}")
    return failures


def _item_passed(record: dict) -> bool | None:
    scores = record.get("scores", {})
    if scores.get("answer") is not None:
        return ItemScore(**scores["answer"]).passed
    retrieval = scores.get("retrieval")
    return None if retrieval is None else retrieval["hit@5"] == 1.0


def compare(report: dict, baseline: dict, max_drop: float) -> tuple[list[str], list[str], list[str]]:
    """Per-metric delta lines, items that flipped pass -> fail, and regressions beyond max_drop."""
    now, before = flat_metrics(report), flat_metrics(baseline)
    deltas, regressions = [], []
    for key in sorted(set(now) & set(before)):
        delta = now[key] - before[key]
        deltas.append(f"{key}: {before[key]:.3f} -> {now[key]:.3f} ({delta:+.3f})")
        if any(part in key for part in NOT_QUALITY):
            continue
        worse = delta > max_drop if key.endswith(LOWER_IS_BETTER) else delta < -max_drop
        if worse:
            regressions.append(f"{key} fell from {before[key]:.3f} to {now[key]:.3f}")
    old = {r["id"]: _item_passed(r) for r in baseline.get("items", [])}
    flipped = [
        f"{r['id']} ({r['kind']}): {r['question'][:70]}"
        for r in report["items"]
        if old.get(r["id"]) is True and _item_passed(r) is False
    ]
    return deltas, flipped, regressions
