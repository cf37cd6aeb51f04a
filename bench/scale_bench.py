"""Scale benchmark: one command, every figure measured in the same run; JSON + Markdown + PNG.

    .venv/bin/python bench/scale_bench.py                       # sizes 1k,10k,100k; --sizes 1000,10000 for less
    .venv/bin/python bench/scale_bench.py --skip-builtin --skip-quickstart --sizes 10000

1. Built-in corpus, real model (`bench/ingest_bench.py` in a subprocess): ingest throughput against
   raw `SentenceTransformer.encode` of the same texts, peak RSS, warm re-ingest, search latency.
2. End-to-end `ask` with the embedded model: first token and total, after a warm-up.
3. Baseline: the same corpus through a LlamaIndex quickstart (`bench/quickstart_baseline.py`), and
   this project on the same golden questions: ingest time, search latency, hit@1/hit@5, ask latency.
4. Synthetic corpora of 1k / 10k / 100k papers in the arXiv snapshot format (`bench/synth_corpus.py`),
   each ingested in its own process: ingest rate and peak RSS, index size on disk, warm re-ingest,
   search latency p50/p95 (dense, hybrid) with the real model embedding each question.

Embedding 100k papers with MiniLM on 2 CPU cores would take over a day, so the synthetic corpora's
chunk vectors are composed: every synthetic sentence is a real abstract sentence whose MiniLM vector
was computed once and kept in --pool (default ~/.cache/paper-rag/scale-pool): on a GPU with
`bench/synth_corpus.py --pool-texts POOL` then `bench/gpu_vectors.py embed POOL MODEL_DIR POOL`, or
here on the first run (~46k short sentences: minutes to half an hour on 2 cores). A chunk's vector
is the normalised mean of its sentences'. The
pipeline around the encoder (parsing, chunking with both tokenizers, Chroma writes, the BM25 catalog)
runs for real; the encoder's own cost is measured in step 1. With a CUDA GPU, step 1 embeds there.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gpu_vectors import StandInEmbedder  # noqa: E402
from quickstart_baseline import golden_questions, measure_search, percentile, result_row  # noqa: E402

from rag.chunking import split_sentences  # noqa: E402
from rag.config import load_settings  # noqa: E402
from rag.library import Library  # noqa: E402


class ComposedEmbedder(StandInEmbedder):
    """Chunk vectors as the normalised mean of known sentence vectors; tokenizers from the real model."""

    def __init__(self, base, table: dict[str, np.ndarray]) -> None:
        super().__init__(base)
        self._table = table
        self.unknown = 0

    def _vector(self, text: str) -> np.ndarray:
        body = text.split("\n", 1)[-1]  # the title line is synthetic; its words are in the BM25 index
        found = [self._table[k] for k in (" ".join(s.split()) for s in split_sentences(body)) if k in self._table]
        if not found:
            self.unknown += 1
            seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "little")
            vector = np.random.default_rng(seed).standard_normal(self.dimension).astype(np.float32)
        else:
            vector = np.mean(found, axis=0)
        return vector / np.linalg.norm(vector)

    def embed(self, texts):
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts]).astype(np.float32)


def load_pool_table(pool: Path, library: Library) -> dict[str, np.ndarray]:
    """Pool sentence -> vector; vectors made elsewhere (a GPU) are used, else made here once and kept."""
    with gzip.open(pool / "texts.json.gz", "rt", encoding="utf-8") as handle:
        texts = json.load(handle)
    parts = sorted(pool.glob("vectors-*.npy"))
    if parts:
        matrix = np.concatenate([np.load(p).astype(np.float32) for p in parts])
    else:
        started = time.perf_counter()
        matrix = library.embedder.embed(texts)
        np.save(pool / "vectors-00.npy", matrix.astype(np.float16))
        seconds = time.perf_counter() - started
        info = {"texts": len(texts), "seconds": round(seconds, 2), "texts_per_s": round(len(texts) / seconds, 1)}
        info |= {"device": f"cpu ({library.embedder.backend})", "weights_dtype": library.embedder.precision}
        (pool / "embed.json").write_text(json.dumps(info, indent=2))
    if len(matrix) != len(texts):
        raise SystemExit(f"{len(texts)} pool texts but {len(matrix)} vectors in {pool}")
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return dict(zip(texts, matrix, strict=True))


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def time_searches(library: Library, questions: list[str], mode: str, k: int = 10) -> dict:
    library.search("warm-up", k=k, mode=mode)
    latencies = []
    for question in questions:
        started = time.perf_counter()
        library.search(question, k=k, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(latencies), 1), "p95_ms": round(percentile(latencies, 95), 1)}


# --- one synthetic size, in its own process ------------------------------------------------------------


def scale_one(papers: int, work: Path, pool: Path) -> dict:
    from synth_corpus import find_scifact, load_pool, write_corpus

    corpus = work / f"synth-{papers}.jsonl"
    if not corpus.exists():
        write_corpus(load_pool(find_scifact()), papers, corpus)
    index = work / f"index-{papers}"
    shutil.rmtree(index, ignore_errors=True)
    settings = load_settings(overrides={"index.path": str(index), "index.batch_papers": 256}, env={})
    plain = Library(settings)
    real = plain.embedder
    composed = ComposedEmbedder(real, load_pool_table(pool, plain))
    library = Library(settings, composed)
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = library.ingest([corpus], progress=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    warm = library.ingest([corpus], progress=False)
    size_mb = folder_mb(index)
    library = Library(settings, real)  # questions are embedded by the real model
    questions = [q for q, _ in golden_questions()][:50]
    return {
        "papers": report.papers_embedded,
        "chunks": report.chunks_embedded,
        "corpus_mb": round(corpus.stat().st_size / 1e6, 1),
        "ingest_s": round(report.seconds, 1),
        "ingest_papers_per_s": round(report.papers_embedded / report.seconds, 1),
        "ingest_chunks_per_s": round(report.chunks_embedded / report.seconds, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "rss_before_ingest_mb": round(rss_before_mb, 1),
        "warm_reingest_s": round(warm.seconds, 2),
        "index_mb": round(size_mb, 1),
        "unknown_texts": composed.unknown,
        "dense": time_searches(library, questions, "dense"),
        "hybrid": time_searches(library, questions, "hybrid"),
    }


# --- this project on the built-in corpus, beside the quickstart ----------------------------------------


def ours_on_builtin(work: Path, ask: int) -> dict:
    library = Library(load_settings(overrides={"index.path": str(work / "builtin-index")}, env={}))
    library.embedder.embed(["warm-up"])  # model load is not ingest
    report = library.ingest(progress=False)
    questions = golden_questions()
    searched = measure_search(lambda q: [h.title for h in library.search(q, k=5)], questions)
    asked = []
    if ask:
        from rag.answering import Assistant

        assistant = Assistant.from_config(library=library)
        assistant.ask("warm-up: what is a visual token?")
        for question, _ in questions[:ask]:
            timings = assistant.ask(question).timings
            asked.append({"first_token_s": timings["first_token_ms"] / 1000, "total_s": timings["total_ms"] / 1000})
    name = "paper-rag (default settings)"
    return result_row(name, report.papers_embedded, report.chunks_embedded, report.seconds, searched, asked)


# --- the orchestrating process ---------------------------------------------------------------------------


def child(*args: str) -> dict:
    """Run one step in a fresh process (its peak RSS is its own); it prints one JSON object last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ask_summary(asked: list[dict]) -> dict:
    if not asked:
        return {}
    return {
        "first_token_s_median": round(statistics.median(a["first_token_s"] for a in asked), 2),
        "total_s_median": round(statistics.median(a["total_s"] for a in asked), 2),
        "questions": len(asked),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temp folder)")
    parser.add_argument(
        "--pool",
        type=Path,
        default=Path.home() / ".cache" / "paper-rag" / "scale-pool",
        help="sentence pool: texts.json.gz and vectors-*.npy (made here when absent)",
    )
    parser.add_argument("--ask", type=int, default=5, help="questions answered end to end by each system")
    parser.add_argument("--skip-builtin", action="store_true", help="reuse OUT/ingest.json when there is one")
    parser.add_argument("--skip-quickstart", action="store_true")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: scale:N | ours
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="rag-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.step:
        if args.step.startswith("scale:"):
            result = scale_one(int(args.step[6:]), work, args.pool)
        else:
            result = ours_on_builtin(work, args.ask)
        print(json.dumps(result))
        return

    import torch

    if not (args.pool / "texts.json.gz").exists():
        subprocess.run([sys.executable, "bench/synth_corpus.py", "--pool-texts", str(args.pool)], cwd=REPO, check=True)
    args.out.mkdir(parents=True, exist_ok=True)
    me = ["bench/scale_bench.py", "--work", str(work), "--pool", str(args.pool), "--ask", str(args.ask)]
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }
    if args.skip_builtin and (args.out / "ingest.json").exists():  # measured by an earlier run
        results["builtin"] = json.loads((args.out / "ingest.json").read_text())
    elif not args.skip_builtin:
        print("built-in corpus: ingest vs raw encode ...", file=sys.stderr)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        subprocess.run([sys.executable, "bench/ingest_bench.py", "--out", str(args.out)], cwd=REPO, env=env, check=True)
        results["builtin"] = json.loads((args.out / "ingest.json").read_text())
    if not args.skip_quickstart:
        print("this project vs the LlamaIndex quickstart ...", file=sys.stderr)
        ours = child(*me, "--step", "ours")
        theirs = child("bench/quickstart_baseline.py", "--ask", str(args.ask))
        for side in (ours, theirs):
            side["ask_summary"] = ask_summary(side.pop("ask"))
        results["baseline"] = {"ours": ours, "quickstart": theirs}
    results["scale"] = []
    for size in [int(s) for s in args.sizes.split(",") if s]:
        print(f"synthetic corpus of {size} papers ...", file=sys.stderr)
        results["scale"].append(child(*me, "--step", f"scale:{size}"))
        (args.out / "scale.json").write_text(json.dumps(results, indent=2) + "\n")  # keep what is done
    embedded = args.pool / "embed.json"  # where and how fast the pool's sentences were embedded
    results["pool_vectors"] = json.loads(embedded.read_text()) if embedded.exists() else None
    (args.out / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    from scale_report import write_report

    print(write_report(results, args.out))


if __name__ == "__main__":
    main()
