"""Ingest jobs: one at a time in a worker thread, queued in order, with progress and problems to poll.

Searches and answers keep running while a job embeds; they see its papers once it finishes (the
service opens the index afresh then). A `rag ingest` in another process holds the index's ingest
lock, and a job that meets it fails with that one line.
"""

from __future__ import annotations

import itertools
import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import RagError
from rag.ingest import IngestProgress, IngestReport
from rag.service.gate import Busy
from rag.types import Problem

MAX_QUEUED = 16  # jobs waiting behind the running one
JOBS_KEPT = 200  # finished jobs remembered for polling

Runner = Callable[[Sequence[Path], Callable[[Problem], None], Callable[[IngestProgress], None]], IngestReport]


@dataclass
class IngestJob:
    """One ingest request: its files, where it stands, and what `rag ingest` would have printed."""

    job_id: str
    files: list[str]
    state: str = "queued"  # queued | running | done | failed
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    papers_done: int = 0
    papers_total: int = 0
    chunks: int = 0
    progress_text: str = ""  # "embedded 12/40 papers (30 chunks), 3.1 papers/s, 9s left"
    problems: list[str] = field(default_factory=list)
    report: IngestReport | None = None
    error: str | None = None
    refused: list[str] = field(default_factory=list)  # uploads not kept (type, size), before the job ran
    paths: list[Path] = field(default_factory=list, repr=False)

    @property
    def finished_ok(self) -> bool:
        return self.state == "done"

    def summary(self) -> str:
        """The line `rag ingest` prints at the end."""
        r = self.report
        if r is None:
            return ""
        return (
            f"read {r.records_read} records ({r.papers_seen} papers) from {r.files_read} files: "
            f"{r.papers_embedded} embedded ({r.chunks_embedded} chunks), {r.papers_unchanged} unchanged, "
            f"{r.sources_updated} with updated sources, {r.papers_pruned} pruned in {r.seconds:.1f}s"
        )

    def to_json(self) -> dict:
        r = self.report
        return {
            "job": self.job_id,
            "state": self.state,
            "files": self.files,
            "refused": self.refused,
            "progress": {
                "papers_done": self.papers_done,
                "papers_total": self.papers_total,
                "chunks": self.chunks,
                "text": self.progress_text,
            },  # fmt: skip
            "report": None
            if r is None
            else {
                "files_read": r.files_read,
                "records_read": r.records_read,
                "papers_seen": r.papers_seen,
                "papers_embedded": r.papers_embedded,
                "chunks_embedded": r.chunks_embedded,
                "papers_unchanged": r.papers_unchanged,
                "sources_updated": r.sources_updated,
                "seconds": round(r.seconds, 2),
                "problems_total": r.problems_total,
                "summary": self.summary(),
            },
            "problems": self.problems + (r.problem_summary if r is not None else []),
            "error": self.error,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }


class IngestJobs:
    """A queue of ingest jobs and the one thread that runs them; `on_finished` runs after each job."""

    def __init__(self, run: Runner, on_finished: Callable[[IngestJob], None]) -> None:
        self._run = run
        self._on_finished = on_finished
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._queue: queue.Queue[IngestJob] = queue.Queue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._worker: threading.Thread | None = None
        self._numbers = itertools.count(1)

    def submit(self, paths: Sequence[Path], names: Sequence[str], refused: Sequence[str] = ()) -> IngestJob:
        with self._lock:
            waiting = sum(1 for job in self._jobs.values() if job.state == "queued")
            if waiting >= MAX_QUEUED:
                raise Busy(
                    f"busy: {waiting} ingest jobs are already waiting; try again when they finish",
                    retry_after_s=30,
                    waiting=waiting,
                )
            job = IngestJob(f"ingest-{next(self._numbers)}-{secrets.token_hex(4)}", list(names), paths=list(paths),
                            refused=list(refused))  # fmt: skip
            self._jobs[job.job_id] = job
            while len(self._jobs) > JOBS_KEPT:
                oldest = next(iter(self._jobs.values()))
                if oldest.state in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="rag-ingest", daemon=True)
                self._worker.start()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> IngestJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def running(self) -> IngestJob | None:
        with self._lock:
            return next((job for job in self._jobs.values() if job.state == "running"), None)

    def wait(self, job: IngestJob, timeout_s: float) -> bool:
        """Block until the job finished or `timeout_s` passed; True when it finished."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while job.state in ("queued", "running"):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            with self._changed:
                job.state, job.started = "running", time.time()
                self._changed.notify_all()

            def on_problem(problem: Problem, job: IngestJob = job) -> None:
                job.problems.append(str(problem))

            def on_progress(state: IngestProgress, job: IngestJob = job) -> None:
                with self._changed:
                    job.papers_done, job.papers_total, job.chunks = state.done, state.total, state.chunks
                    job.progress_text = state.describe()
                    self._changed.notify_all()

            state = "failed"
            try:
                job.report = self._run(job.paths, on_problem, on_progress)
                state = "done"
            except RagError as exc:
                job.error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a job reports one line; the worker keeps serving
                job.error = f"ingest failed: {type(exc).__name__}: {exc}".splitlines()[0]
            try:
                self._on_finished(job)  # searches see the new papers before a poller sees "done"
            except Exception as exc:  # noqa: BLE001 - the worker keeps serving the next jobs
                job.error = job.error or f"the ingest finished, but reopening the index failed: {exc}".splitlines()[0]
                state = "failed"
            finally:
                with self._changed:
                    job.state, job.finished = state, time.time()
                    self._changed.notify_all()
