"""Eval file validation: a golden file with wrong types, unknown kinds, duplicate ids or empty
questions is refused before any question is asked, in one line naming the file, the line and the id.
"""

from __future__ import annotations

import json

import pytest

from paper_rag_eval.harness import DEFAULT_GOLDEN, load_golden
from tests.conftest import run_cli

OK = {"id": "a1", "kind": "single", "question": "What is DyVTE?", "gold_titles": ["DyVTE"], "must_include": []}


def _golden(tmp_path, *lines) -> object:
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


WRONG_TYPES = {"id": 5, "kind": "single", "question": 123, "gold_titles": [], "must_include": []}
BAD = [
    ("wrong-types", WRONG_TYPES, "'id' must be text"),
    ("question-a-number", {**OK, "question": 123}, "'question' must be text"),
    ("titles-a-string", {**OK, "gold_titles": "DyVTE"}, "'gold_titles' must be a list of texts"),
    ("turns-of-numbers", {**OK, "kind": "followup", "question": "", "turns": [1, 2]}, "'turns' must be a list"),
    ("unknown-kind", {**OK, "kind": "trivia"}, "kind 'trivia' is not one of single"),
    ("empty-question", {**OK, "question": "   "}, "(id 'a1'): the question is empty"),
    ("empty-turn", {**OK, "kind": "followup", "question": "", "turns": ["Which paper?", " "]}, "a turn is empty"),
    ("missing-field", {"id": "a1", "kind": "single", "question": "Q?"}, "missing gold_titles, must_include"),
    ("unknown-key", {**OK, "answer": "42"}, "unknown keys ['answer']"),
    ("not-an-object", [1, 2, 3], "expected a JSON object, got list"),
    ("not-json", "{'id': 'a1'}", "not valid JSON"),
]


@pytest.mark.parametrize(("line", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, line, fragment):
    path = _golden(tmp_path, OK | {"id": "first"}, line)
    with pytest.raises(ValueError) as refused:
        load_golden(path)
    message = str(refused.value)
    assert message.startswith(f"{path}:2") and fragment in message and "\n" not in message, message


def test_duplicate_ids_name_both_lines(tmp_path):
    path = _golden(tmp_path, OK, OK | {"question": "Another?"})
    with pytest.raises(ValueError, match=r"golden.jsonl:2 \(id 'a1'\): duplicate id 'a1' \(first on line 1\)"):
        load_golden(path)


def test_the_built_in_golden_set_is_valid():
    items = load_golden(DEFAULT_GOLDEN)
    assert len(items) >= 80 and len({i.id for i in items}) == len(items)
    for golden in sorted(DEFAULT_GOLDEN.parent.glob("*.jsonl")):
        load_golden(golden)  # every golden file that ships passes the same checks


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--golden", "BAD"], "'id' must be text"),
        (["--kinds", "trivia"], "unknown kind trivia in --kinds"),
    ],
)
def test_rag_eval_refuses_in_one_line(tmp_path, args, fragment):
    bad = _golden(tmp_path, WRONG_TYPES)
    args = [str(bad) if a == "BAD" else a for a in args]
    result = run_cli("eval", *args, "--out", str(tmp_path / "out"), index=tmp_path / "no-index")
    assert result.returncode == 2, result.stderr[-800:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr, result.stderr[-800:]
