"""The service layer: what one process shares among the chat page, the HTTP API and the command line.

One `Service` holds the open index, the loaded embedder and models, an `Assistant` per profile and
request settings (they share those parts), the chat sessions, the upload area and the ingest jobs.
Answers that need a model pass its gate (`rag.service.gate`): one at a time for a local model, up to
`llm.concurrency` for a hosted one, a bounded queue behind, "busy" past it.

    from rag.service import Service
    service = Service.from_config()
    answer = service.ask("Is there work that drops visual tokens partway through an MLLM?")
    result = service.search("visual token pruning", k=3)
    job = service.ingest_records([{"title": "...", "abstract": "..."}], "notes.jsonl")
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from rag.answer.model_judge import ModelJudge, load_judge_model
from rag.answering import Assistant
from rag.chunking import tiktoken_counter
from rag.config import Settings, default_config_dir, load_settings
from rag.errors import ConfigError, IndexStoreError, LLMError, RagError
from rag.ingest import IngestProgress, IngestReport
from rag.library import Library
from rag.llm import ChatModel, load_chat_model
from rag.retrieval import check_question
from rag.service.gate import ModelGate
from rag.service.jobs import IngestJob, IngestJobs
from rag.service.sessions import Sessions
from rag.service.uploads import UploadArea, UploadRefused
from rag.store import StoreStats
from rag.types import Answer, Paper, Problem, SearchResult, Turn

ASSISTANTS_KEPT = 32  # distinct (profile, request settings) assistants kept; they share every loaded part
_PER_CALL = {"temperature", "max_tokens", "concurrency", "queue_size"}  # llm settings that do not make a new model
_PROFILE_SECTIONS = ("llm", "answer", "retrieval")  # what a profile chosen per request may change


class Service:
    """Loaded models, assistants, sessions, uploads and ingest jobs for one process (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        *,
        library: Library | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.library = library or Library(settings)
        self._progress = progress
        self._lock = threading.RLock()
        self._assistants: OrderedDict[tuple, Assistant] = OrderedDict()
        self._models: dict[tuple, ChatModel | None] = {}
        self._gates: dict[tuple, ModelGate] = {}
        self._warm: dict[str, Any] = {"index": None, "model": None}
        self._failing: str | None = None  # the last index failure a request met; cleared by the next success
        self._count_tokens: Callable[[Sequence[str]], list[int]] | None = None
        self.sessions = Sessions(settings.server.sessions)
        upload_dir = Path(settings.ui.upload_dir or settings.index_path / "uploads").expanduser()
        self.uploads = UploadArea(upload_dir, settings.ui.max_upload_mb)
        self.jobs = IngestJobs(self._run_ingest, self._ingest_finished, settings.index_path / "jobs")

    @classmethod
    def from_config(
        cls, profile: str | None = None, overrides: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Service:
        return cls(load_settings(profile, overrides=overrides), **kwargs)

    # --- profiles and assistants ---------------------------------------------------------------------

    def profiles(self) -> list[str]:
        """Profiles a request may choose: 'default' (this process's own settings) and the shipped ones."""
        shipped = sorted(p.stem for p in default_config_dir().glob("*.yaml") if p.stem != "default")
        allowed = self.settings.server.profiles
        return ["default"] + [p for p in shipped if allowed is None or p in allowed]

    def check_profile(self, profile: str | None) -> str:
        name = profile or "default"
        if name not in self.profiles():
            raise ConfigError(f"unknown profile '{name}' (known: {', '.join(self.profiles())})")
        return name

    def assistant(self, profile: str | None = None, overrides: Mapping[str, Any] | None = None) -> Assistant:
        """The assistant for a profile plus dotted-key overrides ({"retrieval.k": 3}); built once, then reused."""
        name = self.check_profile(profile)
        key = (name, json.dumps(dict(overrides or {}), sort_keys=True, default=str))
        with self._lock:
            found = self._assistants.get(key)
            if found is not None:
                self._assistants.move_to_end(key)
                return found
            layered: dict[str, Any] = {}
            if name != "default":
                chosen = load_settings(name)
                layered = {section: getattr(chosen, section).model_dump() for section in _PROFILE_SECTIONS}
            library = self.library.derive(layered) if layered else self.library
            library = library.derive(overrides) if overrides else library
            assistant = Assistant(library, self._chat_model(library.settings), self._judge_model(library.settings))
            self._assistants[key] = assistant
            while len(self._assistants) > ASSISTANTS_KEPT:
                self._assistants.popitem(last=False)
            return assistant

    def _chat_model(self, settings: Settings) -> ChatModel | None:
        if settings.answer.mode != "generate":
            return None
        key = _model_key(settings)
        if key not in self._models:
            self._models[key] = load_chat_model(settings.llm, self._progress)
        return self._models[key]

    def _judge_model(self, settings: Settings) -> ModelJudge | None:
        """One judge model per file, shared by every assistant (it is a gigabyte)."""
        name = settings.answer.judge_model
        if not name:
            return None
        key = ("judge", name, settings.llm.model_dir)
        if key not in self._models:
            self._models[key] = load_judge_model(settings, self._progress)
        return self._models[key]

    def generates(self, profile: str | None = None, overrides: Mapping[str, Any] | None = None) -> bool:
        """Whether answers for these settings are written by a model (and so stream a draft first)."""
        assistant = self.assistant(profile, overrides)
        return assistant.chat_model is not None and assistant.settings.answer.mode == "generate"

    def count_tokens(self, text: str) -> int:
        """Tokens as the pipeline counts them (tiktoken), e.g. for an API's usage figures."""
        if self._count_tokens is None:
            self._count_tokens = tiktoken_counter()
        return self._count_tokens([text])[0]

    def gate(self, assistant: Assistant) -> ModelGate | None:
        """The gate an assistant's answers pass; None when it answers without a model (extractive)."""
        settings = assistant.settings
        writes = assistant.chat_model is not None and settings.answer.mode == "generate"
        if not writes and not settings.answer.judge_model:
            return None
        local = settings.llm.backend == "llamacpp" or not writes  # the judge model is always local
        key = ("local",) if local else _model_key(settings)  # local models share the CPU: one answer at a time
        with self._lock:
            if key not in self._gates:
                name = "the local model" if local else f"the model {settings.llm.model}"
                slots = 1 if local else settings.llm.concurrency
                self._gates[key] = ModelGate(name, slots, settings.llm.queue_size)
            return self._gates[key]

    # --- answering -------------------------------------------------------------------------------------

    def stream(
        self,
        question: str,
        history: Sequence[Turn | Answer] = (),
        *,
        profile: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        session: str | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Iterator[str | Answer]:
        """Tokens as written, then the checked `Answer`. Raises `Busy` now (before any token) when the model is,
        and `Abandoned` when `cancelled()` (the client has gone) turns true while the question waits for it."""
        check_question(question)
        assistant = self.assistant(profile, overrides)
        if session is not None and not history:
            history = self.sessions.history(session)
        items = self._recorded(assistant.stream(question, history), session)
        gate = self.gate(assistant)
        return gate.hold(items, cancelled) if gate is not None else items

    def ask(
        self,
        question: str,
        history: Sequence[Turn | Answer] = (),
        *,
        profile: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        session: str | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Answer:
        answer = None
        items = self.stream(
            question, history, profile=profile, overrides=overrides, session=session, cancelled=cancelled
        )
        for item in items:
            if isinstance(item, Answer):
                answer = item
        if answer is None:
            raise RagError("no answer came back")
        return answer

    def _recorded(self, items: Iterator[str | Answer], session: str | None) -> Iterator[str | Answer]:
        with self._watching_index():
            for item in items:
                if session is not None and isinstance(item, Answer):
                    self.sessions.add(session, item)
                yield item

    # --- the index -------------------------------------------------------------------------------------

    def search(
        self,
        question: str,
        k: int | None = None,
        where: Iterable[str] | None = None,
        *,
        mode: str | None = None,
        rerank: bool | None = None,
    ) -> SearchResult:
        check_question(question)
        with self._watching_index():
            return self.library.search_result(question, k=k, where=where, mode=mode, rerank=rerank)

    @contextlib.contextmanager
    def _watching_index(self) -> Iterator[None]:
        """Remember an index failure for /readyz (which then says what cannot be served), and forget it
        once a request gets through again."""
        try:
            yield
        except IndexStoreError as exc:
            self._failing = str(exc)
            raise
        self._failing = None

    def paper(self, paper_id: str) -> Paper | None:
        return self.library.paper(paper_id)

    def abstracts(self, paper_ids: Iterable[str]) -> dict[str, str]:
        return self.library.abstracts(paper_ids)

    def stats(self) -> StoreStats:
        return self.library.stats()

    # --- ingest ----------------------------------------------------------------------------------------

    def ingest_files(self, files: Sequence[tuple[str, BinaryIO | Path]]) -> IngestJob:
        """Keep each (name, data) in the upload area and queue one job for the kept ones.

        Refused files (type, size) are listed in the job; when none is kept, `UploadRefused` names them all.
        """
        kept: list[Path] = []
        refused: list[UploadRefused] = []
        batch = self.uploads.new_batch()  # this request's own folder: a later same-named upload cannot replace these
        for name, data in files:
            try:
                kept.append(self.uploads.save(name, data, batch))
            except UploadRefused as exc:
                refused.append(exc)
        if not kept:
            self.uploads.discard_batch(batch)
            too_large = bool(refused) and all(exc.too_large for exc in refused)
            raise UploadRefused("; ".join(map(str, refused)) or "no files given", too_large=too_large)
        return self.jobs.submit(kept, [p.name for p in kept], [str(exc) for exc in refused])

    def ingest_records(self, records: Sequence[Mapping[str, Any]], name: str = "records.jsonl") -> IngestJob:
        """Queue JSON records (title, abstract, id, authors, date, url, ...) as one uploaded JSON Lines file."""
        path = self.uploads.save_records(records, name)
        return self.jobs.submit([path], [path.name])

    def _run_ingest(
        self, paths: Sequence[Path], on_problem: Callable[[Problem], None], progress: Callable[[IngestProgress], None]
    ) -> IngestReport:
        # A writer of its own (its own catalog connection); searches keep the open index until it finishes.
        self.library.embedder  # noqa: B018 - loaded once, shared by the writer
        writer = self.library.reopened()
        return writer.ingest(paths, on_problem=on_problem, progress=progress)

    def _ingest_finished(self, job: IngestJob) -> None:
        """Open the index afresh (new papers, new BM25 matrix) and let assistants be rebuilt on it; models stay."""
        fresh = self.library.reopened()
        fresh.retriever().keyword_index()
        with self._lock:
            self.library = fresh
            self._assistants.clear()

    def status(self) -> dict[str, Any]:
        """The model queues, the remembered sessions and the running ingest job, for GET /v1/stats."""
        with self._lock:
            gates = {gate.name: gate.status() for gate in self._gates.values()}
        running = self.jobs.running()
        return {"models": gates, "sessions": len(self.sessions), "ingest": running.job_id if running else None}

    # --- readiness -------------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Open the index and load the default assistant's models; `readiness` reports how that went."""
        try:
            self.library.retriever().keyword_index()
            self.library.embedder.embed(["warm-up"])
            self._warm["index"] = True
        except RagError as exc:
            self._warm["index"] = str(exc)
            return
        assistant = self.assistant()
        try:
            assistant.warm_up()
            self._warm["model"] = True
        except LLMError as exc:
            self._warm["model"] = str(exc)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether the index is open and the default model loaded, with a line for each that is not."""
        index, model = self._warm["index"], self._warm["model"]
        detail: dict[str, Any] = {
            "index": "open" if index is True else (index or "loading"),
            "model": "loaded" if model is True else (model or "loading"),
            "ingest": (job.job_id if (job := self.jobs.running()) else None),
        }
        model_free = self.settings.answer.mode != "generate" or self.settings.llm.backend == "none"
        if model_free and not self.settings.answer.judge_model:
            detail["model"] = "none (extractive answers)"
            model = True
        if index is True:  # open once; can it still serve? (cheap: the files' sizes and times, a remembered failure)
            problem = self._index_problem()
            if problem:
                detail["index"] = problem
                index = problem
        return index is True and model is True, detail

    def _index_problem(self) -> str | None:
        if self.settings.index.server is None:
            from rag.store_files import damage_error

            if (damaged := damage_error(self.settings.index_path)) is not None:
                return str(damaged)
        return f"failing: {self._failing}" if self._failing else None


def _model_key(settings: Settings) -> tuple:
    llm = {k: v for k, v in settings.llm.model_dump().items() if k not in _PER_CALL}
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in llm.items()))
