"""The built wheel, installed alone into a fresh venv, run from an empty folder: `rag --version`,
`rag ingest`, `rag ask --profile extractive`, `rag serve`.

How the fresh venv gets its dependencies without downloading torch and llama.cpp again: it is a new
venv of the base interpreter, and a .pth file adds the test environment's site-packages *after* its own
as a read-only layer of third-party packages. A plain .pth path line does not run that folder's own .pth
files, so the editable paper-rag installed there stays invisible (nothing named rag, paper_rag_ui or paper_rag_eval
lies in it as files); the only paper-rag the fresh venv can import is the wheel's. The wheel installs
`rag`, `paper_rag_ui` and `paper_rag_eval` only: no generic top-level `eval`, `server` or `ui`. The test checks that:
`rag.__file__`, the profiles and the built-in corpus all resolve inside the fresh venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import DYVTE_TITLE, REPO, write_jsonl
from tests.servers import free_port, stop

pytestmark = pytest.mark.slow

ARTIFACTS = Path(os.environ.get("RAG_TEST_ARTIFACTS", REPO / "test-artifacts"))
QUESTION = "Is there work that drops all visual tokens partway through an MLLM?"
_SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "test-artifacts",
                               ".pytest_cache", ".ruff_cache", ".hypothesis", "eval-report", "bench")  # fmt: skip


def _run(*args, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}: {result.stdout[-1500:]} {result.stderr[-3000:]}"
    return result


def test_the_wheel_alone_ingests_answers_and_serves_from_an_empty_folder(tmp_path, seed_corpus):
    timings: dict[str, float] = {}
    clock = time.monotonic()
    source = tmp_path / "source"  # a clean copy: no stale build/ folder can slip old files into the wheel
    shutil.copytree(REPO, source, ignore=_SKIP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_") and k != "PYTHONPATH"}
    _run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp_path / "dist", source,
         cwd=tmp_path, env=env)  # fmt: skip
    wheel = next((tmp_path / "dist").glob("paper_rag-*.whl"))
    timings["build_s"] = time.monotonic() - clock
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode()
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert {"rag/configs/default.yaml", "rag/configs/extractive.yaml", "rag/server/app.py"} <= names
    assert len([n for n in names if n.startswith("rag/data/seeds/")]) == 5
    assert {"paper_rag_ui/app.py", "paper_rag_eval/golden/dev.jsonl", "paper_rag_eval/golden/test.jsonl"} <= names
    # project-specific import names only: no generic top-level eval/, server/ or ui/ in site-packages
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {
        "rag", "paper_rag_ui", "paper_rag_eval"}  # fmt: skip
    for requirement in ("fastapi", "uvicorn", "httpx", "swagger-ui-bundle", "gradio", "chromadb"):
        assert f"Requires-Dist: {requirement}" in metadata, requirement
    assert "[paper_rag.commands]" in entry_points and "serve = rag.server.cli:register" in entry_points
    assert "ui = paper_rag_ui.cli:register" in entry_points and "eval = paper_rag_eval.cli:register" in entry_points

    clock = time.monotonic()
    venv = tmp_path / "fresh-venv"
    _run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv, cwd=tmp_path, env=env)
    python, rag = venv / "bin" / "python", venv / "bin" / "rag"
    own_site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                         cwd=tmp_path, env=env).stdout.strip())  # fmt: skip
    (own_site / "zz-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel, cwd=tmp_path, env=env)
    timings["venv_and_install_s"] = time.monotonic() - clock

    empty = tmp_path / "empty"
    empty.mkdir()
    index = tmp_path / "index"
    version = _run(rag, "--version", cwd=empty, env=env).stdout
    assert version.strip().endswith("0.1.0")
    probe = _run(python, "-c", """
import importlib.util, json, rag
import paper_rag_eval.harness, paper_rag_ui.render, rag.server.app
from rag import Assistant, Library, Service
from rag.config import default_config_dir
from rag.sources import builtin_corpus_paths, load_corpus
print(json.dumps({"rag": rag.__file__, "configs": str(default_config_dir()),
                  "corpus": [str(p) for p in builtin_corpus_paths()],
                  "papers": len(load_corpus(builtin_corpus_paths()).papers),
                  "clients": [m.__file__ for m in (paper_rag_eval.harness, paper_rag_ui.render, rag.server.app)],
                  "golden": paper_rag_eval.harness.DEFAULT_GOLDEN.is_file(),
                  "generic": [n for n in ("eval", "server", "ui") if importlib.util.find_spec(n)]}))
""", cwd=empty, env=env)  # fmt: skip
    found = json.loads(probe.stdout)
    assert found["generic"] == [], found  # a fresh install exposes no top-level eval, server or ui
    assert all(path.startswith(str(venv)) for path in found["clients"]) and found["golden"], found
    assert found["rag"].startswith(str(venv)) and found["configs"].startswith(str(venv)), found
    assert len(found["corpus"]) == 5 and all(p.startswith(str(venv)) for p in found["corpus"])
    assert found["papers"] == 275  # the built-in corpus is in the wheel and reads

    papers = [p for p in seed_corpus.papers if p.title == DYVTE_TITLE]
    papers += [p for p in seed_corpus.papers if p.title != DYVTE_TITLE][:15]
    write_jsonl(empty / "papers.jsonl", papers)
    clock = time.monotonic()
    ingest = _run(rag, "ingest", "papers.jsonl", "--index", index, "-q", cwd=empty, env=env)
    assert "16 embedded" in ingest.stdout
    timings["ingest_s"] = time.monotonic() - clock
    clock = time.monotonic()
    ask = _run(rag, "ask", QUESTION, "--profile", "extractive", "--json", "--index", index, cwd=empty, env=env)
    assert DYVTE_TITLE in [c["title"] for c in json.loads(ask.stdout)["citations"]]
    timings["ask_s"] = time.monotonic() - clock

    clock = time.monotonic()
    port = free_port()
    log = tmp_path / "serve.log"
    server = subprocess.Popen([rag, "serve", "--profile", "extractive", "--index", index, "--port", str(port)],
                              cwd=empty, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        request = urllib.request.Request(f"{url}/v1/ask", json.dumps({"question": QUESTION}).encode(),
                                         {"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as response:
            assert DYVTE_TITLE in [c["title"] for c in json.load(response)["citations"]]
        with urllib.request.urlopen(url, timeout=60) as response:
            assert response.status == 200 and "gradio" in response.read().decode().lower()  # the chat page
        with urllib.request.urlopen(f"{url}/docs/assets/swagger-ui-bundle.js", timeout=30) as response:
            assert response.status == 200
        timings["serve_ready_and_answer_s"] = time.monotonic() - clock
    finally:
        stop(server)
    assert list(empty.iterdir()) == [empty / "papers.jsonl"]  # nothing written into the working folder
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    result = {"wheel": wheel.name, "wheel_kb": round(wheel.stat().st_size / 1024), "files": len(names),
              **{k: round(v, 1) for k, v in timings.items()}}  # fmt: skip
    (ARTIFACTS / "wheel.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
