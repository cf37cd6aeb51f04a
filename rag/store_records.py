"""The index's typed records and Chroma's metadata layout (the keys each chunk carries), in one place.

Stores write chunk metadata with `chunk_metadata` and hand back `ChunkMeta`; nothing outside the
store modules reads Chroma's keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.types import Paper

SOURCE_SEPARATOR = "\n"


@dataclass(frozen=True)
class IndexedPaper:
    """What the index holds for one paper: enough to decide whether to re-embed it."""

    paper_hash: str
    chunks_present: int
    chunks_expected: int
    sources: tuple[str, ...]
    source_hashes: Mapping[str, str] = field(default_factory=dict)  # each file's own record hash, where known

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
    precision: str | None = None  # fp32 or int8 vectors


_BOOKKEEPING = ("paper_id", "title", "chunk_index", "n_chunks", "paper_hash", "sources", "source_hashes")
_PAPER_FIELDS = ("authors", "date", "url", "categories")


@dataclass(frozen=True)
class ChunkMeta:
    """What the index records with each chunk, typed. Chroma's key layout (`x_` for a paper's extra fields,
    sources joined by newlines) stays in this module: callers read these fields."""

    paper_id: str
    title: str = ""
    chunk_index: int = 0
    n_chunks: int = -1
    paper_hash: str = ""
    sources: tuple[str, ...] = ()
    authors: str | None = None
    date: str | None = None
    url: str | None = None
    categories: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)  # the paper's other metadata (journal, venue, ...)

    @classmethod
    def from_chroma(cls, meta: Mapping[str, Any]) -> ChunkMeta:
        known = {"paper_id", *_BOOKKEEPING, *_PAPER_FIELDS}
        return cls(
            paper_id=str(meta["paper_id"]),
            title=str(meta.get("title", "")),
            chunk_index=int(meta.get("chunk_index", 0)),
            n_chunks=int(meta.get("n_chunks", -1)),
            paper_hash=str(meta.get("paper_hash", "")),
            sources=tuple(s for s in str(meta.get("sources", "")).split(SOURCE_SEPARATOR) if s),
            **{name: (str(meta[name]) if meta.get(name) is not None else None) for name in _PAPER_FIELDS},
            extra={key.removeprefix("x_"): value for key, value in meta.items() if key not in known},
        )

    @property
    def sources_key(self) -> str:
        """The source files as one comparable string (what changed when a paper gains a file)."""
        return SOURCE_SEPARATOR.join(self.sources)

    def filter_fields(self) -> dict[str, Any]:
        """The fields a `--where KEY=VALUE` filter may test: the paper's metadata, not the index's bookkeeping."""
        fields = {name: getattr(self, name) for name in ("authors", "url", "categories") if getattr(self, name)}
        return fields | dict(self.extra)


@dataclass(frozen=True)
class ChunkMatch:
    """One chunk returned by a vector query, with cosine similarity (1 = same direction)."""

    chunk_id: str
    paper_id: str
    text: str
    similarity: float
    meta: ChunkMeta


def source_hashes_field(sources: Sequence[str], paper_hash: str, hashes: Mapping[str, str] | None) -> str | None:
    """What each source file gave, as one metadata value; None when it says nothing new.

    A paper from one file that the file alone made needs no record: its paper hash is that file's.
    """
    if not hashes or (len(sources) <= 1 and all(h == paper_hash for h in hashes.values())):
        return None
    return json.dumps({s: hashes.get(s, "?") for s in sources}, sort_keys=True)


def read_source_hashes(meta: Mapping[str, Any]) -> dict[str, str]:
    """The per-file hashes `source_hashes_field` wrote ({} when unknown: an index from before they were kept)."""
    raw = meta.get("source_hashes")
    sources = [s for s in str(meta.get("sources", "")).split(SOURCE_SEPARATOR) if s]
    if raw:
        try:
            value = json.loads(str(raw))
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
    if len(sources) == 1:
        return {sources[0]: str(meta.get("paper_hash", ""))}
    return {}


def chunk_metadata(
    paper: Paper, index: int, n_chunks: int, paper_hash: str, source_hashes: Mapping[str, str] | None = None
) -> dict:
    metadata: dict = {
        "paper_id": paper.paper_id,
        "title": paper.title,
        "chunk_index": index,
        "n_chunks": n_chunks,
        "paper_hash": paper_hash,
        "sources": SOURCE_SEPARATOR.join(paper.sources),
    }
    recorded = source_hashes_field(paper.sources, paper_hash, source_hashes)
    if recorded:
        metadata["source_hashes"] = recorded
    for name in _PAPER_FIELDS:
        value = getattr(paper, name)
        if value:
            metadata[name] = value
    for name, value in paper.extra.items():
        metadata.setdefault(f"x_{name}", value[:500])
    return metadata


def sentence_rows(rows: Sequence[tuple[str, int, str]]) -> dict:
    """The sentence collection's `add`/`upsert` arguments for (paper_id, position, sentence) rows, without vectors.

    The text goes into the metadata, not Chroma's `documents`: Chroma indexes every document for full-text
    search (a trigram index in SQLite), which nothing here uses for sentences and which made a third of
    their insert time (8,000 rows: 6.5 s -> 4.3 s). Indexes written before keep their texts as documents;
    `sentence_text` reads either."""
    return {
        "ids": [f"{paper_id}~{position}" for paper_id, position, _ in rows],
        "metadatas": [{"paper_id": paper_id, "position": position, "text": text} for paper_id, position, text in rows],
    }


def sentence_text(document: str | None, metadata: Mapping[str, Any] | None) -> str:
    """A stored sentence's text: in its metadata (this version; an upsert into an older index can leave the old
    document beside it) or else its document (indexes written before)."""
    text = (metadata or {}).get("text")
    return str(text) if text is not None else (document or "")


def page_sentence_texts(page: Mapping[str, Any]) -> list[str]:
    """The sentence texts of a Chroma `get` page that included documents and metadatas, in its order."""
    return [sentence_text(d, m) for d, m in zip(page["documents"] or [], page["metadatas"] or [], strict=True)]
