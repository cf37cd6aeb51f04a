"""What BibTeX and RIS exports have in common: a reference becomes a `Paper`, or is reported.

Both readers produce `Reference`s; this module decodes their LaTeX, normalises dates, DOIs and arXiv
ids, picks a link, keeps every other field as metadata (so `--where journal=...` works), and
reports entries without an abstract once per file, with their keys.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rag.readers.latex import decode_latex, strip_braces
from rag.records import Record, make_paper
from rag.textclean import clean_text
from rag.types import Problem

_ARXIV_NEW = re.compile(r"(?<!\d)(?<!\d\.)(\d{4}\.\d{4,5})(?:v\d+)?(?!\d)")
_ARXIV_OLD = re.compile(r"\b([a-z][a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?\b")
_DOI = re.compile(r"\b(10\.\d{4,9}/\S+)", re.IGNORECASE)
_YEAR = re.compile(r"(?<!\d)(1[5-9]\d\d|2\d\d\d)(?!\d)")
_ISO_DATE = re.compile(r"^\s*(\d{4})(?:[-/](\d{1,2}))?(?:[-/](\d{1,2}))?")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_ENCODING_LINE = re.compile(rb"^%\s*Encoding:\s*([A-Za-z0-9_.-]+)", re.MULTILINE)  # JabRef's first line
_KEYS_SHOWN = 8


@dataclass
class Reference:
    """One bibliography entry as exported, fields still raw (LaTeX and all)."""

    key: str
    kind: str
    line: int
    title: str
    abstract: str
    authors: list[str] = field(default_factory=list)
    date: str | None = None  # a full date when the export has one (biblatex `date`, RIS `DA`)
    year: str | None = None
    month: str | None = None
    doi: str | None = None
    arxiv: str | None = None
    url: str | None = None
    venue: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


def read_text_file(path: Path, report: Callable[[Problem], None]) -> str | None:
    """UTF-8 (with or without a BOM), or the encoding a JabRef `% Encoding:` line declares."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        report(Problem(str(path), f"cannot read ({exc.strerror or exc}); skipped"))
        return None
    if not data.strip():
        report(Problem(str(path), "empty file; nothing to read"))
        return None
    if b"\x00" in data[:8192]:
        report(Problem(str(path), "binary file, not text; skipped"))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        declared = _ENCODING_LINE.search(data[:2000])
        if declared:
            try:
                return data.decode(codecs.lookup(declared.group(1).decode()).name)
            except (LookupError, UnicodeDecodeError):
                pass
        report(Problem(str(path), f"not UTF-8 text (bad byte at offset {exc.start}); export it as UTF-8; skipped"))
        return None


def references_to_records(
    references: list[Reference], source: str, report: Callable[[Problem], None]
) -> Iterator[Record]:
    no_abstract: list[str] = []
    for ref in references:
        location = f"{source}:{ref.line}"
        title = strip_braces(decode_latex(ref.title))
        if not clean_text(title):
            report(Problem(location, f"entry '{ref.key or '?'}' has no title; skipped"))
            continue
        abstract = strip_braces(decode_latex(ref.abstract))
        if not clean_text(abstract):
            no_abstract.append(ref.key or f"line {ref.line}")
            continue
        yield reference_record(ref, title, abstract, source, location)
    if no_abstract:
        shown = ", ".join(no_abstract[:_KEYS_SHOWN]) + (", ..." if len(no_abstract) > _KEYS_SHOWN else "")
        noun = "entry has" if len(no_abstract) == 1 else "entries have"
        report(Problem(source, f"{len(no_abstract)} {noun} no abstract; skipped ({shown})"))


def reference_record(ref: Reference, title: str, abstract: str, source: str, location: str) -> Record:
    doi = normalise_doi(ref.doi)
    arxiv = find_arxiv_id(ref.arxiv, ref.url, ref.fields.get("journal"), doi)
    cleaned = {name: _clean(value) for name, value in ref.fields.items()}
    extra = {name: value for name, value in cleaned.items() if value}
    extra.update(entry_type=ref.kind.lower(), citation_key=ref.key)
    venue = _clean(ref.venue) if ref.venue else ""
    if venue:
        extra["venue"] = venue
    if doi:
        extra["doi"] = doi
    if arxiv:
        extra["arxiv"] = arxiv
    url = _clean(ref.url or "")
    link = link_for(arxiv, doi) or (url if url.startswith(("http://", "https://")) else None)
    if url and url != link:
        extra["url"] = url
    authors = ", ".join(name for name in map(_clean, ref.authors) if name)
    paper = make_paper(
        title,
        abstract,
        source,
        authors=authors or None,
        date=iso_date(ref.date, ref.year, ref.month),
        url=link,
        extra={k: v for k, v in extra.items() if v},
    )
    paper.raw_title, paper.raw_abstract = ref.title, ref.abstract
    return Record(paper, location, merge_keys=merge_keys(arxiv, doi))


def link_for(arxiv: str | None, doi: str | None) -> str | None:
    if doi:
        return f"https://doi.org/{doi}"
    return f"https://arxiv.org/abs/{arxiv}" if arxiv else None


def merge_keys(arxiv: str | None, doi: str | None) -> tuple[str, ...]:
    """What lets this paper join the same paper from another source (see rag/readers/identity.py)."""
    return tuple(key for key in (f"arxiv:{arxiv}" if arxiv else "", f"doi:{doi}" if doi else "") if key)


def _clean(value: str) -> str:
    return clean_text(strip_braces(decode_latex(value)))


def normalise_doi(value: str | None) -> str | None:
    if not value:
        return None
    match = _DOI.search(clean_text(value))
    return match.group(1).rstrip(".,;").lower() if match else None


def find_arxiv_id(*candidates: str | None) -> str | None:
    """The arXiv id in an arXiv field, an arxiv.org URL, 'arXiv preprint arXiv:2401.01234' or an arXiv DOI."""
    for text in candidates:
        if not text:
            continue
        lowered = text.lower()
        if not ("arxiv" in lowered or _ARXIV_NEW.fullmatch(text.strip()) or _ARXIV_OLD.fullmatch(text.strip())):
            continue
        for pattern in (_ARXIV_NEW, _ARXIV_OLD):
            match = pattern.search(text)
            if match:
                return match.group(1)
    return None


def iso_date(date: str | None, year: str | None, month: str | None) -> str | None:
    """'2023-05-01' / '2023/05/01/' / year + month ('may', '5', 'May') -> 'YYYY[-MM[-DD]]'."""
    if date:
        match = _ISO_DATE.match(date)
        if match:
            parts = [match.group(1)] + [f"{int(g):02d}" for g in match.groups()[1:] if g and 1 <= int(g) <= 31]
            if len(parts) > 1 and not 1 <= int(parts[1]) <= 12:
                parts = parts[:1]
            return "-".join(parts)
    found = _YEAR.search(year or "") or _YEAR.search(date or "")
    if not found:
        return None
    month_number = _month_number(month)
    return f"{found.group(1)}-{month_number}" if month_number else found.group(1)


def _month_number(month: str | None) -> str | None:
    if not month:
        return None
    text = month.strip().lower()
    if text.isdigit() and 1 <= int(text) <= 12:
        return f"{int(text):02d}"
    for number, name in enumerate(_MONTH_NAMES, start=1):
        if text.startswith(name):
            return f"{number:02d}"
    return None
