"""Answering: question (+ chat history) -> a short answer that names the papers and cites each one.

This module only orchestrates; each stage has its room in rag/answer/, in the order data flows:
  read the question once (question, conversation) -> retrieve papers (rag.retrieval) -> read every
  candidate's sentences (candidates, evidence) -> judge which candidates answer, or what is missing
  (judge, model_judge) -> name them (names) -> compose the answer around one statement per paper
  (compose) -> optionally let a model write each statement (rag.llm) -> verify every statement
  against its own paper's evidence (verify).

    from rag.answering import Assistant
    assistant = Assistant.from_config()
    answer = assistant.ask("Is there work that drops visual tokens partway through an MLLM?")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rag.answer.candidates import (
    Candidate,
    about_named_papers,
    choose_papers,
    evidence_of,
    read_candidates,
)
from rag.answer.compose import (
    Plan,
    Point,
    extractive_text,
    no_figure_text,
    not_covered_text,
    plan_answer,
    slot_text,
    statement_sentences,
)
from rag.answer.conversation import HistoryItem, concat_standalone, is_follow_up, refers_back, to_turns
from rag.answer.evidence import states_a_figure
from rag.answer.judge import Verdict, decide, judge_candidates, load_weights, missing_phrase
from rag.answer.model_judge import ModelJudge, load_judge_model
from rag.answer.question import Reading, Shape, read_question
from rag.answer.verify import EvidenceSupport
from rag.chunking import tiktoken_counter
from rag.config import Settings
from rag.library import Library
from rag.llm import ChatModel, LLMError, load_chat_model
from rag.prompts import DECLINE_PHRASES, NOT_COVERED, answer_messages, condense_messages
from rag.retrieval import check_question
from rag.types import Answer, AnswerSentence, Citation, PaperHit, Source, Turn

__all__ = ["Assistant", "declined"]


def declined(text: str) -> bool:
    lowered = text.lower()
    return NOT_COVERED.lower().rstrip(".") in lowered or any(p in lowered for p in DECLINE_PHRASES)


@dataclass
class _Prepared:
    """What every answer mode shares: the question as read, and the papers the answer rests on."""

    reading: Reading
    hits: list[PaperHit]
    sources: list[Source]  # numbered evidence of the answering papers, best first
    plan: Plan
    started: float
    retrieve_ms: float
    refusal: str | None = None  # why the question is refused, when it is
    refusal_text: str = ""
    candidates: list[Candidate] = field(default_factory=list)  # the considered papers, most likely answer first
    verdict: Verdict | None = None
    judge_ms: float = 0.0  # the judge's share of retrieve_ms (a model reading, when it was asked)

    @property
    def question(self) -> str:
        return self.reading.question

    @property
    def standalone(self) -> str:
        return self.reading.standalone

    @property
    def shape(self) -> Shape:
        return self.reading.shape


class Assistant:
    """Cited answers over a `Library`. One instance keeps the models loaded between questions."""

    def __init__(
        self, library: Library, chat_model: ChatModel | None = None, judge_model: ModelJudge | None = None
    ) -> None:
        """`judge_model` reads candidates for the judge (answer.judge_model); loaded on first use when not given."""
        self.library = library
        self.settings: Settings = library.settings
        self.chat_model = chat_model
        self._count_tokens = tiktoken_counter()
        self._sentence_vectors: dict[str, np.ndarray] = {}  # abstracts' sentences recur across questions
        self._judge_weights = load_weights()
        self._model_judge = judge_model

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
        return cls(library, chat_model, load_judge_model(library.settings, progress))

    def warm_up(self, prime: bool = False) -> None:
        """Load the embedder, the index and the LLM now, so the first question's timings are its own.

        `prime` also runs the fixed system prompt through a local model, so its evaluated prefix is
        cached before the first question (worth it in a chat, where the user is still typing).
        """
        self.library.retriever()
        self.library.embedder.embed(["warm-up"])
        if self.judge_model is not None:
            self.judge_model.load()
        if self.chat_model is None or self.settings.answer.mode != "generate":
            return
        load = getattr(self.chat_model, "load", None)
        if load is not None:
            load()
        if prime and load is not None:
            for _ in self.chat_model.complete(
                answer_messages("warm-up", []), "", max_tokens=1, temperature=0.0, stop=["\n"]
            ):
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

    def candidates(self, question: str, history: Sequence[HistoryItem] = ()) -> list[Candidate]:
        """The papers considered for a question as the judge read them (features, probability of answering),
        most likely to answer first: why an answer names the papers it names, or refuses."""
        return self._prepare(question, to_turns(history)).candidates

    def stream(self, question: str, history: Sequence[HistoryItem] = ()) -> Iterator[str | Answer]:
        """Yield the answer's text as it is written, then the checked `Answer`.

        The final `Answer.answer` can differ from the streamed text: a statement the evidence does not
        support is replaced by the evidence sentence. Show the final text.
        """
        prepared = self._prepare(question, to_turns(history))
        if prepared.refusal is not None:
            answer = self._refusal(prepared)
        elif self.chat_model is None or self.settings.answer.mode == "extractive":
            answer = self._extractive(prepared, mode="extractive")
        else:
            yield from self._generate(prepared)
            return
        yield answer.answer
        yield answer

    # --- stages ------------------------------------------------------------------------------------

    def _prepare(self, question: str, turns: list[Turn]) -> _Prepared:
        started = time.perf_counter()
        question = check_question(question)
        settings = self.settings.answer
        turns = turns[-settings.history_turns :] if settings.history_turns else []
        follow_up = bool(turns) and is_follow_up(question)
        standalone = self._condense(question, turns) if follow_up else question
        retriever = self.library.retriever()
        keywords = retriever.keyword_index()
        reading = read_question(question, standalone, keywords, follow_up=follow_up, refers_back=refers_back(question))
        vectors = self.library.embedder.embed([standalone, question] if standalone != question else [question])
        # A list reads further down the ranking: the works on a topic are many and alike.
        papers = settings.list_considered if reading.shape is Shape.LIST else settings.papers
        k = max(self.settings.retrieval.k, papers)
        hits = retriever.search_vector(standalone, vectors[0], k=k)
        kept: list[PaperHit] = []
        if follow_up and turns[-1].paper_ids:
            earlier = list(dict.fromkeys(turns[-1].paper_ids))
            kept = retriever.search_vector(standalone, vectors[0], k=len(earlier), only=earlier)
            hits = kept + [h for h in hits if h.paper_id not in earlier]
        considered = hits[:papers]
        if reading.refers_back:
            # "its model", "that paper": the question is about what the conversation was already on, the
            # papers the last answer cited or else the one paper the joined question ranks first.
            considered = hits[: max(1, len(kept))]
        store = self.library.store()
        passages = store.passages_of([h.paper_id for h in considered])

        def prepared(**fields) -> _Prepared:
            retrieve_ms = (time.perf_counter() - started) * 1000
            base = dict(sources=[], plan=Plan("", []))
            judge_ms = fields.pop("judge_ms", 0.0)
            return _Prepared(reading, hits, started=started, retrieve_ms=retrieve_ms, judge_ms=judge_ms,
                             **(base | fields))  # fmt: skip

        if not considered:
            return prepared(refusal="the index returned no papers", refusal_text=self._not_covered("", []))
        self._remember(store.sentence_vectors([h.paper_id for h in considered]))
        weights = (settings.rank_lexical_weight, settings.rank_sentence_weight)
        candidates = read_candidates(standalone, question, vectors[-1], considered, passages,
                                     embed=self._embed_cached, keywords=keywords, weights=weights)  # fmt: skip
        candidates = about_named_papers(standalone, reading.shape, candidates)
        judge_started = time.perf_counter()
        verdict = self._judge(reading, candidates)
        judge_ms = (time.perf_counter() - judge_started) * 1000
        candidates = verdict.candidates
        if not verdict.answering:
            nearest = candidates[0]
            lacking = missing_phrase(reading.terms, nearest.features.missing if nearest.features else ())
            reason = f"no candidate answers ({verdict.reason})"
            if lacking:
                reason += f"; the nearest lacks: {lacking}"
            return prepared(refusal=reason, refusal_text=self._not_covered(lacking, candidates),
                            candidates=candidates, verdict=verdict, judge_ms=judge_ms)  # fmt: skip
        chosen = choose_papers(reading.shape, verdict.answering, settings)
        wants_number = reading.shape is Shape.NUMBER
        if wants_number and not any(states_a_figure(s.text) for s in chosen[0].sentences):
            text = no_figure_text(chosen[0].name, chosen[0].hit.title)
            return prepared(refusal="the closest paper's abstract states no number", refusal_text=text,
                            candidates=candidates, verdict=verdict, judge_ms=judge_ms)  # fmt: skip
        per_statement = 1 if len(chosen) > 1 else settings.statement_sentences
        sources, statements = evidence_of(chosen, wants_number, reading.quantity, settings, self._count_tokens,
                                          per_statement)  # fmt: skip
        points = [
            Point(source, candidate.name, statement)
            for source, candidate, statement in zip(sources, chosen, statements, strict=True)
        ]
        plan = plan_answer(reading.shape, points)
        return prepared(sources=sources, plan=plan, candidates=candidates, verdict=verdict, judge_ms=judge_ms)

    def _judge(self, reading: Reading, candidates: list[Candidate]) -> Verdict:
        settings = self.settings.answer
        judged = judge_candidates(reading.terms, candidates, self._judge_weights)
        model = self._judge_model() if settings.judge_model else None
        try:
            return decide(reading, judged, settings, self._judge_weights, model)
        except LLMError as exc:  # a missing or failing judge model: the statistics alone decide, and say so
            verdict = decide(reading, judged, settings, self._judge_weights, None)
            return replace(verdict, reason=f"{verdict.reason}; the judge model was not asked ({exc})")

    def _judge_model(self) -> ModelJudge | None:
        if self._model_judge is None:
            self._model_judge = load_judge_model(self.settings)
        return self._model_judge

    @property
    def judge_model(self) -> ModelJudge | None:
        """The model the judge consults, when answer.judge_model names one."""
        return self._judge_model() if self.settings.answer.judge_model else None

    def _not_covered(self, missing: str, candidates: Sequence[Candidate]) -> str:
        return not_covered_text(missing, [(c.name, c.hit.title) for c in candidates])

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

    # --- writing -----------------------------------------------------------------------------------

    def _generate(self, prepared: _Prepared) -> Iterator[str | Answer]:
        """The model writes each slot's statement, continuing the answer the system started."""
        assert self.chat_model is not None
        llm, settings = self.settings.llm, self.settings.answer
        messages = answer_messages(prepared.standalone, prepared.sources)
        support = EvidenceSupport(self._embed_cached)
        by_n = {s.n: s for s in prepared.sources}
        written = prepared.plan.intro
        statements: list[str] = []
        kept: list[bool] = []
        notes: list[str] = []
        error = None
        first_token_ms = first_model_ms = None
        if written:
            first_token_ms = self._elapsed(prepared)
            yield written
        for index, slot in enumerate(prepared.plan.slots):
            yield slot.lead
            first_token_ms = first_token_ms or self._elapsed(prepared)
            pieces: list[str] = []
            if error is None and index < settings.written_slots:
                try:
                    for piece in self.chat_model.complete(
                        messages, written + slot.lead, max_tokens=settings.slot_tokens,
                        temperature=llm.temperature, stop=["\n", "<|im_end|>"],
                    ):  # fmt: skip
                        first_model_ms = first_model_ms or self._elapsed(prepared)
                        pieces.append(piece)
                        yield piece
                except LLMError as exc:
                    error = str(exc)
            if index == 0 and pieces and declined("".join(pieces)):
                # The model read the best paper's evidence and says it does not answer: an honest refusal.
                refusal = replace(prepared, refusal="the model found no answer in the evidence",
                                  refusal_text=self._not_covered("", prepared.candidates))  # fmt: skip
                answer = self._refusal(refusal)
                answer.timings = self._timings(prepared, first_token_ms, first_model_ms)
                yield answer
                return
            statement = self._checked_statement("".join(pieces), by_n[slot.n], support, settings.support_threshold)
            if statement is not None and prepared.shape is Shape.NUMBER and not states_a_figure(statement):
                statement = None  # asked for a figure, the model gave none; the evidence sentence states one
            if statement is None:
                if pieces:
                    notes.append(f"[{slot.n}]: the model's statement was not supported by its evidence: "
                                 f"{''.join(pieces).strip()[:160]!r}; showing the evidence sentence")  # fmt: skip
                statement = slot.fallback
            kept.append(statement != slot.fallback)
            statements.append(statement)
            written += slot_text(slot, statement)
        end_answer = getattr(self.chat_model, "end_answer", None)  # a local model's prompt-prefix cache
        if end_answer is not None:
            end_answer()
        mode = "generate" if any(kept) else "fallback"
        if error:
            notes.append("the model failed; showing the evidence sentences")
        answer = self._answer(prepared, statements, mode=mode, notes=notes)
        answer.error = error
        answer.timings = self._timings(prepared, first_token_ms, first_model_ms)
        yield answer

    def _checked_statement(self, text: str, source: Source, support: EvidenceSupport, threshold: float) -> str | None:
        """The model's statement about one paper, keeping only sentences that paper's evidence supports."""
        sentences = statement_sentences(text, source.title)
        if not sentences or len(" ".join(sentences).split()) < 2 or declined(text):
            return None
        scores = support(sentences, [source])
        good = [s for s, row in zip(sentences, scores, strict=True) if row and row[0] >= threshold]
        return " ".join(s.rstrip(".") + "." for s in good).rstrip(".") if good else None

    def _extractive(self, prepared: _Prepared, *, mode: str) -> Answer:
        answer = self._answer(prepared, [slot.fallback for slot in prepared.plan.slots], mode=mode, notes=[])
        answer.timings = self._timings(prepared, None, None)
        assert answer.answer == extractive_text(prepared.plan) or mode != "extractive"
        return answer

    def _answer(self, prepared: _Prepared, statements: Sequence[str], *, mode: str, notes: list[str]) -> Answer:
        plan = prepared.plan
        text = (plan.intro + "".join(slot_text(s, t) for s, t in zip(plan.slots, statements, strict=True))).strip()
        by_n = {s.n: s for s in prepared.sources}
        citations: dict[int, Citation] = {}
        sentences = []
        support = EvidenceSupport(self._embed_cached)
        threshold = self.settings.answer.support_threshold
        for slot, statement in zip(plan.slots, statements, strict=True):
            source = by_n[slot.n]
            # Measured, not assumed: the statement against its own paper's evidence (a quoted evidence sentence
            # scores ~1; a model's words score what the evidence supports of them).
            score = support([statement], [source])[0][0] if statement.strip() else 0.0
            sentences.append(AnswerSentence(statement, [slot.n], score >= threshold, round(score, 3)))
            if slot.n not in citations:
                citations[slot.n] = Citation(slot.n, source.paper_id, source.title, source.url, slot.fallback,
                                             sentences[-1].supported)  # fmt: skip
        model = self.model_name if mode == "generate" else (
            "extractive" if mode == "extractive" else f"{self.model_name} -> extractive"
        )  # fmt: skip
        return Answer(
            question=prepared.question,
            standalone_question=prepared.standalone,
            answer=text,
            refused=False,
            grounded=sum(s.supported for s in sentences) / len(sentences) if sentences else 0.0,
            citations=sorted(citations.values(), key=lambda c: c.n),
            sources=prepared.hits,
            model=model,
            timings={},
            mode=mode,
            sentences=sentences,
            notes=notes,
            evidence=prepared.sources,
            shape=prepared.shape.value,
        )

    def _refusal(self, prepared: _Prepared) -> Answer:
        text = prepared.refusal_text or NOT_COVERED
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
            timings=self._timings(prepared, None, None),
            mode="refusal",
            notes=[prepared.refusal or ""],
            evidence=[],
            shape=prepared.shape.value,
        )

    def _elapsed(self, prepared: _Prepared) -> float:
        return (time.perf_counter() - prepared.started) * 1000

    def _timings(self, prepared: _Prepared, first_token_ms: float | None, first_model_ms: float | None) -> dict:
        total = self._elapsed(prepared)
        timings = {
            "retrieve_ms": prepared.retrieve_ms,
            "judge_ms": prepared.judge_ms,
            "first_token_ms": first_token_ms if first_token_ms is not None else total,
            "total_ms": total,
        }
        if first_model_ms is not None:
            timings["first_model_token_ms"] = first_model_ms
        return timings
