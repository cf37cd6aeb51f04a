"""Index upkeep: `rag check` verifies an index end to end, and `--repair` fixes what can be fixed.

What is checked, each with what a repair does about it:
- the vector index's files (HNSW folders) are sound before Chroma loads them (rag.store_files; a
  damaged one crashes the process): damaged folders are moved aside, their vectors then count as
  lost and are re-embedded as below;
- the vector index holds a vector for every stored chunk and sentence (lost HNSW files): the
  missing ones are re-embedded from the stored texts, the rest kept;
- a sample of stored vectors equals what the model gives their texts now: if not, all re-embedded;
- every paper has all its chunks, and the catalog lists no paper the index has lost: those papers
  are read again from their source files (when the files are still there);
- every paper has its sentence vectors, and no sentence outlives its paper: made again from the
  stored passages, or deleted;
- the BM25/filter catalog (`papers-catalog.sqlite3`) is a sound SQLite file that matches the index
  paper for paper: rebuilt from the index;
- BM25 caches belong to the catalog as it is: others are deleted.

Texts, metadata and the catalog live in SQLite; only the vectors and the derived files can be
rebuilt without the sources. The cheap part (a few vectors looked up and queried, `ChromaStore.damage`)
runs before every `rag ingest` and when a search opens the index.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from rag.chunking import abstract_sentences, embed_text_for, uses_title
from rag.ingest import chunk_plan, ingest_lock
from rag.ingest_state import forget_ingest_state
from rag.lexical import (
    CACHE_DIR,
    CATALOG_FILE,
    KeywordIndex,
    cache_damage,
    cache_dir,
    catalog_digest,
    catalog_row,
    remove_catalog,
)
from rag.store import SOURCE_SEPARATOR
from rag.store_files import QUARANTINE, damaged_files, describe, forget_quarantine, quarantine

SAMPLE = 32
SAME_VECTOR = 0.99  # cosine; a re-embedded text matches its stored vector to ~1e-6 on the same model


@dataclass(frozen=True)
class Finding:
    """One thing wrong with an index, and what `--repair` does about it ("" when it cannot)."""

    area: str  # files | vectors | chunks | sentences | catalog | cache
    problem: str
    repair: str
    detail: tuple = ()  # what the repair needs (ids, paths); not shown


@dataclass
class CheckReport:
    index: str
    papers: int = 0
    chunks: int = 0
    sentences: int = 0
    findings: list[Finding] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # what --repair did, one line each
    remaining: list[Finding] = field(default_factory=list)  # found again after the repair
    repair_ran: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.remaining if self.repair_ran else self.findings)


def check_index(library, *, repair: bool = False, sample: int = SAMPLE, say: Callable[[str], None] = print):
    """Check the library's index (and repair it); `say` gets a line as each step starts."""
    damaged = _damaged_files(library, say)
    if damaged and not repair:  # Chroma must not load them (a crash); the other checks wait for the repair
        report = CheckReport(index=str(library.settings.index_path))
        report.findings = damaged
        return report
    if damaged:
        with ingest_lock(library.settings.index_path):
            moved = quarantine([d for f in damaged for d in f.detail])
        note = f"moved {len(moved)} damaged vector folders aside (to {QUARANTINE}/); their vectors count as lost"
    store = library.store()
    store.open_for(library.settings.embedding.model, None, create=False)
    report = CheckReport(index=store.where.removeprefix("the index at "))
    report.findings = damaged + _inspect(library, report, sample, say, report.seconds)
    if damaged:
        report.repaired.append(note)
    if repair and report.findings:
        with ingest_lock(library.settings.index_path):
            _repair(library, report, say)
            report.repair_ran = True
            say("checking again")
            report.remaining = _inspect(library, report, sample, lambda _line: None, {})
        if damaged and not report.remaining:
            forget_quarantine(library.settings.index_path)
    return report


def _damaged_files(library, say: Callable[[str], None]) -> list[Finding]:
    """The vector-index files that fail their check (rag.store_files), one finding each, named."""
    if library.settings.index.server is not None or not library.settings.index_path.is_dir():
        return []
    say("checking the vector files")
    path = library.settings.index_path
    return [
        Finding(
            "files",
            f"the vector file {describe(path, [item])} is damaged",
            "move its folder aside and re-embed its vectors from the stored texts",
            (item,),
        )
        for item in damaged_files(path)
    ]


