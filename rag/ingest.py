"""Index stage, writing half: incremental, resumable ingest of sources into the store.

Two streaming passes over the inputs. The first reads every record and plans: which papers are
new or changed (by content hash), which only gained or lost a source file, which vanished. The
second re-reads the inputs and embeds only the planned papers, in committed batches. Chunk ids are
deterministic (`paper_id#n`) and a paper's old chunks are deleted before its new ones are added,
so a run killed at any point resumes with no duplicates and nothing lost.

Before both, files whose fingerprints (and the index) are as the last complete ingest of them left
them are reported unchanged without a record read (rag.ingest_state): parsing is what a no-op
re-ingest of a big library spends its time on.
"""

from __future__ import annotations

import fcntl
import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.chunking import ChunkPlan, abstract_sentences, chunk_paper, tiktoken_counter
from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import IndexStoreError
from rag.ingest_progress import (
    ESTIMATE_ABOVE,
    EstimateCallback,
    Estimator,
    IngestEstimate,
    IngestProgress,
    ProgressCallback,
    format_duration,
)
from rag.ingest_state import (
    Entry,
    FileFingerprint,
    IndexMark,
    IngestState,
    Inputs,
    Outcome,
    cited_others,
    listing_digest,
    settings_fingerprint,
)
from rag.lexical import PaperCatalog, remove_caches
from rag.problems import ProblemTally
from rag.records import Record
from rag.sources import add_sources, builtin_corpus_paths, duplicate_problem, expand_paths, fill_fields, iter_records
from rag.store import ChromaStore, IndexedPaper
from rag.types import Chunk, Paper, Problem

__all__ = [
    "ESTIMATE_ABOVE",
    "EstimateCallback",
    "IngestEstimate",
    "IngestProgress",
    "IngestReport",
    "ProgressCallback",
    "chunk_plan",
    "default_paths",
    "format_duration",
    "ingest",
    "ingest_lock",
    "paper_hash",
    "sentences_of",
]

# Reads the inputs once more each time it is called: (report a problem, note a file read) -> records.
RecordSource = Callable[[Callable[[Problem], None], Callable[[str], None]], Iterator[Record]]


@dataclass
class IngestReport:
    files_read: int = 0
    records_read: int = 0
    papers_seen: int = 0
    papers_embedded: int = 0
    papers_unchanged: int = 0
    papers_pruned: int = 0
    papers_missing: int = 0  # gone from their sources, kept because --prune was not given
    sources_updated: int = 0
    chunks_embedded: int = 0
    problems: list[Problem] = field(default_factory=list)  # the first few of each kind (see rag.problems)
    problems_total: int = 0
    problem_summary: list[str] = field(default_factory=list)  # one line per kind with more than were listed
    seconds: float = 0.0
    embed_seconds: float = 0.0


@dataclass
class _Plan:
    """What pass one decided: per paper id, its content hash and every file it was found in."""

    hashes: dict[str, str] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    files_read: set[str] = field(default_factory=set)
    records: int = 0
    # Only for papers found more than once this run: what each file gave (file -> record hash) ...
    repeated: dict[str, dict[str, str]] = field(default_factory=dict)
    # ... and, for those and for papers keeping fields from files not read this run, the merged paper.
    merged: dict[str, Paper] = field(default_factory=dict)
    # Per paper, file -> record hash, where it is more than "its one file gave its hash" (see store_records).
    source_hashes: dict[str, dict[str, str]] = field(default_factory=dict)


def default_paths(settings: Settings) -> list[Path]:
    return [Path(p) for p in settings.corpus.paths] or builtin_corpus_paths()


def chunk_plan(settings: Settings, embedder: Embedder) -> ChunkPlan:
    return ChunkPlan(
        chunk_tokens=settings.chunking.chunk_tokens,
        overlap_tokens=settings.chunking.overlap_tokens,
        embed_limit=embedder.max_tokens,
        prepend_title=settings.chunking.prepend_title,
    )


