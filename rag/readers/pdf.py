"""PDF papers: title and abstract from the first page, optionally the body text (`sources.pdf_full_text`).

Text comes from PDFium (pypdfium2, Apache-2.0/BSD) as positioned runs with their font size; the
layout is read from those: rotated text (the arXiv stamp) is set aside, lines in the top and
bottom margins that repeat (running heads, page numbers) are dropped, two-column pages are read
left column then right, the title is the largest text in the upper half of the first page, and
the abstract runs from its heading (`Abstract`, `Abstract—`, `ABSTRACT`) to the first section
heading or change of type size. A PDF set in one type size (its title in the body font) takes its
title from the document's /Title metadata, else from the lines before the Abstract heading; the
lines between the title and the abstract give the authors. In the body text (`pdf_full_text`),
section headings ("3 Experiments") are left out, so they are never read as part of a sentence. A
scanned PDF without a text layer, an encrypted one and a broken one each give one line and are
skipped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.config import SourcesSettings
from rag.readers.references import find_arxiv_id, iso_date, link_for, merge_keys, normalise_doi
from rag.records import Record, make_paper
from rag.types import Problem

_ABSTRACT_HEADING = re.compile(r"^\s*(abstract|summary)\b\s*[.:—–-]?\s*", re.IGNORECASE)
_SECTION = re.compile(
    r"^\s*((\d+(\.\d+)*|[IVX]+)\.?\s+[A-Z][\w\- ,:&]{2,60}|keywords?\b|index terms\b|ccs concepts\b|"
    r"acm reference format\b|introduction\s*$)",
    re.IGNORECASE,
)
_REFERENCES = re.compile(r"^\s*(\d+\.?\s+)?(references|bibliography)\s*$", re.IGNORECASE)
_STAMP_DATE = re.compile(r"\b(\d{1,2})\s+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\s+(\d{4})\b", re.I)
_ARXIV_IN_TEXT = re.compile(r"arxiv:\s*(\d{4}\.\d{4,5})(?:v\d+)?", re.IGNORECASE)
_MIN_FALLBACK_WORDS = 40
# Words that mark an affiliation or a note, not a person, in the lines under the title.
_NOT_A_NAME = re.compile(
    r"\b(univ\w*|institut\w*|lab\w*|laborator\w*|department|dept|school|college|center|centre|faculty|"
    r"research|inc|ltd|corp\w*|company|academy|hospital|foundation|google|microsoft|meta|deepmind|openai|"
    r"equal|contribution|correspond\w*|preprint|review|conference|workshop|proceedings|abstract)\b",
    re.IGNORECASE,
)
_NAME = re.compile(r"^[A-Z][\w'’.\-]*(?:\s+[A-Z][\w'’.\-]*){1,3}$")
_BAD_METADATA_TITLE = re.compile(r"^(untitled|microsoft word\b|.*\.(docx?|tex|dvi|pdf)$)", re.IGNORECASE)
_MAX_ABSTRACT_CHARS = 4000


@dataclass(frozen=True)
class Span:
    """One run of text on one line of a page, as PDFium reports it (PDF points, origin bottom left)."""

    left: float
    bottom: float
    right: float
    top: float
    size: float
    text: str
    rotated: bool = False


@dataclass
class Line:
    left: float
    bottom: float
    right: float
    top: float
    size: float
    text: str


@dataclass
class PdfPaper:
    title: str
    abstract: str
    body: str
    arxiv: str | None
    doi: str | None
    date: str | None
    pages: int
    authors: list[str] | None = None


class PdfProblem(Exception):
    """A PDF that cannot give a paper; the message is the one line the user sees."""


# --- layout (pure) ----------------------------------------------------------------------------


def lines_of(spans: Sequence[Span]) -> list[Line]:
    """Runs on one baseline joined into lines; runs across a column gutter stay apart."""
    lines: list[Line] = []
    for span in sorted((s for s in spans if not s.rotated and s.text.strip()), key=lambda s: (-s.bottom, s.left)):
        line = _line_continued_by(lines, span)
        if line is None:
            lines.append(Line(span.left, span.bottom, span.right, span.top, span.size, span.text.strip()))
        else:
            line.text = f"{line.text} {span.text.strip()}"
            line.right, line.top, line.size = span.right, max(line.top, span.top), max(line.size, span.size)
    return lines


def _line_continued_by(lines: list[Line], span: Span) -> Line | None:
    """The line this run continues: same baseline, just to its right (lines are kept top to bottom)."""
    for line in reversed(lines):
        if line.bottom - span.bottom > 0.4 * max(line.size, span.size):
            return None  # every line before this one is higher still
        same_row = abs(line.bottom - span.bottom) <= 0.4 * min(line.size, span.size)
        if same_row and 0 <= span.left - line.right <= 0.8 * max(line.size, span.size):
            return line
    return None


def reading_order(lines: list[Line], width: float, height: float) -> list[Line]:
    """Top to bottom; on a two-column page the header across both columns, then left, then right."""
    middle = width / 2
    left = [ln for ln in lines if ln.right <= middle + 4]
    right = [ln for ln in lines if ln.left >= middle - 4]
    if len(right) < 3 or len(left) < 3:
        return sorted(lines, key=lambda ln: -ln.bottom)
    # where the columns start; a journal line in the top margin does not count
    columns_top = max((ln.top for ln in left + right if ln.bottom < height * 0.92), default=height)
    in_columns = {id(ln) for ln in left + right}
    spanning = [ln for ln in lines if id(ln) not in in_columns]
    header = sorted((ln for ln in spanning if ln.bottom >= columns_top - 2), key=lambda ln: -ln.bottom)
    footer = sorted((ln for ln in spanning if ln.bottom < columns_top - 2), key=lambda ln: -ln.bottom)
    by_height = lambda ln: -ln.bottom  # noqa: E731
    return header + sorted(left, key=by_height) + sorted(right, key=by_height) + footer


def drop_margins(pages: list[list[Line]], height: float) -> list[list[Line]]:
    """Running heads and page numbers: margin lines that repeat across pages or are only a number."""
    margin = 0.08 * height

    def in_margin(line: Line) -> bool:
        return line.bottom > height - margin or line.top < margin

    def key(line: Line) -> str:
        return re.sub(r"\d+", "#", line.text.strip().lower())

    repeats = Counter(key(ln) for page in pages for ln in page if in_margin(ln))
    return [
        [
            ln
            for ln in page
            if not (in_margin(ln) and (repeats[key(ln)] > 1 or re.fullmatch(r"[\d\s\-–/ivx]+", ln.text.lower())))
        ]
        for page in pages
    ]


def body_size(lines: Sequence[Line]) -> float:
    sizes = Counter()
    for line in lines:
        sizes[round(line.size * 2) / 2] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 0.0


def find_title(lines: Sequence[Line], height: float) -> tuple[str, int] | None:
    """The largest type in the upper half of the page, its consecutive lines joined; (title, index after)."""
    upper = [(i, ln) for i, ln in enumerate(lines) if ln.bottom > height * 0.45 and len(ln.text) > 1]
    if not upper:
        return None
    largest = max(ln.size for _, ln in upper)
    if largest <= body_size(lines) + 0.5:
        return None
    start = next(i for i, ln in upper if ln.size >= largest - 0.5)
    end = start
    while end + 1 < len(lines) and lines[end + 1].size >= largest - 0.5:
        end += 1
    title = join_lines([ln.text for ln in lines[start : end + 1]])
    return (title, end + 1) if 3 <= len(title) <= 300 else None


def title_before_abstract(lines: Sequence[Line]) -> tuple[str, int] | None:
    """A one-font page: the first line(s) above the Abstract heading, up to the authors; (title, index after)."""
    heading = next((i for i, ln in enumerate(lines) if _ABSTRACT_HEADING.match(ln.text)), None)
    if not heading:
        return None
    parts, end = [], 0
    while end < heading and len(parts) < 3:
        text = lines[end].text.strip()
        if parts and (authors_in([text]) or "@" in text or _NOT_A_NAME.search(text)):
            break
        if parts and lines[end - 1].bottom - lines[end].top > 1.2 * lines[end].size:
            break  # a blank line: the title block has ended
        parts.append(text)
        end += 1
    title = join_lines(parts)
    return (title, end) if 3 <= len(title) <= 300 and len(title.split()) >= 2 else None


def metadata_title(value: str | None) -> str | None:
    """The PDF's /Title, unless it is empty or a file name ("Microsoft Word - draft.docx")."""
    value = re.sub(r"\s+", " ", value or "").strip()
    if not (3 <= len(value) <= 300) or len(value.split()) < 2 or _BAD_METADATA_TITLE.match(value):
        return None
    return value


