"""Answering stage: question (+ chat history) -> a short answer whose every `[n]` is checked.

The chain: condense a follow-up into a standalone question -> retrieve papers -> refuse if the
evidence is weak -> select a few evidence sentences, numbered by paper -> generate (streamed) ->
parse the markers -> verify each sentence against the passages it cites -> fall back to the
extractive answer when the generated one cannot be verified or the model fails.

    from rag.answering import Assistant
    assistant = Assistant.from_config()
    answer = assistant.ask("Is there work that drops visual tokens partway through an MLLM?")
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.chunking import tiktoken_counter
from rag.citations import parse_answer, render_answer, verify_sentences
from rag.config import Settings
from rag.evidence import abstract_sentences, extractive_answer, lexical_overlap, pack_evidence, score_sentences
from rag.library import Library
from rag.llm import ChatModel, LLMError, load_chat_model
from rag.prompts import DECLINE_PHRASES, NOT_COVERED, answer_messages, condense_messages
from rag.retrieval import check_question
from rag.types import Answer, AnswerSentence, Citation, PaperHit, Source, Turn

HistoryItem = Turn | Answer | tuple[str, str] | Mapping[str, Any]

_FOLLOW_UP = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|this|that|these|those|he|she|his|her|"
    r"the (paper|papers|model|models|method|approach|benchmark|dataset|authors|work|study|system|framework))\b"
    r"|^(and|also|what about|how about)\b",
    re.I,
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def is_follow_up(question: str) -> bool:
    """Whether a question leans on the previous turn ('its model', 'that paper', 'what about ...')."""
    return bool(_FOLLOW_UP.search(question))


def to_turns(history: Sequence[HistoryItem]) -> list[Turn]:
    turns = []
    for item in history:
        if isinstance(item, Turn):
            turns.append(item)
        elif isinstance(item, Answer):
            turns.append(item.as_turn())
        elif isinstance(item, Mapping):
            turns.append(Turn(str(item.get("question", "")), str(item.get("answer", ""))))
        else:
            question, answer = item
            turns.append(Turn(str(question), str(answer)))
    return turns


def concat_standalone(question: str, previous: Turn) -> str:
    earlier = previous.standalone_question or previous.question
    return f"{question} (follow-up to: {earlier})"


def unsupported_numbers(sentence: str, evidence: str) -> bool:
    """A number in the sentence that the evidence never states: the classic small-model invention."""
    stated = set(_NUMBER.findall(evidence))
    return any(n not in stated for n in _NUMBER.findall(sentence) if not re.fullmatch(r"[1-9]", n))


def declined(text: str) -> bool:
    lowered = text.lower()
    return NOT_COVERED.lower().rstrip(".") in lowered or any(p in lowered for p in DECLINE_PHRASES)


@dataclass
class _Prepared:
    """What every answer mode shares: the question, the retrieved papers and the evidence."""

    question: str
    standalone: str
    hits: list[PaperHit]
    sources: list[Source]
    ranked_evidence: list[tuple[int, str, float]]  # (source n, sentence, score), best first
    started: float
    retrieve_ms: float


class Assistant:
    """Cited answers over a `Library`. One instance keeps the models loaded between questions."""

    def __init__(self, library: Library, chat_model: ChatModel | None = None) -> None:
        self.library = library
        self.settings: Settings = library.settings
        self.chat_model = chat_model
        self._count_tokens = tiktoken_counter()

    @classmethod
    def from_config(
        cls, profile: str | None = None, overrides: Mapping[str, Any] | None = None, library: Library | None = None
    ) -> Assistant:
        library = library or Library.from_config(profile, overrides=overrides)
        chat_model = None
        if library.settings.answer.mode == "generate":
            chat_model = load_chat_model(library.settings.llm)
        return cls(library, chat_model)

    @property
    def model_name(self) -> str:
        if self.settings.answer.mode == "extractive" or self.chat_model is None:
            return "extractive"
        return self.chat_model.name

    def ask(self, question: str, history: Sequence[HistoryItem] = ()) -> Answer:
        final = None
        for item in self.stream(question, history):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        return final

    def stream(self, question: str, history: Sequence[HistoryItem] = ()) -> Iterator[str | Answer]:
        """Yield the answer's text as it is generated, then the checked `Answer`.

        The final `Answer.answer` can differ from the streamed text: markers are corrected, and an
        answer that fails verification is replaced by the extractive one. Show the final text.
        """
        prepared = self._prepare(question, to_turns(history))
        if prepared.hits and prepared.hits[0].score >= self.settings.answer.min_score and prepared.sources:
            if self.chat_model is None or self.settings.answer.mode == "extractive":
                answer = self._extractive(prepared, mode="extractive")
                yield answer.answer
                yield answer
                return
            yield from self._generate(prepared)
            return
        answer = self._refusal(prepared, "retrieval: best paper scored below answer.min_score")
        yield answer.answer
        yield answer

    # --- stages ------------------------------------------------------------------------------------

    def _prepare(self, question: str, turns: list[Turn]) -> _Prepared:
        started = time.perf_counter()
        question = check_question(question)
        turns = turns[-self.settings.answer.history_turns :] if self.settings.answer.history_turns else []
        follow_up = bool(turns) and is_follow_up(question)
        standalone = self._condense(question, turns) if follow_up else question
        retriever = self.library.retriever()
        vectors = self.library.embedder.embed([standalone, question] if standalone != question else [question])
        k = max(self.settings.retrieval.k, self.settings.answer.papers)
        hits = retriever.search_vector(vectors[0], k=k)
        if follow_up and turns[-1].paper_ids:
            earlier = list(dict.fromkeys(turns[-1].paper_ids))
            kept = retriever.search_vector(vectors[0], k=len(earlier), where={"paper_id": {"$in": earlier}})
            hits = kept + [h for h in hits if h.paper_id not in earlier]
        top = hits[: self.settings.answer.papers]
        passages = self.library.store().passages_of([h.paper_id for h in top])
        sentences = [abstract_sentences(passages.get(h.paper_id, [h.passage])) for h in top]
        # Evidence is scored against the question as asked: for a follow-up ("its accuracy?") the
        # new part is what the sentences must match; the earlier turn already chose the papers.
        scored = score_sentences(
            question, vectors[-1], sentences, self.library.embedder.embed, [h.score for h in top]
        )
        sources = pack_evidence(
            top,
            scored,
            budget_tokens=self.settings.answer.evidence_tokens,
            per_paper=self.settings.answer.sentences_per_paper,
            count_tokens=self._count_tokens,
        )
        n_by_paper = {s.paper_id: s.n for s in sources}
        chosen = {(s.paper_id, text) for s in sources for text in s.sentences}
        ranked = sorted(
            (
                (n_by_paper[top[s.paper_index].paper_id], s.text, s.score)
                for s in scored
                if (top[s.paper_index].paper_id, s.text) in chosen
            ),
            key=lambda item: item[2],
            reverse=True,
        )
        retrieve_ms = (time.perf_counter() - started) * 1000
        return _Prepared(question, standalone, hits, sources, ranked, started, retrieve_ms)

    def _condense(self, question: str, turns: list[Turn]) -> str:
        if self.settings.answer.condense == "llm" and self.chat_model is not None:
            try:
                text = "".join(
                    self.chat_model.stream(condense_messages(turns, question), max_tokens=60, temperature=0.0)
                )
            except LLMError:
                text = ""
            rewritten = " ".join(text.strip().splitlines()[:1]).strip().strip('"')
            if 8 <= len(rewritten) <= 300:
                return rewritten
        return concat_standalone(question, turns[-1])

    def _generate(self, prepared: _Prepared) -> Iterator[str | Answer]:
        assert self.chat_model is not None
        llm = self.settings.llm
        messages = answer_messages(prepared.standalone, prepared.sources)
        pieces: list[str] = []
        first_token_ms = None
        try:
            for piece in self.chat_model.stream(messages, max_tokens=llm.max_tokens, temperature=llm.temperature):
                if first_token_ms is None:
                    first_token_ms = self._elapsed(prepared)
                pieces.append(piece)
                yield piece
        except LLMError as exc:
            answer = self._extractive(prepared, mode="fallback", note="the model failed; showing the extractive answer")
            answer.error = str(exc)
            yield answer
            return
        text = "".join(pieces).strip()
        answer = self._check(prepared, text, first_token_ms or self._elapsed(prepared))
        yield answer

    def _check(self, prepared: _Prepared, text: str, first_token_ms: float) -> Answer:
        parsed = parse_answer(text)
        support = _EvidenceSupport(self.library.embedder.embed)
        verification = verify_sentences(parsed, prepared.sources, support, self.settings.answer.support_threshold)
        supported = [s for s in verification.sentences if s.supported]
        if declined(text) and not supported:
            return self._refusal(prepared, "the model found no answer in the evidence", first_token_ms)
        notes = []
        if verification.removed:
            notes.append(f"removed citation markers naming no source: {verification.removed}")
        if verification.moved:
            moves = ", ".join(f"[{a}]->[{b}]" for a, b in verification.moved)
            notes.append(f"corrected citations (cited -> supporting): {moves}")
        if verification.added:
            notes.append(f"added citations to uncited but supported sentences: {verification.added}")
        if not supported or verification.grounded < self.settings.answer.min_grounded:
            reason = f"generated answer failed verification (grounded {verification.grounded:.2f}): {text[:200]!r}"
            return self._extractive(prepared, mode="fallback", note=reason, first_token_ms=first_token_ms)
        citations = self._citations(verification.sentences, prepared.sources, support)
        return Answer(
            question=prepared.question,
            standalone_question=prepared.standalone,
            answer=render_answer(verification.sentences),
            refused=False,
            grounded=verification.grounded,
            citations=citations,
            sources=prepared.hits,
            model=self.model_name,
            timings=self._timings(prepared, first_token_ms),
            mode="generate",
            sentences=verification.sentences,
            notes=notes,
            evidence=prepared.sources,
        )

    def _extractive(
        self, prepared: _Prepared, *, mode: str, note: str | None = None, first_token_ms: float | None = None
    ) -> Answer:
        text = extractive_answer(prepared.sources, prepared.ranked_evidence, self.settings.answer.extractive_sentences)
        by_n = {s.n: s for s in prepared.sources}
        sentences = [
            AnswerSentence(sentence.text, sentence.cited, True, 1.0) for sentence in parse_answer(text)
        ]
        citations: dict[int, Citation] = {}
        for n, sentence, _ in prepared.ranked_evidence:
            if any(n in s.cited for s in sentences) and n not in citations:
                source = by_n[n]
                citations[n] = Citation(n, source.paper_id, source.title, source.url, sentence, True)
        return Answer(
            question=prepared.question,
            standalone_question=prepared.standalone,
            answer=text,
            refused=False,
            grounded=1.0 if sentences else 0.0,
            citations=sorted(citations.values(), key=lambda c: c.n),
            sources=prepared.hits,
            model="extractive" if mode == "extractive" else f"{self.model_name} -> extractive",
            timings=self._timings(prepared, first_token_ms),
            mode=mode,
            sentences=sentences,
            notes=[note] if note else [],
            evidence=prepared.sources,
        )

    def _refusal(self, prepared: _Prepared, reason: str, first_token_ms: float | None = None) -> Answer:
        text = f"{NOT_COVERED} The nearest indexed papers are listed below; none of them answers this."
        if not prepared.hits:
            text = f"{NOT_COVERED} The index returned no papers."
        return Answer(
            question=prepared.question,
            standalone_question=prepared.standalone,
            answer=text,
            refused=True,
            grounded=0.0,
            citations=[],
            sources=prepared.hits,
            model=self.model_name,
            timings=self._timings(prepared, first_token_ms),
            mode="refusal",
            notes=[reason],
            evidence=prepared.sources,
        )

    def _citations(
        self, sentences: Sequence[AnswerSentence], sources: Sequence[Source], support: _EvidenceSupport
    ) -> list[Citation]:
        by_n = {s.n: s for s in sources}
        out: dict[int, Citation] = {}
        for i, sentence in enumerate(sentences):
            for n in sentence.cited:
                source = by_n[n]
                passage = support.best_sentence(i, sources.index(source))
                if n not in out:
                    out[n] = Citation(n, source.paper_id, source.title, source.url, passage, sentence.supported)
                elif sentence.supported and not out[n].supported:
                    out[n] = Citation(n, source.paper_id, source.title, source.url, passage, True)
        return sorted(out.values(), key=lambda c: c.n)

    def _elapsed(self, prepared: _Prepared) -> float:
        return (time.perf_counter() - prepared.started) * 1000

    def _timings(self, prepared: _Prepared, first_token_ms: float | None) -> dict[str, float]:
        total = self._elapsed(prepared)
        return {
            "retrieve_ms": prepared.retrieve_ms,
            "first_token_ms": first_token_ms if first_token_ms is not None else total,
            "total_ms": total,
        }


class _EvidenceSupport:
    """How well each source's evidence supports each answer sentence: the best of embedding similarity
    to one evidence sentence and lexical coverage of the sentence's words, zeroed when the sentence
    states a number the source never does."""

    def __init__(self, embed) -> None:
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
                score = 0.0 if unsupported_numbers(sentence, source.passage) else max(dense, lexical)
                row.append(score)
            scores.append(row)
        return scores

    def best_sentence(self, i: int, j: int) -> str:
        return self._best.get((i, j), "")
