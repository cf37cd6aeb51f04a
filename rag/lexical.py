"""Index stage, keyword half: a BM25 index of whole papers (title + abstract) beside the Chroma index.

Chroma holds the truth; this is derived from it. A SQLite catalog in the index folder keeps, per
paper, the content hash Chroma holds, the metadata filters read (sources, date, fields) and the
stemmed tokens. `refresh` runs at the end of every ingest and tokenizes only papers whose hash or
sources changed, so it is incremental; a run killed before it is caught at the next search, which
sees the catalog's chunk count differ from Chroma's and refreshes first. The BM25 matrix itself
(bm25s) is rebuilt from the stored tokens and cached on disk per catalog generation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.chunking import abstract_sentences
from rag.errors import IndexStoreError
from rag.store import SOURCE_SEPARATOR, ChromaStore, ChunkMeta

CATALOG_FILE = "papers-catalog.sqlite3"
CACHE_DIR = ".bm25-cache"
_SCHEMA = """
    CREATE TABLE IF NOT EXISTS papers (
        collection TEXT, paper_id TEXT, paper_hash TEXT, title TEXT, date TEXT,
        sources TEXT, fields TEXT, tokens TEXT, PRIMARY KEY (collection, paper_id));
    CREATE TABLE IF NOT EXISTS state (collection TEXT, key TEXT, value TEXT,
        PRIMARY KEY (collection, key));
"""
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_REFRESH_BATCH = 500


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=2)
def stopwords(kind: str = "lucene") -> frozenset[str]:
    """'lucene': Lucene's 33 English stopwords (what papers are indexed with); 'english': 179 words, which
    also drops question words ('is there work that ...') from queries."""
    from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS if kind == "english" else STOPWORDS_EN)


# Words that frame a question or an abstract rather than state its topic: generic research and question
# grammar ("is there work on", "we propose a method"), no topic words. Dropped with the English stop-words
# wherever a text is reduced to what it is about (answer scoring, the judge); BM25 keeps them.
_FRAME_TEXT = """paper papers work works study studies research article articles publication literature anyone anybody
anything something looking look find remember recall know tell show please like want need exist exists
existing there any approach approaches method methods technique techniques propose proposed proposes
describe describes described using use used uses does did done way ways one ones kind type also new based
result results which what whom whose whether how many much"""
FRAME_WORDS = frozenset(_FRAME_TEXT.split())


def content_stems(text: str) -> list[str]:
    """The stems of a text's content words (no English stop-words, no frame words), in order, once each."""
    drop = stopwords("english") | FRAME_WORDS
    words = [w for w in _TOKEN.findall(text.lower()) if w not in drop]
    return list(dict.fromkeys(_stemmer().stemWords(words)))


def stem_word(word: str) -> str:
    """One lower-cased word as the keyword index stores it."""
    return _stemmer().stemWord(word)


def keyword_tokens(text: str, stop: frozenset[str] | None = None) -> list[str]:
    """Lower-cased, stop-worded, Snowball-stemmed word tokens: what BM25 matches on."""
    stop = stopwords() if stop is None else stop
    words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
    return _stemmer().stemWords(words)


def paper_tokens(title: str, abstract: str, title_weight: int) -> list[str]:
    """Title tokens count `title_weight` times: a title word says more about a paper than one in its abstract."""
    return keyword_tokens(title) * title_weight + keyword_tokens(abstract)


@dataclass(frozen=True)
class PaperRecord:
    """What filters read about one paper, and what BM25 indexes."""

    paper_id: str
    title: str
    date: str | None
    sources: tuple[str, ...]
    fields: dict


_REOPEN_LOCK = threading.Lock()