def authors_in(texts: Sequence[str]) -> list[str]:
    """Person names in the lines under a title: "Ada Lovelace, Analytical Engines Lab" gives "Ada Lovelace"."""
    names: list[str] = []
    for text in texts:
        if "@" in text:
            continue
        for part in re.split(r",|;|\band\b|·|•|\s{3,}", text):
            part = re.sub(r"[\d*†‡§¶∗]+", " ", part)
            part = re.sub(r"\s+", " ", part).strip(" .")
            if _NAME.match(part) and not _NOT_A_NAME.search(part):
                names.append(part)
    return names


def find_abstract(lines: Sequence[Line], start: int) -> tuple[str, int] | None:
    """From the Abstract heading to the first section heading or change of type size; (abstract, index after)."""
    for i in range(start, len(lines)):
        match = _ABSTRACT_HEADING.match(lines[i].text)
        if not match:
            continue
        rest = lines[i].text[match.end() :]
        parts = [rest] if rest.strip() else []
        size = lines[i].size if parts else (lines[i + 1].size if i + 1 < len(lines) else lines[i].size)
        end = i + 1
        while end < len(lines):
            line = lines[end]
            if _SECTION.match(line.text) or abs(line.size - size) > 1.0 or sum(map(len, parts)) > _MAX_ABSTRACT_CHARS:
                break
            parts.append(line.text)
            end += 1
        text = join_lines(parts)
        return (text, end) if text else None
    return _first_paragraph(lines, start)


