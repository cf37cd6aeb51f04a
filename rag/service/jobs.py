"""Ingest jobs: one at a time in a worker thread, queued in order, with progress and problems to poll.

Searches and answers keep running while a job embeds; they see its papers once it finishes (the
service opens the index afresh then). A `rag ingest` in another process holds the index's ingest
lock, and a job that meets it fails with that one line.

Job records are written to `<index>/jobs/` as they change (queued, running, after each committed batch,
finished), so a job outlives the server: one that was queued or running when the server died (SIGKILL,
a crash, a power cut) is reported `interrupted` on the next start, with what was committed before and
the command that finishes it (ingest is incremental: papers already committed are not embedded again).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import queue
import re
import secrets
import shlex
import tempfile
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
JOBS_KEPT = 200  # finished jobs remembered for polling (in memory and on disk)
_ACTIVE = ("queued", "running")

log = logging.getLogger("rag.service")

Runner = Callable[[Sequence[Path], Callable[[Problem], None], Callable[[IngestProgress], None]], IngestReport]


@dataclass
class IngestJob:
    """One ingest request: its files, where it stands, and what `rag ingest` would have printed."""

    job_id: str
    files: list[str]
    state: str = "queued"  # queued | running | done | failed | interrupted (the server died meanwhile)
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
    stored_report: dict | None = field(default=None, repr=False)  # the report's JSON, for a job read from disk

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
            "report": self.stored_report
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

    def record(self) -> dict:
        """What is written to disk: the JSON a poller sees, plus the kept files and the server's process."""
        return {**self.to_json(), "paths": [str(p) for p in self.paths], "process": _this_process()}

    @classmethod
    def from_record(cls, record: dict) -> IngestJob:
        progress = record.get("progress") or {}
        return cls(
            job_id=record["job"],
            files=list(record.get("files") or []),
            state=record.get("state", "failed"),
            created=record.get("created") or 0.0,
            started=record.get("started"),
            finished=record.get("finished"),
            papers_done=progress.get("papers_done", 0),
            papers_total=progress.get("papers_total", 0),
            chunks=progress.get("chunks", 0),
            progress_text=progress.get("text", ""),
            problems=list(record.get("problems") or []),
            error=record.get("error"),
            refused=list(record.get("refused") or []),
            paths=[Path(p) for p in record.get("paths") or []],
            stored_report=record.get("report"),
        )

    def interrupt(self) -> None:
        """Mark a job the server died under, saying what was committed and how to finish it."""
        again = "upload the files again, or run: rag ingest " + " ".join(shlex.quote(str(p)) for p in self.paths)
        if self.state == "queued":
            what = "the server stopped before this job ran; nothing from it was ingested"
        elif self.papers_done:
            what = (
                f"the server stopped while this job was running; {self.papers_done} of the {self.papers_total} "
                "papers it had to embed were committed and stay in the index, the rest were not"
            )
        else:
            what = "the server stopped while this job was running, before it committed any paper"
        self.state, self.finished = "interrupted", time.time()
        self.error = f"{what}; {again} (papers already in the index are not embedded again)"


class IngestJobs:
    """A queue of ingest jobs and the one thread that runs them; `on_finished` runs after each job."""

    def __init__(self, run: Runner, on_finished: Callable[[IngestJob], None], folder: Path | None = None) -> None:
        self._run = run
        self._on_finished = on_finished
        self._folder = folder  # where job records are kept; None: in memory only
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._queue: queue.Queue[IngestJob] = queue.Queue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._worker: threading.Thread | None = None
        self._numbers = itertools.count(self._load() + 1)

    # --- records on disk -------------------------------------------------------------------------

    def _load(self) -> int:
        """Read the kept records; mark those the previous server died under `interrupted`. Returns the
        highest job number seen, so that numbers go on rather than start again."""
        if self._folder is None or not self._folder.is_dir():
            return 0
        records = []
        for path in self._folder.glob("ingest-*.json"):
            try:
                records.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):  # half-written by a server killed mid-write, or damaged
                log.warning("%s: an unreadable ingest job record; left out", path)
        records.sort(key=lambda r: r.get("created") or 0.0)
        for record in records[:-JOBS_KEPT]:
            self._forget(record["job"])
        highest = 0
        for record in records[-JOBS_KEPT:]:
            job = IngestJob.from_record(record)
            if job.state in _ACTIVE and _alive(record.get("process")):
                continue  # another server on this index runs it now
            if job.state in _ACTIVE:
                job.interrupt()
                self._save(job)
            self._jobs[job.job_id] = job
            if number := re.match(r"ingest-(\d+)-", job.job_id):
                highest = max(highest, int(number.group(1)))
        return highest

    def _save(self, job: IngestJob) -> None:
        """Write one job's record (atomically: a server killed mid-write leaves the previous one)."""
        if self._folder is None:
            return
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self._folder, prefix=".job-")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(job.record(), out, ensure_ascii=False)
            os.replace(temporary, self._folder / f"{job.job_id}.json")
        except OSError as exc:  # the job goes on; only its record after a restart is lost
            log.warning("cannot write the record of ingest job %s in %s: %s", job.job_id, self._folder, exc)

    def _forget(self, job_id: str) -> None:
        if self._folder is not None:
            with contextlib.suppress(OSError):
                (self._folder / f"{job_id}.json").unlink()

    # --- the queue -------------------------------------------------------------------------------

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
            self._save(job)
            while len(self._jobs) > JOBS_KEPT:
                oldest = next(iter(self._jobs.values()))
                if oldest.state in _ACTIVE:
                    break
                self._jobs.popitem(last=False)
                self._forget(oldest.job_id)
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
            while job.state in _ACTIVE:
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
                self._save(job)
                self._changed.notify_all()

            def on_problem(problem: Problem, job: IngestJob = job) -> None:
                job.problems.append(str(problem))

            def on_progress(state: IngestProgress, job: IngestJob = job) -> None:
                with self._changed:
                    job.papers_done, job.papers_total, job.chunks = state.done, state.total, state.chunks
                    job.progress_text = state.describe()
                    self._save(job)  # after each committed batch: what a restart can say was ingested
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
                    self._save(job)
                    self._changed.notify_all()


def _started(pid: int) -> str | None:
    """When a process started (clock ticks since boot, from /proc), to tell it from a later one with its id."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _this_process() -> list:
    return [os.getpid(), _started(os.getpid())]


def _alive(process: object) -> bool:
    """Whether the server that wrote a record still runs: its process id, started when it was (where /proc
    says). This process is never it: the record is a previous life's under the same id."""
    if not isinstance(process, list) or len(process) != 2 or not isinstance(process[0], int):
        return False
    pid, started = process
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return started is None or _started(pid) in (None, started)