def paper_hash(paper: Paper, chunk_fingerprint: str) -> str:
    """Changes when anything that ends up in the index changes, except the list of source files."""
    digest = hashlib.sha256(chunk_fingerprint.encode())
    for part in (paper.title, paper.abstract, paper.authors, paper.date, paper.url, paper.categories):
        digest.update(b"\x1f" + (part or "").encode())
    for key in sorted(paper.extra):
        digest.update(f"\x1e{key}={paper.extra[key]}".encode())
    return digest.hexdigest()[:32]


def ingest(
    settings: Settings,
    store: ChromaStore,
    embedder: Embedder,
    paths: Iterable[str | Path] | None = None,
    *,
    prune: bool = False,
    rebuild: bool = False,
    report_problem: Callable[[Problem], None] | None = None,
    progress: bool | ProgressCallback = True,
    catalog: PaperCatalog | None = None,
    records: RecordSource | None = None,
    on_estimate: EstimateCallback | None = None,
) -> IngestReport:
    """Bring the index up to date with `paths` (default: corpus.paths, else the built-in corpus).

    `rebuild` drops the index first. Everything that changes the index, that drop included, happens
    under the ingest lock: an ingest that is refused because another one is writing changes nothing.
    An index whose vectors are damaged is refused too (see `ChromaStore.damage`), so "N unchanged"
    is never said of an index that cannot answer. The first few problems of each kind go to
    `report_problem`; the rest are counted (`IngestReport.problems_total`, `.problem_summary`).
    `progress` is True for a progress bar, False for silence, or a callable receiving an
    `IngestProgress` (counts, rate, time left) after each committed batch. `records` replaces
    the files as the input (e.g. LlamaIndex documents); it is read twice, like files.
    `on_estimate` hears once, before an ingest of over `ESTIMATE_ABOVE` papers to embed, how long
    it should take (from the rate the last big ingest into this index measured, else after the
    first batch).

    Files whose fingerprints and index match the last complete ingest of them are reported
    unchanged without being read (`index.trust_fingerprints`, see rag.ingest_state); the report
    then carries that run's counts and problems.
    """
    started = time.perf_counter()
    files: list[Path] | None = None
    if records is None:
        paths = files = [Path(p) for p in paths] if paths else default_paths(settings)

        def records(report: Callable[[Problem], None], on_file: Callable[[str], None]) -> Iterator[Record]:
            return iter_records(
                paths, report, on_file, options=settings.sources, max_abstract_chars=settings.corpus.max_abstract_chars
            )

    report = IngestReport()

    tally = ProblemTally()

    def problem(item: Problem) -> None:
        report.problems_total += 1
        if tally.add(item):
            report.problems.append(item)
            if report_problem:
                report_problem(item)

    plan_chunks = chunk_plan(settings, embedder)
    fingerprint = f"{embedder.model_name}|{plan_chunks}"

    with ingest_lock(store.path):
        # A long-lived writer (the server's upload jobs) may hold a client opened before another process wrote:
        # read the index as it is now, or the papers this client never loaded look like lost vectors.
        store.refresh()
        state = IngestState(store.path, store.collection_name)
        if rebuild:
            store.drop()
            if catalog is not None:
                catalog.drop()
            remove_caches(settings.index_path)
            state.forget()
        store.open_for(
            embedder.model_name,
            embedder.dimension,
            create=True,
            precision=embedder.precision,
            backend=embedder.backend,
        )
        inputs = _inputs(files, settings, embedder, fingerprint, store, prune) if files is not None else None
        trusted = None
        if inputs is not None and settings.index.trust_fingerprints and not rebuild:
            trusted = _unchanged(state, inputs, store, catalog)
        # Vector files exactly as the trusted run left them answered then; the probe would load them all (seconds).
        vector_files = store.vector_files_digest() if trusted is not None else ""
        files_as_left = trusted is not None and trusted.vector_files == vector_files != ""
        if not rebuild:  # the probe looks up the ids the run being trusted chose: none found by position
            damage = None if files_as_left else store.damage(ids=trusted.probe if trusted else None)
            if damage:
                raise IndexStoreError(f"{store.where} is damaged: {damage}")
        if trusted is not None:
            if not files_as_left:  # the probe found these files sound: the next run need not load them again
                state.record(replace(trusted, vector_files=vector_files))
                state.save()
            _report_outcome(report, trusted.outcome, report_problem)
            report.seconds = time.perf_counter() - started
            return report
        plan = _plan(records, fingerprint, problem)
        indexed = store.indexed_papers()
        others = cited_others((s for entry in indexed.values() for s in entry.sources), plan.files_read)
        kept = _keep_unread_sources(plan, indexed, prune)
        _merge_sources(store, records, plan, indexed, kept, fingerprint)
        report.files_read = len(plan.files_read)
        report.papers_seen = len(plan.hashes)
        report.records_read = plan.records

        to_embed = {
            pid
            for pid, h in plan.hashes.items()
            if pid not in indexed or indexed[pid].paper_hash != h or not indexed[pid].complete
        }
        report.papers_unchanged = len(plan.hashes) - len(to_embed)
        encoder = f"{embedder.model_name}|{embedder.backend}|{embedder.precision}|{settings.index.sentence_vectors}"
        estimator = Estimator(on_estimate, len(plan.hashes), len(to_embed), state.rate(encoder), encoder)
        chunkless = _embed_planned(
            store,
            embedder,
            records,
            plan,
            to_embed,
            plan_chunks,
            settings.index.batch_papers,
            report,
            progress,
            sentence_vectors=settings.index.sentence_vectors,
            estimator=estimator,
        )

        sources_changed = {
            pid: sources
            for pid, sources in plan.sources.items()
            if pid in indexed
            and pid not in to_embed
            and (tuple(sources) != indexed[pid].sources or _hashes_changed(plan, indexed[pid], pid))
        }
        gone, shrunk = _vanished(indexed, plan)
        remaining = (set(indexed) | set(plan.hashes)) - (gone if prune else set())
        if prune:
            store.delete_papers(sorted(gone))
            report.papers_pruned = len(gone)
            sources_changed.update(shrunk)
        else:
            report.papers_missing = len(gone)
        if sources_changed:
            store.update_sources(sources_changed, indexed, plan.source_hashes)
        report.sources_updated = len(sources_changed)
        if catalog is not None:  # BM25 and filters follow Chroma; only changed papers are re-tokenized
            catalog.refresh(store)
        report.problem_summary = tally.summary()
        # Remembered only where the same inputs would now find nothing to do: a paper that gave no chunks
        # would be planned again, so that run would not be a no-op.
        if inputs is not None and not chunkless and (mark := _index_mark(store)) is not None:
            probe = store.probe_ids(list(remaining))
            outcome = _outcome_of(report, prune)
            state.record(Entry(inputs, others, mark, outcome, probe, store.vector_files_digest()))
        if (rate := estimator.measured()) is not None:
            state.set_rate(rate)
        state.save()
        if report.papers_embedded or report.papers_pruned or report.sources_updated:
            store.trust_written_files()
    report.seconds = time.perf_counter() - started
    return report