class PaperCatalog:
    """SQLite catalog of the indexed papers: hashes, filter metadata, keyword tokens."""

    def __init__(self, index_path: Path, collection: str, title_weight: int = 2) -> None:
        self.path = index_path / CATALOG_FILE
        self.collection = collection
        self.title_weight = title_weight
        self.recovered: str | None = None  # why a damaged catalog file was replaced, when it was
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file the connection has open
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # locked, unreadable, read-only: not damage
                raise IndexStoreError(f"cannot open the paper catalog at {self.path} ({exc})") from None
            # The catalog is derived from Chroma: a damaged file is replaced and filled again from the index.
            self.recovered = f"the paper catalog {self.path} was damaged ({exc}); rebuilt it from the index"
            remove_catalog(index_path)
            try:
                self._conn = self._open()
            except sqlite3.Error as again:
                raise IndexStoreError(f"cannot recreate the paper catalog at {self.path} ({again})") from None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        try:
            db.executescript(_SCHEMA)
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
        except BaseException:
            db.close()
            raise
        self._identity = self._file_identity()
        return db

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection, reopened when another process replaced or removed the file (`rag check --repair`
        rebuilds it): a connection to the old, unlinked file reads stale rows and cannot write
        ("attempt to write a readonly database"). Never in the middle of a transaction."""
        if not self._conn.in_transaction and self._file_identity() != self._identity:
            with _REOPEN_LOCK:
                if self._file_identity() != self._identity:
                    try:
                        fresh = self._open()
                    except sqlite3.DatabaseError as exc:
                        raise IndexStoreError(f"cannot open the paper catalog at {self.path} ({exc})") from None
                    self._conn, old = fresh, self._conn
                    old.close()
        return self._conn

    def close(self) -> None:
        self._conn.close()

    # --- state ----------------------------------------------------------------------------------

    def _state(self, key: str) -> str | None:
        row = self._db.execute(
            "SELECT value FROM state WHERE collection=? AND key=?", (self.collection, key)
        ).fetchone()
        return row[0] if row else None

    def _set_state(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO state (collection, key, value) VALUES (?, ?, ?)", (self.collection, key, value)
        )

    @property
    def generation(self) -> int:
        return int(self._state("generation") or 0)

    def content_digest(self) -> str:
        """A hash of what the catalog holds (each paper's id, content hash and sources), as last refreshed."""
        return self._state("content") or self._digest()

    def _digest(self) -> str:
        return catalog_digest(
            self._db.execute(
                "SELECT paper_id, paper_hash, sources FROM papers WHERE collection=? ORDER BY paper_id",
                (self.collection,),
            )
        )

    def fingerprint(self) -> str:
        """Names what BM25 was built from, so a cached matrix is reused only for the same papers.

        Keyed by content, not by the generation counter: `--rebuild` starts the counter again, and a
        cache named by it would be taken for a different corpus's.
        """
        return f"{self.collection}-{self.content_digest()}-t{self.title_weight}"

    def is_current(self, store: ChromaStore, chunks: int | None = None) -> bool:
        """Refreshed at the index's current generation (and chunk count, for indexes never stamped; pass it
        where it was just read)."""
        if self._state("store_generation") != store.generation or self._state("title_weight") != str(self.title_weight):
            return False
        return self._state("chunks") == str(_chunks(store) if chunks is None else chunks)

    # --- refresh ----------------------------------------------------------------------------------

    def refresh(self, store: ChromaStore) -> int:
        """Bring the catalog in line with Chroma; returns how many papers were (re)tokenized or dropped."""
        try:
            return self._refresh(store)
        except sqlite3.Error as exc:
            raise IndexStoreError(
                f"cannot update the paper catalog at {self.path} ({exc}); is the disk full or the folder read-only? "
                "It is rebuilt from the index by the next search or ingest"
            ) from None

    def _refresh(self, store: ChromaStore) -> int:
        generation = store.generation  # read first: a write during the refresh leaves the catalog behind
        if self._state("title_weight") != str(self.title_weight):
            self._db.execute("DELETE FROM papers WHERE collection=?", (self.collection,))
        known = {
            pid: (h, s)
            for pid, h, s in self._db.execute(
                "SELECT paper_id, paper_hash, sources FROM papers WHERE collection=?", (self.collection,)
            )
        }
        indexed = {meta.paper_id: meta for meta in store.iter_first_chunk_metadata()}
        stale = [pid for pid, meta in indexed.items() if known.get(pid) != (meta.paper_hash, meta.sources_key)]
        gone = [pid for pid in known if pid not in indexed]
        for start in range(0, len(stale), _REFRESH_BATCH):
            batch = stale[start : start + _REFRESH_BATCH]
            passages = store.passages_of(batch)
            rows = [
                catalog_row(self.collection, indexed[pid], passages.get(pid, []), self.title_weight) for pid in batch
            ]
            self._db.executemany("INSERT OR REPLACE INTO papers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        for start in range(0, len(gone), _REFRESH_BATCH):
            batch = gone[start : start + _REFRESH_BATCH]
            self._db.execute(
                f"DELETE FROM papers WHERE collection=? AND paper_id IN ({','.join('?' * len(batch))})",
                (self.collection, *batch),
            )
        changed = len(stale) + len(gone)
        if changed or self._state("generation") is None:
            self._set_state("generation", str(self.generation + 1))
        if changed or self._state("content") is None:
            self._set_state("content", self._digest())
        self._set_state("chunks", str(_chunks(store)))
        self._set_state("store_generation", generation)
        self._set_state("title_weight", str(self.title_weight))
        self._db.commit()
        return changed

    def drop(self) -> None:
        self._db.execute("DELETE FROM papers WHERE collection=?", (self.collection,))
        self._db.execute("DELETE FROM state WHERE collection=?", (self.collection,))
        self._db.commit()

    # --- reading ----------------------------------------------------------------------------------

    def token_rows(self) -> Iterator[tuple[str, list[str]]]:
        for pid, tokens in self._db.execute(
            "SELECT paper_id, tokens FROM papers WHERE collection=? ORDER BY paper_id", (self.collection,)
        ):
            yield pid, tokens.split()

    def records(self) -> Iterator[PaperRecord]:
        for pid, title, date, sources, fields in self._db.execute(
            "SELECT paper_id, title, date, sources, fields FROM papers WHERE collection=?", (self.collection,)
        ):
            yield PaperRecord(
                pid, title, date, tuple(s for s in sources.split(SOURCE_SEPARATOR) if s), json.loads(fields)
            )

    def paper_ids(self) -> list[str]:
        """Every paper id, in the order BM25 rows are built."""
        rows = self._db.execute("SELECT paper_id FROM papers WHERE collection=? ORDER BY paper_id", (self.collection,))
        return [pid for (pid,) in rows]

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM papers WHERE collection=?", (self.collection,)).fetchone()[0]


def catalog_digest(rows: Iterable[Sequence[str]]) -> str:
    """The catalog's content key from its (paper_id, paper_hash, sources) rows, in paper id order."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update("\x1f".join(row).encode() + b"\x1e")
    return digest.hexdigest()[:20]


def catalog_row(collection: str, meta: ChunkMeta, passages: Sequence[str], title_weight: int) -> tuple:
    """One paper's catalog row, as derived from what Chroma holds (its first chunk's metadata and its passages)."""
    abstract = " ".join(abstract_sentences(list(passages)))
    return (
        collection,
        meta.paper_id,
        meta.paper_hash,
        meta.title,
        meta.date,
        meta.sources_key,
        json.dumps(meta.filter_fields()),
        " ".join(paper_tokens(meta.title, abstract, title_weight)),
    )


class KeywordIndex:
    """BM25 over the catalog's papers, in memory; `search` returns (paper_id, score), best first."""

    def __init__(self, paper_ids: Sequence[str], model, k1: float, b: float) -> None:
        self.paper_ids = list(paper_ids)
        self._row = {pid: i for i, pid in enumerate(self.paper_ids)}
        self._model = model
        self.k1, self.b = k1, b

    @staticmethod
    def cache_name(catalog: PaperCatalog, k1: float, b: float) -> str:
        """The cache folder for this catalog's content and these BM25 parameters."""
        return f"{catalog.fingerprint()}-k{k1}-b{b}"

    @classmethod
    def build(cls, catalog: PaperCatalog, k1: float = 1.2, b: float = 0.4, cache_dir: Path | None = None):
        import bm25s

        cached = cache_dir / cls.cache_name(catalog, k1, b) if cache_dir else None
        if cached and (cached / "paper_ids.json").exists() and cache_damage(cached) is None:
            try:
                paper_ids = json.loads((cached / "paper_ids.json").read_text())
                if paper_ids == catalog.paper_ids():  # a cache is only ever used for the very papers it holds
                    return cls(paper_ids, bm25s.BM25.load(str(cached)), k1, b)
            except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
                pass
        paper_ids, corpus = [], []
        for pid, tokens in catalog.token_rows():
            paper_ids.append(pid)
            corpus.append(tokens)
        model = bm25s.BM25(k1=k1, b=b)
        if corpus:
            model.index(corpus, show_progress=False)
        index = cls(paper_ids, model, k1, b)
        if cached and corpus:
            _save_cache(model, paper_ids, cached)
        return index

    def __len__(self) -> int:
        return len(self.paper_ids)

    def document_frequency(self, text: str) -> int:
        """Papers holding the rarest of the text's words (0 when one of them is unknown): how common a name is."""
        indptr = self._model.scores["indptr"]
        counts = []
        for token in keyword_tokens(text, frozenset()):
            column = self._model.vocab_dict.get(token)
            counts.append(0 if column is None else int(indptr[column + 1] - indptr[column]))
        return min(counts, default=0)

    def stem_frequency(self, stem: str) -> int:
        """Papers holding one stemmed token (0 when the collection never uses it)."""
        column = self._model.vocab_dict.get(stem)
        if column is None:
            return 0
        indptr = self._model.scores["indptr"]
        return int(indptr[column + 1] - indptr[column])

    def search(
        self, text: str, n: int, allowed: set[str] | None = None, query_stopwords: str = "english"
    ) -> list[tuple[str, float]]:
        tokens = [t for t in keyword_tokens(text, stopwords(query_stopwords)) if t in self._model.vocab_dict]
        if not tokens or not self.paper_ids:
            return []
        scores = self._model.get_scores(tokens)
        if allowed is not None:
            mask = np.zeros(len(self.paper_ids), dtype=bool)
            for pid in allowed:
                row = self._row.get(pid)
                if row is not None:
                    mask[row] = True
            scores = np.where(mask, scores, 0.0)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.paper_ids[i], float(scores[i])) for i in top if scores[i] > 0]


