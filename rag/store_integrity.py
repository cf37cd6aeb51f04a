"""Index stage, storage half, continued: checks and repairs of the Chroma collections' vector index.

Chroma keeps texts and metadata in chroma.sqlite3 and the vectors in HNSW folders beside it. When
those folders are lost or damaged, counts and texts still look right while searches return
strangers, so this looks up stored ids in the vector index itself, and rebuilds it from the stored
texts when vectors are gone. A mixin of `ChromaStore`; rag.check decides when to call what.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from rag.chroma import HNSW_CONFIG, PAGE, SENTENCE_HNSW_CONFIG, explain_store_errors, pages
from rag.store_records import page_sentence_texts, sentence_rows


@explain_store_errors
class ChromaIntegrity:
    """Needs from its host: `collection`, `sentences`, `_client`, `_wanted`, `_announce_write`, `_fetch_collections`."""

    def damage(
        self,
        samples: int = 8,
        which: tuple[str, ...] = ("chunks", "sentences"),
        ids: Mapping[str, Sequence[str]] | None = None,
    ) -> str | None:
        """Cheap: whether the vector index holds a few stored chunks and sentences, spread over each
        collection, and finds one of them by its own vector. One line naming the damage, or None.

        Chroma keeps texts and metadata in chroma.sqlite3 and vectors in the HNSW folders beside it;
        when those folders are lost, counts and texts look fine while searches return strangers.
        `ids` names the stored ids to look up per collection (see `probe_ids`); otherwise they are
        found by position, which reads further into the collection the larger it is (about 1 s at
        100,000 sentences).
        """
        from chromadb.errors import InternalError

        for label, collection in self._open_collections():
            if label not in which:
                continue
            try:
                total = collection.count()
                if not total:
                    continue
                if ids and ids.get(label):
                    sample = list(ids[label])
                else:
                    offsets = sorted({i * total // samples for i in range(samples)})
                    sample = [i for o in offsets for i in collection.get(limit=1, offset=o, include=[])["ids"]]
                try:
                    got = collection.get(ids=sample, include=["embeddings"])
                except InternalError:
                    got = None
                if got is None or got["embeddings"] is None or len(got["embeddings"]) != len(sample):
                    return (
                        f"vectors of its {label} are missing from the vector index ({total:,} {label} stored); "
                        "`rag check --repair` re-embeds them from the stored texts"
                    )
                # Each sampled vector should find itself. The sentence collection's graph is sparse (rag/chroma.py)
                # and may miss one now and then; a lost or foreign vector index finds next to none.
                top = collection.query(
                    query_embeddings=list(got["embeddings"]), n_results=min(total, 4), include=["distances"]
                )
                found = sum(1 for nearest in top["distances"] if nearest and nearest[0] <= 1e-3)
                if 2 * found < len(sample):
                    return (
                        f"the vector index does not find its own {label} ({total:,} stored); `rag check --repair` "
                        "rebuilds it"
                    )
            except Exception:  # noqa: BLE001 - a probe that cannot run proves nothing either way
                return None
        return None

    def probe_ids(self, paper_ids: Sequence[str], samples: int = 8) -> dict[str, list[str]]:
        """Ids for `damage(ids=...)`: the first chunk and first sentence of `samples` of these papers, spread
        over them, that the index stores now (found by id, without reading the collections through)."""
        picked = sorted(paper_ids)
        picked = [picked[i * len(picked) // samples] for i in range(samples)] if len(picked) > samples else picked
        found: dict[str, list[str]] = {}
        for label, collection in self._open_collections():
            wanted = [f"{pid}#0" if label == "chunks" else f"{pid}~0" for pid in dict.fromkeys(picked)]
            stored = set(collection.get(ids=wanted, include=[])["ids"]) if wanted else set()
            found[label] = [i for i in wanted if i in stored]
        return found

    def _recover_interrupted_repair(self) -> None:
        """A repair killed between dropping a collection and renaming its rebuilt copy: finish the rename."""
        names = {c.name for c in self._client.list_collections()}
        for name in (self.collection_name, self.sentence_collection_name):
            if f"{name}-repair" in names and name not in names:
                self._client.get_collection(f"{name}-repair", embedding_function=None).modify(name=name)
                self._announce_write()

    def _open_collections(self) -> list[tuple[str, object]]:
        found = [("chunks", self.collection)] if self._wanted[0] else []
        return found + ([("sentences", self.sentences)] if self.sentences is not None else [])

    def vector_gaps(self, which: str) -> tuple[int, list[str]]:
        """(stored, ids without a vector) for 'chunks' or 'sentences': every id is looked up, page by page."""
        from chromadb.errors import InternalError

        collection = self._named(which)
        if collection is None:
            return 0, []
        missing: list[str] = []

        def lookup(ids: list[str]) -> None:
            try:
                got = collection.get(ids=ids, include=["embeddings"])
                if got["embeddings"] is not None and len(got["embeddings"]) == len(ids):
                    return
            except InternalError:
                pass
            if len(ids) == 1 or len(missing) > 2000:  # past that, a failing block is taken as lost whole
                missing.extend(ids)
                return
            step = max(1, len(ids) // 10)
            for start in range(0, len(ids), step):
                lookup(ids[start : start + step])

        total = 0
        for ids in self._id_pages(collection):
            total += len(ids)
            lookup(ids)
        return total, missing

    def _named(self, which: str):  # -> chromadb Collection | None
        if which == "chunks":
            return self.collection
        if which == "sentences":
            return self.sentences
        raise ValueError(which)

    def _id_pages(self, collection) -> Iterator[list[str]]:
        for page in pages(collection, []):
            if page["ids"]:
                yield page["ids"]

    def stored_rows(self, which: str, ids: Sequence[str]) -> list[tuple[str, str, dict]]:
        """(id, text, metadata) of stored chunks or sentences: what re-embedding them needs."""
        collection = self._named(which)
        if collection is None or not ids:
            return []
        rows = []
        for start in range(0, len(ids), PAGE):
            page = collection.get(ids=list(ids[start : start + PAGE]), include=["documents", "metadatas"])
            texts = page_sentence_texts(page) if which == "sentences" else page["documents"] or []
            rows += list(zip(page["ids"], texts, page["metadatas"] or [], strict=True))
        return rows

    def stored_vectors(self, which: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        collection = self._named(which)
        if collection is None or not ids:
            return {}
        page = collection.get(ids=list(ids), include=["embeddings"])
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(page["ids"], page["embeddings"], strict=True)}

    def sentence_papers(self) -> dict[str, int]:
        """How many stored sentence vectors each paper has (empty for indexes without sentence vectors)."""
        sentences = self.sentences
        counts: dict[str, int] = {}
        if sentences is None:
            return counts
        for page in pages(sentences, ["metadatas"]):
            for meta in page["metadatas"] or []:
                counts[meta["paper_id"]] = counts.get(meta["paper_id"], 0) + 1
        return counts

    def stored_ids(self, which: str) -> list[str]:
        collection = self._named(which)
        return [i for page in self._id_pages(collection) for i in page] if collection is not None else []

    def put_sentences(self, rows: Sequence[tuple[str, int, str]], vectors: np.ndarray) -> None:
        """Add (paper_id, position, sentence) rows with their vectors, replacing any with the same ids."""
        try:
            self.sentences.upsert(embeddings=vectors, **sentence_rows(rows))
        finally:
            self._announce_write()

    def delete_sentences(self, paper_ids: Sequence[str]) -> None:
        try:
            for start in range(0, len(paper_ids), 500):
                self.sentences.delete(where={"paper_id": {"$in": list(paper_ids[start : start + 500])}})
        finally:
            self._announce_write()

    def rebuild_vectors(
        self, which: str, missing: Sequence[str], embed: Callable[[list], np.ndarray], everything: bool = False
    ) -> int:
        """Rebuild a collection's vector index: stored vectors are kept, the `missing` ones (or all, with
        `everything`) re-embedded from the stored texts (`embed` takes (id, text, metadata) rows).
        Returns how many were re-embedded.

        Built in a new collection which then takes the old one's name, so a crash part-way leaves the
        old collection as it was (and the half-built one is dropped by the next repair).
        """
        old = self._named(which)
        if old is None:
            return 0
        name = old.name
        spare = f"{name}-repair"
        if spare in {c.name for c in self._client.list_collections()}:
            self._client.delete_collection(spare)
        config = SENTENCE_HNSW_CONFIG if which == "sentences" else HNSW_CONFIG
        new = self._client.create_collection(
            spare, embedding_function=None, configuration={"hnsw": dict(config)}, metadata=old.metadata
        )
        lost = set(missing)
        embedded = 0
        try:
            for ids in self._id_pages(old):
                rows = self.stored_rows(which, ids)
                kept = {} if everything else self.stored_vectors(which, [i for i in ids if i not in lost])
                redo = [row for row in rows if row[0] not in kept]
                fresh = dict(zip([r[0] for r in redo], embed(redo), strict=True)) if redo else {}
                embedded += len(redo)
                vectors = np.stack([kept.get(r[0], fresh.get(r[0])) for r in rows])
                if which == "sentences":  # rebuilt in this version's layout: the text in the metadata
                    rebuilt = [(m["paper_id"], m["position"], text) for _, text, m in rows]
                    new.add(embeddings=vectors, **sentence_rows(rebuilt))
                else:
                    new.add(ids=[r[0] for r in rows], embeddings=vectors, documents=[r[1] for r in rows],
                            metadatas=[r[2] for r in rows])  # fmt: skip
            self._client.delete_collection(name)
            new.modify(name=name)
        finally:
            self._announce_write()
            self._fetch_collections()
        return embedded