def _first_paragraph(lines: Sequence[Line], start: int) -> tuple[str, int] | None:
    """No Abstract heading: the first run of body-size text long enough to be an abstract."""
    size = body_size(lines[start:])
    i = start
    while i < len(lines):
        if abs(lines[i].size - size) > 0.5 or _SECTION.match(lines[i].text):
            i += 1
            continue
        end = i
        while end < len(lines) and abs(lines[end].size - size) <= 0.5 and not _SECTION.match(lines[end].text):
            end += 1
        text = join_lines([ln.text for ln in lines[i:end]])
        if len(text.split()) >= _MIN_FALLBACK_WORDS:
            return text, end
        i = end
    return None


def join_lines(texts: Sequence[str]) -> str:
    """Lines into running text; a word hyphenated across a line break is joined again."""
    parts: list[str] = []
    for text in texts:
        text = text.strip()
        if not text:
            continue
        last = parts[-1] if parts else ""
        if len(last) >= 2 and last[-1] == "-" and last[-2].islower() and text[:1].islower():
            parts[-1] = last[:-1] + text
        else:
            parts.append(text)
    return " ".join(parts)


def body_text(pages: Sequence[Sequence[Line]], first_page_from: int) -> str:
    """Running text after the abstract, up to the references; section headings left out."""
    texts: list[str] = []
    for number, page in enumerate(pages):
        size = body_size(page)
        for line in page[first_page_from:] if number == 0 else page:
            if _REFERENCES.match(line.text):
                return join_lines(texts)
            if is_heading(line, size):
                if texts and texts[-1] and texts[-1][-1] not in ".!?:;":
                    texts[-1] += "."  # a paragraph cut short by the heading still ends its sentence
                continue
            texts.append(line.text)
    return join_lines(texts)


def is_heading(line: Line, body: float) -> bool:
    """A section heading: numbered or named like one, short, and not a sentence."""
    text = line.text.strip()
    words = len(text.split())
    if not _SECTION.match(text) or words > 8 or text.endswith((".", ",", ";")):
        return False
    return abs(line.size - body) > 0.5 or words <= 5


def stamp_facts(spans: Sequence[Span], first_page_text: str) -> tuple[str | None, str | None, str | None]:
    """(arXiv id, date, DOI) from the rotated arXiv stamp and the first page's text."""
    stamp = " ".join(s.text for s in spans if s.rotated)
    arxiv = find_arxiv_id(stamp) if "arxiv" in stamp.lower() else None
    if arxiv is None:
        match = _ARXIV_IN_TEXT.search(first_page_text)
        arxiv = match.group(1) if match else None
    date = None
    found = _STAMP_DATE.search(stamp)
    if found:
        date = iso_date(None, found.group(3), found.group(2))
        date = f"{date}-{int(found.group(1)):02d}" if date and len(date) == 7 else date
    elif arxiv and re.match(r"^\d{4}\.", arxiv):
        date = f"20{arxiv[:2]}-{arxiv[2:4]}"
    doi = normalise_doi(first_page_text) if re.search(r"\bdoi\b|doi\.org", first_page_text, re.I) else None
    return arxiv, date, doi


# --- PDFium -----------------------------------------------------------------------------------


