"""Ingest and search against a real Chroma index with the real MiniLM model."""

import shutil
from pathlib import Path

import pytest

from rag.errors import IndexStoreError, RagError
from tests.conftest import DYVTE_TITLE, make_library, write_jsonl

pytestmark = pytest.mark.slow

DYVTE_QUESTION = "Is there work that drops all visual tokens partway through an MLLM?"


def test_unchanged_corpus_embeds_nothing(seed_library):
    report = seed_library.ingest(progress=False)
    assert (report.papers_embedded, report.chunks_embedded, report.papers_unchanged) == (0, 0, 275)


def test_dyvte_ranks_first_by_meaning_and_stays_near_the_top_in_hybrid(seed_library):
    hits = seed_library.search(DYVTE_QUESTION, mode="dense")
    assert hits[0].title == DYVTE_TITLE
    assert "visual tokens" in hits[0].passage or "DyVTE" in hits[0].passage
    # BM25 prefers papers that repeat 'visual token' more; fusion keeps DyVTE among the papers answers read.
    hybrid = seed_library.search(DYVTE_QUESTION, mode="hybrid")
    assert DYVTE_TITLE in [h.title for h in hybrid[:3]]
    assert max(hybrid, key=lambda h: h.score).title == DYVTE_TITLE  # still the closest in meaning


def test_results_are_papers_each_once_with_sources(seed_library):
    hits = seed_library.search("benchmark for multimodal large language models", k=10)
    assert len(hits) == 10
    assert len({h.paper_id for h in hits}) == 10
    assert [h.fused for h in hits] == sorted((h.fused for h in hits), reverse=True)
    assert all(h.sources and Path(h.sources[0]).name.endswith(".txt") for h in hits)


def test_repeated_paper_is_stored_once_with_all_sources(seed_library):
    hit = seed_library.search(DYVTE_QUESTION, k=1, mode="dense")[0]
    assert sorted(Path(s).name for s in hit.sources) == ["000_74cbff6dd2033f19.txt", "003_7208fcced9317935.txt"]


def test_stats_count_papers_and_chunks(seed_library):
    stats = seed_library.stats()
    assert stats.papers == 275
    assert 275 * 2 <= stats.chunks <= 275 * 4
    assert stats.model == "all-MiniLM-L6-v2" and stats.dimension == 384 and stats.size_bytes > 0


def test_every_chunk_stored_once_and_complete(seed_library):
    store = seed_library.store()
    indexed = store.indexed_papers()
    assert len(indexed) == 275 and all(p.complete for p in indexed.values())
    assert sum(p.chunks_present for p in indexed.values()) == store.collection.count()


@pytest.fixture
def small_corpus(tmp_path, seed_corpus):
    return write_jsonl(tmp_path / "small.jsonl", seed_corpus.papers[:6])


def test_every_abstract_sentence_is_stored_with_its_vector(seed_library, embedder):
    import numpy as np

    from rag.chunking import abstract_sentences

    store = seed_library.store()
    paper_ids = list(store.indexed_papers())[:5]
    passages = store.passages_of(paper_ids)
    stored = store.sentence_vectors(paper_ids)
    expected = [s for pid in paper_ids for s in abstract_sentences(passages[pid])]
    assert sorted(stored) == sorted(set(expected))
    sample = expected[:4]
    assert np.allclose(np.stack([stored[s] for s in sample]), embedder.embed(sample), atol=1e-4)


def test_sentence_texts_live_in_metadata_and_an_older_index_with_documents_still_reads(
    tmp_path, embedder, small_corpus
):
    """Chroma full-text indexes every document; sentences keep their text in the metadata instead (cheaper
    inserts), and an index written before, with the texts as documents, reads the same."""
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([small_corpus], progress=False)
    store = library.store()
    paper_ids = list(store.indexed_papers())
    new_layout = store.sentences.get(include=["documents", "metadatas", "embeddings"])
    assert set(new_layout["documents"]) == {None} and all(m["text"] for m in new_layout["metadatas"])
    texts, vectors = sorted(store.sentence_texts()), store.sentence_vectors(paper_ids)
    assert texts and sorted(vectors) == sorted(set(texts))
    store.sentences.delete(ids=new_layout["ids"])  # rewritten as the earlier version wrote them
    old_metas = [{"paper_id": m["paper_id"], "position": m["position"]} for m in new_layout["metadatas"]]
    old_docs = [m["text"] for m in new_layout["metadatas"]]
    store.sentences.add(ids=new_layout["ids"], documents=old_docs, metadatas=old_metas,
                        embeddings=new_layout["embeddings"])  # fmt: skip
    assert sorted(store.sentence_texts()) == texts
    assert sorted(store.sentence_vectors(paper_ids)) == sorted(vectors)


