"""The no-op shortcut of `rag ingest` (rag/ingest_state.py): unchanged files are not read again, and every
change to the inputs, the settings or the index takes the full path and ends as the full path would.

Real Chroma and the real MiniLM model, as in tests/test_index.py.
"""

import dataclasses
import json
import os
from pathlib import Path

import pytest

import rag.ingest
import rag.ingest_progress
import rag.sources
from rag.ingest import IngestEstimate
from rag.ingest_state import STATE_FILE
from tests.conftest import make_library, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture
def reads(monkeypatch):
    """How many files the readers parsed (the shortcut parses none)."""
    opened: list[str] = []
    real = rag.sources._read_file

    def counting(path, report, options):
        opened.append(str(path))
        return real(path, report, options)

    monkeypatch.setattr(rag.sources, "_read_file", counting)
    return opened


@pytest.fixture
def corpus(tmp_path, seed_corpus):
    folder = tmp_path / "papers"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", seed_corpus.papers[:4])
    write_jsonl(folder / "b.jsonl", seed_corpus.papers[4:7])
    return folder


def _same(report, other) -> None:
    """Every field but the time taken (and the embedding time, zero in both)."""
    left, right = dataclasses.asdict(report), dataclasses.asdict(other)
    for key in ("seconds", "embed_seconds"):
        left.pop(key), right.pop(key)
    assert left == right


def test_unchanged_files_are_reported_from_their_fingerprints_without_parsing(tmp_path, embedder, corpus, monkeypatch):
    library = make_library(tmp_path / "idx", embedder)
    assert library.ingest([corpus], progress=False).papers_embedded == 7
    full = make_library(tmp_path / "idx", embedder, **{"index.trust_fingerprints": False}).ingest(
        [corpus], progress=False
    )
    assert (full.papers_unchanged, full.papers_embedded, full.records_read, full.files_read) == (7, 0, 7, 2)

    def no_reading(*_args, **_kwargs):
        raise AssertionError("a file was parsed")

    monkeypatch.setattr(rag.sources, "_read_file", no_reading)
    monkeypatch.setattr(rag.ingest, "iter_records", no_reading)
    fast = library.ingest([corpus], progress=False)
    _same(fast, full)
    assert fast.seconds < full.seconds
    assert library.search("visual tokens", k=1)  # the index still answers
    state = json.loads((tmp_path / "idx" / STATE_FILE).read_text())
    (entry,) = state["collections"]["papers"]["entries"]
    assert [Path(f[0]).name for f in entry["inputs"]["files"]] == ["a.jsonl", "b.jsonl"]


