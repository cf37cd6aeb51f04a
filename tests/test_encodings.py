"""Names and encodings: file names that are not UTF-8, lone surrogates inside JSON, stray bytes in a
question. Each costs the one input (a file skipped, a question refused) with one line that says why;
nothing else is lost and no traceback is shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rag.errors import RagError
from rag.retrieval import check_question
from rag.sources import load_corpus
from tests.conftest import REPO, make_library, run_cli

GOOD = {"id": "good-1", "title": "A good paper about token pruning", "abstract": "We prune tokens. It works well."}


def test_a_file_name_that_is_not_utf8_is_skipped_alone(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "good.jsonl").write_text(json.dumps(GOOD) + "\n")
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.jsonl")  # Latin-1 'é': not UTF-8
    with open(odd, "wb") as handle:
        handle.write(json.dumps({**GOOD, "id": "odd-1", "title": "From a Latin-1 named file"}).encode() + b"\n")
    corpus = load_corpus([folder])
    assert [p.title for p in corpus.papers] == [GOOD["title"]]
    (problem,) = corpus.problems
    assert "caf\\xe9.jsonl" in problem.location and "not UTF-8" in problem.message
    str(problem).encode("utf-8")  # printable as it is


@pytest.mark.slow
def test_ingest_of_a_folder_with_such_a_name_keeps_the_rest(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "good.jsonl").write_text(json.dumps(GOOD) + "\n")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.jsonl"), "wb") as handle:
        handle.write(json.dumps({**GOOD, "id": "odd-1"}).encode() + b"\n")
    result = run_cli("ingest", str(folder), index=tmp_path / "index", extra_env={"RAG_INDEX__SENTENCE_VECTORS": "0"})
    assert result.returncode == 1, result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("rag: skipped")]
    assert len(skipped) == 1 and "caf\\xe9.jsonl" in skipped[0] and "rename" in skipped[0], result.stderr
    assert make_library(tmp_path / "index").stats().papers == 1


@pytest.mark.slow
def test_lone_surrogates_in_json_are_stored_as_replacement_characters(tmp_path, embedder):
    rows = [
        '{"id": "sur-1", "title": "Caf\\udce9 culture \\ud800 in labs", "abstract": "Coffee \\udfff helps. A lot."}',
        '{"id": "sur-2", "title": "Plain", "abstract": "Nothing odd.", "venue": "\\ud83d"}',
        json.dumps(GOOD),
    ]
    path = tmp_path / "surrogates.jsonl"
    path.write_text("\n".join(rows) + "\n")
    library = make_library(tmp_path / "index", embedder, **{"index.sentence_vectors": False})
    report = library.ingest([path], progress=False)
    assert (report.papers_embedded, report.problems) == (3, [])
    hit = library.search("cafe culture in labs", k=1, mode="bm25")[0]
    assert hit.title == "Caf\ufffd culture \ufffd in labs"


@pytest.mark.parametrize(
    ("question", "fragment"),
    [("X-ray \udcff ECG", "the byte 0xff"), ("lone \ud800 surrogate", r"lone surrogate U\+D800")],
)
def test_a_question_that_is_not_text_is_refused_in_one_line(question, fragment):
    with pytest.raises(RagError, match=fragment) as refused:
        check_question(question)
    assert "\n" not in str(refused.value)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["search", "ask"])
def test_a_stray_byte_in_a_cli_question_is_one_line(tmp_path, command):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_INDEX__PATH"] = str(tmp_path / "no-index")
    argv = [sys.executable, "-m", "rag.cli", command, b"X-ray \xff ECG"]
    result = subprocess.run(argv, capture_output=True, cwd=REPO, env=env, timeout=120)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr[-1500:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "the byte 0xff" in lines[0] and "UTF-8" in lines[0], stderr[-1500:]


@pytest.mark.slow
def test_the_chat_answers_a_lone_surrogate_with_one_line(seed_library):
    from rag.answering import Assistant

    assistant = Assistant.from_config(
        library=seed_library.derive({"answer.mode": "extractive", "answer.judge_model": None})
    )
    with pytest.raises(RagError, match="lone surrogate U\\+DC00"):
        assistant.ask("what about \udc00 tokens?")