def _inputs(
    files: list[Path], settings: Settings, embedder: Embedder, fingerprint: str, store: ChromaStore, prune: bool
) -> Inputs | None:
    """The files this run reads, fingerprinted before any is read (a file changed meanwhile then differs next
    time), with everything else that decides what they become in the index. None if one cannot be read."""
    from rag import __version__

    listing: list[Problem] = []
    prints = [FileFingerprint.of(path) for path in expand_paths(files, listing.append)]
    if any(p is None for p in prints):
        return None
    parts = (
        __version__,
        fingerprint,
        embedder.precision,
        store.collection_name,
        settings.sources.model_dump_json(),
        settings.corpus.max_abstract_chars,
        settings.index.sentence_vectors,
    )
    return Inputs(settings_fingerprint(parts), prune, tuple(p for p in prints if p), listing_digest(listing))


def _index_mark(store: ChromaStore) -> IndexMark | None:
    """The index as it is now, read without loading its collections where the files allow it."""
    generation = store.written_generation()
    if generation is None:
        return None
    if (counts := store.stored_counts()) is not None:
        return IndexMark(generation, *counts)
    return IndexMark(generation, store.chunk_count(), store.sentence_count())


def _unchanged(state: IngestState, inputs: Inputs, store: ChromaStore, catalog: PaperCatalog | None) -> Entry | None:
    """The last complete run over these very inputs, if the index (and its catalog) is still as it left it."""
    mark = _index_mark(store)
    if mark is None:
        return None
    entry = state.match(inputs, mark)
    if entry is None or (catalog is not None and not catalog.is_current(store, mark.chunks)):
        return None
    return entry


