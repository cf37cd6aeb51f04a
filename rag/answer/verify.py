"""Verification: the system, not the model, answers for every `[n]`.

An answer cites each paper once, after the statement written about it (rag.answer.compose), so a check
is one question: does this paper's evidence support this statement? `EvidenceSupport` scores a
statement's sentences against a source's evidence sentences (MiniLM similarity, word coverage) and
gives zero to what the evidence never states: a number, a name, a negation, or too little to claim
anything. The pure helpers below are those tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from rag.answer.evidence import content_words, lexical_overlap
from rag.types import Source

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?:\s?%|[kKmMbBxX×](?![a-zA-Z]))?")


def unsupported_numbers(sentence: str, evidence: str) -> bool:
    """A number in the sentence that the evidence never states: the classic small-model invention."""
    stated = {_plain_number(n) for n in _NUMBER.findall(evidence)}
    return any(_plain_number(n) not in stated for n in _NUMBER.findall(sentence) if not re.fullmatch(r"[1-9]", n))


# Names papers give their things: MINIMA, CoLVA, GPT-4o, RLAIF-V, Met^2Net, SEED-Bench-2 ...
_NAME = re.compile(r"\b(?=[A-Za-z0-9^\-]*[A-Z][A-Za-z0-9^\-]*[A-Z0-9])[A-Za-z][A-Za-z0-9^\-]+\b")


def unknown_names(sentence: str, evidence: str) -> list[str]:
    """Names (tokens with inner capitals or digits, e.g. 'CoLVA', 'GPT-4o') that the evidence never mentions:
    a small model pinning the right number on the wrong method."""
    lowered = evidence.lower()
    return [name for name in _NAME.findall(sentence) if name.lower() not in lowered]


_NEGATION = re.compile(r"\b(no|not|never|none|neither|nor|cannot)\b|n't\b", re.I)


def negation_mismatch(sentence: str, evidence: str) -> bool:
    """The sentence negates ("No work drops ...") where the evidence it rests on states no negation:
    a small model's way of contradicting its own source while reusing its words."""
    return bool(_NEGATION.search(sentence)) and not _NEGATION.search(evidence)


def _plain_number(text: str) -> str:
    return text.replace(" ", "").replace(",", "").lower().replace("×", "x")


class EvidenceSupport:
    """How well each source's evidence supports each answer sentence: the best of embedding similarity
    to one evidence sentence and lexical coverage of the sentence's words, zeroed when the sentence
    states a number or a name the source never does, negates what its closest evidence sentence
    states, or is too short to claim anything."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray]) -> None:
        self._embed = embed
        self._best: dict[tuple[int, int], str] = {}

    def __call__(self, sentences: Sequence[str], sources: Sequence[Source]) -> list[list[float]]:
        evidence = [(j, text) for j, source in enumerate(sources) for text in source.sentences]
        vectors = self._embed(list(sentences) + [text for _, text in evidence])
        answer_vectors, evidence_vectors = vectors[: len(sentences)], vectors[len(sentences) :]
        similarity = answer_vectors @ evidence_vectors.T if len(evidence) else np.zeros((len(sentences), 0))
        scores: list[list[float]] = []
        for i, sentence in enumerate(sentences):
            row = []
            for j, source in enumerate(sources):
                columns = [c for c, (owner, _) in enumerate(evidence) if owner == j]
                best_c = max(columns, key=lambda c: similarity[i, c])
                self._best[(i, j)] = evidence[best_c][1]
                dense = float(similarity[i, best_c])
                lexical = lexical_overlap(sentence, source.passage)
                invented = unsupported_numbers(sentence, source.passage)
                contradicts = negation_mismatch(sentence, evidence[best_c][1])
                invented = invented or bool(unknown_names(sentence, f"{source.title} {source.passage}"))
                too_short = len(content_words(sentence)) < 2
                score = 0.0 if invented or contradicts or too_short else max(dense, lexical)
                row.append(score)
            scores.append(row)
        return scores

    def best_sentence(self, i: int, j: int) -> str:
        return self._best.get((i, j), "")
