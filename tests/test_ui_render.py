"""Rendering answers and source cards: paper text stays text, markers become links (pure, no browser)."""

from __future__ import annotations

from paper_rag_ui.app import parse_filter_text
from paper_rag_ui.render import answer_html, highlight, link_markers, source_cards_html
from rag.service import safe_upload_name
from rag.types import Answer, Citation, PaperHit, Source

EVIL = "<img src=x onerror=alert(1)>"


def _answer(text: str, refused: bool = False) -> Answer:
    hit = PaperHit("p1", f"Title {EVIL}", 0.61, "passage", ["/data/a b.jsonl"], url="https://x.org/1")
    return Answer(
        question="q",
        standalone_question="q",
        answer=text,
        refused=refused,
        grounded=1.0,
        citations=[] if refused else [Citation(1, "p1", hit.title, hit.url, "It works <b>well</b>.", True)],
        sources=[hit],
        model="m",
        timings={},
        evidence=[] if refused else [Source(1, "p1", hit.title, 0.61, ["It works <b>well</b>."], hit.url, hit.sources)],
    )


def test_markers_become_links_only_for_known_sources_and_text_is_escaped():
    html = link_markers(f"It works {EVIL} [1]. Not this [7]. Both [1, 2].", {1, 2})
    assert '<a class="cite" href="#src-1"' in html and "[7]" in html and 'href="#src-7"' not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html
    assert html.count('class="cite"') == 3


def test_cards_escape_titles_and_highlight_the_supporting_passage():
    cards = source_cards_html(_answer("It works [1]."), {"p1": f"Intro. It works <b>well</b>. {EVIL} End."})
    assert "<img" not in cards and "<b>" not in cards
    assert "<mark>It works &lt;b&gt;well&lt;/b&gt;.</mark>" in cards
    assert 'id="src-1"' in cards and "✓ verified" in cards and "a b.jsonl" in cards
    assert highlight("abc", "zzz") == "abc"


def test_refusal_looks_different_and_lists_nearest_papers():
    refused = _answer("The indexed abstracts do not cover this.", refused=True)
    html = answer_html(refused)
    assert 'class="rag-refusal"' in html and "Nearest papers" in html and "<img" not in html
    assert "not cited" in source_cards_html(refused, {})
    assert 'class="rag-answer"' in answer_html(_answer("It works [1]."))


def test_upload_names_cannot_escape_the_upload_folder():
    assert safe_upload_name("../../etc/passwd") == "passwd"
    assert safe_upload_name("..\\..\\evil.jsonl") == "evil.jsonl"
    assert safe_upload_name(".hidden.jsonl") == "hidden.jsonl"
    assert safe_upload_name("my papers (1).jsonl") == "my_papers__1_.jsonl"
    assert "/" not in safe_upload_name("/abs/path/x.csv")


def test_filter_text_splits_on_commas_and_lines():
    assert parse_filter_text("source=a.jsonl, date>=2024-01\ncategories=cs.CL") == [
        "source=a.jsonl",
        "date>=2024-01",
        "categories=cs.CL",
    ]
    assert parse_filter_text("  ") == []