def _outcome_of(report: IngestReport, prune: bool) -> Outcome:
    """What a run over the same inputs reports next: every paper unchanged, the missing ones still missing
    (none after --prune), the same problems."""
    return Outcome(
        files_read=report.files_read,
        records_read=report.records_read,
        papers_seen=report.papers_seen,
        papers_missing=0 if prune else report.papers_missing,
        problems=list(report.problems),
        problems_total=report.problems_total,
        problem_summary=list(report.problem_summary),
    )


def _report_outcome(report: IngestReport, outcome: Outcome, report_problem: Callable[[Problem], None] | None) -> None:
    report.files_read = outcome.files_read
    report.records_read = outcome.records_read
    report.papers_seen = report.papers_unchanged = outcome.papers_seen
    report.papers_missing = outcome.papers_missing
    report.problems = list(outcome.problems)
    report.problems_total = outcome.problems_total
    report.problem_summary = list(outcome.problem_summary)
    for item in report.problems:  # the files are as they were, so are their problems
        if report_problem:
            report_problem(item)


def _plan(records: RecordSource, fingerprint: str, problem: Callable[[Problem], None]) -> _Plan:
    plan = _Plan()
    for record in records(problem, plan.files_read.add):
        plan.records += 1
        paper = record.paper
        digest = paper_hash(paper, fingerprint)
        known = plan.hashes.get(paper.paper_id)
        if known is None:
            plan.hashes[paper.paper_id] = digest
            plan.sources[paper.paper_id] = list(paper.sources)
            continue
        first = plan.sources[paper.paper_id][0]
        seen = plan.repeated.setdefault(paper.paper_id, {first: known})
        for source in paper.sources:
            seen.setdefault(source, digest)
        add_sources(plan.sources[paper.paper_id], paper.sources)
        if known != digest and not record.merged:
            problem(duplicate_problem(record))
    return plan


