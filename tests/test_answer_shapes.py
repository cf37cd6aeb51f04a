"""What a question asks for, what a paper is called, what the abstracts must state, and how an answer is laid
out: pure functions on small inputs (no model, no index)."""

from __future__ import annotations

import pytest

from rag.answer.compose import Point, extractive_text, not_covered_text, plan_answer, strip_markers
from rag.answer.names import PaperName, paper_name
from rag.answer.question import Shape, question_shape
from rag.types import Source


@pytest.mark.parametrize(
    ("question", "shape"),
    [
        ("Is there work that drops all visual tokens partway through an MLLM?", Shape.EXISTS),
        ("has anyone added modality-aware sparsity to state-space models?", Shape.EXISTS),
        ("Which papers reduce visual tokens to speed up MLLM inference?", Shape.LIST),
        ("compare Symile and GRAM: how do they go beyond pairwise alignment?", Shape.LIST),
        ("papers on web-browsing agents?", Shape.LIST),
        ("any work on pruning visual tokens layer by layer?", Shape.LIST),  # a topic: the works on it
        ("what work evaluates whether MLLMs see tiny details?", Shape.LIST),
        ("Is there any work that drops all visual tokens after one layer?", Shape.EXISTS),  # one paper described
        ("How many languages does the mOSCAR corpus cover?", Shape.NUMBER),
        ("what's the object hallucination drop for rlaif-v 7b?", Shape.NUMBER),
        ("Which method speeds up multimodal LLM inference by merging and pruning tokens?", Shape.WHICH),
        ("who made a test set of webpages with planted errors?", Shape.WHICH),
        ("How does the model fuse the two modalities?", Shape.DESCRIBE),
    ],
)
def test_question_shapes(question, shape):
    assert question_shape(question) is shape


DYVTE_ABSTRACT = (
    "The excessive use of visual tokens in existing MLLMs brings in expensive computation. Based on these "
    "observations, we propose a simple yet effective method to improve the efficiency of MLLMs, termed dynamic "
    "visual-token exit (DyVTE). DyVTE uses lightweight hyper-networks to decide the removal of all visual tokens."
)


DYVTE_LONG = "dynamic visual-token exit"


def _common(words: str) -> bool:
    return words.lower().rstrip("s") in {"mllm", "llm", "clip", "vlm"}


@pytest.mark.parametrize(
    ("title", "abstract", "expected"),
    [
        (
            "Accelerating MLLMs via Dynamic Visual-Token Exit",
            DYVTE_ABSTRACT,
            PaperName("DyVTE", "dynamic visual-token exit"),
        ),
        ("RLAIF-V: Aligning MLLMs through Open-Source AI Feedback", "We introduce RLAIF-V.", PaperName("RLAIF-V")),
        (
            "Align Anything: Training All-Modality Models",
            "It aligns 200k preference pairs.",
            PaperName("Align Anything"),
        ),
        ("Cross the Gap: Exposing the Intra-modal Misalignment", "We study CLIP.", None),
        (
            "Improving MLLMs through Boosting Vision Capabilities",
            "We propose Arcana, a multiModal language model. It has 200k pairs.",
            PaperName("Arcana"),
        ),
        (
            "Aligning Large Multimodal Models with Factually Augmented RLHF",
            "We propose a new alignment algorithm called Factually Augmented RLHF that augments the reward model.",
            PaperName("Factually Augmented RLHF"),
        ),
        (
            "Mitigating Object Hallucinations via Sentence-Level Early Intervention",
            "To address this, we propose **SENTINEL** (**S**entence-level **E**arly i**N**tervention), a framework.",
            PaperName("SENTINEL", "Sentence-level Early iNtervention"),
        ),
        ("A Survey of Multimodal LLMs", "Multimodal large language models (MLLMs) are popular. We review them.", None),
        ("Scaling Laws for Vision", "We train 7B models on 1.2B images and report 200k results.", None),
    ],
)
def test_paper_names(title, abstract, expected):
    assert paper_name(title, abstract, _common) == expected


def _point(n: int, name: PaperName | None, sentence: str) -> Point:
    return Point(Source(n, f"p{n}", f"Title {n}", 0.5, [sentence]), name, sentence)


def test_plans_lead_with_the_name_and_cite_each_paper_once():
    dyvte = _point(1, PaperName("DyVTE", "dynamic visual-token exit"), "DyVTE removes all visual tokens.")
    text = extractive_text(plan_answer(Shape.EXISTS, [dyvte]))
    assert text == "Yes — **DyVTE** (dynamic visual-token exit): DyVTE removes all visual tokens [1]."
    untitled = _point(2, None, "It packs tokens.")
    listed = extractive_text(plan_answer(Shape.LIST, [dyvte, untitled]))
    assert listed.splitlines() == [
        "Two indexed papers are relevant:",
        "- **DyVTE** (dynamic visual-token exit) — DyVTE removes all visual tokens [1].",
        "- *Title 2* — It packs tokens [2].",
    ]
    assert extractive_text(plan_answer(Shape.NUMBER, [])) == ""


def test_refusal_names_what_is_missing_and_cites_nothing():
    text = not_covered_text("sheet music", [(PaperName("M2UGen"), "M2UGen: ..."), (None, "Some Title")])
    assert text.startswith("The indexed abstracts do not cover this.")
    assert "**sheet music**" in text and "**M2UGen**" in text and "*Some Title*" in text
    assert "[" not in text
    assert strip_markers("It works [1][2, 3] well [4].") == "It works well."


def test_a_question_names_a_paper_by_its_short_name_in_any_case():
    from rag.answer.names import mentions_name

    assert mentions_name("How many GPU hours did it take to train Ola?", PaperName("Ola"))
    assert mentions_name("what's the hallucination drop for rlaif-v 7b?", PaperName("RLAIF-V"))
    assert not mentions_name("what's the drop for RLAIF-V-2?", PaperName("RLAIF-V"))  # another name
    assert not mentions_name("Is there a solar-powered drone?", PaperName("Solar"[:2]))  # too short to tell
    assert not mentions_name("any paper at all?", None)
