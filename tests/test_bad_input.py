"""Bad input, case by case: each gets one clear line naming the file (and line) or key, the good input
beside it is still read, and the exit code says what happened. The table in the README's
"Exit codes and errors" section lists the same cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.sources import load_corpus
from tests.conftest import run_cli

GOOD = {"id": "good-1", "title": "A good paper about token pruning", "abstract": "We prune tokens. It works well."}


def _jsonl(rows: list) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


# (case id, file name, file bytes, fragment the one-line problem must hold (None: no problem), records kept)
FILE_CASES = [
    ("empty-file", "empty.txt", b"", "empty file", 0),
    ("whitespace-file", "blank.jsonl", b"  \n\t\n   \n", "empty file", 0),
    ("binary-file", "image.txt", bytes(range(256)) * 8, "binary file", 0),
    ("binary-as-jsonl", "data.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary file", 0),
    ("latin1-text", "latin1.txt", "Caf\xe9 title\nAn abstract with na\xefve bytes.".encode("latin-1"), "not UTF-8", 0),
    (
        "latin1-jsonl-line",
        "mixed.jsonl",
        _jsonl([GOOD, '{"title": "caf\xe9", "abstract": "x y"}'.encode("latin-1")]),
        "mixed.jsonl:2: not UTF-8",
        1,
    ),
    ("truncated-jsonl", "cut.jsonl", _jsonl([GOOD])[:-1] + b'\n{"title": "cut', "cut.jsonl:2: not valid JSON", 1),
    (
        "malformed-middle-line",
        "mid.jsonl",
        _jsonl([GOOD, b"{not json}", {**GOOD, "id": "good-2"}]),
        "mid.jsonl:2: not valid JSON",
        2,
    ),
    ("json-array-line", "array.jsonl", _jsonl([[1, 2, 3], GOOD]), "array.jsonl:1: expected a JSON object, got list", 1),
    ("json-string-line", "string.jsonl", _jsonl(["just text", GOOD]), "string.jsonl:1: expected a JSON object", 1),
    ("missing-abstract", "noabs.jsonl", _jsonl([{"title": "T only"}, GOOD]), "noabs.jsonl:1: missing abstract", 1),
    ("missing-title", "notitle.jsonl", _jsonl([{"abstract": "A only."}, GOOD]), "notitle.jsonl:1: missing title", 1),
    (
        "empty-abstract",
        "emptyabs.jsonl",
        _jsonl([{"title": "T", "abstract": "   "}, GOOD]),
        "emptyabs.jsonl:1: missing abstract",
        1,
    ),
    (
        "number-title",
        "numtitle.jsonl",
        _jsonl([{"title": 42, "abstract": "Numbers as titles are read as text."}]),
        None,
        1,
    ),
    (
        "null-fields",
        "nulls.jsonl",
        _jsonl([{"title": None, "abstract": None}, GOOD]),
        "nulls.jsonl:1: missing title and abstract",
        1,
    ),
    (
        "duplicate-id-different-text",
        "dup.jsonl",
        _jsonl([GOOD, {**GOOD, "abstract": "Something else entirely."}]),
        "dup.jsonl:2: duplicate id 'good-1' with different text",
        1,
    ),
    ("duplicate-id-same-text", "same.jsonl", _jsonl([GOOD, GOOD]), None, 1),
    ("csv-no-abstract-column", "cols.csv", b"title,body\nA,B\n", "no 'abstract' column", 0),
    ("csv-no-columns", "nocols.csv", b"\n\n", "empty file", 0),
    ("csv-header-only", "header.csv", b"title,abstract\n", None, 0),
    (
        "csv-extra-fields",
        "extra.csv",
        b"title,abstract\nT1,A one.,surplus,more\n",
        "extra.csv:2: more fields than columns",
        1,
    ),
    ("csv-missing-cells", "short.csv", b"title,abstract\nOnly a title\n", "short.csv:2: missing abstract", 0),
    ("csv-extra-columns-kept", "wide.csv", b"title,abstract,venue\nT,An abstract.,ACL\n", None, 1),
    (
        "arxiv-missing-abstract",
        "arxiv.jsonl",
        _jsonl([{"id": "2401.00001", "title": "T", "authors": "A B", "update_date": "2024-01-02"}, GOOD]),
        "arxiv.jsonl:1: missing abstract",
        1,
    ),
    (
        "arxiv-missing-optional-fields",
        "arxiv2.jsonl",
        _jsonl([{"id": "2401.00002", "title": "T", "abstract": "A."}]),
        None,
        1,
    ),
    (
        "page-dump-orphan-title",
        "page.txt",
        b"Daily Papers\nSubscribe\nAn orphan title at the end of a page dump\n",
        "page.txt:3: title without an abstract",
        0,
    ),
    ("unsupported-type", "paper.docx", b"PK\x03\x04 ...", "unsupported file type '.docx'", 0),
    ("broken-pdf", "paper.pdf", b"%PDF-1.7 ...", "paper.pdf: broken PDF, cannot be opened", 0),
    ("pdf-not-pdf", "notes.pdf", b"plain text saved as .pdf", "notes.pdf: not a PDF (no %PDF header)", 0),
    (
        "bib-malformed-entry",
        "refs.bib",
        b"@article{bad, title = {Oops\n@article{ok, title = {Kept}, abstract = {Kept abstract.}}\n",
        "refs.bib:1: unbalanced braces in field 'title'",
        1,
    ),
    (
        "bib-no-abstract",
        "scholar.bib",
        b"@article{a, title = {One}}\n@article{b, title = {Two}}\n",
        "scholar.bib: 2 entries have no abstract; skipped (a, b)",
        0,
    ),
    ("bib-no-entries", "empty.bib", b"% just a comment\n", "empty.bib: no BibTeX entries found", 0),
    (
        "ris-no-end",
        "open.ris",
        b"TY  - JOUR\nTI  - Unfinished\nAB  - Still read.\n",
        "open.ris:1: record has no 'ER  -' line",
        1,
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "fragment", "kept"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_bad_file_is_reported_in_one_line_and_good_records_kept(tmp_path, name, content, fragment, kept):
    path = tmp_path / name
    path.write_bytes(content)
    good = write_good(tmp_path)
    corpus = load_corpus([path, good])
    lines = [f"{p.location}: {p.message}" for p in corpus.problems]
    assert all("\n" not in line for line in lines)
    if fragment is None:
        assert not [line for line in lines if name in line], lines
    else:
        assert any(fragment in line for line in lines), (fragment, lines)
    titles = {p.title for p in corpus.papers}
    assert GOOD["title"] in titles  # the good file beside it is always read
    assert len([p for p in corpus.papers if p.sources != [str(good)]]) == kept, corpus.papers


def write_good(folder: Path) -> Path:
    good = folder / "good-beside.jsonl"
    good.write_bytes(_jsonl([GOOD]))
    return good


def test_nonexistent_path_and_empty_folder(tmp_path):
    (tmp_path / "empty-folder").mkdir()
    corpus = load_corpus([tmp_path / "nope.jsonl", tmp_path / "empty-folder", write_good(tmp_path)])
    lines = [f"{p.location}: {p.message}" for p in corpus.problems]
    assert any("nope.jsonl: no such file or folder" in line for line in lines), lines
    assert any("empty-folder" in line for line in lines), lines
    assert [p.title for p in corpus.papers] == [GOOD["title"]]


def test_huge_file_is_streamed(tmp_path):
    """A 20 MB file of 40,000 lines: one paper repeated, so the ingest is quick but the reading is real."""
    rows = [{**GOOD, "id": "big-1", "abstract": "Streaming keeps memory flat. " * 15} for _ in range(40_000)]
    big = tmp_path / "big.jsonl"
    big.write_bytes(_jsonl(rows))
    assert big.stat().st_size > 18_000_000
    corpus = load_corpus([big])
    assert (corpus.records_read, len(corpus.papers), corpus.problems) == (40_000, 1, [])


# --- the command line: exit 2 and one line, before anything is touched --------------------------------

CLI_CASES = [
    ("empty-question", ["search", ""], {}, "the question is empty"),
    ("whitespace-question", ["search", "  \t "], {}, "the question is empty"),
    ("100k-question", ["search", "why " * 25_000], {}, "the limit is 4000"),
    ("config-typo-env", ["stats"], {"RAG_RETRIEVAL__KK": "3"}, "retrieval.kk: unknown key"),
    ("config-wrong-type-env", ["stats"], {"RAG_RETRIEVAL__K": "many"}, "retrieval.k"),
    ("config-bad-choice", ["stats"], {"RAG_RETRIEVAL__MODE": "psychic"}, "retrieval.mode"),
    ("unknown-profile", ["stats", "--profile", "nope"], {}, "unknown profile 'nope'"),
    ("bad-filter", ["search", "tokens", "--where", "date>=yesterday"], {}, "date"),
    ("month-13", ["search", "tokens", "--where", "date>=2024-13"], {}, "there is no month 13"),
    ("february-30", ["search", "tokens", "--where", "date<=2024-02-30"], {}, "February 2024 has days 01 to 29"),
    ("day-00", ["search", "tokens", "--where", "date=2023-06-00"], {}, "June 2023 has days 01 to 30"),
    ("bad-k", ["search", "tokens", "-k", "0"], {}, "k"),
    ("missing-index", ["search", "tokens"], {}, "rag ingest"),
    ("bad-server-url", ["search", "tokens"], {"RAG_INDEX__SERVER": "ftp://x"}, "index.server"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "env", "fragment"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line_with_exit_2(tmp_path, args, env, fragment):
    result = run_cli(*args, index=tmp_path / "no-index", extra_env=env)
    assert result.returncode == 2, (result.returncode, result.stderr[-500:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rag: "), result.stderr[-800:]
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_index_path_that_is_a_file_or_a_foreign_folder(tmp_path):
    a_file = tmp_path / "index-file"
    a_file.write_text("not a folder")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    for index, fragment in ((a_file, "is a file"), (foreign, "is not a Chroma index")):
        result = run_cli("ingest", str(write_good(tmp_path)), index=index)
        assert result.returncode == 2 and fragment in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0
    assert (foreign / "holiday.jpg").read_bytes() == b"\xff\xd8"  # nothing written into someone's folder