def _merge_sources(
    store: ChromaStore,
    records: RecordSource,
    plan: _Plan,
    indexed: dict[str, IndexedPaper],
    kept: dict[str, list[str]],
    fingerprint: str,
) -> None:
    """Make each paper the merge of all its sources, those this run did not read included.

    A paper whose files this run read all gave what they gave before keeps its indexed hash (nothing
    to embed, whatever the other files added). Otherwise its records of this run are merged (text
    from the first, other fields from the first that has them) and the fields it still lacks are
    taken from the index when a file not read this run is among its sources. That needs the records
    again: one more pass over the inputs, only when some paper needs it.
    """
    resolve: set[str] = set(plan.repeated)
    for paper_id in set(kept) | (set(plan.repeated) & set(indexed)):
        entry = indexed[paper_id]
        read = plan.repeated.get(paper_id) or {plan.sources[paper_id][0]: plan.hashes[paper_id]}
        hashes = {**read, **{s: entry.source_hashes.get(s, "?") for s in kept.get(paper_id, ())}}
        plan.source_hashes[paper_id] = hashes
        if all(entry.source_hashes.get(s) == h for s, h in read.items()):
            plan.hashes[paper_id] = entry.paper_hash  # every file as it was, in whatever order: so is the paper
            resolve.discard(paper_id)
        else:
            resolve.add(paper_id)
    for paper_id, read in plan.repeated.items():
        plan.source_hashes.setdefault(paper_id, dict(read))
    if not resolve:
        return
    for record in records(lambda _p: None, lambda _f: None):
        paper = record.paper
        if paper.paper_id not in resolve:
            continue
        known = plan.merged.get(paper.paper_id)
        if known is None:
            plan.merged[paper.paper_id] = paper
        else:
            fill_fields(known, paper)
    for paper_id, paper in plan.merged.items():
        if paper_id in kept:
            stored = store.stored_paper(paper_id)
            if stored is not None:
                fill_fields(paper, stored)
        plan.hashes[paper_id] = paper_hash(paper, fingerprint)


def _hashes_changed(plan: _Plan, entry: IndexedPaper, paper_id: str) -> bool:
    hashes = plan.source_hashes.get(paper_id)
    return hashes is not None and any(entry.source_hashes.get(s) != h for s, h in hashes.items())


def _embed_planned(
    store: ChromaStore,
    embedder: Embedder,
    records: RecordSource,
    plan: _Plan,
    to_embed: set[str],
    chunk_plan: ChunkPlan,
    batch_papers: int,
    report: IngestReport,
    progress: bool | ProgressCallback,
    sentence_vectors: bool = True,
    estimator: Estimator | None = None,
) -> int:
    """Embed and commit the planned papers in batches; returns how many of them gave no chunk at all."""
    if not to_embed:
        return 0
    from tqdm import tqdm

    estimator = estimator or Estimator(None, 0, 0, None, "")
    if (estimate := estimator.before()) is not None:
        estimator.say(estimate)
    count_budget = tiktoken_counter()
    bar = tqdm(total=len(to_embed), unit="paper", desc="embedding", disable=progress is not True, dynamic_ncols=True)
    started = last = time.perf_counter()
    chunkless = 0
    try:
        for batch in _batches(_planned_papers(records, plan, to_embed), batch_papers):
            chunks = [c for paper in batch for c in chunk_paper(paper, chunk_plan, count_budget, embedder.count_tokens)]
            chunkless += len(batch) - len({c.paper_id for c in chunks})
            sentences = sentences_of(chunks) if sentence_vectors else []
            t0 = time.perf_counter()
            vectors = embedder.embed([c.embed_text for c in chunks])
            sentence_matrix = embedder.embed([text for _, _, text in sentences]) if sentences else None
            embed_seconds = time.perf_counter() - t0
            report.embed_seconds += embed_seconds
            hashes = {p.paper_id: plan.hashes[p.paper_id] for p in batch}
            source_hashes = {p.paper_id: plan.source_hashes.get(p.paper_id, {}) for p in batch}
            store.replace_papers(batch, hashes, chunks, vectors, sentences, sentence_matrix, source_hashes)
            report.papers_embedded += len(batch)
            report.chunks_embedded += len(chunks)
            texts, now = len(chunks) + len(sentences), time.perf_counter()
            if estimate := estimator.after_batch(len(batch), texts, now - last, embed_seconds):  # reading included
                with tqdm.external_write_mode(file=sys.stderr):
                    estimator.say(estimate)
            bar.update(len(batch))
            bar.set_postfix(chunks=report.chunks_embedded)
            if callable(progress):
                elapsed = time.perf_counter() - started
                progress(IngestProgress(report.papers_embedded, len(to_embed), report.chunks_embedded, elapsed))
            last = time.perf_counter()
    finally:
        bar.close()
    return chunkless


