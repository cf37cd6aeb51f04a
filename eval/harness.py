"""Run golden questions through an `Assistant` and score them (the library does the work)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from paper_rag_eval.metrics import GoldenItem, ItemScore, score_item

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
# dev: every threshold and rule is tuned here; test: written separately, only ever reported.
# scifact-*: asked over 300 biomedical abstracts (paper_rag_eval.collections), a second field.
GOLDEN_SPLITS = {name: GOLDEN_DIR / f"{name}.jsonl" for name in ("dev", "test", "scifact-dev", "scifact-test")}
DEFAULT_GOLDEN = GOLDEN_SPLITS["dev"]


def load_golden(path: Path = DEFAULT_GOLDEN) -> list[GoldenItem]:
    """The items of a golden JSONL file; a malformed one is a ValueError naming the file, line and id.

    Checked here, before any question is asked: each line is a JSON object with the item's fields
    and their types, a known `kind`, a question (or, for a followup, turns) that is not empty, and
    an id used once. A broken file costs one line of message, never a traceback or a silent run.
    """
    from paper_rag_eval.metrics import KINDS

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read golden set {path} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    items: list[GoldenItem] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not valid JSON ({getattr(exc, 'msg', exc)})") from None
        except RecursionError:
            raise ValueError(f"{path}:{number}: JSON nested too deeply") from None
        where = f"{path}:{number}" + (f" (id {record.get('id')!r})" if isinstance(record, dict) else "")
        problem = _golden_problem(record, KINDS)
        if problem:
            raise ValueError(f"{where}: {problem}")
        item = GoldenItem(**record)
        if item.id in first_line:
            raise ValueError(f"{where}: duplicate id {item.id!r} (first on line {first_line[item.id]})")
        first_line[item.id] = number
        items.append(item)
    return items


_TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "list[str] | None": lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
}
_TYPE_NAMES = {"str": "text", "list[str]": "a list of texts", "list[str] | None": "a list of texts or null"}


def _golden_problem(record: object, kinds: tuple[str, ...]) -> str | None:
    """What is wrong with one parsed golden line, or None; GoldenItem's own field types are the schema."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    fields = {f.name: f for f in dataclasses.fields(GoldenItem)}
    unknown = sorted(set(record) - set(fields))
    if unknown:
        return f"unknown keys {unknown} (known: {', '.join(fields)})"
    required = [
        n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in record]
    if missing:
        return f"missing {', '.join(missing)}"
    for name, value in record.items():
        declared = fields[name].type
        annotation = declared if isinstance(declared, str) else "str" if declared is str else str(declared)
        check = _TYPE_CHECKS.get(annotation)
        if check is not None and not check(value):
            return f"'{name}' must be {_TYPE_NAMES[annotation]}, got {json.dumps(value)[:60]}"
    if not record["id"].strip():
        return "the id is empty"
    if record["kind"] not in kinds:
        return f"kind {record['kind']!r} is not one of {', '.join(kinds)}"
    turns = record.get("turns")
    if turns is not None:
        if not turns or any(not t.strip() for t in turns):
            return "a turn is empty; a followup needs its questions"
    elif not str(record.get("question", "")).strip():
        return "the question is empty"
    return None


def answer_item(assistant, item: GoldenItem) -> tuple[dict, ItemScore]:
    """Ask the item's question (after its earlier turns, for a follow-up) and score the answer."""
    history = [assistant.ask(earlier) for earlier in item.earlier_turns]
    answer = assistant.ask(item.final_question, history=history).to_json()
    return answer, score_item(item, answer)


def run_items(
    assistant, items: Iterable[GoldenItem], on_item: Callable[[GoldenItem, dict, ItemScore], None] | None = None
) -> list[tuple[dict, ItemScore]]:
    results = []
    for item in items:
        answer, score = answer_item(assistant, item)
        if on_item:
            on_item(item, answer, score)
        results.append((answer, score))
    return results


GOLDEN_KEYS = {"id", "kind", "question", "turns", "gold_titles", "must_include", "notes"}
MINIMUM_PER_KIND = {"single": 25, "numeric": 10, "multi": 10, "unanswerable": 15, "followup": 5}


def check_golden(path: Path, papers) -> list[str]:
    """Every problem with a golden file, one line each: schema, kinds, gold titles and facts against the corpus.

    `papers` are the corpus's Paper records. A fact must appear (case-insensitive; 'a|b' means either) in the
    title or abstract of one of its gold papers; a question must not quote a gold title whole.
    """
    from paper_rag_eval.metrics import KINDS, fact_present, title_key

    problems: list[str] = []
    by_title = {title_key(p.title): p for p in papers}
    seen: set[str] = set()
    counts = dict.fromkeys(KINDS, 0)
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{Path(path).name}:{number}"
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            problems.append(f"{where}: not valid JSON")
            continue
        problem = _golden_problem(record, KINDS)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        extra = set(record) - GOLDEN_KEYS
        if extra:
            problems.append(f"{where}: unknown keys {sorted(extra)}")
        item = GoldenItem(**record)
        if item.id in seen:
            problems.append(f"{where}: duplicate id {item.id}")
        seen.add(item.id)
        if item.kind not in KINDS:
            problems.append(f"{where}: kind '{item.kind}' is not one of {KINDS}")
            continue
        counts[item.kind] += 1
        if item.kind == "followup":
            if not item.turns or len(item.turns) < 2 or item.question:
                problems.append(f"{where}: a followup has 2+ turns and no question")
        elif not item.question or item.turns:
            problems.append(f"{where}: a {item.kind} item has a question and no turns")
        if item.kind == "unanswerable":
            if item.gold_titles or item.must_include:
                problems.append(f"{where}: an unanswerable item has no gold titles or facts")
            continue
        if not item.gold_titles:
            problems.append(f"{where}: no gold titles")
        gold = []
        for title in item.gold_titles:
            paper = by_title.get(title_key(title))
            if paper is None:
                problems.append(f"{where}: gold title not in the corpus: {title[:80]}")
            else:
                gold.append(paper)
            asked = " ".join(item.turns or [item.question]).lower()
            if len(title) > 25 and len(title.split()) > 4 and title.lower() in asked:  # a short title is a name
                problems.append(f"{where}: the question quotes the title '{title[:60]}'")
        text = " ".join(f"{p.title} {p.abstract}" for p in gold)
        for fact in item.must_include:
            if gold and not fact_present(fact, text):
                problems.append(f"{where}: fact '{fact}' is in none of the gold abstracts")
    for kind, least in MINIMUM_PER_KIND.items():
        if counts[kind] < least:
            problems.append(f"{Path(path).name}: {counts[kind]} {kind} items; at least {least} wanted")
    return problems


if __name__ == "__main__":
    import sys

    from rag.sources import builtin_corpus_paths, load_corpus

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_GOLDEN
    found = check_golden(target, load_corpus(builtin_corpus_paths()).papers)
    print("\n".join(found) or f"{target}: every gold title and fact checks out")
    sys.exit(1 if found else 0)
