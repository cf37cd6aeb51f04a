"""The `rag` command end to end, in subprocesses, with the real model and a real Chroma index."""

import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.store import ChromaStore
from tests.conftest import DYVTE_TITLE, REPO, make_library, run_cli, write_jsonl

pytestmark = pytest.mark.slow


def test_search_ranks_dyvte_first(seed_library):
    result = run_cli(
        "search",
        "Is there work that drops all visual tokens partway through an MLLM?",
        "--json",
        "--mode",
        "dense",
        index=seed_library.settings.index_path,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["results"][0]["title"] == DYVTE_TITLE
    assert len(payload["results"]) == 5 and payload["results"][0]["passage"]
    hybrid = json.loads(
        run_cli(
            "search",
            "Is there work that drops all visual tokens partway through an MLLM?",
            "--json",
            index=seed_library.settings.index_path,
        ).stdout
    )
    assert hybrid["mode"] == "hybrid" and DYVTE_TITLE in [r["title"] for r in hybrid["results"][:3]]


def test_search_text_output_and_stats(seed_library):
    index = seed_library.settings.index_path
    text = run_cli("search", "visual correspondence benchmark", "-k", "3", index=index)
    assert text.returncode == 0 and text.stdout.startswith("1. ") and "\n3. " in text.stdout
    stats = run_cli("stats", "--json", index=index)
    assert json.loads(stats.stdout)["papers"] == 275


def test_bad_inputs_each_get_one_line_and_good_files_are_ingested(tmp_path, seed_corpus):
    good = write_jsonl(tmp_path / "good.jsonl", seed_corpus.papers[:2])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "image.txt"
    binary.write_bytes(bytes(range(256)) * 10)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        json.dumps({"title": seed_corpus.papers[2].title, "abstract": seed_corpus.papers[2].abstract})
        + '\n{"title": "cut off\n'
    )
    no_abstract = tmp_path / "no_abstract.csv"
    no_abstract.write_text("title,body\nA,B\n")
    missing = tmp_path / "missing.jsonl"
    result = run_cli(
        "ingest",
        str(missing),
        str(empty),
        str(binary),
        str(broken),
        str(no_abstract),
        str(good),
        index=tmp_path / "idx",
    )
    assert result.returncode == 1, result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("rag: skipped")]
    assert len(problems) == 5, result.stderr
    expected = [
        f"{missing}: no such file or folder",
        f"{empty}: empty file",
        f"{binary}: binary file",
        f"{broken}:2: not valid JSON",
        f"{no_abstract}: no 'abstract' column",
    ]
    for fragment in expected:
        assert any(fragment in line for line in problems), (fragment, problems)
    assert "Traceback" not in result.stderr
    assert "read 3 records (3 papers)" in result.stdout
    assert make_library(tmp_path / "idx").stats().papers == 3
    # Piped, progress is one line per committed batch, with the rate and the time left.
    assert re.search(r"rag: embedded 3/3 papers \(\d+ chunks\), [\d.]+ papers/s, 0s left", result.stderr), result.stderr


def test_errors_are_one_line_with_exit_2(tmp_path):
    missing_index = run_cli("search", "anything", index=tmp_path / "none")
    assert missing_index.returncode == 2
    assert missing_index.stderr.strip().count("\n") == 0 and "rag ingest" in missing_index.stderr
    empty_question = run_cli("search", "   ", index=tmp_path / "none")
    assert empty_question.returncode == 2
    bad_config = run_cli("stats", index=tmp_path, extra_env={"RAG_RETRIEVAL__KK": "3"})
    assert bad_config.returncode == 2 and "retrieval.kk: unknown key" in bad_config.stderr
    bad_profile = run_cli("stats", "--profile", "nope", index=tmp_path)
    assert bad_profile.returncode == 2 and "unknown profile 'nope'" in bad_profile.stderr


def _index_content(index):
    store = ChromaStore(index, "papers", create=False)
    store.open_for("all-MiniLM-L6-v2", None, create=False)
    got = store.collection.get(include=["documents", "metadatas"])
    return sorted(zip(got["ids"], got["documents"], (m["paper_hash"] for m in got["metadatas"]), strict=True))


