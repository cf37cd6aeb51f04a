"""Output flooding: a file of a million bad rows gives a few lines, not a million, in the terminal and in
the chat page's Ingest tab. The first few problems of each kind are listed, then one line per kind
counts the rest (see rag/problems.py).
"""

from __future__ import annotations

import shutil

import pytest

from rag.types import Problem
from tests.conftest import REPO, make_library, run_cli
from tests.servers import start_rag_ui, stop

ROWS = 1_000_000


def _empty_rows(path, rows: int = ROWS):
    """title,abstract then a million rows with neither, then one good paper."""
    with path.open("w") as handle:
        handle.write("title,abstract\n")
        handle.write(",\n" * rows)
        handle.write('A good paper about token pruning,"We prune tokens. It works well."\n')
    return path


def test_tally_lists_a_few_of_each_kind_then_counts():
    from rag.problems import ProblemTally

    tally = ProblemTally(per_kind=3)
    shown = [tally.add(Problem(f"big.csv:{n}", "missing title and abstract; record skipped")) for n in range(2, 1002)]
    shown += [tally.add(Problem(f"big.csv:{n}", f"duplicate id 'p{n}' with different text")) for n in range(5)]
    assert shown.count(True) == 6 and tally.total == 1005
    assert tally.summary() == [
        "big.csv: 997 more like 'missing title and abstract; record skipped' (lines 2 to 1,001); 1,000 in all",
        "big.csv: 2 more like 'duplicate id 'p0' with different text' (lines 0 to 4); 5 in all",
    ]


@pytest.mark.slow
def test_cli_ingest_of_a_million_empty_rows_prints_a_few_lines(tmp_path):
    csv = _empty_rows(tmp_path / "empty-rows.csv")
    assert csv.stat().st_size > 1_900_000
    result = run_cli("ingest", str(csv), index=tmp_path / "index", extra_env={"RAG_INDEX__SENTENCE_VECTORS": "0"})
    assert result.returncode == 1, result.stderr[-800:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) < 12, lines[:20]
    assert f"{ROWS - 5:,} more like 'missing title and abstract; record skipped'" in result.stderr
    assert f"{ROWS:,} problems" in lines[-1]
    assert "read 1 records (1 papers)" in result.stdout
    assert make_library(tmp_path / "index").stats().papers == 1


@pytest.mark.slow
def test_the_ingest_tab_reports_a_million_empty_rows_in_a_few_lines(seed_library, tmp_path):
    from gradio_client import Client, handle_file

    index = tmp_path / "index"
    shutil.copytree(seed_library.settings.index_path, index)
    csv = _empty_rows(tmp_path / "empty-rows.csv")
    process, url, _port = start_rag_ui(REPO, index, tmp_path / "ui.log", {"RAG_PROFILE": "extractive"})
    try:
        report, stats = Client(url, verbose=False).predict([handle_file(str(csv))], api_name="/ingest_files")
    finally:
        stop(process)
    assert len(report) < 3000, len(report)  # it was 97 MB
    assert report.startswith("Ingested 1 new or changed papers"), report[:300]
    assert f"{ROWS - 5:,} more like" in report and "276 papers" in stats
