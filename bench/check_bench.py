"""How long `rag check` takes: on the built-in corpus, and on a synthetic corpus of N papers.

    .venv/bin/python bench/check_bench.py                      # built-in + 10,000 papers, in /tmp/check-bench
    .venv/bin/python bench/check_bench.py --papers 1000 --work DIR

Each figure is the wall time of `rag check` run as a user runs it (a fresh process: imports, model
load and all), plus the seconds of each step from `rag check --json`. The built-in index is embedded
with the real model. Embedding 10,000 papers with MiniLM on 2 CPU cores takes hours, so the synthetic
index is built as bench/scale_bench.py builds it: every synthetic sentence is a real built-in sentence
whose MiniLM vector is computed here once, and a chunk's vector is the mean of its sentences'. The
sentence vectors are therefore exact and the chunk vectors are not, so `rag check` rightly reports
that sampled chunk vectors differ from the model's; the time is what this measures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from scale_bench import ComposedEmbedder  # noqa: E402
from synth_corpus import load_pool, write_corpus  # noqa: E402

from rag.config import load_settings  # noqa: E402
from rag.library import Library  # noqa: E402


def timed_check(index: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_INDEX__PATH": str(index)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", "check", "--json"], capture_output=True, text=True, env=env, cwd=REPO
    )
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr[-2000:])
    report = json.loads(done.stdout)
    return {
        "papers": report["papers"],
        "chunks": report["chunks"],
        "sentences": report["sentences"],
        "check_wall_s": round(wall, 1),
        "steps_s": report["seconds"],
        "findings": [f["problem"] for f in report["findings"]],
    }


def builtin(work: Path) -> dict:
    index = work / "builtin"
    library = Library(load_settings(overrides={"index.path": str(index)}, env={}))
    library.ingest(progress=False)
    return timed_check(index)


def synthetic(work: Path, papers: int) -> dict:
    pool = load_pool(None)  # the built-in corpus's sentences only: their vectors are made here in minutes
    corpus = work / f"synth-{papers}.jsonl"
    if not corpus.exists():
        write_corpus(pool, papers, corpus)
    index = work / f"synth-{papers}"
    library = Library(load_settings(overrides={"index.path": str(index), "index.batch_papers": 256}, env={}))
    vectors_file = work / "pool-vectors.npy"
    texts = pool.all_sentences
    if vectors_file.exists():
        matrix = np.load(vectors_file)
    else:
        matrix = library.embedder.embed(texts)
        np.save(vectors_file, matrix)
    library = Library(library.settings, ComposedEmbedder(library.embedder, dict(zip(texts, matrix, strict=True))))
    started = time.perf_counter()
    report = library.ingest([corpus], progress=sys.stderr.isatty())
    built = {"ingest_s": round(time.perf_counter() - started, 1), "embedded": report.papers_embedded}
    return built | timed_check(index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/check-bench"))
    parser.add_argument("--skip-builtin", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    if not args.skip_builtin:
        results["builtin"] = builtin(args.work)
        print(json.dumps(results["builtin"]), flush=True)
    results[f"synthetic_{args.papers}"] = synthetic(args.work, args.papers)
    print(json.dumps(results, indent=2))
    (args.work / "check-bench.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
