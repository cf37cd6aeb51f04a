"""PDF papers made in the test with reportlab: two-column pages, running heads, an arXiv stamp, scans."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

PAGE_W, PAGE_H = 612.0, 792.0  # US letter, points
MARGIN = 54.0
GUTTER = 18.0


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    from reportlab.lib.utils import simpleSplit

    return simpleSplit(text, font, size, width)


def write_paper_pdf(
    path: Path,
    *,
    title: str,
    authors: Sequence[str] = ("Ada Lovelace, Analytical Engines Lab", "Alan Turing, University of Manchester"),
    abstract: str,
    body: Sequence[str] = (),
    two_column: bool = True,
    running_head: str | None = "Preprint. Under review.",
    arxiv_stamp: str | None = None,
    abstract_heading: str = "Abstract",
    pages: int = 2,
    user_password: str | None = None,
    one_font: bool = False,
    metadata_title: str = "",
) -> Path:
    """A paper's first page as conference templates lay it out, and `pages - 1` body pages.

    With `user_password` the file is encrypted (RC4-128); "" encrypts it with limits on printing
    and copying but no password to open, as many publishers' PDFs are. `one_font` sets everything,
    title and headings too, in 10 pt Times (a plain preprint); `metadata_title` goes to /Title.
    """
    from reportlab.lib.pdfencrypt import StandardEncryption
    from reportlab.pdfgen.canvas import Canvas

    encrypt = None
    if user_password is not None:
        encrypt = StandardEncryption(user_password, ownerPassword="owner-secret", canPrint=0, canCopy=0, strength=128)
    canvas = Canvas(str(path), pagesize=(PAGE_W, PAGE_H), encrypt=encrypt)
    canvas.setTitle(metadata_title)  # real exports often carry no or a wrong title in their metadata
    columns = _columns(two_column)
    paragraphs = list(body) or [abstract]
    for page in range(pages):
        if running_head:
            canvas.setFont("Helvetica-Oblique", 8)
            canvas.drawString(MARGIN, PAGE_H - 36, running_head)
            canvas.drawRightString(PAGE_W - MARGIN, 30, str(page + 1))
        if page == 0 and arxiv_stamp:
            canvas.saveState()
            canvas.translate(24, 220)
            canvas.rotate(90)
            canvas.setFont("Times-Roman", 20)
            canvas.drawString(0, 0, arxiv_stamp)
            canvas.restoreState()
        top = PAGE_H - 72
        if page == 0:
            top = _first_page_head(canvas, title, authors, top, one_font)
        flow = _ColumnFlow(canvas, columns, top, one_font)
        if page == 0:
            flow.heading(abstract_heading, centered=two_column)
            flow.paragraph(abstract, size=10 if one_font else 9)
            flow.heading("1 Introduction")
        for paragraph in paragraphs:
            flow.paragraph(paragraph, size=10)
        canvas.showPage()
    canvas.save()
    return path


def _columns(two_column: bool) -> list[tuple[float, float]]:
    if not two_column:
        return [(MARGIN, PAGE_W - 2 * MARGIN)]
    width = (PAGE_W - 2 * MARGIN - GUTTER) / 2
    return [(MARGIN, width), (MARGIN + width + GUTTER, width)]


def _first_page_head(canvas, title: str, authors: Sequence[str], top: float, one_font: bool = False) -> float:
    font, size = ("Times-Roman", 10) if one_font else ("Helvetica-Bold", 17)
    canvas.setFont(font, size)
    for line in _wrap(title, font, size, PAGE_W - 2 * MARGIN - 40):
        canvas.drawCentredString(PAGE_W / 2, top, line)
        top -= size * 1.3
    top -= 6 if not one_font else 12
    canvas.setFont(*(("Times-Roman", 10) if one_font else ("Helvetica", 11)))
    for author in authors:
        canvas.drawCentredString(PAGE_W / 2, top, author)
        top -= 14
    return top - 18


class _ColumnFlow:
    """Text poured into columns top to bottom, left column first."""

    def __init__(self, canvas, columns: list[tuple[float, float]], top: float, one_font: bool = False) -> None:
        self.canvas, self.columns, self.top, self.one_font = canvas, columns, top, one_font
        self.column, self.y = 0, top

    def _line(self, text: str, font: str, size: float, centered: bool = False) -> None:
        if self.y < 60:
            if self.column + 1 >= len(self.columns):
                return  # the page is full; the rest is not drawn
            self.column += 1
            self.y = self.top
        x, width = self.columns[self.column]
        self.canvas.setFont(font, size)
        if centered:
            self.canvas.drawCentredString(x + width / 2, self.y, text)
        else:
            self.canvas.drawString(x, self.y, text)
        self.y -= size * 1.25

    def heading(self, text: str, centered: bool = False) -> None:
        self.y -= 4
        self._line(text, *(("Times-Roman", 10) if self.one_font else ("Helvetica-Bold", 11)), centered)
        self.y -= 2

    def paragraph(self, text: str, size: float) -> None:
        x, width = self.columns[self.column]
        for line in _wrap(text, "Times-Roman", size, width):
            self._line(line, "Times-Roman", size)
        self.y -= size * 0.6


def write_scanned_pdf(path: Path) -> Path:
    """A page that is only a picture of text: no text layer."""
    from reportlab.pdfgen.canvas import Canvas

    canvas = Canvas(str(path), pagesize=(PAGE_W, PAGE_H))
    for row in range(40):
        canvas.rect(MARGIN, PAGE_H - 80 - row * 16, 400 - (row % 5) * 40, 8, fill=1, stroke=0)
    canvas.showPage()
    canvas.save()
    return path
