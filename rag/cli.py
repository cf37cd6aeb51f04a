"""Presentation stage, terminal: `rag ingest | search | check | stats | ask | chat | models`.

A thin client of `rag.Library` and `rag.answering.Assistant`. Clients of the library add their own
commands through the `paper_rag.commands` entry point (`rag eval` from `paper_rag_eval` (eval/), `rag ui`
from `paper_rag_ui` (ui/), `rag serve` from `rag.server`); this module imports none of them.

Exit codes: 0 done; 1 done, but some inputs were skipped (each reported on stderr); 2 nothing
done (bad arguments, bad config, no index, wrong model, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path

from rag import __version__
from rag.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, RagError
from rag.filters import parse_filters
from rag.ingest import IngestEstimate, IngestProgress
from rag.library import Library
from rag.retrieval import check_question
from rag.types import PaperHit, Problem

COMMANDS_GROUP = "paper_rag.commands"


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so the command stops the way Ctrl-C stops it (`rag ui` closes its
    server, as on Ctrl-C)."""


def _on_sigterm(_signum, _frame) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        overrides: dict[str, object] = {"index.path": str(args.index)} if args.index else {}
        if getattr(args, "extractive", False):
            overrides["answer.mode"] = "extractive"
            overrides["answer.judge_model"] = None  # --extractive: no model at all
        if getattr(args, "model", None):
            if getattr(args, "extractive", False):
                raise RagError("--model and --extractive exclude each other: --extractive uses no model")
            overrides["llm.model"] = args.model
            overrides["answer.mode"] = "generate"  # naming a model asks it to write the answer
        library = Library.from_config(args.profile, overrides=overrides or None)
        code = args.handler(library, args)
        sys.stdout.flush()  # a closed pipe shows up here, while it can still be handled
        return code
    except RagError as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Terminated:
        print("rag: terminated (SIGTERM); run the same command again to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("rag: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`rag search ... | head -3`): stop quietly, as a command killed by SIGPIPE does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - the last guard: one line, never a traceback
        if os.environ.get("RAG_DEBUG"):
            raise
        text = str(exc).strip().splitlines()
        print(
            f"rag: error: unexpected {type(exc).__name__}: {text[0] if text else ''} (a bug: please report it; "
            "RAG_DEBUG=1 shows where it happened)",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="config profile: NAME (rag/configs/NAME.yaml) or a .yaml file")
    common.add_argument("--index", type=Path, help="index folder (overrides index.path)")

    parser = argparse.ArgumentParser(prog="rag", description="Ask questions of research paper abstracts.")
    parser.add_argument("--version", action="version", version=f"rag (paper-rag) {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    ingest = commands.add_parser("ingest", parents=[common], help="add papers to the index (incremental)")
    ingest.add_argument("paths", nargs="*", type=Path, help="files or folders; default: corpus.paths or built-in")
    ingest.add_argument("--rebuild", action="store_true", help="drop the index and embed everything again")
    ingest.add_argument("--prune", action="store_true", help="remove papers whose source files are gone")
    ingest.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ingest.add_argument("--json", action="store_true", help="print the report as one JSON object")
    ingest.set_defaults(handler=_cmd_ingest)

    search = commands.add_parser("search", parents=[common], help="rank papers for a question")
    search.add_argument("question")
    search.add_argument("-k", type=int, default=None, help="number of papers (default: retrieval.k)")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.add_argument(
        "--where",
        action="append",
        default=None,
        metavar="FILTER",
        help="filter papers: source=FILE (name, path or glob), date>=2024-01, date<=2024-06-30, KEY=VALUE; repeatable",
    )
    search.add_argument("--mode", choices=["dense", "bm25", "hybrid"], help="retrieval mode (default: retrieval.mode)")
    search.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=None, help="sentence re-ranking")
    search.set_defaults(handler=_cmd_search)

    answering = argparse.ArgumentParser(add_help=False)
    answering.add_argument("--extractive", action="store_true", help="no LLM: answer with the best evidence sentences")
    answering.add_argument(
        "--model",
        help="LLM that writes the answer (sets llm.model and answer.mode generate): packaged name, .gguf path "
        "or API model",
    )

    ask = commands.add_parser("ask", parents=[common, answering], help="answer a question, citing the papers")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print one JSON object (no streaming)")
    ask.set_defaults(handler=_answers("cmd_ask"))

    chat = commands.add_parser("chat", parents=[common, answering], help="a terminal chat that remembers the thread")
    chat.set_defaults(handler=_answers("cmd_chat"))

    models = commands.add_parser("models", parents=[common], help="list packaged local models; --prepare joins one")
    models.add_argument("--prepare", metavar="NAME", help="join and verify a packaged model now")
    models.add_argument("--json", action="store_true", help="print one JSON object")
    models.set_defaults(handler=_cmd_models)

    check = commands.add_parser("check", parents=[common], help="verify the index end to end; --repair fixes it")
    check.add_argument("--repair", action="store_true", help="rebuild what is derived, re-embed what is missing")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(handler=_cmd_check)

    stats = commands.add_parser("stats", parents=[common], help="what the index holds")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=_cmd_stats)
    _register_clients(commands, common, answering)
    return parser


