"""Citation parsing and verification: pure functions, checked on small inputs and with hypothesis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rag.citations import marker_numbers, parse_answer, render_answer, strip_echoed_titles, verify_sentences
from rag.types import AnswerSentence, Source


def _source(n: int, *sentences: str) -> Source:
    return Source(n=n, paper_id=f"p{n}", title=f"Paper {n}", score=0.5, sentences=list(sentences))


def test_marker_numbers_reads_lists_and_ranges():
    assert marker_numbers("1") == [1]
    assert marker_numbers("1, 3") == [1, 3]
    assert marker_numbers("2-4") == [2, 3, 4]
    assert marker_numbers("1–2; 5") == [1, 2, 5]
    assert marker_numbers("1 and 2") == [1, 2]
    assert marker_numbers("3, 3") == [3]
    assert marker_numbers("1-999") == [1, 999]  # an absurd range is read as its two ends


def test_parse_answer_splits_sentences_and_markers():
    parsed = parse_answer("DyVTE drops visual tokens [1]. It uses exit layers [1][2]. No citation here.")
    assert [p.cited for p in parsed] == [[1], [1, 2], []]
    assert parsed[0].text == "DyVTE drops visual tokens."
    assert "[" not in parsed[1].text


def test_marker_after_full_stop_joins_previous_sentence():
    parsed = parse_answer("CoLVA reaches 51.06% accuracy. [2]")
    assert len(parsed) == 1 and parsed[0].cited == [2]


def test_source_style_markers_are_read():
    assert parse_answer("It works [Source 2].")[0].cited == [2]


def _exact_support(sentences, sources):
    """1.0 where the sentence text (without its full stop) appears in the source's evidence."""
    return [[1.0 if s.rstrip(".") in " ".join(src.sentences) else 0.0 for src in sources] for s in sentences]


SOURCES = [_source(1, "DyVTE drops visual tokens"), _source(2, "CoLVA reaches 51.06% accuracy")]


def test_invalid_marker_is_removed_and_reported():
    parsed = parse_answer("DyVTE drops visual tokens [1][7].")
    result = verify_sentences(parsed, SOURCES, _exact_support, 0.5)
    assert result.removed == [7]
    assert result.sentences[0].cited == [1] and result.sentences[0].supported
    assert result.grounded == 1.0


def test_wrong_citation_is_moved_to_the_supporting_source():
    parsed = parse_answer("CoLVA reaches 51.06% accuracy [1].")
    result = verify_sentences(parsed, SOURCES, _exact_support, 0.5)
    assert result.moved == [(1, 2)]
    assert result.sentences[0].cited == [2]


def test_uncited_supported_sentence_gets_a_citation():
    result = verify_sentences(parse_answer("DyVTE drops visual tokens."), SOURCES, _exact_support, 0.5)
    assert result.added == [1] and result.sentences[0].cited == [1]


def test_unsupported_sentence_is_flagged_and_lowers_grounded():
    parsed = parse_answer("DyVTE drops visual tokens [1]. It also cures cancer [1].")
    result = verify_sentences(parsed, SOURCES, _exact_support, 0.5)
    assert [s.supported for s in result.sentences] == [True, False]
    assert result.grounded == 0.5


def test_render_puts_markers_before_the_full_stop():
    text = render_answer([AnswerSentence("A claim.", [1, 2], True, 1.0), AnswerSentence("Plain", [], False, 0)])
    assert text == "A claim [1][2]. Plain."


@given(
    st.lists(st.sampled_from(["Tokens drop", "Accuracy rises", "We propose X", "It works"]), min_size=1, max_size=5),
    st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=5),
)
def test_render_then_parse_keeps_citations(texts, numbers):
    sentences = [AnswerSentence(f"{t} {i}.", [numbers[i % len(numbers)]], True, 1.0) for i, t in enumerate(texts)]
    parsed = parse_answer(render_answer(sentences))
    assert [p.cited for p in parsed] == [s.cited for s in sentences]
    assert [p.text for p in parsed] == [s.text for s in sentences]


def test_negation_mismatch():
    from rag.citations import negation_mismatch

    assert negation_mismatch("No work drops all visual tokens [1].", "DyVTE removes all visual tokens after a layer.")
    assert not negation_mismatch("Visual tokens are not needed late [1].", "Visual tokens do not contribute late.")
    assert not negation_mismatch("DyVTE drops visual tokens [1].", "DyVTE removes visual tokens.")


def test_names_must_come_from_the_evidence():
    from rag.citations import unknown_names

    evidence = "Are They the Same? CoLVA achieves 51.06% overall accuracy (OA) on the MMVM benchmark, beating GPT-4o."
    assert unknown_names("The MINIMA model reaches 51.06% on MMVM [1].", evidence) == ["MINIMA"]
    assert unknown_names("CoLVA reaches 51.06% on the MMVM benchmark, beating GPT-4o [1].", evidence) == []
    assert unknown_names("Multimodal LLMs (MLLMs) struggle.", "existing MLLMs struggle") == []


def test_echoed_evidence_titles_are_dropped_and_real_mentions_kept():
    title = "Zebra stripes <img src=x> under infrared light"
    echoed = f"{title} — We detect zebras at night [1]. [2] FastSeg: Real-Time Segmentation — It is fast [2]."
    assert strip_echoed_titles(echoed, [title, "FastSeg: Real-Time Segmentation"]) == (
        "We detect zebras at night [1]. It is fast [2]."
    )
    mention = f"The paper {title} reports 93.4% precision [1]."
    assert strip_echoed_titles(mention, [title]) == mention
