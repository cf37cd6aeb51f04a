"""Sources stage, one format: Hugging Face Papers page dumps (title line, abstract line, page furniture).

Pure functions over lines of text; rag.sources turns the pairs into papers.
"""

from __future__ import annotations

import re

from rag.types import Problem

# Lines of a Hugging Face Papers page that are page furniture, not papers (matched by content).
_PAGE_FURNITURE = {
    "new",
    "get trending papers in your email inbox!",
    "subscribe",
    "daily papers",
    "byak and the research community",
    "trending papers",
    "search",
}
_PAGE_DATE = re.compile(r"^(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* \d{1,2}(, \d{4})?$", re.IGNORECASE)
_ABSTRACT_MIN_CHARS = 250
_TITLE_MAX_CHARS = 300


def is_page_furniture(line: str) -> bool:
    stripped = line.strip()
    return stripped.casefold() in _PAGE_FURNITURE or bool(_PAGE_DATE.match(stripped))


def is_abstract_line(line: str) -> bool:
    return len(line.strip()) >= _ABSTRACT_MIN_CHARS


def looks_like_page_dump(lines: list[str]) -> bool:
    """A page dump has page furniture, or at least three title/abstract pairs and little else."""
    content = [line for line in lines if line.strip()]
    if sum(is_page_furniture(line) for line in content[:12]) >= 2:
        return True
    body = [line for line in content if not is_page_furniture(line)]
    pairs = sum(
        1
        for first, second in zip(body, body[1:], strict=False)
        if not is_abstract_line(first) and len(first) <= _TITLE_MAX_CHARS and is_abstract_line(second)
    )
    return pairs >= 3 and pairs * 2 >= len(body) * 0.9


def parse_page_dump(lines: list[str], source: str) -> tuple[list[tuple[str, str, int]], list[Problem]]:
    """Pair titles with the abstracts that follow them; returns (title, abstract, title_line) triples.

    An orphan title (followed by another title) or orphan abstract (no title before it) is
    reported with its line number and never glued to a neighbouring paper.
    """
    pairs: list[tuple[str, str, int]] = []
    problems: list[Problem] = []
    pending_title: tuple[str, int] | None = None
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or is_page_furniture(stripped):
            continue
        if is_abstract_line(stripped):
            if pending_title is None:
                problems.append(Problem(f"{source}:{number}", "abstract without a title before it; skipped"))
            else:
                pairs.append((pending_title[0], stripped, pending_title[1]))
                pending_title = None
        else:
            if pending_title is not None:
                problems.append(
                    Problem(f"{source}:{pending_title[1]}", f"title without an abstract: '{pending_title[0][:60]}'")
                )
            pending_title = (stripped, number)
    if pending_title is not None:
        problems.append(
            Problem(f"{source}:{pending_title[1]}", f"title without an abstract: '{pending_title[0][:60]}'")
        )
    return pairs, problems
