"""Checking statements against evidence: pure helpers on small texts."""

from __future__ import annotations

from rag.answer.compose import statement_sentences


def test_negation_mismatch():
    from rag.answer.verify import negation_mismatch

    assert negation_mismatch("No work drops all visual tokens [1].", "DyVTE removes all visual tokens after a layer.")
    assert not negation_mismatch("Visual tokens are not needed late [1].", "Visual tokens do not contribute late.")
    assert not negation_mismatch("DyVTE drops visual tokens [1].", "DyVTE removes visual tokens.")


def test_names_must_come_from_the_evidence():
    from rag.answer.verify import unknown_names

    evidence = "Are They the Same? CoLVA achieves 51.06% overall accuracy (OA) on the MMVM benchmark, beating GPT-4o."
    assert unknown_names("The MINIMA model reaches 51.06% on MMVM [1].", evidence) == ["MINIMA"]
    assert unknown_names("CoLVA reaches 51.06% on the MMVM benchmark, beating GPT-4o [1].", evidence) == []
    assert unknown_names("Multimodal LLMs (MLLMs) struggle.", "existing MLLMs struggle") == []


def test_statement_sentences_drop_an_echoed_title_a_cut_off_sentence_and_background():
    title = "AIM: Adaptive Inference of Multi-Modal LLMs via Token Merging and Pruning"
    written = (
        "Adaptive Inference of Multi-Modal LLMs via Token Merging and Pruning — Large language models have "
        "enabled multi-modal LLMs. In this work, we propose a training-free adaptive inference method [1]. It "
        "merges tokens before the LLM and prunes"
    )
    assert statement_sentences(written, title) == [
        "In this work, we propose a training-free adaptive inference method."
    ]
    assert statement_sentences("163 languages [1].\n- **Next** — more", "mOSCAR: A Corpus") == ["163 languages."]
    assert statement_sentences("The Zebra stripes paper reports 93.4% precision.", "Zebra stripes") == [
        "The Zebra stripes paper reports 93.4% precision."
    ]  # a title mentioned inside a sentence is kept
    assert statement_sentences("and then the", "T") == []