def test_every_sentence_text_reads_back_past_sqlites_variable_limit(tmp_path, embedder, small_corpus):
    """Reading every sentence's metadata in one Chroma `get` fails past about 32,000 rows ("too many SQL
    variables": a 10,000-paper index holds 65,000 sentences); the store reads them a page at a time."""
    import numpy as np

    library = make_library(tmp_path / "idx", embedder)
    library.ingest([small_corpus], progress=False)
    store = library.store()
    ingested = store.sentence_texts()
    more = 33_000
    vectors = np.random.default_rng(0).standard_normal((more, embedder.dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # stored vectors are unit length
    for start in range(0, more, 5_000):
        ids = [f"p{i}~0" for i in range(start, min(more, start + 5_000))]
        metas = [{"paper_id": i.split("~")[0], "position": 0, "text": f"sentence {i}"} for i in ids]
        store.sentences.add(ids=ids, metadatas=metas, embeddings=vectors[start : start + len(ids)])
    texts = store.sentence_texts()
    assert len(texts) == len(ingested) + more
    assert set(ingested) <= set(texts) and "sentence p32999~0" in texts


def test_whole_papers_are_read_by_chunk_id_and_other_ids_are_still_found(tmp_path, embedder, small_corpus):
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([small_corpus], progress=False)
    store = library.store()
    indexed = store.indexed_papers()
    filtered = store.collection.get(where={"paper_id": {"$in": list(indexed)}}, include=["documents"])
    assert sorted(m.chunk_id for m, _ in store.chunks_of(list(indexed))) == sorted(filtered["ids"])
    # A chunk stored under an id of another scheme (an older writer) is found by a filter on its paper.
    paper = next(iter(indexed))
    rows = store.collection.get(where={"paper_id": paper}, include=["documents", "metadatas", "embeddings"])
    store.collection.delete(ids=rows["ids"])
    store.collection.add(ids=[f"other-scheme-{i}" for i in range(len(rows["ids"]))], documents=rows["documents"],
                         metadatas=rows["metadatas"], embeddings=rows["embeddings"])  # fmt: skip
    order = sorted(range(len(rows["ids"])), key=lambda i: rows["metadatas"][i]["chunk_index"])
    expected = [rows["documents"][i] for i in order]
    assert store.passages_of([paper, "no-such-paper"]) == {paper: expected, "no-such-paper": []}


def test_changed_abstract_is_reembedded_alone(tmp_path, embedder, seed_corpus, small_corpus):
    library = make_library(tmp_path / "idx", embedder)
    assert library.ingest([small_corpus], progress=False).papers_embedded == 6
    papers = seed_corpus.papers[:6]
    edited = [
        *papers[:2],
        type(papers[2])(**{**papers[2].__dict__, "abstract": "A brand new abstract about protein folding."}),
        *papers[3:],
    ]
    write_jsonl(small_corpus, edited)
    report = library.ingest([small_corpus], progress=False)
    assert (report.papers_embedded, report.papers_unchanged) == (1, 5)
    assert library.search("protein folding", k=1)[0].title == papers[2].title
    assert library.stats().papers == 6
    assert list(library.store().sentence_vectors([papers[2].paper_id])) == [
        "A brand new abstract about protein folding."
    ]  # the edited paper's old sentence vectors are gone


def test_prune_removes_papers_whose_source_is_gone(tmp_path, embedder, seed_corpus):
    first = write_jsonl(tmp_path / "first.jsonl", seed_corpus.papers[:3])
    second = write_jsonl(tmp_path / "second.jsonl", seed_corpus.papers[3:5])
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([first, second], progress=False)
    second.unlink()
    kept = library.ingest([first], progress=False)
    assert kept.papers_missing == 2 and library.stats().papers == 5  # not pruned without --prune
    pruned = library.ingest([first], prune=True, progress=False)
    assert pruned.papers_pruned == 2 and library.stats().papers == 3
    assert library.store().sentence_vectors([p.paper_id for p in seed_corpus.papers[3:5]]) == {}


def test_paper_found_in_a_second_file_gains_a_source_without_reembedding(tmp_path, embedder, seed_corpus):
    first = write_jsonl(tmp_path / "first.jsonl", seed_corpus.papers[:2])
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([first], progress=False)
    again = write_jsonl(tmp_path / "again.jsonl", seed_corpus.papers[1:2])
    report = library.ingest([again], progress=False)
    assert (report.papers_embedded, report.sources_updated) == (0, 1)
    hit = library.search(seed_corpus.papers[1].title, k=1)[0]
    assert sorted(Path(s).name for s in hit.sources) == ["again.jsonl", "first.jsonl"]


def test_other_model_is_refused_naming_both_and_rebuild_works(tmp_path, embedder, small_corpus):
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([small_corpus], progress=False)
    other_model = tmp_path / "my-minilm-copy"
    from rag.embedding import resolve_model_path

    shutil.copytree(resolve_model_path("all-MiniLM-L6-v2"), other_model)
    other = make_library(tmp_path / "idx", **{"embedding.model": str(other_model)})
    with pytest.raises(IndexStoreError) as err:
        other.search("anything")
    message = str(err.value)
    assert "'all-MiniLM-L6-v2'" in message and str(other_model) in message and "--rebuild" in message
    assert "\n" not in message
    with pytest.raises(IndexStoreError, match="--rebuild"):
        other.ingest([small_corpus], progress=False)
    assert other.ingest([small_corpus], rebuild=True, progress=False).papers_embedded == 6
    assert other.stats().model == str(other_model)


def test_folder_that_is_not_an_index_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(IndexStoreError, match="not a Chroma index"):
        make_library(tmp_path).stats()


def test_missing_index_says_to_ingest(tmp_path):
    with pytest.raises(RagError, match="rag ingest"):
        make_library(tmp_path / "nothing-here").search("anything")


def test_ingest_progress_tells_rate_and_time_left():
    from rag.ingest import IngestProgress, format_duration

    state = IngestProgress(done=640, total=5183, chunks=1320, seconds=80.0)
    assert state.rate == 8.0 and state.seconds_left == pytest.approx(567.9, abs=0.1)
    assert state.describe() == "embedded 640/5183 papers (1320 chunks), 8.0 papers/s, 9m 28s left"
    assert IngestProgress(0, 10, 0, 0.0).describe() == "embedded 0/10 papers (0 chunks), 0.0 papers/s"
    assert [format_duration(s) for s in (0.4, 59, 61, 3725)] == ["0s", "59s", "1m 01s", "1h 02m"]


def _bib_of(papers, abstracts=None) -> str:
    entries = []
    for i, paper in enumerate(papers):
        abstract = (abstracts or {}).get(paper.paper_id, paper.abstract)
        entries.append(
            f"@article{{key{i},\n  title = {{{paper.title}}},\n  author = {{Doe, Jane and Roe, Rick}},\n"
            f"  year = {{2024}},\n  month = may,\n  url = {{https://example.org/p{i}}},\n"
            f"  journal = {{Journal {i}}},\n  abstract = {{{abstract}}}\n}}\n"
        )
    return "\n".join(entries)


def _titles_only_jsonl(path: Path, papers) -> Path:
    """Like the built-in corpus: title and abstract, no id, authors, date or link (id from the title)."""
    import json

    path.write_text("".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n" for p in papers))
    return path


def test_metadata_is_merged_across_sources_and_alternating_ingests_embed_nothing(tmp_path, embedder, seed_corpus):
    papers = seed_corpus.papers[:3]
    plain = _titles_only_jsonl(tmp_path / "plain.jsonl", papers)
    bib = tmp_path / "refs.bib"
    # the export's abstract of one paper differs from the plain file's (another version of the text)
    bib.write_text(_bib_of(papers, {papers[2].paper_id: papers[2].abstract + " Code is released."}), encoding="utf-8")
    library = make_library(tmp_path / "idx", embedder)
    assert library.ingest([bib], progress=False).papers_embedded == 3
    first = library.paper(papers[0].paper_id)
    assert (first.authors, first.date, first.url) == ("Jane Doe, Rick Roe", "2024-05", "https://example.org/p0")

    embedded = [library.ingest([plain], progress=False).papers_embedded]  # the plain file lacks those fields
    for _ in range(2):
        embedded += [library.ingest([bib], progress=False).papers_embedded]
        embedded += [library.ingest([plain], progress=False).papers_embedded]
    # the abstract that differs is taken once from the file read later; after that nothing is embedded
    assert embedded == [1, 0, 0, 0, 0]
    for i, paper in enumerate(papers):
        stored = library.paper(paper.paper_id)
        assert (stored.authors, stored.date, stored.url) == (
            "Jane Doe, Rick Roe",
            "2024-05",
            f"https://example.org/p{i}",
        )
        assert stored.extra.get("journal") == f"Journal {i}"
        assert sorted(Path(s).name for s in stored.sources) == ["plain.jsonl", "refs.bib"]
    assert library.search("Code is released", k=1, mode="bm25")  # searchable either way

    # one run reading both files: the same merge, whichever comes first, and nothing to embed
    assert library.ingest([plain, bib], progress=False).papers_embedded == 0
    assert library.ingest([bib, plain], progress=False).papers_embedded == 0
    fresh = make_library(tmp_path / "fresh", embedder)
    fresh.ingest([plain, bib], progress=False)
    stored = fresh.paper(papers[1].paper_id)
    assert (stored.authors, stored.date, stored.extra.get("journal")) == ("Jane Doe, Rick Roe", "2024-05", "Journal 1")

    # an edit to one source is still seen: the bib's new date replaces the old one, the plain text stays
    bib.write_text(bib.read_text().replace("year = {2024}", "year = {2023}"), encoding="utf-8")
    assert library.ingest([bib], progress=False).papers_embedded == 3
    assert library.paper(papers[0].paper_id).date == "2023-05"
    assert library.ingest([plain], progress=False).papers_embedded == 0


def test_the_readme_python_example_holds_on_the_built_in_corpus(seed_library):
    hits = seed_library.search("visual tokens", where=["source=000_*.txt"], mode="bm25")
    paper = seed_library.paper(hits[0].paper_id)
    assert paper is not None and any(Path(s).name.startswith("000_") for s in paper.sources)
    # why the example no longer filters by date: the built-in papers carry none
    assert seed_library.search("visual tokens", where=["date>=2024-01"], mode="bm25") == []


def test_the_store_shows_what_its_vectors_were_made_from(seed_library):
    """The public reads bench/ingest_bench.py uses instead of Chroma's collections and metadata keys."""
    store = seed_library.store()
    chunks = list(store.iter_chunk_texts())
    assert len(chunks) == store.chunk_count() and all(meta.title and text for meta, text in chunks)
    assert {meta.paper_id for meta, _ in chunks} == {meta.paper_id for meta in store.iter_first_chunk_metadata()}
    sentences = store.sentence_texts()
    assert len(sentences) > len({meta.paper_id for meta, _ in chunks}) and all(sentences)


def test_vector_search_looks_wide_and_an_older_index_is_widened_by_a_writer(seed_library, tmp_path):
    """Chroma rebuilds the unpersisted tail of its HNSW graph differently at each open; at its default
    search width (ef 100) a query then misses one of its true nearest chunks on some opens only."""
    import chromadb

    from rag.chroma import SEARCH_EF
    from rag.store import INDEX_FORMAT, ChromaStore

    store = seed_library.store()
    assert store.collection.configuration["hnsw"]["ef_search"] == SEARCH_EF
    assert store.sentences.configuration["hnsw"]["ef_search"] == SEARCH_EF
    # never searched by vector: a sparse graph, cheap to insert into
    assert store.collection.configuration["hnsw"]["max_neighbors"] == 16
    assert (
        store.sentences.configuration["hnsw"]["max_neighbors"],
        store.sentences.configuration["hnsw"]["ef_construction"],
    ) == (4, 8)

    meta = {"embedding_model": "m", "dimension": 3, "index_format": INDEX_FORMAT, "embedding_precision": "fp32"}
    client = chromadb.PersistentClient(str(tmp_path / "old"))
    client.create_collection("papers", configuration={"hnsw": {"space": "cosine"}}, metadata=meta)
    client.create_collection("papers-sentences", configuration={"hnsw": {"space": "cosine"}})
    assert client.get_collection("papers").configuration["hnsw"]["ef_search"] < SEARCH_EF  # as built before
    reader = ChromaStore(tmp_path / "old", "papers", create=False)
    reader.open_for("m", 3, create=False)
    assert reader.collection.configuration["hnsw"]["ef_search"] < SEARCH_EF  # a search changes nothing
    writer = ChromaStore(tmp_path / "old", "papers", create=True)
    writer.open_for("m", 3, create=True)
    for name in ("papers", "papers-sentences"):
        assert writer._client.get_collection(name).configuration["hnsw"]["ef_search"] == SEARCH_EF