def cache_dir(index_path: Path) -> Path:
    """Where BM25 matrices are cached beside an index."""
    return index_path / CACHE_DIR


def remove_caches(index_path: Path) -> None:
    import shutil

    shutil.rmtree(cache_dir(index_path), ignore_errors=True)


def remove_catalog(index_path: Path) -> None:
    """Delete the catalog file (and SQLite's side files); it is derived, and rebuilt from Chroma on next use."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        (index_path / f"{CATALOG_FILE}{suffix}").unlink(missing_ok=True)


def _save_cache(model, paper_ids: list[str], folder: Path) -> None:
    import shutil

    try:
        for old in folder.parent.glob("*") if folder.parent.exists() else []:
            if old.is_dir() and old != folder:
                shutil.rmtree(old, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        model.save(str(folder))
        (folder / "paper_ids.json").write_text(json.dumps(paper_ids))
        sums = {p.name: _file_sum(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != CACHE_SUMS}
        (folder / CACHE_SUMS).write_text(json.dumps(sums))
    except OSError:
        pass  # the cache only saves time; a read-only index still searches


CACHE_SUMS = "checksums.json"


def _file_sum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_damage(folder: Path) -> str | None:
    """Why a BM25 cache cannot be trusted (a file that differs from the checksum written with it), or None.

    bm25s loads its arrays as they are: a flipped byte would change scores silently, so every file
    is compared with the checksums saved beside it (a few MB read, far less than rebuilding).
    """
    try:
        sums = json.loads((folder / CACHE_SUMS).read_text())
        if not isinstance(sums, dict) or not sums:
            return f"{CACHE_SUMS} is not a list of checksums"
        for name, expected in sums.items():
            if _file_sum(folder / str(name)) != expected:
                return f"{name} differs from its checksum"
    except FileNotFoundError as exc:
        return f"{Path(exc.filename or CACHE_SUMS).name} is missing"
    except (OSError, ValueError) as exc:
        return f"{CACHE_SUMS} cannot be read ({exc})"
    return None


def _chunks(store: ChromaStore) -> int:
    """The chunk count, read from the index's files where it can be: Chroma's own count loads the collection
    first (about a second per 10,000 papers)."""
    counts = store.stored_counts()
    return counts[0] if counts is not None else store.chunk_count()
