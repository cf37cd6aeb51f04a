"""Index stage, storage half: the Chroma collection that holds chunks, their vectors and metadata.

The collection records which embedding model and dimension built it; opening it with another
model is refused with a message that names both, instead of a dimension error deep in Chroma.
Chroma is always given vectors (its default embedding function would try to download a model).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from rag.chroma import (
    HNSW_CONFIG,
    PAGE,
    SEARCH_EF,
    SENTENCE_HNSW_CONFIG,
    explain_store_errors,
    open_connection,
    pages,
    read_stamp,
    telemetry_off,
)
from rag.errors import IndexStoreError
from rag.store_files import files_digest, stored_counts, trust_written
from rag.store_integrity import ChromaIntegrity
from rag.store_records import (
    SOURCE_SEPARATOR,
    ChunkMatch,
    ChunkMeta,
    IndexedPaper,
    StoreStats,
    chunk_metadata,
    page_sentence_texts,
    read_source_hashes,
    sentence_rows,
    source_hashes_field,
)
from rag.types import Chunk, Paper

__all__ = ["SOURCE_SEPARATOR", "ChromaStore", "ChunkMatch", "ChunkMeta", "IndexedPaper", "StoreStats", "chunk_metadata"]

INDEX_FORMAT = 1


@explain_store_errors
class ChromaStore(ChromaIntegrity):
    """A Chroma collection of chunks: a local persistent folder, or a Chroma server (`index.server`)."""

    def __init__(self, path: Path, collection: str, *, create: bool, server: str | None = None) -> None:
        telemetry_off()
        self.path = path
        self.server = server
        self.collection_name = collection
        # Each abstract sentence's vector, computed at ingest so answering need not embed evidence.
        self.sentence_collection_name = f"{collection}-sentences"
        self._sentences = None
        self._collection = None
        self._wanted = (False, False)  # (chunks, sentences) collections this store has opened
        self._epoch = 0
        self.where, connection = open_connection(path, server, create=create)
        self._attach(connection)

    @property
    def _client(self):  # -> chromadb.ClientAPI
        return self._connection.client

    def _attach(self, connection) -> None:
        self._connection = connection
        connection.stores.add(self)

    def forget_collections(self) -> None:
        """Drop collection handles of a client that was replaced; they are fetched again when next used."""
        self._collection = self._sentences = None

    def refresh(self) -> bool:
        """Reopen if another process wrote the index since this process's client was opened; True if so.
        Refuses (IndexStoreError) when the vector files on disk were damaged meanwhile."""
        connection = self._connection
        connection.guard()
        if not connection.stale():
            return False
        connection.reopen()
        return True

    @property
    def generation(self) -> str:
        """Names the index's current state: changes with every write (a server's: with its chunk count too)."""
        if self.server is None:
            return self._connection.stamp
        return f"{self._connection.stamp}|{self.chunk_count()}"

    def _announce_write(self) -> None:
        self._connection.announce_write()

    # --- collection and its identity ---------------------------------------------------------

    def collection_exists(self) -> bool:
        return self.collection_name in {c.name for c in self._client.list_collections()}

    def model_info(self) -> tuple[str | None, int | None]:
        if not self.collection_exists():
            return None, None
        meta = self._client.get_collection(self.collection_name, embedding_function=None).metadata or {}
        return meta.get("embedding_model"), meta.get("dimension")

    def vector_precision(self) -> str | None:
        """fp32 or int8: what the encoder that built the index computed in (indexes from before say nothing: fp32)."""
        if not self.collection_exists():
            return None
        meta = self._client.get_collection(self.collection_name, embedding_function=None).metadata or {}
        return str(meta.get("embedding_precision", "fp32"))

    def open_for(
        self,
        model_name: str,
        dimension: int | None,
        *,
        create: bool,
        precision: str | None = None,
        backend: str | None = None,
    ) -> None:
        """Open the collection for a model; refuse if it was built with another one or another precision.

        fp32 vectors from torch, onnxruntime and OpenVINO agree to ~1e-6 and may share an index;
        int8 vectors differ by up to a few hundredths, so they never join fp32 ones (nor the reverse).
        """
        self._recover_interrupted_repair()
        built_model, built_dimension = self.model_info()
        if built_model is not None and (
            built_model != model_name or (dimension is not None and built_dimension != dimension)
        ):
            raise IndexStoreError(
                f"the index at {self.path} was built with '{built_model}' ({built_dimension}-d) but the config asks "
                f"for '{model_name}'{f' ({dimension}-d)' if dimension else ''}; run `rag ingest --rebuild` to "
                f"re-embed with '{model_name}', or set embedding.model back to '{built_model}'"
            )
        built_precision = self.vector_precision() if built_model is not None else None
        if built_precision is not None and precision is not None and built_precision != precision:
            raise IndexStoreError(
                f"the index at {self.path} holds {built_precision} vectors of '{built_model}' but the config asks for "
                f"a {precision} encoder, and the two must not mix; run `rag ingest --rebuild` to re-embed, or set "
                f"embedding.precision back to {built_precision}"
            )
        if built_model is None:
            if not create:
                raise IndexStoreError(f"the index at {self.path} has no papers yet; run `rag ingest` first")
            if dimension is None:
                raise IndexStoreError("internal: creating a collection needs the embedding dimension")
            metadata = {"embedding_model": model_name, "dimension": dimension, "index_format": INDEX_FORMAT}
            metadata["embedding_precision"] = precision or "fp32"
            if backend:
                metadata["embedding_backend"] = backend
            self._client.create_collection(
                self.collection_name,
                embedding_function=None,
                configuration={"hnsw": dict(HNSW_CONFIG)},
                metadata=metadata,
            )
            self._announce_write()
        names = {c.name for c in self._client.list_collections()}
        if create and self.sentence_collection_name not in names:
            self._client.create_collection(
                self.sentence_collection_name,
                embedding_function=None,
                configuration={"hnsw": dict(SENTENCE_HNSW_CONFIG)},
            )
            names.add(self.sentence_collection_name)
        self._wanted = (True, self.sentence_collection_name in names)
        self._fetch_collections()
        if create:  # a writer brings an index built before SEARCH_EF up to it
            self._widen_search()

    def _widen_search(self) -> None:
        """Set `SEARCH_EF` on collections created with a narrower HNSW search (Chroma's default, 100)."""
        for collection in (self._collection, self._sentences):
            if collection is None:
                continue
            try:
                ef = (collection.configuration or {}).get("hnsw", {}).get("ef_search")
                if ef is not None and ef < SEARCH_EF:
                    collection.modify(configuration={"hnsw": {"ef_search": SEARCH_EF}})
            except Exception:  # noqa: BLE001 - a server that cannot change it still searches, as before
                pass

    def _fetch_collections(self) -> None:
        """Collection handles from the current client (again after a reopen)."""
        from chromadb.errors import NotFoundError

        self._epoch = self._connection.epoch
        want_chunks, want_sentences = self._wanted
        try:
            get = self._client.get_collection
            self._collection = get(self.collection_name, embedding_function=None) if want_chunks else None
            self._sentences = get(self.sentence_collection_name, embedding_function=None) if want_sentences else None
        except NotFoundError:
            self._collection = self._sentences = None
            raise IndexStoreError(
                f"{self.where} was rebuilt or removed by another process; run the command again"
            ) from None

    def drop(self) -> None:
        names = {c.name for c in self._client.list_collections()}
        for name in (self.collection_name, self.sentence_collection_name):
            if name in names:
                self._client.delete_collection(name)
        self._wanted = (False, False)
        self._collection = None
        self._sentences = None
        self._announce_write()

    @property
    def collection(self):  # -> chromadb Collection
        if self._epoch != self._connection.epoch and self._wanted[0]:
            self._fetch_collections()
        if self._collection is None:
            raise IndexStoreError("internal: the collection is not open")
        return self._collection

    @property
    def sentences(self):  # -> chromadb Collection | None: absent in indexes built before sentence vectors
        if self._epoch != self._connection.epoch and self._wanted[1]:
            self._fetch_collections()
        return self._sentences

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
                source_hashes=read_source_hashes(first[paper_id]),
            )
            for paper_id, count in present.items()
        }

    def _iter_metadatas(self) -> Iterator[dict]:
        for page in pages(self.collection, ["metadatas"]):
            yield from page["metadatas"] or []

    def chunk_count(self) -> int:
        return self.collection.count() if self._wanted[0] else 0

    def sentence_count(self) -> int:
        return sentences.count() if (sentences := self.sentences) is not None else 0

    def stored_counts(self) -> tuple[int, int, int] | None:
        """(chunks, sentences, the write log's last sequence number) read from a local index's files without
        loading either collection (Chroma's `count` loads it: a no-op ingest of 100k papers spent 11 s there).
        None for a server, or for files not laid out as Chroma 1.x lays them out."""
        counts = None if self.server is not None else stored_counts(self.path)
        if counts is None:
            return None
        return counts.get(self.collection_name, 0), counts.get(self.sentence_collection_name, 0), counts[""]

    def vector_files_digest(self) -> str:
        """Names a local index's vector files as they are now ('' for a server): see rag.store_files.files_digest."""
        return "" if self.server is not None else files_digest(self.path)

    def trust_written_files(self) -> None:
        """After writes that completed: the vector files this process's Chroma saved from what it loaded (checked)
        and added are recorded as checked, so the next command does not read them again (rag.store_files)."""
        if self.server is None:
            trust_written(self.path, {self.collection_name, self.sentence_collection_name})

    def written_generation(self) -> str | None:
        """The generation the last write stamped on disk, whoever wrote it (unlike `generation`, which is the
        one this process's client reads at). None for a server, whose other writers stamp nothing here, and
        for a folder never stamped."""
        if self.server is not None:
            return None
        return read_stamp(self.path) or None

    def iter_first_chunk_metadata(self) -> Iterator[ChunkMeta]:
        """The metadata of each paper's first chunk: one row per paper, paged."""
        for page in pages(self.collection, ["metadatas"], where={"chunk_index": 0}):
            yield from map(ChunkMeta.from_chroma, page["metadatas"] or [])

    def iter_chunk_texts(self) -> Iterator[tuple[ChunkMeta, str]]:
        """Every stored chunk: its typed metadata and its passage text (without the title line the embedder
        read before it, see `rag.chunking.embed_text_for`), paged."""
        for page in pages(self.collection, ["documents", "metadatas"]):
            metadatas = page["metadatas"] or []
            yield from zip(map(ChunkMeta.from_chroma, metadatas), page["documents"] or [], strict=True)

    def sentence_texts(self) -> list[str]:
        """Every stored abstract sentence (none in an index built before sentence vectors), paged."""
        if (sentences := self.sentences) is None:
            return []
        return [text for page in pages(sentences, ["documents", "metadatas"]) for text in page_sentence_texts(page)]

    def chunks_of(self, paper_ids: Sequence[str]) -> list[tuple[ChunkMatch, np.ndarray]]:
        """Every chunk of these papers with its stored vector (similarity left 0 for the caller to fill)."""
        if not paper_ids:
            return []
        page = self._whole_papers(paper_ids, ["documents", "metadatas", "embeddings"])
        embeddings = page["embeddings"] if page["embeddings"] is not None else []
        return [
            (
                ChunkMatch(chunk_id, meta["paper_id"], doc, 0.0, ChunkMeta.from_chroma(meta)),
                np.asarray(vector, dtype=np.float32),
            )  # fmt: skip
            for chunk_id, doc, meta, vector in zip(
                page["ids"], page["documents"] or [], page["metadatas"] or [], embeddings, strict=True
            )
        ]

    def _whole_papers(self, paper_ids: Sequence[str], include: list[str], guess: int = 4) -> dict:
        """Every chunk of these papers, looked up by id (`{paper_id}#{i}`, i < its n_chunks): a lookup by id
        stays fast as the collection grows, where a filter on paper_id does not (20 papers, 10k-paper index:
        6-8 ms by id, 22-40 ms filtered). Papers whose chunks are not where their ids say are filtered for."""
        wanted = list(dict.fromkeys(paper_ids))
        include = list(dict.fromkeys([*include, "metadatas"]))  # n_chunks says how many ids a paper has
        page = self.collection.get(ids=[f"{pid}#{i}" for pid in wanted for i in range(guess)], include=include)
        keys = ["ids", *include]
        rows = {key: list(page[key]) if page[key] is not None else [] for key in keys}
        found, more = set(), []
        for meta in rows["metadatas"]:
            found.add(meta["paper_id"])
            if int(meta.get("chunk_index", 0)) == 0:
                more += [f"{meta['paper_id']}#{i}" for i in range(guess, int(meta.get("n_chunks", 0)))]
        lost = [pid for pid in wanted if pid not in found]
        for extra in (
            self.collection.get(ids=more, include=include) if more else None,
            self.collection.get(where={"paper_id": {"$in": lost}}, include=include) if lost else None,
        ):
            if extra is not None:
                seen = set(rows["ids"])
                keep = [i for i, chunk_id in enumerate(extra["ids"]) if chunk_id not in seen]
                for key in keys:
                    values = extra[key] if extra[key] is not None else []
                    rows[key] += [values[i] for i in keep]
        return rows

    def sentence_matrix(self, paper_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Each paper's stored abstract-sentence vectors as one matrix (rows in no set order)."""
        if (sentences := self.sentences) is None or not paper_ids:
            return {}
        page = sentences.get(where={"paper_id": {"$in": list(paper_ids)}}, include=["metadatas", "embeddings"])
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
            ChunkMatch(chunk_id, meta["paper_id"], doc, 1.0 - float(dist), ChunkMeta.from_chroma(meta))
            for chunk_id, doc, meta, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def passages_of(self, paper_ids: Sequence[str]) -> dict[str, list[str]]:
        """Every chunk text of the given papers, in chunk order: the whole abstract, overlaps included."""
        if not paper_ids:
            return {}
        page = self._whole_papers(paper_ids, ["documents", "metadatas"])
        ordered: dict[str, list[tuple[int, str]]] = {pid: [] for pid in paper_ids}
        for doc, meta in zip(page["documents"] or [], page["metadatas"] or [], strict=True):
            ordered.setdefault(meta["paper_id"], []).append((int(meta["chunk_index"]), doc))
        return {pid: [text for _, text in sorted(items)] for pid, items in ordered.items()}

    def sentence_vectors(self, paper_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of these papers' abstract sentences, by sentence text (empty for old indexes)."""
        if (sentences := self.sentences) is None or not paper_ids:
            return {}
        include = ["documents", "metadatas", "embeddings"]
        page = sentences.get(where={"paper_id": {"$in": list(paper_ids)}}, include=include)
        embeddings = page["embeddings"]
        if embeddings is None or not len(embeddings):
            return {}
        texts = page_sentence_texts(page)
        return {text: np.asarray(vector, dtype=np.float32) for text, vector in zip(texts, embeddings, strict=True)}

    def stored_paper(self, paper_id: str) -> Paper | None:
        """One paper as the index holds it: title, metadata, source files, and its text rejoined from its chunks."""
        from rag.chunking import abstract_sentences

        page = self.collection.get(where={"paper_id": paper_id}, include=["documents", "metadatas"])
        rows = sorted(zip(page["metadatas"] or [], page["documents"] or [], strict=True),
                      key=lambda row: int(row[0].get("chunk_index", 0)))  # fmt: skip
        if not rows:
            return None
        meta = ChunkMeta.from_chroma(rows[0][0])
        return Paper(
            paper_id=paper_id,
            title=meta.title,
            abstract=" ".join(abstract_sentences([text for _, text in rows])),
            sources=list(meta.sources),
            authors=meta.authors,
            date=meta.date,
            url=meta.url,
            categories=meta.categories,
            extra={key: str(value) for key, value in meta.extra.items()},
        )

    def stats(self) -> StoreStats:
        model, dimension = self.model_info()
        chunks = papers = 0
        if model is not None:
            collection = self._client.get_collection(self.collection_name, embedding_function=None)
            chunks = collection.count()
            papers = len(collection.get(where={"chunk_index": 0}, include=[])["ids"])
        if self.server is not None:
            return StoreStats(
                self.server, self.collection_name, model, dimension, papers, chunks, None, self.vector_precision()
            )
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return StoreStats(
            str(self.path), self.collection_name, model, dimension, papers, chunks, size, self.vector_precision()
        )

    # --- writing --------------------------------------------------------------------------------

    def replace_papers(
        self,
        papers: Sequence[Paper],
        hashes: dict[str, str],
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        sentences: Sequence[tuple[str, int, str]] = (),
        sentence_vectors: np.ndarray | None = None,
        source_hashes: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Swap in new chunks (and sentence vectors) for these papers: delete theirs, then add the new ones.

        A kill between the two leaves the paper absent (never doubled); the next ingest sees it
        missing and embeds it again. Sentences are written first: they are a cache answering can do
        without, so a paper whose chunks exist is never left half-indexed.
        """
        try:
            self._replace_papers(papers, hashes, chunks, vectors, sentences, sentence_vectors, source_hashes or {})
        finally:
            self._announce_write()

    def _replace_papers(self, papers, hashes, chunks, vectors, sentences, sentence_vectors, source_hashes) -> None:
        paper_ids = [p.paper_id for p in papers]
        sentence_collection = self.sentences
        if paper_ids and sentence_collection is not None:
            sentence_collection.delete(where={"paper_id": {"$in": paper_ids}})
        if sentences and sentence_collection is not None and sentence_vectors is not None:
            sentence_collection.add(embeddings=sentence_vectors, **sentence_rows(sentences))
        if paper_ids:
            self.collection.delete(where={"paper_id": {"$in": paper_ids}})
        if not chunks:
            return
        by_id = {p.paper_id: p for p in papers}
        counts: dict[str, int] = {}
        for chunk in chunks:
            counts[chunk.paper_id] = counts.get(chunk.paper_id, 0) + 1
        metadatas = [
            chunk_metadata(
                by_id[c.paper_id], c.index, counts[c.paper_id], hashes[c.paper_id], source_hashes.get(c.paper_id)
            )
            for c in chunks
        ]
        self.collection.add(
            ids=[c.chunk_id for c in chunks],
            embeddings=vectors,
            documents=[c.text for c in chunks],
            metadatas=metadatas,
        )

    def delete_papers(self, paper_ids: Sequence[str]) -> None:
        try:
            for start in range(0, len(paper_ids), 500):
                where = {"paper_id": {"$in": list(paper_ids[start : start + 500])}}
                self.collection.delete(where=where)
                if self.sentences is not None:
                    self.sentences.delete(where=where)
        finally:
            self._announce_write()

    def update_sources(
        self,
        sources_by_paper: dict[str, list[str]],
        indexed: dict[str, IndexedPaper],
        source_hashes: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """A paper's source files (and what each gave) changed, its content did not: no re-embedding."""
        ids: list[str] = []
        metadatas: list[dict] = []
        for paper_id, sources in sources_by_paper.items():
            entry = indexed[paper_id]
            hashes = (source_hashes or {}).get(paper_id) or {s: entry.source_hashes.get(s, "?") for s in sources}
            recorded = source_hashes_field(sources, entry.paper_hash, hashes)
            for i in range(entry.chunks_present):
                ids.append(f"{paper_id}#{i}")
                # "" rather than a missing key: Chroma's update merges metadata, so a key left out would stay
                metadatas.append({"sources": SOURCE_SEPARATOR.join(sources), "source_hashes": recorded or ""})
        try:
            for start in range(0, len(ids), PAGE):
                self.collection.update(ids=ids[start : start + PAGE], metadatas=metadatas[start : start + PAGE])
        finally:
            self._announce_write()
