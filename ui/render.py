"""Answer and source cards as HTML: every paper-derived string is escaped before any markup is added.

Titles and abstracts come from strangers' files, so they are text, never markup: `html.escape` runs
first, and only then do `[n]` markers become links and the supporting passage a <mark>.
"""

from __future__ import annotations

import html
import re
from pathlib import PurePath

from rag.types import Answer, PaperHit

_MARKER = re.compile(r"\[(\d+(?:\s*[,\u2013-]\s*\d+)*)\]")


def escape(text: str) -> str:
    return html.escape(text or "", quote=True)


def link_markers(answer_text: str, known: set[int]) -> str:
    """Escaped answer text with each known `[n]` turned into a link to its source card."""

    def linked(match: re.Match) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        if not numbers or not all(n in known for n in numbers):
            return match.group(0)
        links = ", ".join(f'<a class="cite" href="#src-{n}" data-n="{n}">{n}</a>' for n in numbers)
        return f"[{links}]"

    return _MARKER.sub(linked, escape(answer_text))


_BOLD = re.compile(r"\*\*([^*\n]+?)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*([^*\n]+?)\*(?![*\w])")


def answer_markup(escaped: str) -> str:
    """The answer's light markup, on text already escaped: **name** bold, *title* italic, '- ' lines a list."""
    text = _ITALIC.sub(r"<em>\1</em>", _BOLD.sub(r"<strong>\1</strong>", escaped))
    out: list[str] = []
    items: list[str] = []
    for line in text.split("\n"):
        if line.startswith("- "):
            items.append(f"<li>{line[2:]}</li>")
            continue
        if items:
            out.append(f'<ul class="rag-list">{"".join(items)}</ul>')
            items = []
        if line.strip():
            out.append(f"<p>{line}</p>")
    if items:
        out.append(f'<ul class="rag-list">{"".join(items)}</ul>')
    return "".join(out)


def answer_html(answer: Answer) -> str:
    """The chat bubble of a finished answer: refusals look different, and notes are listed."""
    if answer.refused:
        nearest = "".join(f"<li>{escape(h.title)}</li>" for h in answer.sources[:3])
        return (
            f'<div class="rag-refusal"><strong>Not covered by the indexed abstracts.</strong> '
            f"{answer_markup(escape(answer.answer))}"
            + (f"<div>Nearest papers:</div><ul>{nearest}</ul>" if nearest else "")
            + "</div>"
        )
    body = answer_markup(link_markers(answer.answer, {c.n for c in answer.citations} | {s.n for s in answer.evidence}))
    extra = ""
    if answer.mode == "fallback":
        extra = '<div class="rag-note">The model\'s statements could not be verified; showing the evidence.</div>'
    if answer.error:
        extra += f'<div class="rag-error">{escape(answer.error)}</div>'
    return f'<div class="rag-answer" data-mode="{escape(answer.mode)}">{body}{extra}</div>'


def highlight(abstract: str, passage: str) -> str:
    """Escaped abstract with the supporting passage marked, when it occurs in it."""
    escaped = escape(abstract)
    target = escape(passage.strip())
    if target and target in escaped:
        return escaped.replace(target, f"<mark>{target}</mark>", 1)
    return escaped


def source_cards_html(answer: Answer | None, abstracts: dict[str, str]) -> str:
    """One card per numbered source: title, passage highlighted in the abstract, files, score, verified."""
    if answer is None:
        return '<div class="rag-cards-empty">Sources appear here with each answer.</div>'
    if answer.refused:
        rows = "".join(
            _paper_card(i, hit, abstracts.get(hit.paper_id, hit.passage), "", None)
            for i, hit in enumerate(answer.sources[:5], start=1)
        )
        return (
            f'<div class="rag-cards refused"><div class="rag-cards-title">Nearest papers (not cited)</div>{rows}</div>'
        )
    by_paper = {hit.paper_id: hit for hit in answer.sources}
    cited = {c.n: c for c in answer.citations}
    cards = []
    for source in answer.evidence:
        citation = cited.get(source.n)
        hit = by_paper.get(source.paper_id) or PaperHit(
            source.paper_id, source.title, source.score, source.passage, source.sources, source.url
        )
        passage = citation.supporting_passage if citation else source.passage
        verified = None if citation is None else citation.supported
        cards.append(_paper_card(source.n, hit, abstracts.get(source.paper_id, source.passage), passage, verified))
    return f'<div class="rag-cards">{"".join(cards)}</div>'


def _paper_card(n: int, hit: PaperHit, abstract: str, passage: str, verified: bool | None) -> str:
    files = ", ".join(escape(PurePath(s).name) for s in hit.sources) or "—"
    if verified is None:
        badge = '<span class="badge uncited">not cited</span>'
    elif verified:
        badge = '<span class="badge verified">✓ verified</span>'
    else:
        badge = '<span class="badge unverified">✗ not supported</span>'
    link = f' · <a href="{escape(hit.url)}" target="_blank" rel="noopener">link</a>' if hit.url else ""
    return (
        f'<details class="source-card" id="src-{n}" data-n="{n}" data-verified="{str(verified).lower()}">'
        f'<summary><span class="num">[{n}]</span> <span class="title">{escape(hit.title)}</span> {badge}</summary>'
        f'<div class="meta">score {hit.score:.3f} · {files}{link}</div>'
        f'<div class="abstract">{highlight(abstract, passage)}</div>'
        "</details>"
    )


CSS = """
.rag-refusal { border-left: 4px solid #b45309; padding: 6px 10px; background: #fffbeb; color: #111; }
.rag-note { font-size: 0.85em; color: #92400e; margin-top: 6px; }
.rag-error { font-size: 0.85em; color: #b91c1c; margin-top: 6px; }
.source-card { border: 1px solid #d1d5db; border-radius: 8px; padding: 6px 10px; margin: 6px 0; }
.source-card summary { cursor: pointer; }
.source-card .meta { font-size: 0.8em; color: #6b7280; margin: 4px 0; }
.source-card mark { background: #fde68a; }
.badge { font-size: 0.75em; padding: 1px 6px; border-radius: 10px; }
.badge.verified { background: #dcfce7; color: #166534; }
.badge.unverified { background: #fee2e2; color: #991b1b; }
.badge.uncited { background: #f3f4f6; color: #374151; }
a.cite { text-decoration: none; font-weight: 600; }
.rag-answer p, .rag-refusal p { margin: 0 0 6px 0; }
.rag-list { margin: 4px 0 4px 18px; padding: 0; }
.rag-list li { margin: 2px 0; }
"""
