import pytest
from hypothesis import given
from hypothesis import strategies as st

from rag.textclean import clean_text, title_key


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (r"18\% relative increase", "18% relative increase"),
        ("(e.g., sim20times smaller than Flamingo)", "(e.g., ~20 times smaller than Flamingo)"),
        ("paired samplesx2013less than 1%", "paired samples–less than 1%"),
        ("robot learning problems x2013 a unified platform", "robot learning problems – a unified platform"),
        (r"the \textbf{A}uxiliary features", "the Auxiliary features"),
        ("the textbf{M}ulti-branch training", "the Multi-branch training"),
        (r"\emph{\textbf{nested}} markup", "nested markup"),
        ("The M^{2}UGen framework", "The M^2UGen framework"),
        ('In our "{SkillNet}" model', 'In our "SkillNet" model'),
        ("Multimodal reasoning} resumes", "Multimodal reasoning resumes"),
        ("too   many  spaces ", "too many spaces"),
        (r"we propose \methodname, from", "we propose methodname, from"),
        (r"see \url{https://github.com/x/y}", "see https://github.com/x/y"),
        (r"about \sim 5\% fewer", "about ~5% fewer"),
    ],
)
def test_leftovers_are_cleaned(raw, clean):
    assert clean_text(raw) == clean


@pytest.mark.parametrize(
    "real",
    [
        "images at 2048x2048 resolution",
        "sim2real transfer for robots",
        "cost is $O(n^2)$ per layer",
        "GPT-4o reaches 51.06% accuracy (OA).",
        "Simulation results in sim-to-real",
        "x86 and x2 speed-ups",
    ],
)
def test_real_content_is_not_damaged(real):
    assert clean_text(real) == real


@given(st.text(max_size=300))
def test_clean_text_is_idempotent(text):
    once = clean_text(text)
    assert clean_text(once) == once


def test_title_key_ignores_case_punctuation_and_spacing():
    assert title_key("MMRL: Multi-Modal  Representation Learning") == title_key(
        "mmrl multi modal representation learning"
    )
    assert title_key("A") != title_key("B")
