"""Presentation stage, terminal: `rag ask` and `rag chat` (answers streamed, then references).

The argument parsing is rag.cli's and the exit codes rag.errors'; this module only talks to an `Assistant`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import textwrap
from pathlib import Path

from rag.errors import EXIT_OK, EXIT_PARTIAL, RagError
from rag.library import Library
from rag.retrieval import check_question


def _assistant(library: Library):  # -> Assistant
    from rag.service import Service

    service = Service(library.settings, library=library, progress=lambda m: print(f"rag: {m}", file=sys.stderr))
    return service.assistant()


def cmd_ask(library: Library, args: argparse.Namespace) -> int:
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


def cmd_chat(library: Library, args: argparse.Namespace) -> int:
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
        print("\nnote: no statement the model wrote could be verified; the answer quotes the evidence sentences")
    timings = answer.timings
    print(
        f"\n({answer.model}; first token {timings['first_token_ms'] / 1000:.1f}s, "
        f"total {timings['total_ms'] / 1000:.1f}s)",
        file=sys.stderr,
    )