# --- inspection ------------------------------------------------------------------------------------


def _inspect(
    library, report: CheckReport, sample: int, say: Callable[[str], None], seconds: dict[str, float]
) -> list[Finding]:
    store = library.store()
    store.refresh()
    findings: list[Finding] = []

    def timed(name: str, step: Callable[[], list[Finding]]) -> None:
        say(f"checking {name}")
        started = time.perf_counter()
        findings.extend(step())
        seconds[name] = round(time.perf_counter() - started, 3)

    indexed = store.indexed_papers()
    report.papers, report.chunks = len(indexed), sum(p.chunks_present for p in indexed.values())
    gaps: dict[str, list[str]] = {}
    timed("vectors", lambda: _vectors(store, report, gaps))
    timed("sample", lambda: _sample(library, gaps, sample))
    timed("chunks", lambda: _chunks(indexed))
    timed("sentences", lambda: _sentences(library, indexed))
    timed("catalog", lambda: _catalog(library, indexed))
    timed("caches", lambda: _caches(library))
    return findings


def _vectors(store, report: CheckReport, gaps: dict[str, list[str]]) -> list[Finding]:
    found = []
    for which in ("chunks", "sentences"):
        total, missing = store.vector_gaps(which)
        gaps[which] = missing
        if which == "sentences":
            report.sentences = total
        if missing:
            found.append(
                Finding(
                    "vectors",
                    f"{len(missing):,} of {total:,} {which} have no vector in the vector index (lost HNSW files?)",
                    f"re-embed those {which} from their stored texts",
                    (which, tuple(missing)),
                )
            )
    return found