def page_spans(page) -> list[Span]:  # page: pypdfium2.PdfPage
    import pypdfium2.raw as pdfium_c

    textpage = page.get_textpage()
    try:
        spans = []
        for i in range(textpage.count_rects()):
            left, bottom, right, top = textpage.get_rect(i)
            text = textpage.get_text_bounded(left, bottom, right, top)
            index = textpage.get_index(left + 0.5, (bottom + top) / 2, 2.0, (top - bottom) / 2 + 1)
            size, rotated = top - bottom, False
            if index is not None and index >= 0:
                size = pdfium_c.FPDFText_GetFontSize(textpage.raw, index) or size
                angle = pdfium_c.FPDFText_GetCharAngle(textpage.raw, index)
                rotated = 0.05 < angle < 6.23
            spans.append(
                Span(left, bottom, right, top, float(size), text.replace("\r", " ").replace("\n", " "), rotated)
            )
        return spans
    finally:
        textpage.close()


def parse_pdf(path: Path, options: SourcesSettings) -> PdfPaper:
    import pypdfium2 as pdfium

    with path.open("rb") as handle:
        if not handle.read(1024).lstrip().startswith(b"%PDF"):
            raise PdfProblem("not a PDF (no %PDF header); skipped")
    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise PdfProblem("encrypted PDF (it needs a password); skipped; save an unlocked copy") from None
        raise PdfProblem(f"broken PDF, cannot be opened ({_pdfium_reason(exc)}); skipped") from None
    try:
        n_pages = len(document)
        if n_pages == 0:
            raise PdfProblem("PDF has no pages; skipped")
        wanted = min(n_pages, options.pdf_max_pages if options.pdf_full_text else 2)
        spans_by_page, width, height = [], 612.0, 792.0
        stated_title = metadata_title(document.get_metadata_value("Title"))
        for number in range(wanted):
            page = document[number]
            try:
                if number == 0:
                    width, height = page.get_size()
                spans = page_spans(page)
            finally:
                page.close()
            spans_by_page.append(spans)
    except pdfium.PdfiumError as exc:
        raise PdfProblem(f"broken PDF, cannot be read ({_pdfium_reason(exc)}); skipped") from None
    finally:
        document.close()
    if not any(s.text.strip() for s in spans_by_page[0]):
        raise PdfProblem("no text layer on the first page (a scanned PDF?); skipped; run OCR on it first (ocrmypdf)")
    pages = drop_margins([lines_of(spans) for spans in spans_by_page], height)
    lines_by_page = [reading_order(lines, width, height) for lines in pages]
    first = lines_by_page[0]
    found_title = find_title(first, height) or title_before_abstract(first)
    if stated_title and (found_title is None or find_title(first, height) is None):
        found_title = (stated_title, found_title[1] if found_title else 0)  # one font: /Title first
    if found_title is None:
        raise PdfProblem(
            "no title found on the first page (no text larger than the body, no /Title metadata, no lines above "
            "an Abstract heading); skipped"
        )
    title, after_title = found_title
    found_abstract = find_abstract(first, after_title)
    heading = next((i for i in range(after_title, len(first)) if _ABSTRACT_HEADING.match(first[i].text)), None)
    authors = authors_in([ln.text for ln in first[after_title:heading]]) if heading is not None else []
    body = (
        body_text(lines_by_page, found_abstract[1] if found_abstract else after_title) if options.pdf_full_text else ""
    )
    if found_abstract is None and not body:
        raise PdfProblem("no abstract found on the first page; skipped (sources.pdf_full_text indexes the body)")
    arxiv, date, doi = stamp_facts(spans_by_page[0], " ".join(ln.text for ln in first))
    abstract = found_abstract[0] if found_abstract else ""
    return PdfPaper(title, abstract, body, arxiv, doi, date, n_pages, authors or None)


def _pdfium_reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    match = re.search(r"\(PDFium: ([^)]*)\)", text)
    return match.group(1) if match else (text.splitlines()[0] if text else type(exc).__name__)


def read_pdf(path: Path, report: Callable[[Problem], None], options: SourcesSettings | None = None) -> Iterator[Record]:
    options = options or SourcesSettings()
    try:
        found = parse_pdf(path, options)
    except PdfProblem as problem:
        report(Problem(str(path), str(problem)))
        return
    except OSError as exc:
        report(Problem(str(path), f"cannot read ({exc.strerror or exc}); skipped"))
        return
    except ImportError:
        report(Problem(str(path), "PDFs need pypdfium2: pip install pypdfium2; skipped"))
        return
    text = f"{found.abstract} {found.body}".strip()
    extra = {"pages": str(found.pages), "file_type": "pdf"}
    if found.arxiv:
        extra["arxiv"] = found.arxiv
    if found.doi:
        extra["doi"] = found.doi
    url = link_for(found.arxiv, found.doi)
    authors = ", ".join(found.authors) if found.authors else None
    paper = make_paper(found.title, text, str(path), authors=authors, date=found.date, url=url, extra=extra)
    yield Record(paper, str(path), merge_keys=merge_keys(found.arxiv, found.doi))
