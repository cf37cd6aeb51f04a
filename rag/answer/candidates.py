"""Reading the retrieved papers for an answer: which of them answer, and the evidence each gives.

Retrieval ranks papers by similarity; an answer needs the papers that *answer*. Every considered paper
is read whole (all its abstract sentences scored against the question), ranked by an answer score,
narrowed to the papers the question names (rag.answer.judge then decides which of them answer),
and the chosen ones get their evidence packed, each keeping the sentence its statement quotes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from rag.answer.evidence import (
    ScoredSentence,
    lexical_overlap,
    pack_evidence,
    paper_answer_score,
    score_sentences,
    statement_sentences,
)
from rag.answer.names import PaperName, mentions_name, paper_name
from rag.answer.question import Shape, Term
from rag.chunking import abstract_sentences
from rag.config import AnswerSettings
from rag.lexical import KeywordIndex
from rag.types import PaperHit, Source


@dataclass(frozen=True)
class Features:
    """What the judge reads of one candidate for one question (all 0..1 except `similarity`)."""

    coverage: float  # share of the question's weight (known terms) the candidate states
    rarest_missing: float  # weight of the rarest known term it lacks (0: lacks none)
    unseen: float  # share of the question's terms the collection never uses and the candidate lacks
    similarity: float  # the retriever's best chunk similarity
    sentence: float  # its best sentence's score for the question
    answer_score: float  # fusion rank + word coverage + best sentence (rag.answer.evidence.paper_answer_score)
    missing: tuple[Term, ...] = field(default=(), compare=False)

    def vector(self) -> list[float]:
        return [self.coverage, self.rarest_missing, self.unseen, self.similarity, self.sentence, self.answer_score]


@dataclass
class Candidate:
    """One retrieved paper, read for answering: its sentences scored against the question."""

    hit: PaperHit
    sentences: list[ScoredSentence]
    score: float  # paper_answer_score
    name: PaperName | None
    text: str  # title + abstract
    features: Features | None = None  # what the judge read (computed by rag.answer.judge)
    probability: float = 0.0  # the judge's probability that this paper answers the question


def read_candidates(
    standalone: str,
    question: str,
    question_vector: np.ndarray,
    considered: Sequence[PaperHit],
    passages: Mapping[str, list[str]],
    *,
    embed: Callable[[Sequence[str]], np.ndarray],
    keywords: KeywordIndex,
    weights: tuple[float, float],
) -> list[Candidate]:
    """The considered papers with their sentences scored, best answer first."""
    sentences = [abstract_sentences(passages.get(h.paper_id, [h.passage])) for h in considered]
    # Evidence is scored against the question as asked: for a follow-up ("its accuracy?") the new
    # part is what the sentences must match; the earlier turn already chose the papers.
    scored = score_sentences(question, question_vector, sentences, embed)
    by_paper: dict[int, list[ScoredSentence]] = {}
    for sentence in scored:
        by_paper.setdefault(sentence.paper_index, []).append(sentence)
    common_at = max(5, int(0.02 * max(1, len(keywords))))

    def common(words: str) -> bool:
        return keywords.document_frequency(words) > common_at

    candidates = []
    for index, hit in enumerate(considered):
        text = f"{hit.title} {' '.join(sentences[index])}"
        own = by_paper.get(index, [])
        best = max((s.score for s in own), default=0.0)
        score = paper_answer_score(hit.fused, lexical_overlap(standalone, text), best, weights)
        name = paper_name(hit.title, " ".join(sentences[index]), common)
        candidates.append(Candidate(hit, own, score, name, text))
    return sorted(candidates, key=lambda c: c.score, reverse=True)


def about_named_papers(question: str, shape: Shape, candidates: list[Candidate]) -> list[Candidate]:
    """A question that names papers ("... to train Ola?", "compare Symile and GRAM") is about them, or,
    asking for one paper, about a paper that mentions them ("... by distilling from LanguageBind")."""
    named = [c for c in candidates if mentions_name(question, c.name)]
    if shape is Shape.LIST:
        return named if len(named) >= 2 else candidates
    if not named:
        return candidates
    return [c for c in candidates if any(mentions_name(c.text, n.name) for n in named)]


def choose_papers(shape: Shape, answering: list[Candidate], settings: AnswerSettings) -> list[Candidate]:
    """The papers an answer rests on: the best, or for a list every paper the judge finds likely enough."""
    best = answering[0]
    if shape is Shape.LIST:
        return [c for c in answering if c.probability >= settings.list_threshold][: settings.list_papers] or [best]
    return [best]


def evidence_of(
    chosen: Sequence[Candidate],
    wants_number: bool,
    quantity: str,
    settings: AnswerSettings,
    count_tokens: Callable[[str], int],
    sentences: int = 1,
) -> tuple[list[Source], list[str]]:
    """The chosen papers' evidence, numbered in answer order, and each paper's statement: the sentence that
    best states what was asked, which its evidence keeps."""
    hits = [c.hit for c in chosen]
    scored = [replace(s, paper_index=i) for i, c in enumerate(chosen) for s in c.sentences]
    sources = pack_evidence(
        hits,
        scored,
        budget_tokens=settings.evidence_tokens,
        per_paper=settings.sentences_per_paper,
        top_paper=settings.top_paper_sentences,
        count_tokens=count_tokens,
    )
    by_paper = {s.paper_id: s for s in sources}
    out, statements = [], []
    for n, candidate in enumerate(chosen, start=1):
        picked = statement_sentences(candidate.sentences, wants_number, quantity, sentences)
        statement = " ".join(picked)
        hit = candidate.hit
        source = by_paper.get(hit.paper_id) or Source(
            0, hit.paper_id, hit.title, hit.score, [], hit.url, list(hit.sources)
        )
        kept = [*source.sentences, *(t for t in picked if t not in source.sentences)]
        order = {s.text: s.position for s in candidate.sentences}
        out.append(replace(source, n=n, sentences=sorted(kept, key=lambda t: order.get(t, 0))))
        statements.append(statement)
    return out, statements