def test_sigkill_during_ingest_resumes_without_duplicates(tmp_path, embedder, seed_corpus):
    # Ten kills at random points; sentence vectors off so the 120 papers embed quickly.
    corpus = write_jsonl(tmp_path / "corpus.jsonl", seed_corpus.papers[:120])
    clean = tmp_path / "clean"
    fast = {"index.batch_papers": 4, "index.sentence_vectors": False}
    make_library(clean, embedder, **fast).ingest([corpus], progress=False)
    expected = _index_content(clean)

    index = tmp_path / "killed"
    rng = random.Random(20261122)
    fast_env = {"RAG_INDEX__BATCH_PAPERS": "4", "RAG_INDEX__SENTENCE_VECTORS": "false"}
    env = {"RAG_INDEX__PATH": str(index), "PYTHONUNBUFFERED": "1", **fast_env}
    kills = 0
    for _round in range(16):
        if kills == 10:
            break
        process = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "ingest", str(corpus)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
            env={**{k: v for k, v in __import__("os").environ.items() if not k.startswith("RAG_")}, **env},
        )
        batches_before_kill = rng.randint(0, 2)
        seen = 0
        for line in process.stderr:
            if line.startswith("rag: embedded"):
                seen += 1
                if seen > batches_before_kill:
                    break
        time.sleep(rng.uniform(0, 0.4))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
    assert kills == 10, "the ingests finished before they could be killed ten times"

    resumed = run_cli("ingest", str(corpus), index=index, extra_env=fast_env)
    assert resumed.returncode == 0, resumed.stderr
    assert _index_content(index) == expected  # same ids, texts and hashes as the clean build: no loss, no doubles
    again = run_cli("ingest", str(corpus), index=index, extra_env=fast_env)
    assert "0 embedded (0 chunks)" in again.stdout
    resumed_library = make_library(index, embedder, **fast)
    assert resumed_library.stats().papers == 120
    assert resumed_library.search(seed_corpus.papers[7].title, mode="bm25", k=1)[0].title == seed_corpus.papers[7].title


def test_sigterm_stops_an_ingest_with_one_line_and_the_resume_completes(tmp_path, seed_corpus):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", seed_corpus.papers[:40])
    index = tmp_path / "index"
    fast_env = {"RAG_INDEX__BATCH_PAPERS": "4", "RAG_INDEX__SENTENCE_VECTORS": "false"}
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("RAG_")}
    env.update({"RAG_INDEX__PATH": str(index), "PYTHONUNBUFFERED": "1", **fast_env})
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "ingest", str(corpus)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    for line in process.stderr:
        if line.startswith("rag: embedded"):
            break
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 143, rest[-800:]
    said = [line for line in rest.strip().splitlines() if not line.startswith("rag: embedded")]
    assert said == ["rag: terminated (SIGTERM); run the same command again to resume"], rest
    resumed = run_cli("ingest", str(corpus), index=index, extra_env=fast_env)
    assert resumed.returncode == 0 and make_library(index).stats().papers == 40, resumed.stderr[-800:]


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback(seed_library):
    """`rag search ... | head -1`: the reader is gone before rag writes; rag stops quietly, as on SIGPIPE."""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("RAG_")}
    env["RAG_INDEX__PATH"] = str(seed_library.settings.index_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "search", "visual tokens", "-k", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env,
    )  # fmt: skip
    process.stdout.close()  # the reader is gone
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, stderr[-1500:]
    assert stderr == "", stderr[-1500:]


def test_ingest_of_only_missing_paths_says_nothing_was_ingested(tmp_path):
    """Before: exit 1 and "everything else was ingested" when there was nothing else."""
    result = run_cli("ingest", str(tmp_path / "nonexistent"), index=tmp_path / "idx")
    assert result.returncode == 2, result.stderr
    assert "nothing was ingested" in result.stderr and "everything else" not in result.stderr


def test_ingest_models_and_eval_print_one_json_object_with_json(tmp_path, seed_corpus):
    index = tmp_path / "index"
    papers = write_jsonl(tmp_path / "papers.jsonl", seed_corpus.papers[:3])
    ingested = run_cli("ingest", str(papers), "--json", index=index)
    assert ingested.returncode == 0, ingested.stderr
    report = json.loads(ingested.stdout)
    assert (report["papers_embedded"], report["problems"], report["problems_total"]) == (3, [], 0)

    models = run_cli("models", "--json", index=index)
    listed = json.loads(models.stdout)
    assert models.returncode == 0 and listed["backend"] == "llamacpp" and listed["model_dir"]
    assert {"name", "state", "configured", "description"} <= set(listed["models"][0])
    assert sum(m["configured"] for m in listed["models"]) == 1

    evaluated = run_cli("eval", "--limit", "2", "--json", "--out", str(tmp_path / "report"), index=index)
    result = json.loads(evaluated.stdout)  # the human-readable lines went to stderr
    assert result["mode"] == "retrieval" and "retrieval" in result["summary"] and result["meta"]["items"] == 2
    assert result["exit_code"] == evaluated.returncode == 0 and all(Path(p).exists() for p in result["files"])
