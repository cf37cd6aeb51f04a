"""Sources stage: read files into `Paper` records, reporting what cannot be read.

Formats: Hugging Face Papers page dumps (.txt), JSON Lines (generic or the arXiv metadata
snapshot), CSV/TSV with title and abstract columns, and plain .txt/.md documents. Everything is
streamed line by line, so a multi-gigabyte arXiv snapshot never sits in memory. BibTeX, RIS and PDF
files are read by `rag.readers`, dispatched to by extension.

Nothing here raises for bad input: each problem becomes a `Problem` naming the file (and line),
and the rest of the input is still read.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rag.config import SourcesSettings
from rag.pagedump import looks_like_page_dump, parse_page_dump
from rag.records import Record, make_paper
from rag.types import Paper, Problem

BUILTIN_CORPUS = Path(__file__).resolve().parent / "data" / "seeds"
SUPPORTED_SUFFIXES = (".txt", ".md", ".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".bib", ".ris", ".pdf")

_FIELD_ALIASES = {
    "id": ("id", "paper_id", "arxiv_id", "doc_id", "_id"),
    "title": ("title",),
    "abstract": ("abstract", "summary", "text"),
    "authors": ("authors", "author"),
    "date": ("date", "update_date", "published", "year"),
    "url": ("url", "link"),
    "categories": ("categories", "category", "tags"),
}


@dataclass
class Corpus:
    """Papers merged across files (a paper in several files is one paper with every source)."""

    papers: list[Paper] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    records_read: int = 0
    files_read: list[str] = field(default_factory=list)


def builtin_corpus_paths() -> list[Path]:
    return sorted(BUILTIN_CORPUS.glob("*.txt"))


def load_corpus(paths: Iterable[str | Path], options: SourcesSettings | None = None) -> Corpus:
    """Read every path into memory and merge repeats; for small corpora, tests and evaluation."""
    corpus = Corpus()
    by_id: dict[str, Paper] = {}
    for record in iter_records(paths, corpus.problems.append, corpus.files_read.append, options=options):
        corpus.records_read += 1
        merge_into(by_id, record, corpus.problems.append)
    corpus.papers = list(by_id.values())
    return corpus


def merge_into(by_id: dict[str, Paper], record: Record, report: Callable[[Problem], None]) -> None:
    """Add a record to the papers seen so far: a repeat adds its source file and the fields the paper lacks."""
    paper = record.paper
    known = by_id.get(paper.paper_id)
    if known is None:
        by_id[paper.paper_id] = paper
        return
    add_sources(known.sources, paper.sources)
    fill_fields(known, paper)
    if (known.title, known.abstract) != (paper.title, paper.abstract) and not record.merged:
        report(duplicate_problem(record))


def fill_fields(paper: Paper, other: Paper) -> None:
    """A paper is the merge of its sources: a field one source sets is kept when another lacks it.

    The text (title, abstract) stays the first source's; authors, date, link, categories and other
    fields come from the first source that has them.
    """
    for name in ("authors", "date", "url", "categories"):
        if not getattr(paper, name) and getattr(other, name):
            setattr(paper, name, getattr(other, name))
    for key, value in other.extra.items():
        if value and not paper.extra.get(key):
            paper.extra[key] = value


def add_sources(into: list[str], sources: Iterable[str]) -> None:
    into.extend(s for s in sources if s not in into)


def duplicate_problem(record: Record) -> Problem:
    return Problem(record.location, f"duplicate id '{record.paper.paper_id}' with different text; kept the first")


def iter_records(
    paths: Iterable[str | Path],
    report: Callable[[Problem], None],
    on_file: Callable[[str], None] = lambda _path: None,
    *,
    options: SourcesSettings | None = None,
    max_abstract_chars: int | None = None,
) -> Iterator[Record]:
    """Yield records from files and folders in order; problems go to `report`, never raise.

    An abstract longer than `max_abstract_chars` is cut at the last sentence end before the limit
    (and reported): a megabyte of text would otherwise take minutes to embed as one "paper".
    """
    from rag.readers import MERGEABLE_SUFFIXES, Identities

    options, files = options or SourcesSettings(), list(expand_paths(paths, report))
    identities = Identities() if any(p.suffix.lower() in MERGEABLE_SUFFIXES for p in files) else None
    for path in files:
        on_file(str(path))
        for record in _read_file(path, report, options):
            if max_abstract_chars and len(record.paper.abstract) > max_abstract_chars:
                _shorten_abstract(record, max_abstract_chars, report)
            yield identities.resolve(record) if identities else record


def _shorten_abstract(record: Record, limit: int, report: Callable[[Problem], None]) -> None:
    abstract = record.paper.abstract
    cut = abstract[:limit]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    record.paper.abstract = cut[: end + 1] if end > limit // 2 else cut
    report(
        Problem(
            record.location,
            f"abstract is {len(abstract):,} characters; indexed the first {len(record.paper.abstract):,} "
            "(corpus.max_abstract_chars)",
        )
    )


def display_path(path: str | Path) -> str:
    """A path as text that can always be printed: bytes that are not UTF-8 are shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _name_is_text(path: Path, report: Callable[[Problem], None]) -> bool:
    """A path that is not UTF-8 cannot be stored as a paper's source (or printed); the file is skipped."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        report(Problem(display_path(path), "file name is not UTF-8 text; rename the file to ingest it. Skipped"))
        return False
    return True


def expand_paths(paths: Iterable[str | Path], report: Callable[[Problem], None]) -> Iterator[Path]:
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            children = sorted(p for p in path.rglob("*") if p.is_file() and not _is_hidden(p, path))
            if not children:
                report(Problem(str(path), "folder holds no files to read; skipped"))
            for child in children:
                if not _name_is_text(child, report):
                    continue
                if child.suffix.lower() in SUPPORTED_SUFFIXES:
                    yield child.resolve()
                else:
                    report(Problem(str(child), f"unsupported file type '{child.suffix}'; skipped"))
        elif path.is_file():
            if not _name_is_text(path, report):
                continue
            if path.suffix.lower() in SUPPORTED_SUFFIXES:
                yield path.resolve()
            else:
                supported = ", ".join(SUPPORTED_SUFFIXES)
                report(Problem(str(path), f"unsupported file type '{path.suffix}' (supported: {supported}); skipped"))
        elif path.exists():
            report(Problem(display_path(path), "not a regular file; skipped"))
        else:
            report(Problem(display_path(path), "no such file or folder; skipped"))


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _read_file(path: Path, report: Callable[[Problem], None], options: SourcesSettings) -> Iterator[Record]:
    suffix = path.suffix.lower()
    if suffix in (".bib", ".ris", ".pdf"):
        from rag.readers import read_with  # the readers build on this module's Record and make_paper

        yield from read_with(path, report, options)
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(8192)
    except OSError as exc:
        report(Problem(str(path), f"cannot read ({exc.strerror or exc}); skipped"))
        return
    if not head.strip():
        report(Problem(str(path), "empty file; nothing to read"))
        return
    if b"\x00" in head:
        report(Problem(str(path), "binary file, not text; skipped"))
        return
    try:
        if suffix in (".jsonl", ".ndjson", ".json"):
            yield from _read_json_lines(path, report)
        elif suffix in (".csv", ".tsv"):
            yield from _read_csv(path, report)
        else:
            text = path.read_bytes().decode("utf-8")
            lines = text.splitlines()
            if looks_like_page_dump(lines):
                yield from _read_page_dump(lines, str(path), report)
            else:
                yield from _read_document(path, text, report)
    except UnicodeDecodeError as exc:
        report(Problem(str(path), f"not UTF-8 text (bad byte at offset {exc.start}); skipped"))
    except OSError as exc:
        report(Problem(str(path), f"cannot read ({exc.strerror or exc}); skipped"))


# --- Hugging Face Papers page dumps -------------------------------------------------------


def _read_page_dump(lines: list[str], source: str, report: Callable[[Problem], None]) -> Iterator[Record]:
    pairs, problems = parse_page_dump(lines, source)
    for problem in problems:
        report(problem)
    for raw_title, raw_abstract, line in pairs:
        yield Record(make_paper(raw_title, raw_abstract, source), f"{source}:{line}")


# --- JSON Lines (generic and arXiv snapshot) -----------------------------------------------


def _read_json_lines(path: Path, report: Callable[[Problem], None]) -> Iterator[Record]:
    with path.open("rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            location = f"{path}:{number}"
            if not raw_line.strip():
                continue
            try:
                row = json.loads(raw_line.decode("utf-8"))
                if not isinstance(row, dict):
                    report(Problem(location, f"expected a JSON object, got {type(row).__name__}; line skipped"))
                    continue
                record = _record_from_row(row, str(path), location, report)
            except UnicodeDecodeError:
                report(Problem(location, "not UTF-8 text; line skipped"))
                continue
            except json.JSONDecodeError as exc:
                report(Problem(location, f"not valid JSON ({exc.msg}); line skipped"))
                continue
            except RecursionError:
                report(Problem(location, "JSON nested too deeply to read (over ~1,000 levels); line skipped"))
                continue
            if record is not None:
                yield record


# --- CSV / TSV ------------------------------------------------------------------------------


def _read_csv(path: Path, report: Callable[[Problem], None]) -> Iterator[Record]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open("r", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
        missing = [name for name in ("title", "abstract") if not _has_field(columns, name)]
        if missing:
            wanted = " or ".join(repr(m) for m in missing)
            report(Problem(str(path), f"no {wanted} column (columns: {', '.join(columns) or 'none'}); skipped"))
            return
        for row in reader:
            location = f"{path}:{reader.line_num}"
            if None in row:
                report(Problem(location, "more fields than columns; extra fields ignored"))
                row.pop(None)
            clean_row = {str(k).strip().lower(): v for k, v in row.items() if k is not None and v is not None}
            record = _record_from_row(clean_row, str(path), location, report)
            if record is not None:
                yield record


def _has_field(columns: list[str], name: str) -> bool:
    return any(alias in columns for alias in _FIELD_ALIASES[name])


# --- Shared row handling -------------------------------------------------------------------


def _record_from_row(row: dict, source: str, location: str, report: Callable[[Problem], None]) -> Record | None:
    picked: dict[str, str] = {}
    used_keys: set[str] = set()
    lowered = {str(k).lower(): k for k in row}
    for name, aliases in _FIELD_ALIASES.items():
        for alias in aliases:
            key = lowered.get(alias)
            if key is not None and row[key] not in (None, ""):
                picked[name] = _as_text(row[key])
                used_keys.add(key)
                break
    missing = [name for name in ("title", "abstract") if not picked.get(name, "").strip()]
    if missing:
        report(Problem(location, f"missing {' and '.join(missing)}; record skipped"))
        return None
    extra = {str(k): _as_text(v) for k, v in row.items() if k not in used_keys and v not in (None, "")}
    paper = make_paper(
        picked["title"],
        picked["abstract"],
        source,
        paper_id=picked.get("id"),
        authors=picked.get("authors"),
        date=picked.get("date"),
        url=picked.get("url"),
        categories=picked.get("categories"),
        extra=extra,
    )
    return Record(paper, location)


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False)


# --- Plain documents -----------------------------------------------------------------------


def _read_document(path: Path, text: str, report: Callable[[Problem], None]) -> Iterator[Record]:
    lines = [line.strip() for line in text.splitlines()]
    first = next((i for i, line in enumerate(lines) if line), None)
    if first is None:
        report(Problem(str(path), "empty file; nothing to read"))
        return
    heading = lines[first].lstrip("#").strip()
    body = " ".join(line for line in lines[first + 1 :] if line)
    if not body:  # a one-line document: the file name is the title
        heading, body = path.stem.replace("_", " "), heading
    doc_id = "doc:" + hashlib.sha1(str(path).encode()).hexdigest()[:16]
    yield Record(make_paper(heading, body, str(path), paper_id=doc_id), str(path))
