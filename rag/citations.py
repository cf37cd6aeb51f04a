"""Citation parsing and verification: the system, not the model, answers for every `[n]`.

Pure functions over text and similarity scores, so they are easy to test with small inputs:
- `parse_answer` splits an answer into sentences and the markers each carries;
- `verify_sentences` checks each sentence against the evidence of the sources it cites, moves a
  citation to the source that does support the sentence when the model picked the wrong number,
  and flags what no source supports;
- `render_answer` writes the answer back with the checked markers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.chunking import split_sentences
from rag.evidence import content_words, lexical_overlap
from rag.types import AnswerSentence, Source

# [1]  [1, 2]  [1;2]  [1-3]  [1–3]  also "[Source 1]" / "[Paper 2]" that small models like to write
_MARKER = re.compile(r"\s*\[(?:(?:source|paper|excerpt|ref)\s*)?(\d+(?:\s*(?:[,;]|[-–]|,?\s*and)\s*\d+)*)\]", re.I)
MAX_RANGE = 20


def marker_numbers(inner: str) -> list[int]:
    """'1, 3-4' -> [1, 3, 4]; ranges longer than MAX_RANGE are read as their two ends."""
    numbers: list[int] = []
    for part in re.split(r"\s*(?:[,;]|,?\s*and)\s*", inner.strip()):
        if not part:
            continue
        bounds = re.split(r"\s*[-–]\s*", part)
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
            lo, hi = int(bounds[0]), int(bounds[1])
            span = range(lo, hi + 1) if 0 <= hi - lo <= MAX_RANGE else (lo, hi)
            numbers.extend(span)
        elif part.isdigit():
            numbers.append(int(part))
    return list(dict.fromkeys(numbers))


@dataclass(frozen=True)
class ParsedSentence:
    text: str  # the sentence without markers
    cited: list[int]  # numbers in order of appearance, once each


def strip_echoed_titles(answer: str, titles: Sequence[str]) -> str:
    """Drop evidence-line prefixes a small model copies into its answer: "[1] Title — We show ..." -> "We show ..."."""
    for title in sorted(set(titles), key=len, reverse=True):
        if title.strip():
            answer = re.sub(rf"(\[\d+\]\s*)?{re.escape(title.strip())}\s*[—–:-]\s+", "", answer)
    return answer


def parse_answer(answer: str) -> list[ParsedSentence]:
    """Sentences with their markers; a marker standing alone after a sentence's full stop joins that sentence."""
    sentences: list[ParsedSentence] = []
    for raw in split_sentences(" ".join(answer.split())):
        cited = [n for m in _MARKER.finditer(raw) for n in marker_numbers(m.group(1))]
        text = _MARKER.sub("", raw).strip()
        text = re.sub(r"\s+([.,;:!?])", r"\1", text)
        if not re.search(r"[A-Za-z0-9]", text):
            if sentences and cited:  # "... sentence. [2]" -> the marker belongs to the previous sentence
                last = sentences[-1]
                sentences[-1] = ParsedSentence(last.text, list(dict.fromkeys(last.cited + cited)))
            continue
        sentences.append(ParsedSentence(text, list(dict.fromkeys(cited))))
    return sentences


@dataclass(frozen=True)
class Verification:
    sentences: list[AnswerSentence]
    removed: list[int]  # markers that named no given source
    moved: list[tuple[int, int]]  # (cited, corrected) when another source supports the sentence instead
    added: list[int]  # citations attached to sentences the model left uncited

    @property
    def grounded(self) -> float:
        if not self.sentences:
            return 0.0
        return sum(s.supported for s in self.sentences) / len(self.sentences)


SupportFn = Callable[[Sequence[str], Sequence[Source]], list[list[float]]]
"""support[i][j]: how well source j's evidence supports answer sentence i (0..1)."""


def verify_sentences(
    parsed: Sequence[ParsedSentence], sources: Sequence[Source], support: SupportFn, threshold: float
) -> Verification:
    valid = {s.n: j for j, s in enumerate(sources)}
    removed = sorted({n for p in parsed for n in p.cited if n not in valid})
    scores = support([p.text for p in parsed], sources) if parsed and sources else [[] for _ in parsed]
    checked: list[AnswerSentence] = []
    moved: list[tuple[int, int]] = []
    added: list[int] = []
    for p, row in zip(parsed, scores, strict=True):
        cited = [n for n in p.cited if n in valid]
        best_j = max(range(len(row)), key=row.__getitem__) if row else None
        best_any = row[best_j] if best_j is not None else 0.0
        cited_support = max((row[valid[n]] for n in cited), default=0.0)
        if cited and cited_support >= threshold:
            keep = [n for n in cited if row[valid[n]] >= threshold]
            checked.append(AnswerSentence(p.text, keep, True, round(cited_support, 3)))
        elif best_j is not None and best_any >= threshold:
            fixed = sources[best_j].n
            if cited:
                moved.extend((n, fixed) for n in cited)
            else:
                added.append(fixed)
            checked.append(AnswerSentence(p.text, [fixed], True, round(best_any, 3)))
        else:
            checked.append(AnswerSentence(p.text, cited, False, round(cited_support, 3)))
    return Verification(checked, removed, moved, added)


def render_answer(sentences: Sequence[AnswerSentence]) -> str:
    parts = []
    for s in sentences:
        text = s.text.rstrip()
        end = text[-1] if text and text[-1] in ".!?" else "."
        body = text[:-1] if text and text[-1] in ".!?" else text
        marks = "".join(f"[{n}]" for n in s.cited)
        parts.append(f"{body} {marks}{end}" if marks else f"{body}{end}")
    return " ".join(parts)


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