def sentences_of(chunks: list[Chunk]) -> list[tuple[str, int, str]]:
    """(paper_id, position, sentence) for every abstract sentence, the unit answering picks evidence from: what
    ingest embeds beside the chunks (`index.sentence_vectors`)."""
    by_paper: dict[str, list[str]] = {}
    for chunk in chunks:
        by_paper.setdefault(chunk.paper_id, []).append(chunk.text)
    return [
        (paper_id, position, sentence)
        for paper_id, passages in by_paper.items()
        for position, sentence in enumerate(abstract_sentences(passages))
    ]


def _planned_papers(records: RecordSource, plan: _Plan, to_embed: set[str]) -> Iterator[Paper]:
    """Second pass: the first occurrence of each planned paper, carrying all its source files."""
    done: set[str] = set()
    for record in records(lambda _p: None, lambda _f: None):
        paper = record.paper
        if paper.paper_id in to_embed and paper.paper_id not in done:
            done.add(paper.paper_id)
            paper = plan.merged.get(paper.paper_id, paper)
            paper.sources = plan.sources[paper.paper_id]
            yield paper


def _batches(items: Iterable[Paper], size: int) -> Iterator[list[Paper]]:
    batch: list[Paper] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _keep_unread_sources(plan: _Plan, indexed: dict[str, IndexedPaper], prune: bool) -> dict[str, list[str]]:
    """A paper seen this run keeps the sources it has in files this run did not read (returned per paper).

    Those files are left alone unless --prune is given and they no longer exist.
    """
    kept: dict[str, list[str]] = {}
    for paper_id, sources in plan.sources.items():
        entry = indexed.get(paper_id)
        if entry is None:
            continue
        for source in entry.sources:
            unread = source and source not in plan.files_read and source not in sources
            if unread and (not prune or Path(source).exists()):
                sources.append(source)
                kept.setdefault(paper_id, []).append(source)
    return kept


def _vanished(indexed: dict[str, IndexedPaper], plan: _Plan) -> tuple[set[str], dict[str, list[str]]]:
    """Indexed papers this run did not see: gone entirely, or still alive in fewer files."""
    gone: set[str] = set()
    shrunk: dict[str, list[str]] = {}
    for paper_id, entry in indexed.items():
        if paper_id in plan.hashes:
            continue
        alive = [s for s in entry.sources if s and s not in plan.files_read and Path(s).exists()]
        if not alive:
            gone.add(paper_id)
        elif list(alive) != list(entry.sources):
            shrunk[paper_id] = alive
    return gone, shrunk


_HELD: dict[tuple[str, int], int] = {}  # (index folder, thread) -> how deep this thread holds the lock
_HELD_LOCK = threading.Lock()


@contextmanager
def ingest_lock(index_path: Path) -> Iterator[None]:
    """One writer per index: a second `rag ingest` on the same index stops with a clear message.

    Re-entrant within one thread (`rag check --repair` re-ingests while it holds the lock); another
    thread or process is refused.
    """
    key = (str(index_path.resolve()), threading.get_ident())
    with _HELD_LOCK:
        if key in _HELD:
            _HELD[key] += 1
            held = True
        else:
            held = False
    if held:
        try:
            yield
        finally:
            with _HELD_LOCK:
                _HELD[key] -= 1
        return
    index_path.mkdir(parents=True, exist_ok=True)
    lock_path = index_path / ".ingest.lock"
    try:
        handle = lock_path.open("a+")
    except OSError as exc:
        raise IndexStoreError(f"cannot write the index at {index_path} ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexStoreError(
                f"another ingest is writing the index at {index_path}; wait for it to finish (nothing was changed)"
            ) from None
        with _HELD_LOCK:
            _HELD[key] = 1
        try:
            yield
        finally:
            with _HELD_LOCK:
                del _HELD[key]
    finally:
        handle.close()
