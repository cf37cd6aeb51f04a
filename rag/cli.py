"""Presentation stage, terminal: `rag ingest | search | stats`. A thin client of `rag.Library`.

Exit codes: 0 done; 1 done, but some inputs were skipped (each reported on stderr); 2 nothing
done (bad arguments, bad config, no index, wrong model, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from rag.errors import RagError
from rag.library import Library
from rag.types import PaperHit, Problem

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        overrides = {"index.path": str(args.index)} if args.index else None
        library = Library.from_config(args.profile, overrides=overrides)
        return args.handler(library, args)
    except RagError as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("rag: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="config profile: configs/NAME.yaml over configs/default.yaml")
    common.add_argument("--index", type=Path, help="index folder (overrides index.path)")

    parser = argparse.ArgumentParser(prog="rag", description="Ask questions of research paper abstracts.")
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
    search.set_defaults(handler=_cmd_search)

    stats = commands.add_parser("stats", parents=[common], help="what the index holds")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=_cmd_stats)
    return parser


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
    retriever = library.retriever()
    started = time.perf_counter()
    hits = retriever.search(args.question, k=args.k)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if args.json:
        print(json.dumps(_hits_json(args.question, hits, elapsed_ms), ensure_ascii=False, indent=2))
    else:
        _print_hits(hits)
    return EXIT_OK


def _hits_json(question: str, hits: list[PaperHit], elapsed_ms: float) -> dict:
    return {
        "question": question,
        "results": [
            {
                "rank": rank,
                "paper_id": hit.paper_id,
                "title": hit.title,
                "score": hit.score,
                "passage": hit.passage,
                "sources": hit.sources,
                "url": hit.url,
                "date": hit.date,
            }
            for rank, hit in enumerate(hits, start=1)
        ],
        "timings": {"search_ms": round(elapsed_ms, 1)},
    }


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


def _cmd_stats(library: Library, args: argparse.Namespace) -> int:
    stats = library.stats()
    if args.json:
        print(json.dumps(stats.__dict__, indent=2))
        return EXIT_OK
    print(f"index:     {stats.path} (collection '{stats.collection}')")
    print(f"model:     {stats.model or '-'} ({stats.dimension or '-'}-d)")
    print(f"papers:    {stats.papers}")
    print(f"chunks:    {stats.chunks}")
    print(f"size:      {stats.size_bytes / 1e6:.1f} MB")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
