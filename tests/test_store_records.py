"""Chunk metadata as the store writes it and as callers read it back: typed, Chroma's layout hidden."""

from __future__ import annotations

from rag.store_records import ChunkMeta, chunk_metadata, sentence_rows, sentence_text
from rag.types import Paper


def test_chunk_metadata_round_trips_through_the_typed_record():
    paper = Paper("p1", "A title", "Text.", sources=["a.bib", "b.jsonl"], authors="Ada Lovelace", date="2024-03",
                  extra={"journal": "J. Speech", "doi": "10.1/x"})  # fmt: skip
    written = chunk_metadata(paper, 0, 3, "hash1")
    assert written["sources"] == "a.bib\nb.jsonl" and written["x_journal"] == "J. Speech"  # the layout, in one place
    meta = ChunkMeta.from_chroma(written)
    assert (meta.paper_id, meta.title, meta.chunk_index, meta.n_chunks, meta.paper_hash) == ("p1", "A title", 0, 3,
                                                                                             "hash1")  # fmt: skip
    assert meta.sources == ("a.bib", "b.jsonl") and meta.sources_key == "a.bib\nb.jsonl"
    assert (meta.authors, meta.date, meta.url, meta.categories) == ("Ada Lovelace", "2024-03", None, None)
    assert meta.extra == {"journal": "J. Speech", "doi": "10.1/x"}
    assert meta.filter_fields() == {"authors": "Ada Lovelace", "journal": "J. Speech", "doi": "10.1/x"}


def test_a_sparse_old_record_reads_with_defaults():
    meta = ChunkMeta.from_chroma({"paper_id": "p2", "chunk_index": 1})
    assert meta.title == "" and meta.sources == () and meta.n_chunks == -1 and meta.filter_fields() == {}


def test_sentence_rows_put_the_text_in_the_metadata_and_either_layout_reads():
    rows = sentence_rows([("p1", 0, "First."), ("p1", 1, "Second.")])
    assert rows["ids"] == ["p1~0", "p1~1"]
    assert rows["metadatas"] == [{"paper_id": "p1", "position": 0, "text": "First."},
                                 {"paper_id": "p1", "position": 1, "text": "Second."}]  # fmt: skip
    assert sentence_text(None, rows["metadatas"][0]) == "First."
    assert sentence_text("Old.", {"paper_id": "p1", "position": 0}) == "Old."  # written before: the document
    assert sentence_text("Stale.", {"text": "New."}) == "New."  # upserted over an older row
    assert sentence_text(None, None) == ""
