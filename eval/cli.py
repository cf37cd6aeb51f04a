"""`rag eval` on the command line: argument handling, progress, printing and exit codes.

The work is in paper_rag_eval.runner (golden sets), .beir (BEIR folders) and .report. `register` adds
the `eval` subcommand to `rag` (entry point `paper_rag.commands`); rag/cli.py does not import this
package (installed as `paper_rag_eval`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from paper_rag_eval import runner
from paper_rag_eval.beir import beir_table, load_beir, run_beir
from paper_rag_eval.collections import SPLIT_COLLECTION, ensure_index
from paper_rag_eval.report import write_report
from rag.cli import ingest_progress
from rag.errors import EXIT_OK, EXIT_PARTIAL, RagError
from rag.library import Library


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser, *, answering, **_: object) -> None:
    """`rag eval`: the harness is a client of the library, loaded only for this command."""
    evaluate = commands.add_parser(
        "eval", parents=[common, answering], help="score retrieval or answers on a golden set (or a BEIR folder)"
    )
    evaluate.add_argument("--golden", type=Path, help="golden JSONL (default: eval.golden, else the --split set)")
    evaluate.add_argument(
        "--split",
        choices=tuple(runner.GOLDEN_SPLITS),
        default="dev",
        help="golden split: dev (tune on it) or test (report only; never tune on it) over the built-in corpus; "
        "scifact-dev / scifact-test over 300 biomedical abstracts (indexed on first use, see eval/collections.py)",
    )
    evaluate.add_argument(
        "--beir", type=Path, metavar="DIR", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)"
    )
    evaluate.add_argument("--mode", choices=["retrieval", "answer"], default="retrieval", help="what to score")
    evaluate.add_argument("--out", type=Path, help="report folder (default: eval.out)")
    evaluate.add_argument("--baseline", type=Path, metavar="REPORT.json", help="compare with an earlier report")
    evaluate.add_argument(
        "--fail-under", action="append", default=[], metavar="METRIC=VALUE", help="gate, e.g. hit@5=0.9; repeatable"
    )
    evaluate.add_argument("--max-drop", type=float, help="with --baseline: allowed fall of a metric (eval.max_drop)")
    evaluate.add_argument("--ids", help="only these item ids, comma-separated")
    evaluate.add_argument("--kinds", help="only these kinds, comma-separated (single,numeric,multi,...)")
    evaluate.add_argument("--limit", type=int, help="only the first N selected items")
    evaluate.add_argument("--fresh", action="store_true", help="ignore an interrupted run in --out; start over")
    evaluate.add_argument(
        "--retrieval-modes", default="bm25,dense,hybrid,hybrid+rerank", help="--beir: modes to compare"
    )
    evaluate.add_argument(
        "--json", action="store_true", help="print one JSON object (summary, files, gate failures); the rest on stderr"
    )
    evaluate.set_defaults(handler=run_eval)


def _answer_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if getattr(args, "extractive", False):
        overrides["answer.mode"] = "extractive"
        overrides["answer.judge_model"] = None
    if getattr(args, "model", None):
        overrides["llm.model"] = args.model
    return overrides


def run_eval(library: Library, args: argparse.Namespace) -> int:
    """`rag eval`: golden-set retrieval or answer evaluation, or a BEIR folder; returns the exit code."""
    if not getattr(args, "json", False):
        return _run_eval(library, args, {})
    result: dict = {}
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # the human-readable lines, out of the JSON's way
        code = _run_eval(library, args, result)
    print(json.dumps({**result, "exit_code": code}, ensure_ascii=False, indent=2), file=stdout)
    return code


def _run_eval(library: Library, args: argparse.Namespace, result: dict) -> int:
    """The evaluation; `result` receives what `--json` prints."""
    out = Path(args.out or library.settings.eval.out)
    if args.beir:
        return _eval_beir(library, args, out, result)
    golden = Path(args.golden or library.settings.eval.golden or runner.default_golden(args.split))
    if not golden.exists():
        raise RagError(f"golden set {golden} does not exist")
    collection = SPLIT_COLLECTION.get(args.split)
    if collection and not (args.golden or library.settings.eval.golden or args.index):
        # The split is asked over its own collection: the same settings, that collection's index.
        index = ensure_index(collection)
        library = Library.from_config(args.profile, overrides={"index.path": str(index), **_answer_overrides(args)})
    thresholds = dict(library.settings.eval.fail_under)
    for spec in args.fail_under:
        name, _, value = spec.partition("=")
        try:
            thresholds[name.strip()] = float(value)
        except ValueError:
            raise RagError(f"bad --fail-under '{spec}': write METRIC=NUMBER, e.g. hit@5=0.9") from None
    baseline = None
    if args.baseline:
        try:
            baseline = json.loads(args.baseline.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RagError(f"cannot read baseline {args.baseline} ({exc})") from None
    from tqdm import tqdm

    bar = tqdm(total=0, unit="item", desc=f"eval {args.mode}", disable=not sys.stderr.isatty(), dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if bar.disable and (done % 10 == 0 or done == total):  # logs and pipes: a line every ten items
            print(f"rag: eval {done}/{total} items", file=sys.stderr, flush=True)

    try:
        report = runner.run_golden(
            library,
            golden,
            args.mode,
            out,
            ids=[i.strip() for i in args.ids.split(",")] if args.ids else None,
            kinds=[k.strip() for k in args.kinds.split(",")] if args.kinds else None,
            limit=args.limit,
            resume=not args.fresh,
            progress=progress,
        )
    except ValueError as exc:
        raise RagError(str(exc)) from None
    finally:
        bar.close()
    paths = write_report(report, out)
    meta = report["meta"]
    result.update(mode=args.mode, summary=report["summary"], meta=meta, files=[str(p) for p in paths])
    if meta["resumed_items"]:
        print(f"resumed an interrupted run: {meta['resumed_items']} of {meta['items']} items were already done")
    for section in ("retrieval", "answer"):
        if section in report["summary"]:
            values = report["summary"][section]
            print(f"{section}: " + ", ".join(f"{k}={v}" for k, v in values.items() if isinstance(v, float)))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    failures: list[str] = []
    if baseline is not None:
        deltas, flipped, regressions = runner.compare(
            report, baseline, args.max_drop if args.max_drop is not None else library.settings.eval.max_drop
        )
        print("against the baseline:")
        for line in deltas:
            print(f"  {line}")
        for line in flipped:
            print(f"  flipped pass -> fail: {line}")
        failures += regressions
        result["baseline"] = {"deltas": deltas, "flipped": flipped, "regressions": regressions}
    try:
        failures += runner.check_thresholds(report, thresholds)
    except ValueError as exc:
        raise RagError(str(exc)) from None
    result["failures"] = failures
    for line in failures:
        print(f"rag: gate failed: {line}", file=sys.stderr)
    return EXIT_PARTIAL if failures else EXIT_OK


def _eval_beir(library: Library, args: argparse.Namespace, out: Path, result: dict) -> int:
    try:
        data = load_beir(args.beir)
    except FileNotFoundError as exc:
        raise RagError(str(exc)) from None
    if not args.index and not os.environ.get("RAG_INDEX__PATH"):
        # A benchmark corpus gets an index of its own, never the user's.
        library = Library.from_config(
            args.profile, overrides={"index.path": str(Path("~/.cache/paper-rag/beir").expanduser() / data.name)}
        )
    print(f"{data.name}: {len(data.queries)} judged queries; index {library.settings.index_path}")
    ingested = library.ingest(
        [data.corpus_path],
        on_problem=lambda problem: print(f"rag: skipped {problem}", file=sys.stderr),
        progress=ingest_progress(),
    )
    print(f"index: {ingested.papers_embedded} papers embedded, {ingested.papers_unchanged} unchanged")
    report = run_beir(library, data, [m.strip() for m in args.retrieval_modes.split(",") if m.strip()])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"beir-{data.name}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    table = beir_table(report)
    (out / f"beir-{data.name}.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"wrote {out / f'beir-{data.name}.json'}")
    result.update(beir=report, files=[str(out / f"beir-{data.name}.json"), str(out / f"beir-{data.name}.md")])
    return EXIT_OK