def test_a_touched_but_identical_file_is_read_again_and_found_unchanged(tmp_path, embedder, corpus, reads):
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([corpus], progress=False)
    reads.clear()
    library.ingest([corpus], progress=False)
    assert reads == []
    stat = (corpus / "a.jsonl").stat()
    os.utime(corpus / "a.jsonl", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    report = library.ingest([corpus], progress=False)
    assert reads and (report.papers_embedded, report.papers_unchanged, report.sources_updated) == (0, 7, 0)
    reads.clear()
    assert library.ingest([corpus], progress=False).papers_unchanged == 7 and reads == []  # remembered again


def test_a_changed_file_is_read_and_its_edit_embedded(tmp_path, embedder, corpus, seed_corpus, reads):
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([corpus], progress=False)
    papers = seed_corpus.papers[:4]
    edited = [*papers[:3], dataclasses.replace(papers[3], abstract="A brand new abstract about protein folding.")]
    write_jsonl(corpus / "a.jsonl", edited)
    reads.clear()
    report = library.ingest([corpus], progress=False)
    assert reads and (report.papers_embedded, report.papers_unchanged) == (1, 6)
    assert library.search("protein folding", k=1)[0].title == papers[3].title


def test_same_size_and_time_but_other_bytes_is_a_change(tmp_path, embedder, corpus, reads):
    """The content hash catches an edit that keeps the size and the modification time (rsync -t, cp -p)."""
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([corpus], progress=False)
    path = corpus / "b.jsonl"
    stat, text = path.stat(), path.read_text()
    swapped = text.replace("a", "\x00", 1).replace("e", "a", 1).replace("\x00", "e", 1)  # same length
    assert swapped != text and len(swapped.encode()) == len(text.encode())
    path.write_text(swapped)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    reads.clear()
    report = library.ingest([corpus], progress=False)
    assert reads and report.papers_embedded == 1


def test_an_added_file_is_read(tmp_path, embedder, corpus, seed_corpus, reads):
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([corpus], progress=False)
    write_jsonl(corpus / "c.jsonl", seed_corpus.papers[7:9])
    reads.clear()
    report = library.ingest([corpus], progress=False)
    assert sorted({Path(r).name for r in reads}) == ["a.jsonl", "b.jsonl", "c.jsonl"]  # (twice: plan, embed)
    assert (report.papers_embedded, report.papers_unchanged, report.files_read) == (2, 7, 3)
    assert library.stats().papers == 9


def test_a_removed_file_is_noticed_whether_given_or_only_cited(tmp_path, embedder, corpus, reads):
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([corpus], progress=False)
    (corpus / "b.jsonl").unlink()  # gone from the folder that is given
    reads.clear()
    report = library.ingest([corpus], progress=False)
    assert reads and (report.papers_missing, report.papers_unchanged, report.files_read) == (3, 4, 1)
    reads.clear()
    assert library.ingest([corpus], progress=False).papers_missing == 3 and reads == []  # still said, unread
    pruned = library.ingest([corpus], prune=True, progress=False)
    assert reads and (pruned.papers_pruned, pruned.papers_missing) == (3, 0) and library.stats().papers == 4
    reads.clear()
    again = library.ingest([corpus], prune=True, progress=False)
    assert reads == [] and (again.papers_pruned, again.papers_missing, again.papers_unchanged) == (0, 0, 4)


def test_a_cited_file_that_was_not_given_is_watched_too(tmp_path, embedder, corpus, reads):
    """`rag ingest a.jsonl` after both files: b's papers stay; once b.jsonl is gone, they are missing."""
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([corpus], progress=False)
    first = corpus / "a.jsonl"
    assert library.ingest([first], progress=False).papers_missing == 0
    reads.clear()
    assert library.ingest([first], progress=False).papers_missing == 0 and reads == []
    (corpus / "b.jsonl").unlink()
    report = library.ingest([first], progress=False)
    assert reads and report.papers_missing == 3


def test_a_settings_change_reads_everything(tmp_path, embedder, corpus, reads):
    make_library(tmp_path / "idx", embedder).ingest([corpus], progress=False)
    reads.clear()
    wider = make_library(tmp_path / "idx", embedder, **{"chunking.chunk_tokens": 400})
    report = wider.ingest([corpus], progress=False)
    assert reads and report.papers_embedded == 7  # the chunking plan is part of every paper's hash
    reads.clear()
    assert wider.ingest([corpus], progress=False).papers_unchanged == 7 and reads == []
    cut = make_library(tmp_path / "idx", embedder, **{"chunking.chunk_tokens": 400, "corpus.max_abstract_chars": 1000})
    report = cut.ingest([corpus], progress=False)
    assert reads and report.records_read == 7  # a reader setting: read again, whatever it changes


def test_a_repaired_index_is_read_again(tmp_path, embedder, corpus, reads):
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([corpus], progress=False)
    library.close_catalog()
    (tmp_path / "idx" / "papers-catalog.sqlite3").unlink()
    assert library.check(repair=True).ok
    assert not (tmp_path / "idx" / STATE_FILE).exists()
    reads.clear()
    report = library.ingest([corpus], progress=False)
    assert reads and (report.papers_unchanged, report.papers_embedded) == (7, 0)


def test_another_write_to_the_index_makes_the_next_run_read(tmp_path, embedder, corpus, seed_corpus, reads):
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([corpus], progress=False)
    other = write_jsonl(tmp_path / "other.jsonl", seed_corpus.papers[10:11])
    assert library.ingest([other], progress=False).papers_embedded == 1  # a new generation of the index
    reads.clear()
    assert library.ingest([corpus], progress=False).papers_unchanged == 7 and reads
    reads.clear()  # both sets of inputs are remembered while nothing writes
    assert library.ingest([other], progress=False).papers_unchanged == 1 and reads == []
    assert library.ingest([corpus], progress=False).papers_unchanged == 7 and reads == []


def test_a_write_that_stamps_nothing_still_makes_the_next_run_read(tmp_path, embedder, corpus, reads):
    """Another Chroma client (a script of the user's) writes without the generation stamp: the write log moves."""
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([corpus], progress=False)
    store = library.store()
    (first,) = store.collection.get(limit=1, include=["metadatas", "documents", "embeddings"])["ids"][:1] or [None]
    got = store.collection.get(ids=[first], include=["metadatas", "documents", "embeddings"])
    store.collection.upsert(ids=[first], embeddings=got["embeddings"], documents=["edited elsewhere"],
                            metadatas=got["metadatas"])  # fmt: skip
    reads.clear()
    assert library.ingest([corpus], progress=False).papers_unchanged == 7 and reads


def test_a_no_op_after_a_big_write_loads_no_collection_and_reads_no_vector_file(
    tmp_path, embedder, seed_corpus, monkeypatch
):
    """What makes a no-op of 100k papers take seconds, not minutes: the collections' counts come from
    chroma.sqlite3, the vector files the writer saved are known sound, and files as the last run left them
    need no probe (each of these loads or reads every vector: about 10 s at 100k papers)."""
    import chromadb.api.models.Collection as collection_module

    import rag.store_files
    from rag.store import ChromaStore

    papers = write_jsonl(tmp_path / "all.jsonl", seed_corpus.papers)  # over Chroma's 1,000-vector save point
    library = make_library(tmp_path / "idx", embedder)
    assert library.ingest([papers], progress=False).papers_embedded == 275
    assert any((folder / "data_level0.bin").exists() for folder in rag.store_files.segment_folders(tmp_path / "idx"))

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a no-op loaded a collection or read a vector file")

    monkeypatch.setattr(collection_module.Collection, "count", forbidden)
    monkeypatch.setattr(ChromaStore, "damage", forbidden)
    monkeypatch.setattr(rag.store_files, "check_folder", forbidden)
    again = make_library(tmp_path / "idx", embedder).ingest([papers], progress=False)
    assert (again.papers_unchanged, again.papers_embedded) == (275, 0)


def test_merged_metadata_and_problems_survive_the_shortcut(tmp_path, embedder, seed_corpus, reads):
    papers = seed_corpus.papers[:3]
    plain = tmp_path / "plain.jsonl"
    plain.write_text(
        "".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n" for p in papers) + "{not json\n"
    )
    bib = tmp_path / "refs.bib"
    bib.write_text(
        "\n".join(
            f"@article{{k{i},\n  title = {{{p.title}}},\n  author = {{Doe, Jane}},\n  year = {{2024}},\n"
            f"  abstract = {{{p.abstract}}}\n}}\n"
            for i, p in enumerate(papers)
        )
    )
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([bib], progress=False)
    first = library.ingest([plain, bib], progress=False)  # the plain file joins the bib's papers as a source
    assert (first.papers_embedded, first.sources_updated, first.problems_total) == (0, 3, 1)
    said = []
    reads.clear()
    fast = library.ingest([plain, bib], progress=False, on_problem=said.append)
    assert reads == [] and said == first.problems and fast.sources_updated == 0
    slow = make_library(tmp_path / "idx", embedder, **{"index.trust_fingerprints": False})
    full = slow.ingest([plain, bib], progress=False)
    assert reads and full.problems_total == 1
    _same(fast, full)
    stored = library.paper(papers[0].paper_id)
    assert stored.authors == "Jane Doe" and sorted(Path(s).name for s in stored.sources) == ["plain.jsonl", "refs.bib"]


def test_the_built_in_corpus_takes_the_shortcut_too(seed_library, reads):
    seed_library.ingest(progress=False)  # records the state, whatever ran before in this session
    reads.clear()
    report = seed_library.ingest(progress=False)
    assert reads == [] and (report.papers_unchanged, report.records_read, report.files_read) == (275, 370, 5)


def test_a_big_ingest_is_estimated_once_before_it_embeds(tmp_path, embedder, seed_corpus, monkeypatch):
    monkeypatch.setattr(rag.ingest_progress, "ESTIMATE_ABOVE", 5)
    monkeypatch.setattr(rag.ingest_progress, "RATE_AFTER", 4)
    first = write_jsonl(tmp_path / "first.jsonl", seed_corpus.papers[:8])
    library = make_library(tmp_path / "idx", embedder, **{"index.batch_papers": 3})
    heard: list[IngestEstimate] = []
    events: list[str] = []
    library.ingest(
        [first], progress=lambda p: events.append(f"batch {p.done}"), on_estimate=lambda e: events.append(e.describe())
    )
    assert len(events) == 4 and events[1:] == ["batch 3", "batch 6", "batch 8"]
    assert "8 papers found, 8 to embed (about " in events[0] and "measured on the first 3 papers" in events[0]
    second = write_jsonl(tmp_path / "second.jsonl", seed_corpus.papers[8:14])
    library.ingest([second], progress=False, on_estimate=heard.append)
    (estimate,) = heard
    assert (estimate.papers_found, estimate.papers_to_embed) == (6, 6)
    assert "last ingest" in estimate.basis and estimate.seconds > 0 and estimate.texts > 6
    heard.clear()
    small = write_jsonl(tmp_path / "small.jsonl", seed_corpus.papers[14:16])
    library.ingest([small], progress=False, on_estimate=heard.append)
    assert heard == []  # two papers: no estimate


def test_the_estimate_line():
    estimate = IngestEstimate(100_000, 99_000, 1_080_000, 15_000.0, 72.4, "measured on the first 64 papers")
    assert estimate.describe() == (
        "100,000 papers found, 99,000 to embed (about 1,080,000 texts: chunks and sentences); expected time about "
        "4h 10m at 72 texts/s (measured on the first 64 papers)"
    )


def test_rag_ingest_prints_the_estimate_on_stderr_but_not_with_json(tmp_path, seed_corpus, monkeypatch, capsys):
    from rag.cli import main

    monkeypatch.setattr(rag.ingest_progress, "ESTIMATE_ABOVE", 5)
    monkeypatch.setenv("RAG_INDEX__BATCH_PAPERS", "4")
    monkeypatch.setenv("RAG_INDEX__SENTENCE_VECTORS", "false")
    papers = write_jsonl(tmp_path / "papers.jsonl", seed_corpus.papers[:8])
    assert main(["ingest", str(papers), "--index", str(tmp_path / "one")]) == 0
    out, err = capsys.readouterr()
    assert "8 papers found, 8 to embed" in err and "expected time about" in err and "to embed" not in out
    assert main(["ingest", str(papers), "--index", str(tmp_path / "two"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["papers_embedded"] == 8 and "to embed" not in err