def _sample(library, gaps: dict[str, list[str]], size: int) -> list[Finding]:
    """Re-embed a spread of stored texts and compare with their stored vectors."""
    store = library.store()
    found = []
    for which in ("chunks", "sentences"):
        lost = set(gaps.get(which, ()))
        ids = [i for i in store.stored_ids(which) if i not in lost]
        if not ids or not size:
            continue
        picked = list(dict.fromkeys(ids[i * len(ids) // size] for i in range(min(size, len(ids)))))
        rows = store.stored_rows(which, picked)
        stored = store.stored_vectors(which, [r[0] for r in rows])
        fresh = _embedder_for(library, which)(rows)
        similarity = np.array([float(stored[r[0]] @ v) for r, v in zip(rows, fresh, strict=True)])
        off = int((similarity < SAME_VECTOR).sum())
        if off:
            found.append(
                Finding(
                    "vectors",
                    f"{off} of {len(rows)} sampled {which} have stored vectors that differ from what "
                    f"'{library.settings.embedding.model}' gives their text (lowest similarity {similarity.min():.3f})",
                    f"re-embed every stored {which[:-1]}",
                    (which, ("*",)),
                )
            )
    return found


def _chunks(indexed) -> list[Finding]:
    short = {pid: p for pid, p in indexed.items() if not p.complete}
    if not short:
        return []
    sources = sorted({s for p in short.values() for s in p.sources if s})
    return [
        Finding(
            "chunks",
            f"{len(short):,} papers miss some of their chunks (e.g. {next(iter(short))})",
            "read those papers again from their source files",
            tuple(sources),
        )
    ]


def _sentences(library, indexed) -> list[Finding]:
    store = library.store()
    if store.sentences is None:
        return []
    counts = store.sentence_papers()
    found = []
    bare = sorted(pid for pid in indexed if pid not in counts)
    if bare and library.settings.index.sentence_vectors:
        found.append(
            Finding(
                "sentences",
                f"{len(bare):,} papers have no sentence vectors",
                "embed their sentences from the stored passages",
                ("missing", tuple(bare)),
            )
        )
    orphans = sorted(pid for pid in counts if pid not in indexed)
    if orphans:
        found.append(
            Finding(
                "sentences",
                f"{len(orphans):,} papers no longer in the index still have sentence vectors",
                "delete them",
                ("orphans", tuple(orphans)),
            )
        )
    return found


def _catalog(library, indexed) -> list[Finding]:
    path = library.settings.index_path / CATALOG_FILE
    if not path.exists():
        return [Finding("catalog", f"there is no paper catalog ({path.name})", "build it from the index")]
    collection = library.settings.index.collection
    rows, state, problem = _read_catalog(path, collection)
    if problem:
        damaged = f"the paper catalog {path.name} is damaged ({problem})"
        return [Finding("catalog", damaged, "rebuild it from the index")]
    store = library.store()
    in_index = {m.paper_id: m for m in store.iter_first_chunk_metadata()}
    found = []
    lost = sorted(pid for pid in rows if pid not in indexed)
    if lost:
        sources = sorted({s for pid in lost for s in rows[pid][5].split(SOURCE_SEPARATOR) if s})
        found.append(
            Finding(
                "chunks",
                f"{len(lost):,} papers in the catalog have no chunks in the index (e.g. {lost[0]})",
                "read those papers again from their source files",
                tuple(sources),
            )
        )
    behind = [pid for pid, meta in in_index.items() if _key_of(rows.get(pid)) != (meta.paper_hash, meta.sources_key)]
    if behind:
        found.append(Finding("catalog", f"the catalog is behind the index for {len(behind):,} papers", "refresh it"))
    # Rows that agree on hash and sources may still hold other bytes than the index gives (a flipped
    # byte in a title, a filter field, the keyword tokens): each row is derived again and compared.
    title_weight = library.settings.retrieval.title_weight
    lagging = set(behind)
    current = [pid for pid in in_index if pid in rows and pid not in lagging]
    differ: list[str] = []
    for start in range(0, len(current), 500):
        batch = current[start : start + 500]
        passages = store.passages_of(batch)
        differ += [
            pid
            for pid in batch
            if _comparable(catalog_row(collection, in_index[pid], passages.get(pid, []), title_weight))
            != _comparable(rows[pid])
        ]
    digest = catalog_digest((pid, row[2], row[5]) for pid, row in sorted(rows.items()))
    bad_state = [key for key, ok in (("content", state.get("content") in (None, digest)),
                                     ("generation", (state.get("generation") or "0").isdigit())) if not ok]  # fmt: skip
    if differ or bad_state:
        what = [f"{len(differ):,} rows differ from the index (e.g. {differ[0]})"] if differ else []
        what += [f"its {key} record is wrong" for key in bad_state]
        damaged = f"the paper catalog {path.name} is damaged ({'; '.join(what)})"
        found.append(Finding("catalog", damaged, "rebuild it from the index"))
    return found


def _comparable(row: tuple) -> tuple:
    """A catalog row with its filter fields parsed: Chroma gives metadata keys back in its own order, so
    the JSON written at ingest and the JSON derived again may list the same fields in another order."""
    try:
        return (*row[:6], json.loads(row[6]), *row[7:])
    except (TypeError, ValueError, IndexError):
        return tuple(row)


def _key_of(row: tuple | None) -> tuple | None:
    """A catalog row's (paper_hash, sources): what says whether it follows the index."""
    return None if row is None else (row[2], row[5])


def _read_catalog(path: Path, collection: str) -> tuple[dict[str, tuple], dict[str, str], str | None]:
    """({paper_id: row}, {state key: value}) read without changing the file, or the reason it cannot be read."""
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return {}, {}, str(exc)
    try:
        verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            return {}, {}, verdict
        columns = "collection, paper_id, paper_hash, title, date, sources, fields, tokens"
        query = f"SELECT {columns} FROM papers WHERE collection=?"
        rows = {row[1]: tuple(row) for row in db.execute(query, (collection,))}
        state = dict(db.execute("SELECT key, value FROM state WHERE collection=?", (collection,)).fetchall())
        return rows, state, None
    except sqlite3.Error as exc:
        return {}, {}, str(exc)
    finally:
        db.close()


def _caches(library) -> list[Finding]:
    root = cache_dir(library.settings.index_path)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        return []
    _rows, _state, problem = _read_catalog(
        library.settings.index_path / CATALOG_FILE, library.settings.index.collection
    )
    if problem:
        return []  # judged once the catalog is rebuilt
    catalog = library.catalog()
    r = library.settings.retrieval
    current = KeywordIndex.cache_name(catalog, r.bm25_k1, r.bm25_b)
    stale, damaged = [], []
    for folder in folders:
        if folder.name != current:
            stale.append(folder)
            continue
        broken = cache_damage(folder)
        if broken:
            damaged.append(
                Finding(
                    "cache",
                    f"the BM25 cache {CACHE_DIR}/{folder.name} is damaged ({broken}); searches rebuild BM25 instead",
                    "delete it",
                    (str(folder),),
                )
            )
            continue
        try:
            ids = json.loads((folder / "paper_ids.json").read_text())
        except (OSError, ValueError):
            ids = None
        if ids != catalog.paper_ids():
            stale.append(folder)
    if not stale:
        return damaged
    return [
        *damaged,
        Finding(
            "cache",
            f"{len(stale)} BM25 caches do not match the catalog ({', '.join(p.name for p in stale[:2])})",
            "delete them",
            tuple(str(p) for p in stale),
        ),
    ]


# --- repair ------------------------------------------------------------------------------------------


def _repair(library, report: CheckReport, say: Callable[[str], None]) -> None:
    # A repaired index is not the one any earlier ingest saw: the next `rag ingest` reads every record.
    forget_ingest_state(library.settings.index_path)
    store = library.store()
    by_area: dict[str, list[Finding]] = {}
    for finding in report.findings:
        by_area.setdefault(finding.area, []).append(finding)
    done = report.repaired

    if any("damaged" in f.problem or "no paper catalog" in f.problem for f in by_area.get("catalog", [])):
        say("rebuilding the paper catalog")
        library.close_catalog()
        remove_catalog(library.settings.index_path)
        done.append("removed the damaged paper catalog")
    for finding in by_area.get("vectors", []):
        which, ids = finding.detail
        say(f"re-embedding {which}")
        everything = ids == ("*",)
        embed = _embedder_for(library, which)
        embedded = store.rebuild_vectors(which, [] if everything else list(ids), embed, everything)
        done.append(f"re-embedded {embedded:,} {which} and rebuilt their vector index")
    sources = sorted({s for f in by_area.get("chunks", []) for s in f.detail})
    if sources:
        present = [s for s in sources if Path(s).exists()]
        if present:
            say(f"reading {len(present)} source files again")
            ingested = library.ingest(present, progress=False)
            done.append(
                f"read {len(present)} source files again: {ingested.papers_embedded:,} papers embedded "
                f"({ingested.chunks_embedded:,} chunks)"
            )
        gone = len(sources) - len(present)
        if gone:
            done.append(f"{gone} source files are gone, so their papers cannot be restored (`rag ingest --prune`)")
    # Sentences are judged again here: papers just read again brought their own.
    for finding in _sentences(library, store.indexed_papers()):
        kind, paper_ids = finding.detail
        if kind == "orphans":
            store.delete_sentences(list(paper_ids))
            done.append(f"deleted the sentence vectors of {len(paper_ids):,} papers no longer indexed")
        else:
            say("embedding missing sentence vectors")
            made = _restore_sentences(library, list(paper_ids))
            done.append(f"embedded {made:,} sentences of {len(paper_ids):,} papers")
    say("refreshing the paper catalog")
    changed = library.catalog().refresh(store)
    if by_area.get("catalog") or changed:
        done.append(f"refreshed the paper catalog ({changed:,} papers updated)")
    for finding in by_area.get("cache", []):
        for folder in finding.detail:
            _remove_tree(Path(folder))
        done.append(f"deleted {len(finding.detail)} stale BM25 caches")


def _restore_sentences(library, paper_ids: list[str]) -> int:
    store = library.store()
    made = 0
    for start in range(0, len(paper_ids), 200):
        batch = paper_ids[start : start + 200]
        passages = store.passages_of(batch)
        rows = [(pid, i, s) for pid in batch for i, s in enumerate(abstract_sentences(passages.get(pid, [])))]
        if rows:
            store.put_sentences(rows, library.embedder.embed([s for _, _, s in rows]))
            made += len(rows)
    return made


def _embedder_for(library, which: str) -> Callable[[list], np.ndarray]:
    """Re-embeds stored (id, text, metadata) rows exactly as ingest embedded them."""
    embedder = library.embedder
    if which == "sentences":
        return lambda rows: embedder.embed([text for _, text, _ in rows])
    plan = chunk_plan(library.settings, embedder)

    def chunks(rows: list) -> np.ndarray:
        titles = {str(meta.get("title", "")) for _, _, meta in rows}
        with_title = {t: uses_title(t, plan, embedder.count_tokens) for t in titles}
        return embedder.embed(
            [embed_text_for(str(m.get("title", "")), text, with_title[str(m.get("title", ""))]) for _, text, m in rows]
        )

    return chunks


def _remove_tree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
