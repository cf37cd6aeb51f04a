"""Presentation stage, terminal: `rag ingest | search | stats | ask | chat | models`.

A thin client of `rag.Library` and `rag.answering.Assistant`.

Exit codes: 0 done; 1 done, but some inputs were skipped (each reported on stderr); 2 nothing
done (bad arguments, bad config, no index, wrong model, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from rag import __version__
from rag.errors import RagError
from rag.filters import parse_filters
from rag.library import Library
from rag.retrieval import check_question
from rag.types import PaperHit, Problem

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2
COMMANDS_GROUP = "paper_rag.commands"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        overrides: dict[str, object] = {"index.path": str(args.index)} if args.index else {}
        if getattr(args, "extractive", False):
            overrides["answer.mode"] = "extractive"
        if getattr(args, "model", None):
            overrides["llm.model"] = args.model
        library = Library.from_config(args.profile, overrides=overrides or None)
        return args.handler(library, args)
    except RagError as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("rag: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


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
    answering.add_argument("--model", help="LLM model (overrides llm.model): packaged name, .gguf path or API model")

    ask = commands.add_parser("ask", parents=[common, answering], help="answer a question, citing the papers")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print one JSON object (no streaming)")
    ask.set_defaults(handler=_cmd_ask)

    chat = commands.add_parser("chat", parents=[common, answering], help="a terminal chat that remembers the thread")
    chat.set_defaults(handler=_cmd_chat)

    models = commands.add_parser("models", parents=[common], help="list packaged local models; --prepare joins one")
    models.add_argument("--prepare", metavar="NAME", help="join and verify a packaged model now")
    models.set_defaults(handler=_cmd_models)

    evaluate = commands.add_parser(
        "eval", parents=[common, answering], help="score retrieval or answers on a golden set (or a BEIR folder)"
    )
    evaluate.add_argument("--golden", type=Path, help="golden JSONL (default: eval.golden, else the built-in set)")
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
    evaluate.set_defaults(handler=_cmd_eval)

    ui = commands.add_parser("ui", parents=[common], help="open the chat in the browser (Gradio, 127.0.0.1)")
    ui.add_argument("--host", help="address to bind (default: ui.host = 127.0.0.1)")
    ui.add_argument("--port", type=int, help="port (default: ui.port = 7860)")
    ui.set_defaults(handler=_cmd_ui)

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


def _print_problem(problem: Problem) -> None:
    print(f"rag: skipped {problem}", file=sys.stderr)


def _log_progress(done: int, total: int, chunks: int) -> None:
    """Progress for logs and pipes, where a progress bar would be noise: one line per committed batch."""
    print(f"rag: embedded {done}/{total} papers ({chunks} chunks)", file=sys.stderr, flush=True)


def _cmd_ingest(library: Library, args: argparse.Namespace) -> int:
    report = library.ingest(
        args.paths or None,
        rebuild=args.rebuild,
        prune=args.prune,
        on_problem=_print_problem,
        progress=False if args.quiet else (True if sys.stderr.isatty() else _log_progress),
    )
    print(
        f"read {report.records_read} records ({report.papers_seen} papers) from {report.files_read} files: "
        f"{report.papers_embedded} embedded ({report.chunks_embedded} chunks), "
        f"{report.papers_unchanged} unchanged, {report.sources_updated} with updated sources, "
        f"{report.papers_pruned} pruned in {report.seconds:.1f}s"
    )
    if report.papers_missing:
        print(f"note: {report.papers_missing} indexed papers are no longer in their sources; --prune removes them")
    if report.problems:
        print(f"{len(report.problems)} problems (listed above); everything else was ingested", file=sys.stderr)
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


def _cmd_eval(library: Library, args: argparse.Namespace) -> int:
    # The harness is a client of the library, loaded only for this command.
    from eval.cli import run_eval

    return run_eval(library, args)


def _cmd_ui(library: Library, args: argparse.Namespace) -> int:
    try:
        from ui.app import launch
    except ImportError as exc:
        raise RagError(f"the browser app needs gradio ({exc}); run `pip install -e .` in this environment") from None
    library.stats()  # a missing or foreign index is reported here, before the page opens
    launch(library.settings, host=args.host, port=args.port)
    return EXIT_OK


def _cmd_stats(library: Library, args: argparse.Namespace) -> int:
    stats = library.stats()
    if args.json:
        print(json.dumps(stats.__dict__, indent=2))
        return EXIT_OK
    print(f"index:     {stats.path} (collection '{stats.collection}')")
    print(f"model:     {stats.model or '-'} ({stats.dimension or '-'}-d)")
    print(f"papers:    {stats.papers}")
    print(f"chunks:    {stats.chunks}")
    print(f"size:      {'held by the server' if stats.size_bytes is None else f'{stats.size_bytes / 1e6:.1f} MB'}")
    return EXIT_OK


# --- answering ------------------------------------------------------------------------------------


def _assistant(library: Library):  # -> Assistant
    from rag.service import Service

    service = Service(library.settings, library=library, progress=lambda m: print(f"rag: {m}", file=sys.stderr))
    return service.assistant()


def _cmd_ask(library: Library, args: argparse.Namespace) -> int:
    check_question(args.question)
    assistant = _assistant(library)
    library.retriever()  # a missing index or wrong model is reported before any model loads
    _warm_up(assistant)
    if args.json:
        answer = assistant.ask(args.question)
        print(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
    else:
        answer = _stream_answer(assistant, args.question, [])
    if answer.error:
        print(f"rag: error: {answer.error}", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _cmd_chat(library: Library, args: argparse.Namespace) -> int:
    assistant = _assistant(library)
    library.retriever()
    print("loading models ...", file=sys.stderr, flush=True)
    _warm_up(assistant, prime=True)
    history: list = []
    print("Ask about the indexed papers. Follow-ups may refer to earlier answers. /reset starts over, /quit ends.")
    while True:
        try:
            question = input("\nyou> ").strip()
        except EOFError:
            print()
            return EXIT_OK
        if not question:
            continue
        if question in {"/quit", "/exit", "/q"}:
            return EXIT_OK
        if question == "/reset":
            history.clear()
            print("(history cleared)")
            continue
        try:
            answer = _stream_answer(assistant, question, history)
        except RagError as exc:
            print(f"rag: error: {exc}", file=sys.stderr)
            continue
        if answer.error:
            print(f"rag: error: {answer.error}", file=sys.stderr)
        history.append(answer)


def _warm_up(assistant, prime: bool = False) -> None:
    """Load models before timing; a model that cannot load is reported later, with the retrieved papers."""
    from rag.errors import LLMError

    with contextlib.suppress(LLMError):
        assistant.warm_up(prime=prime)


def _stream_answer(assistant, question: str, history: list):  # -> Answer
    """Stream tokens to a terminal; print the checked answer when it differs from what streamed."""
    from rag.types import Answer

    live = sys.stdout.isatty()
    streamed: list[str] = []
    answer = None
    for item in assistant.stream(question, history):
        if isinstance(item, Answer):
            answer = item
        elif live:
            streamed.append(item)
            print(item, end="", flush=True)
    assert answer is not None
    if live and streamed:
        print()
        if "".join(streamed).strip() != answer.answer.strip():
            print("\n— checked answer —")
            print(_wrapped(answer.answer))
    else:
        print(_wrapped(answer.answer))
    _print_references(answer)
    return answer


def _wrapped(text: str, width: int = 100) -> str:
    """Wrap each line of an answer on its own, so a list answer keeps one paper a line."""
    return "\n".join(
        textwrap.fill(line, width=width, subsequent_indent="  " if line.startswith("- ") else "") if line else line
        for line in text.splitlines()
    )


def _print_references(answer) -> None:
    if answer.refused:
        if answer.sources:
            print("\nNearest papers (they do not answer it):")
            for rank, hit in enumerate(answer.sources, start=1):
                print(f"  {rank}. {hit.title}  [{hit.score:.3f}]" + (f"  {hit.url}" if hit.url else ""))
        return
    if answer.citations:
        print("\nReferences:")
        by_paper = {hit.paper_id: hit for hit in answer.sources}
        for citation in answer.citations:
            hit = by_paper.get(citation.paper_id)
            files = ", ".join(Path(s).name for s in hit.sources) if hit else ""
            link = f"  {citation.url}" if citation.url else ""
            mark = "" if citation.supported else "  (not verified)"
            print(f"  [{citation.n}] {citation.title}{mark}")
            if files or link:
                print(f"      {files}{link}")
    cited_ids = {c.paper_id for c in answer.citations}
    others = [hit for hit in answer.sources if hit.paper_id not in cited_ids]
    if others:
        print("\nAlso retrieved:")
        for hit in others:
            print(f"  - {hit.title}  [{hit.score:.3f}]" + (f"  {hit.url}" if hit.url else ""))
    unsupported = [s.text for s in answer.sentences if not s.supported]
    if unsupported:
        print(f"\nnote: {len(unsupported)} sentence(s) could not be verified against the cited abstracts:")
        for text in unsupported:
            print(f"  - {textwrap.shorten(text, 160)}")
    if answer.mode == "fallback":
        print("\nnote: the generated answer was replaced by the best evidence sentences (extractive)")
    timings = answer.timings
    print(
        f"\n({answer.model}; first token {timings['first_token_ms'] / 1000:.1f}s, "
        f"total {timings['total_ms'] / 1000:.1f}s)",
        file=sys.stderr,
    )


def _cmd_models(library: Library, args: argparse.Namespace) -> int:
    from rag.models import PACKAGED_MODELS, ensure_joined, locate_parts

    model_dir = Path(library.settings.llm.model_dir).expanduser()
    if args.prepare:
        if args.prepare not in PACKAGED_MODELS:
            raise RagError(f"unknown packaged model '{args.prepare}' (known: {', '.join(PACKAGED_MODELS)})")
        path = ensure_joined(PACKAGED_MODELS[args.prepare], model_dir, progress=lambda m: print(f"rag: {m}"))
        print(f"ready: {path}")
        return EXIT_OK
    configured = library.settings.llm.model
    for name, model in PACKAGED_MODELS.items():
        try:
            locate_parts(model)
            state = "joined" if (model_dir / f"{name}.gguf").is_file() else "installed"
        except RagError:
            state = "not installed"
        star = "*" if name == configured else " "
        print(f"{star} {name:40s} {state:14s} {model.description}")
    print(f"\nllm.backend={library.settings.llm.backend}, llm.model={configured}; joined files live in {model_dir}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
