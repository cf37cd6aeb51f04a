"""Index stage, storage half: the Chroma collection that holds chunks, their vectors and metadata.

The collection records which embedding model and dimension built it; opening it with another
model is refused with a message that names both, instead of a dimension error deep in Chroma.
Chroma is always given vectors (its default embedding function would try to download a model).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from rag.errors import IndexStoreError
from rag.types import Chunk, Paper

INDEX_FORMAT = 1
SOURCE_SEPARATOR = "\n"
_PAGE = 5000  # rows per metadata read; keeps memory flat on big indexes


@dataclass(frozen=True)
class IndexedPaper:
    """What the index holds for one paper: enough to decide whether to re-embed it."""

    paper_hash: str
    chunks_present: int
    chunks_expected: int
    sources: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.chunks_present == self.chunks_expected


@dataclass(frozen=True)
class StoreStats:
    path: str
    collection: str
    model: str | None
    dimension: int | None
    papers: int
    chunks: int
    size_bytes: int | None  # None when a Chroma server holds the index


@dataclass(frozen=True)
class ChunkMatch:
    """One chunk returned by a vector query, with cosine similarity (1 = same direction)."""

    chunk_id: str
    paper_id: str
    text: str
    similarity: float
    metadata: dict


def _telemetry_off() -> None:
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def parse_server(server: str) -> tuple[str, int, bool]:
    """'http://127.0.0.1:8000', 'https://host', '127.0.0.1:8000' -> (host, port, ssl)."""
    parts = urlsplit(server if "://" in server else f"http://{server}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IndexStoreError(f"index.server: expected http://HOST:PORT, got {server!r}")
    ssl = parts.scheme == "https"
    try:
        port = parts.port or (443 if ssl else 8000)
    except ValueError:
        raise IndexStoreError(f"index.server: the port in {server!r} is not a number") from None
    return parts.hostname, port, ssl


def _one_line_store_errors(method: Callable) -> Callable:
    """Turn a storage failure inside a store method (a lost server, a failed write) into one line naming where."""

    def explain(self, exc: BaseException) -> IndexStoreError:
        if self.server is not None and isinstance(exc, _CONNECTION_ERRORS):
            return IndexStoreError(f"lost {self.where} ({_one_line(exc)}); is `chroma run` still up?")
        return IndexStoreError(
            f"{self.where} failed ({_one_line(exc)}); is the disk full or the folder read-only? What was "
            "committed is kept: run the command again once that is fixed"
        )

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self, *args, **kwargs):
            try:
                yield from method(self, *args, **kwargs)
            except _STORE_ERRORS as exc:
                raise explain(self, exc) from None

        return generator

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except _STORE_ERRORS as exc:
            raise explain(self, exc) from None

    return call


def _connection_errors() -> tuple[type[BaseException], ...]:
    import httpx

    return (ConnectionError, httpx.TransportError)


def _store_errors() -> tuple[type[BaseException], ...]:
    """Failures of the storage itself: lost connections, and Chroma or the OS failing to read or write."""
    from chromadb.errors import InternalError

    return (*_CONNECTION_ERRORS, InternalError, OSError)


_CONNECTION_ERRORS = _connection_errors()
_STORE_ERRORS = _store_errors()


def _explain_store_errors(cls: type) -> type:
    """Wrap every method that talks to Chroma so a dropped connection or a failed write reads as one line."""
    for name, member in list(vars(cls).items()):
        if inspect.isfunction(member) and not name.startswith("__"):
            setattr(cls, name, _one_line_store_errors(member))
    return cls


@_explain_store_errors
class ChromaStore:
    """A Chroma collection of chunks: a local persistent folder, or a Chroma server (`index.server`)."""

    def __init__(self, path: Path, collection: str, *, create: bool, server: str | None = None) -> None:
        _telemetry_off()
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        self.path = path
        self.server = server
        self.collection_name = collection
        # Each abstract sentence's vector, computed at ingest so answering need not embed evidence.
        self.sentence_collection_name = f"{collection}-sentences"
        self._sentences = None
        self._collection = None
        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        if server is not None:
            host, port, ssl = parse_server(server)
            self.where = f"the Chroma server at {host}:{port}"
            try:  # this client's own state (BM25 catalog, ingest lock) stays local
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise IndexStoreError(f"cannot create the local folder {path} ({exc.strerror})") from None
            try:
                self._client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=chroma_settings)
            except Exception as exc:  # noqa: BLE001 - connection failures surface as ValueError or httpx errors
                raise IndexStoreError(
                    f"cannot reach the Chroma server at {host}:{port} ({_one_line(exc)}); start one with "
                    f"`chroma run --host {host} --port {port} --path DIR`, or check index.server"
                ) from None
            return
        self.where = f"the index at {path}"
        if not create and not path.is_dir():
            raise IndexStoreError(f"no index at {path}; run `rag ingest` first")
        if path.exists() and not path.is_dir():
            raise IndexStoreError(f"index path {path} is a file, not a folder; set index.path to a folder")
        visible = [p for p in path.iterdir() if not p.name.startswith(".")] if path.is_dir() else []
        if visible and not (path / "chroma.sqlite3").exists():
            raise IndexStoreError(
                f"{path} is not a Chroma index (no chroma.sqlite3) and is not empty; choose another index.path"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
        except PermissionError:
            raise IndexStoreError(f"cannot write the index at {path}: permission denied") from None
        except Exception as exc:  # noqa: BLE001 - Chroma raises many types for a broken folder
            if "readonly" in str(exc).lower() or "read-only" in str(exc).lower():
                raise IndexStoreError(
                    f"the index at {path} is read-only, and Chroma writes to its folder even to search; copy it "
                    "to a writable folder (and set index.path) or make it writable"
                ) from None
            raise IndexStoreError(f"cannot open the index at {path} ({_one_line(exc)})") from None

    # --- collection and its identity ---------------------------------------------------------

    def collection_exists(self) -> bool:
        return self.collection_name in {c.name for c in self._client.list_collections()}

    def model_info(self) -> tuple[str | None, int | None]:
        if not self.collection_exists():
            return None, None
        meta = self._client.get_collection(self.collection_name, embedding_function=None).metadata or {}
        return meta.get("embedding_model"), meta.get("dimension")

    def open_for(self, model_name: str, dimension: int | None, *, create: bool) -> None:
        """Open the collection for a model; refuse if it was built with another one."""
        built_model, built_dimension = self.model_info()
        if built_model is not None and (
            built_model != model_name or (dimension is not None and built_dimension != dimension)
        ):
            raise IndexStoreError(
                f"the index at {self.path} was built with '{built_model}' ({built_dimension}-d) but the config asks "
                f"for '{model_name}'{f' ({dimension}-d)' if dimension else ''}; run `rag ingest --rebuild` to "
                f"re-embed with '{model_name}', or set embedding.model back to '{built_model}'"
            )
        if built_model is None:
            if not create:
                raise IndexStoreError(f"the index at {self.path} has no papers yet; run `rag ingest` first")
            if dimension is None:
                raise IndexStoreError("internal: creating a collection needs the embedding dimension")
            self._collection = self._client.create_collection(
                self.collection_name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embedding_model": model_name, "dimension": dimension, "index_format": INDEX_FORMAT},
            )
        else:
            self._collection = self._client.get_collection(self.collection_name, embedding_function=None)
        names = {c.name for c in self._client.list_collections()}
        if create or self.sentence_collection_name in names:
            self._sentences = self._client.get_or_create_collection(
                self.sentence_collection_name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )

    def drop(self) -> None:
        names = {c.name for c in self._client.list_collections()}
        for name in (self.collection_name, self.sentence_collection_name):
            if name in names:
                self._client.delete_collection(name)
        self._collection = None
        self._sentences = None

    @property
    def collection(self):  # -> chromadb Collection
        if self._collection is None:
            raise IndexStoreError("internal: the collection is not open")
        return self._collection

    # --- reading --------------------------------------------------------------------------------

    def indexed_papers(self) -> dict[str, IndexedPaper]:
        """Every paper in the index with its content hash and how many of its chunks are present."""
        present: dict[str, int] = {}
        first: dict[str, dict] = {}
        for metadata in self._iter_metadatas():
            paper_id = metadata["paper_id"]
            present[paper_id] = present.get(paper_id, 0) + 1
            if paper_id not in first or metadata.get("chunk_index") == 0:
                first[paper_id] = metadata
        return {
            paper_id: IndexedPaper(
                paper_hash=str(first[paper_id].get("paper_hash", "")),
                chunks_present=count,
                chunks_expected=int(first[paper_id].get("n_chunks", -1)),
                sources=tuple(str(first[paper_id].get("sources", "")).split(SOURCE_SEPARATOR)),
            )
            for paper_id, count in present.items()
        }

    def _iter_metadatas(self) -> Iterator[dict]:
        offset = 0
        while True:
            page = self.collection.get(include=["metadatas"], limit=_PAGE, offset=offset)
            metadatas = page["metadatas"] or []
            yield from metadatas
            if len(metadatas) < _PAGE:
                return
            offset += _PAGE

    def chunk_count(self) -> int:
        return self.collection.count() if self._collection is not None else 0

    def iter_first_chunk_metadata(self) -> Iterator[dict]:
        """The metadata of each paper's first chunk: one row per paper, paged."""
        offset = 0
        while True:
            page = self.collection.get(where={"chunk_index": 0}, include=["metadatas"], limit=_PAGE, offset=offset)
            metadatas = page["metadatas"] or []
            yield from metadatas
            if len(metadatas) < _PAGE:
                return
            offset += _PAGE

    def chunks_of(self, paper_ids: Sequence[str]) -> list[tuple[ChunkMatch, np.ndarray]]:
        """Every chunk of these papers with its stored vector (similarity left 0 for the caller to fill)."""
        if not paper_ids:
            return []
        page = self.collection.get(
            where={"paper_id": {"$in": list(paper_ids)}}, include=["documents", "metadatas", "embeddings"]
        )
        embeddings = page["embeddings"] if page["embeddings"] is not None else []
        return [
            (ChunkMatch(chunk_id, meta["paper_id"], doc, 0.0, meta), np.asarray(vector, dtype=np.float32))
            for chunk_id, doc, meta, vector in zip(
                page["ids"], page["documents"] or [], page["metadatas"] or [], embeddings, strict=True
            )
        ]

    def sentence_matrix(self, paper_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Each paper's stored abstract-sentence vectors as one matrix (rows in no set order)."""
        if self._sentences is None or not paper_ids:
            return {}
        page = self._sentences.get(where={"paper_id": {"$in": list(paper_ids)}}, include=["metadatas", "embeddings"])
        if page["embeddings"] is None or not len(page["embeddings"]):
            return {}
        rows: dict[str, list] = {}
        for meta, vector in zip(page["metadatas"], page["embeddings"], strict=True):
            rows.setdefault(meta["paper_id"], []).append(vector)
        return {pid: np.asarray(vectors, dtype=np.float32) for pid, vectors in rows.items()}

    def query(self, vector: np.ndarray, n_results: int, where: dict | None = None) -> list[ChunkMatch]:
        result = self.collection.query(
            query_embeddings=[vector.astype(np.float32)],
            n_results=n_results,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        ids, docs, metas, dists = (result[key][0] for key in ("ids", "documents", "metadatas", "distances"))
        return [
            ChunkMatch(chunk_id, meta["paper_id"], doc, 1.0 - float(dist), meta)
            for chunk_id, doc, meta, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def passages_of(self, paper_ids: Sequence[str]) -> dict[str, list[str]]:
        """Every chunk text of the given papers, in chunk order: the whole abstract, overlaps included."""
        if not paper_ids:
            return {}
        page = self.collection.get(where={"paper_id": {"$in": list(paper_ids)}}, include=["documents", "metadatas"])
        ordered: dict[str, list[tuple[int, str]]] = {pid: [] for pid in paper_ids}
        for doc, meta in zip(page["documents"] or [], page["metadatas"] or [], strict=True):
            ordered.setdefault(meta["paper_id"], []).append((int(meta["chunk_index"]), doc))
        return {pid: [text for _, text in sorted(items)] for pid, items in ordered.items()}

    def sentence_vectors(self, paper_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of these papers' abstract sentences, by sentence text (empty for old indexes)."""
        if self._sentences is None or not paper_ids:
            return {}
        page = self._sentences.get(where={"paper_id": {"$in": list(paper_ids)}}, include=["documents", "embeddings"])
        documents, embeddings = page["documents"] or [], page["embeddings"]
        if embeddings is None or not len(embeddings):
            return {}
        return {text: np.asarray(vector, dtype=np.float32) for text, vector in zip(documents, embeddings, strict=True)}

    def stored_paper(self, paper_id: str) -> Paper | None:
        """One paper as the index holds it: title, metadata, source files, and its text rejoined from its chunks."""
        from rag.chunking import abstract_sentences

        page = self.collection.get(where={"paper_id": paper_id}, include=["documents", "metadatas"])
        rows = sorted(zip(page["metadatas"] or [], page["documents"] or [], strict=True),
                      key=lambda row: int(row[0].get("chunk_index", 0)))  # fmt: skip
        if not rows:
            return None
        meta = rows[0][0]
        return Paper(
            paper_id=paper_id,
            title=str(meta.get("title", "")),
            abstract=" ".join(abstract_sentences([text for _, text in rows])),
            sources=[s for s in str(meta.get("sources", "")).split(SOURCE_SEPARATOR) if s],
            authors=meta.get("authors"),
            date=meta.get("date"),
            url=meta.get("url"),
            categories=meta.get("categories"),
            extra={key[2:]: str(value) for key, value in meta.items() if key.startswith("x_")},
        )

    def stats(self) -> StoreStats:
        model, dimension = self.model_info()
        chunks = papers = 0
        if model is not None:
            collection = self._client.get_collection(self.collection_name, embedding_function=None)
            chunks = collection.count()
            papers = len(collection.get(where={"chunk_index": 0}, include=[])["ids"])
        if self.server is not None:
            return StoreStats(self.server, self.collection_name, model, dimension, papers, chunks, None)
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return StoreStats(str(self.path), self.collection_name, model, dimension, papers, chunks, size)

    # --- writing --------------------------------------------------------------------------------

    def replace_papers(
        self,
        papers: Sequence[Paper],
        hashes: dict[str, str],
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        sentences: Sequence[tuple[str, int, str]] = (),
        sentence_vectors: np.ndarray | None = None,
    ) -> None:
        """Swap in new chunks (and sentence vectors) for these papers: delete theirs, then add the new ones.

        A kill between the two leaves the paper absent (never doubled); the next ingest sees it
        missing and embeds it again. Sentences are written first: they are a cache answering can do
        without, so a paper whose chunks exist is never left half-indexed.
        """
        paper_ids = [p.paper_id for p in papers]
        if paper_ids and self._sentences is not None:
            self._sentences.delete(where={"paper_id": {"$in": paper_ids}})
        if sentences and self._sentences is not None and sentence_vectors is not None:
            self._sentences.add(
                ids=[f"{paper_id}~{position}" for paper_id, position, _ in sentences],
                embeddings=sentence_vectors,
                documents=[text for _, _, text in sentences],
                metadatas=[{"paper_id": paper_id, "position": position} for paper_id, position, _ in sentences],
            )
        if paper_ids:
            self.collection.delete(where={"paper_id": {"$in": paper_ids}})
        if not chunks:
            return
        by_id = {p.paper_id: p for p in papers}
        counts: dict[str, int] = {}
        for chunk in chunks:
            counts[chunk.paper_id] = counts.get(chunk.paper_id, 0) + 1
        metadatas = [chunk_metadata(by_id[c.paper_id], c.index, counts[c.paper_id], hashes[c.paper_id]) for c in chunks]
        self.collection.add(
            ids=[c.chunk_id for c in chunks],
            embeddings=vectors,
            documents=[c.text for c in chunks],
            metadatas=metadatas,
        )

    def delete_papers(self, paper_ids: Sequence[str]) -> None:
        for start in range(0, len(paper_ids), 500):
            where = {"paper_id": {"$in": list(paper_ids[start : start + 500])}}
            self.collection.delete(where=where)
            if self._sentences is not None:
                self._sentences.delete(where=where)

    def update_sources(self, sources_by_paper: dict[str, list[str]], indexed: dict[str, IndexedPaper]) -> None:
        ids: list[str] = []
        metadatas: list[dict] = []
        for paper_id, sources in sources_by_paper.items():
            for i in range(indexed[paper_id].chunks_present):
                ids.append(f"{paper_id}#{i}")
                metadatas.append({"sources": SOURCE_SEPARATOR.join(sources)})
        for start in range(0, len(ids), _PAGE):
            self.collection.update(ids=ids[start : start + _PAGE], metadatas=metadatas[start : start + _PAGE])


def chunk_metadata(paper: Paper, index: int, n_chunks: int, paper_hash: str) -> dict:
    metadata: dict = {
        "paper_id": paper.paper_id,
        "title": paper.title,
        "chunk_index": index,
        "n_chunks": n_chunks,
        "paper_hash": paper_hash,
        "sources": SOURCE_SEPARATOR.join(paper.sources),
    }
    for name in ("authors", "date", "url", "categories"):
        value = getattr(paper, name)
        if value:
            metadata[name] = value
    for name, value in paper.extra.items():
        metadata.setdefault(f"x_{name}", value[:500])
    return metadata


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
