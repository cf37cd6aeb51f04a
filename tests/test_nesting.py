"""Nesting and size: a JSON value nested 100,000 levels deep, and an abstract of a megabyte. The first
costs its own line (Python's parser gives up with a RecursionError); the second is cut at a sentence
end below `corpus.max_abstract_chars` and reported, instead of taking minutes to embed.
"""

from __future__ import annotations

import json

import pytest

from rag.sources import iter_records, load_corpus
from tests.conftest import make_library, run_cli

GOOD = {"title": "A good paper about token pruning", "abstract": "We prune tokens. It works well."}


def _deep(levels: int) -> bytes:
    return b'{"id": "deep", "title": "Deep", "abstract": "Deep.", "meta": ' + b"[" * levels + b"]" * levels + b"}"


def _file(tmp_path, middle: bytes):
    path = tmp_path / "nested.jsonl"
    lines = [json.dumps({**GOOD, "id": "before"}).encode(), middle, json.dumps({**GOOD, "id": "after"}).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_a_value_nested_too_deeply_costs_its_line_only(tmp_path):
    corpus = load_corpus([_file(tmp_path, _deep(100_000))])
    assert [p.paper_id for p in corpus.papers] == ["before", "after"]
    assert [str(p) for p in corpus.problems] == [
        f"{tmp_path / 'nested.jsonl'}:2: JSON nested too deeply to read (over ~1,000 levels); line skipped"
    ]


def test_a_value_nested_500_levels_is_read(tmp_path):
    corpus = load_corpus([_file(tmp_path, _deep(500))])
    assert [p.paper_id for p in corpus.papers] == ["before", "deep", "after"]
    deep = corpus.papers[1]
    assert deep.extra["meta"].startswith("[[[") and corpus.problems == []


@pytest.mark.slow
def test_cli_ingest_of_a_deeply_nested_line(tmp_path):
    result = run_cli(
        "ingest", str(_file(tmp_path, _deep(100_000))), index=tmp_path / "index",
        extra_env={"RAG_INDEX__SENTENCE_VECTORS": "0"},
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-1500:]
    assert "nested.jsonl:2: JSON nested too deeply" in result.stderr
    assert "read 2 records (2 papers)" in result.stdout


def test_an_abstract_of_a_megabyte_is_cut_at_a_sentence_end(tmp_path):
    sentence = "Tokens are pruned in the middle layers of the model without any loss in accuracy. "
    abstract = sentence * (1_000_000 // len(sentence))
    path = tmp_path / "huge.jsonl"
    path.write_text(json.dumps({"id": "huge", "title": "Huge", "abstract": abstract}) + "\n")
    problems = []
    (record,) = iter_records([path], problems.append, max_abstract_chars=20_000)
    assert len(record.paper.abstract) <= 20_000 and record.paper.abstract.endswith("accuracy.")
    assert (
        len(problems) == 1 and "abstract is 999,9" in problems[0].message and "max_abstract_chars" in str(problems[0])
    )


@pytest.mark.slow
def test_ingest_of_a_megabyte_abstract_embeds_the_capped_text(tmp_path, embedder):
    sentence = "Visual tokens are dropped halfway through the multimodal model to save compute. "
    path = tmp_path / "huge.jsonl"
    path.write_text(json.dumps({"id": "huge", "title": "Huge", "abstract": sentence * 13_000}) + "\n")
    library = make_library(tmp_path / "index", embedder, **{"corpus.max_abstract_chars": 5_000})
    report = library.ingest([path], progress=False)
    assert report.papers_embedded == 1 and report.problems_total == 1
    passages = library.store().passages_of(["huge"])["huge"]
    assert sum(len(p) for p in passages) < 2 * 5_000  # overlaps repeat some text; a megabyte is not there
