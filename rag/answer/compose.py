"""Answer composition: the shape of an answer, the same in generated and extractive mode.

The system, not the model, decides what an answer leads with: the named paper for "is there work
that ...", one line per paper for "which papers ...", the figure for "how many ...". An answer is
planned as fixed text (names, list bullets, citation markers) around *slots*, one per paper: the
statement about that paper. The extractive mode fills each slot with the paper's evidence sentence
that best matches the question; the generated mode lets the model write it, checks it against that
paper's evidence alone, and keeps the evidence sentence where the model's words are not supported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.answer.evidence import is_background
from rag.answer.names import PaperName
from rag.answer.question import Shape
from rag.chunking import split_sentences
from rag.prompts import NOT_COVERED
from rag.types import Source


@dataclass(frozen=True)
class Point:
    """One paper in an answer: its numbered evidence, its name, and the sentence that states what was asked."""

    source: Source
    name: PaperName | None
    sentence: str

    @property
    def n(self) -> int:
        return self.source.n

    def label(self) -> str:
        """How the answer names the paper: '**DyVTE** (dynamic visual-token exit)', or its title in italics."""
        if self.name is None:
            return f"*{self.source.title}*"
        long = self.name.long
        if long and long.lower() != self.name.short.lower() and len(long) <= 80:
            return f"**{self.name.short}** ({long})"
        return f"**{self.name.short}**"


@dataclass(frozen=True)
class Slot:
    """Text the system writes (`lead`), then one statement about source `n` (model-written or `fallback`)."""

    n: int
    lead: str
    fallback: str


@dataclass(frozen=True)
class Plan:
    intro: str  # before the first slot, e.g. "Several indexed papers do:"
    slots: list[Slot]


def _sentence(text: str) -> str:
    text = " ".join(text.split()).strip()
    return text.rstrip(".").rstrip()


def plan_answer(shape: Shape, points: Sequence[Point]) -> Plan:
    """The fixed text and the slots of an answer; `points` are the answering papers, best first."""
    if not points:
        return Plan("", [])
    first, *others = points
    if shape is Shape.LIST and len(points) > 1:
        intro = f"{_count_word(len(points))} indexed papers are relevant:"
        return Plan(intro, [Slot(p.n, f"\n- {p.label()} — ", p.sentence) for p in points])
    opening = "Yes — " if shape is Shape.EXISTS else ""
    slots = [Slot(first.n, f"{opening}{first.label()}: ", first.sentence)]
    for other in others:
        slots.append(Slot(other.n, f"\nRelated: {other.label()}: ", other.sentence))
    return Plan("", slots)


def slot_text(slot: Slot, statement: str) -> str:
    """A slot as it reads in the answer: the lead, the statement and its one citation marker."""
    return f"{slot.lead}{_sentence(statement)} [{slot.n}]."


def render_plan(plan: Plan, statements: Sequence[str]) -> str:
    return (plan.intro + "".join(slot_text(s, t) for s, t in zip(plan.slots, statements, strict=True))).strip()


def extractive_text(plan: Plan) -> str:
    return render_plan(plan, [slot.fallback for slot in plan.slots])


def _count_word(n: int) -> str:
    words = {2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six", 7: "Seven", 8: "Eight"}
    return words.get(n, str(n))


def not_covered_text(missing: str, nearest: Sequence[tuple[PaperName | None, str]]) -> str:
    """A refusal that says what is missing, in the question's own words, and names the nearest papers (not
    cited: they do not answer)."""
    parts = [NOT_COVERED]
    if missing:
        parts.append(f"None of the nearest abstracts states **{missing}**.")
    labels = [f"**{name.short}**" if name else f"*{title}*" for name, title in nearest[:3]]
    if labels:
        parts.append("The nearest indexed papers: " + "; ".join(labels) + ".")
    return " ".join(parts)


def no_figure_text(name: PaperName | None, title: str) -> str:
    """A number question whose closest paper states no figure: partial coverage, said plainly."""
    label = f"**{name.short}**" if name else f"*{title}*"
    return f"{NOT_COVERED} The closest paper is {label}, but its abstract states no figure for this."


_MARKERS = re.compile(r"\s*\[(?:\d+(?:\s*[,;–-]\s*\d+)*)\]")


def strip_markers(text: str) -> str:
    return _MARKERS.sub("", text)


def statement_sentences(text: str, title: str, max_sentences: int = 2) -> list[str]:
    """The sentences worth keeping of what a model wrote about one paper.

    Small models copy the evidence line's layout ("Title — Background sentence. Our method ..."), run
    out of tokens mid-sentence, or restate the field before the paper: the echoed title, a sentence
    cut short and background sentences (when something else remains) are dropped.
    """
    text = strip_markers(text.split("\n")[0]).strip().lstrip(":—–- ").strip()
    words = title.split()
    for start in range(len(words)):  # "AIM: Adaptive Inference ... Pruning — ..." after the lead "**AIM**: "
        tail = " ".join(words[start:])
        if len(tail) >= 12 and text.lower().startswith(tail.lower()):
            text = text[len(tail) :].lstrip(" :—–-").strip()
            break
    sentences = [s.strip() for s in split_sentences(text) if re.search(r"[A-Za-z0-9]", s)]
    if sentences and not re.search(r"[.!?)\]\"']$", text):
        sentences = sentences[:-1]  # cut off by the token limit
    own = [s for s in sentences if not is_background(s)]
    return (own or sentences)[:max_sentences]