def _register_clients(commands, common: argparse.ArgumentParser, answering: argparse.ArgumentParser) -> None:
    """Commands that clients of the library bring (`rag serve`, ...): each registers itself through the
    `paper_rag.commands` entry point, so this module imports none of them."""
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            register = entry.load()
        except ImportError as exc:  # a client whose dependencies are missing; the other commands still work
            print(f"rag: note: command '{entry.name}' is unavailable ({exc})", file=sys.stderr)
            continue
        register(commands, common, answering=answering)


def _answers(name: str):
    """A handler from rag.cli_answers, imported when the command runs."""

    def handler(library: Library, args: argparse.Namespace) -> int:
        from rag import cli_answers

        return getattr(cli_answers, name)(library, args)

    return handler


def _print_problem(problem: Problem) -> None:
    print(f"rag: skipped {problem}", file=sys.stderr)


def log_progress(progress: IngestProgress) -> None:
    """Progress for logs and pipes, where a progress bar would be noise: one line per committed batch."""
    print(f"rag: {progress.describe()}", file=sys.stderr, flush=True)


def print_estimate(estimate: IngestEstimate) -> None:
    """Before a big ingest embeds: how much there is and how long it should take (stderr, with the progress)."""
    print(f"rag: {estimate.describe()}", file=sys.stderr, flush=True)


def ingest_progress(quiet: bool = False):  # -> bool | ProgressCallback
    """A bar on a terminal, one line per batch (rate, time left) in logs and pipes, or nothing."""
    return False if quiet else (True if sys.stderr.isatty() else log_progress)


