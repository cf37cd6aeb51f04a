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

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.chunking import abstract_sentences, tiktoken_counter
from rag.citations import EvidenceSupport, parse_answer, render_answer, strip_echoed_titles, verify_sentences
from rag.config import Settings
from rag.conversation import HistoryItem, concat_standalone, is_follow_up, refers_back, to_turns
from rag.evidence import evidence_strength, extractive_answer, pack_evidence, score_sentences
from rag.library import Library
from rag.llm import ChatModel, LLMError, load_chat_model
from rag.prompts import DECLINE_PHRASES, NOT_COVERED, answer_messages, condense_messages
from rag.retrieval import check_question
from rag.types import Answer, AnswerSentence, Citation, PaperHit, Source, Turn


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
    strength: float  # evidence_strength(): below answer.min_score the question is refused


class Assistant:
    """Cited answers over a `Library`. One instance keeps the models loaded between questions."""

    def __init__(self, library: Library, chat_model: ChatModel | None = None) -> None:
        self.library = library
        self.settings: Settings = library.settings
        self.chat_model = chat_model
        self._count_tokens = tiktoken_counter()
        self._sentence_vectors: dict[str, np.ndarray] = {}  # abstracts' sentences recur across questions

    def _remember(self, vectors: Mapping[str, np.ndarray]) -> None:
        if len(self._sentence_vectors) > 50_000:
            self._sentence_vectors.clear()
        self._sentence_vectors.update(vectors)

    def _embed_cached(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._sentence_vectors))
        if missing:
            self._remember(dict(zip(missing, self.library.embedder.embed(missing), strict=True)))
        if not texts:
            return np.zeros((0, self.library.embedder.dimension), dtype=np.float32)
        return np.stack([self._sentence_vectors[t] for t in texts])

    @classmethod
    def from_config(
        cls,
        profile: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        library: Library | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Assistant:
        """`progress` hears about one-off slow steps, such as joining a packaged model the first time."""
        library = library or Library.from_config(profile, overrides=overrides)
        chat_model = None
        if library.settings.answer.mode == "generate":
            chat_model = load_chat_model(library.settings.llm, progress)
        return cls(library, chat_model)

    def warm_up(self, prime: bool = False) -> None:
        """Load the embedder, the index and the LLM now, so the first question's timings are its own.

        `prime` also runs the fixed system prompt through a local model, so its evaluated prefix is
        cached before the first question (worth it in a chat, where the user is still typing).
        """
        self.library.retriever()
        self.library.embedder.embed(["warm-up"])
        if self.chat_model is None or self.settings.answer.mode != "generate":
            return
        load = getattr(self.chat_model, "load", None)
        if load is not None:
            load()
        if prime and load is not None:
            messages = answer_messages("warm-up", [])
            for _ in self.chat_model.stream(messages, max_tokens=1, temperature=0.0):
                break

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
        if prepared.strength >= self.settings.answer.min_score and prepared.sources:
            if self.chat_model is None or self.settings.answer.mode == "extractive":
                answer = self._extractive(prepared, mode="extractive")
                yield answer.answer
                yield answer
                return
            yield from self._generate(prepared)
            return
        threshold = self.settings.answer.min_score
        reason = f"weak evidence: strength {prepared.strength:.3f} < answer.min_score {threshold}"
        answer = self._refusal(prepared, reason)
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
        hits = retriever.search_vector(standalone, vectors[0], k=k)
        kept: list = []
        if follow_up and turns[-1].paper_ids:
            earlier = list(dict.fromkeys(turns[-1].paper_ids))
            kept = retriever.search_vector(standalone, vectors[0], k=len(earlier), only=earlier)
            hits = kept + [h for h in hits if h.paper_id not in earlier]
        top = hits[: self.settings.answer.papers]
        if follow_up and refers_back(question):
            # "its model", "that paper": the question is about what the conversation was already on,
            # the papers the last answer cited or else the one paper the joined question ranks first.
            # Evidence from other papers would let a sentence that merely shares words ("accuracy") win.
            top = hits[: max(1, len(kept))]
        passages = self.library.store().passages_of([h.paper_id for h in top])
        strength = max(evidence_strength(q, top, passages) for q in {question, standalone})
        if strength < self.settings.answer.min_score:  # a refusal needs no evidence
            retrieve_ms = (time.perf_counter() - started) * 1000
            return _Prepared(question, standalone, hits, [], [], started, retrieve_ms, strength)
        sentences = [abstract_sentences(passages.get(h.paper_id, [h.passage])) for h in top]
        self._remember(self.library.store().sentence_vectors([h.paper_id for h in top]))
        # Evidence is scored against the question as asked: for a follow-up ("its accuracy?") the
        # new part is what the sentences must match; the earlier turn already chose the papers.
        scored = score_sentences(question, vectors[-1], sentences, self._embed_cached, [h.score for h in top])
        sources = pack_evidence(
            top,
            scored,
            budget_tokens=self.settings.answer.evidence_tokens,
            per_paper=self.settings.answer.sentences_per_paper,
            top_paper=self.settings.answer.top_paper_sentences,
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
        return _Prepared(question, standalone, hits, sources, ranked, started, retrieve_ms, strength)

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
        text = strip_echoed_titles(text, [source.title for source in prepared.sources])
        parsed = parse_answer(text)
        support = EvidenceSupport(self._embed_cached)
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
        best = {n for n, _, _ in prepared.ranked_evidence[: self.settings.answer.must_cite_top]}
        cited = {n for s in supported for n in s.cited}
        if best and not cited & best:
            reason = f"generated answer cites {sorted(cited)}, none of the best evidence {sorted(best)}: {text[:200]!r}"
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
        text = extractive_answer(prepared.ranked_evidence, self.settings.answer.extractive_sentences)
        by_n = {s.n: s for s in prepared.sources}
        sentences = [AnswerSentence(sentence.text, sentence.cited, True, 1.0) for sentence in parse_answer(text)]
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
        self, sentences: Sequence[AnswerSentence], sources: Sequence[Source], support: EvidenceSupport
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