def _cmd_ingest(library: Library, args: argparse.Namespace) -> int:
    report = library.ingest(
        args.paths or None,
        rebuild=args.rebuild,
        prune=args.prune,
        on_problem=_print_problem,
        progress=ingest_progress(args.quiet),
        on_estimate=None if args.json or args.quiet else print_estimate,
    )
    if args.json:
        payload = dataclasses.asdict(report)
        payload["problems"] = [str(problem) for problem in report.problems]
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return EXIT_PARTIAL if report.problems_total else EXIT_OK
    print(
        f"read {report.records_read} records ({report.papers_seen} papers) from {report.files_read} files: "
        f"{report.papers_embedded} embedded ({report.chunks_embedded} chunks), "
        f"{report.papers_unchanged} unchanged, {report.sources_updated} with updated sources, "
        f"{report.papers_pruned} pruned in {report.seconds:.1f}s"
    )
    if report.papers_missing:
        print(f"note: {report.papers_missing} indexed papers are no longer in their sources; --prune removes them")
    for line in report.problem_summary:
        print(f"rag: skipped {line}", file=sys.stderr)
    if report.problems_total and not report.records_read:
        print(f"{report.problems_total:,} problems (listed above); nothing was ingested", file=sys.stderr)
        return EXIT_ERROR
    if report.problems_total:
        print(f"{report.problems_total:,} problems (listed above); everything else was ingested", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _cmd_search(library: Library, args: argparse.Namespace) -> int:
    if args.k is not None and args.k < 1:
        raise RagError("-k must be at least 1")
    check_question(args.question)  # bad input is reported before the index is opened
    parse_filters(args.where or [])
    result = library.search_result(args.question, k=args.k, where=args.where, mode=args.mode, rerank=args.rerank)
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    else:
        _print_hits(result.hits)
    return EXIT_OK


def _print_hits(hits: list[PaperHit]) -> None:
    if not hits:
        print("no papers found")
        return
    for rank, hit in enumerate(hits, start=1):
        files = ", ".join(Path(s).name for s in hit.sources)
        print(f"{rank}. {hit.title}  [{hit.score:.3f}]")
        print(f"   {files}" + (f"  {hit.url}" if hit.url else ""))
        passage = textwrap.shorten(hit.passage, width=300, placeholder=" …")
        print(textwrap.indent(textwrap.fill(passage, width=96), "   "))


def _cmd_check(library: Library, args: argparse.Namespace) -> int:
    """Exit 0: sound (or repaired); 1: problems found (and, with --repair, some left)."""
    quiet = args.json or not sys.stderr.isatty()
    report = library.check(repair=args.repair, say=(lambda _line: None) if quiet else _say)
    if args.json:
        payload = dataclasses.asdict(report) | {"ok": report.ok}
        for key in ("findings", "remaining"):
            payload[key] = [{k: v for k, v in f.items() if k != "detail"} for f in payload[key]]
        print(json.dumps(payload, indent=2))
        return EXIT_OK if report.ok else EXIT_PARTIAL
    print(f"index: {report.index}: {report.papers:,} papers, {report.chunks:,} chunks, {report.sentences:,} sentences")
    for finding in report.findings:
        print(f"problem: {finding.problem}" + ("" if args.repair else f" (--repair: {finding.repair})"))
    for line in report.repaired:
        print(f"repaired: {line}")
    for finding in report.remaining:
        print(f"still wrong: {finding.problem}")
    took = sum(report.seconds.values())
    verdict = "sound" if not report.findings else ("repaired" if report.ok else "not sound")
    print(f"{verdict} (checked in {took:.1f}s: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items()) + ")")
    return EXIT_OK if report.ok else EXIT_PARTIAL


def _say(line: str) -> None:
    print(f"rag: {line} ...", file=sys.stderr, flush=True)


def _cmd_stats(library: Library, args: argparse.Namespace) -> int:
    stats = library.stats()
    if args.json:
        print(json.dumps(stats.__dict__, indent=2))
        return EXIT_OK
    print(f"index:     {stats.path} (collection '{stats.collection}')")
    print(f"model:     {stats.model or '-'} ({stats.dimension or '-'}-d, {stats.precision or '-'} vectors)")
    print(f"papers:    {stats.papers}")
    print(f"chunks:    {stats.chunks}")
    print(f"size:      {'held by the server' if stats.size_bytes is None else f'{stats.size_bytes / 1e6:.1f} MB'}")
    return EXIT_OK


def _cmd_models(library: Library, args: argparse.Namespace) -> int:
    from rag.models import PACKAGED_MODELS, ensure_joined, locate_parts

    model_dir = Path(library.settings.llm.model_dir).expanduser()
    if args.prepare:
        if args.prepare not in PACKAGED_MODELS:
            raise RagError(f"unknown packaged model '{args.prepare}' (known: {', '.join(PACKAGED_MODELS)})")
        say = (lambda m: print(f"rag: {m}", file=sys.stderr)) if args.json else (lambda m: print(f"rag: {m}"))
        path = ensure_joined(PACKAGED_MODELS[args.prepare], model_dir, progress=say)
        print(json.dumps({"model": args.prepare, "path": str(path)}) if args.json else f"ready: {path}")
        return EXIT_OK
    configured = library.settings.llm.model
    listed = []
    for name, model in PACKAGED_MODELS.items():
        try:
            locate_parts(model)
            state = "joined" if (model_dir / f"{name}.gguf").is_file() else "installed"
        except RagError:
            state = "not installed"
        listed.append(
            {"name": name, "state": state, "configured": name == configured, "description": model.description}
        )
    if args.json:
        settings = library.settings.llm
        print(json.dumps({"backend": settings.backend, "model": configured, "model_dir": str(model_dir),
                          "models": listed}, indent=2))  # fmt: skip
        return EXIT_OK
    for row in listed:
        star = "*" if row["configured"] else " "
        print(f"{star} {row['name']:40s} {row['state']:14s} {row['description']}")
    print(f"\nllm.backend={library.settings.llm.backend}, llm.model={configured}; joined files live in {model_dir}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
