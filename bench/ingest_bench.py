"""Ingest and search benchmark on the built-in corpus, with its baseline measured in the same run.

    .venv/bin/python bench/ingest_bench.py [--out bench/results]

Measures: cold `rag ingest` (wall time, peak RSS, as a user runs it), warm re-ingest, ingest
throughput in chunks/s against the configured encoder alone on the very same texts (the
limit of this model and runtime on this machine), and search latency over 50 queries.
Writes ingest.json and ingest.md to the output folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.config import load_settings  # noqa: E402
from rag.library import Library  # noqa: E402


def run_cli(index: Path, *args: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `rag` command in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_INDEX__PATH": str(index)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rag.cli", *args], check=True, env=env, capture_output=True, cwd=REPO)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak_kb, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))

    # 1. What a user sees: cold and warm `rag ingest` as separate processes.
    cold_cli_s, cold_peak_mb = run_cli(work / "cli-index", "ingest", "-q")
    warm_cli_s, _ = run_cli(work / "cli-index", "ingest", "-q")

    # 2. Throughput: ingest in-process vs raw encode of the same chunk texts, same loaded model.
    library = Library(load_settings(overrides={"index.path": str(work / "lib-index")}, env={}))
    embedder = library.embedder
    embedder.embed(["warm-up"])  # model load is not throughput
    report = library.ingest(progress=False)
    warm = library.ingest(progress=False)
    store = library.store()
    texts = [f"{meta.title}\n{passage}" for meta, passage in store.iter_chunk_texts()]
    sentences = store.sentence_texts()  # ingest also embeds every abstract sentence (index.sentence_vectors)
    started = time.perf_counter()
    embedder.embed(texts)  # the encoder alone (torch, onnxruntime or OpenVINO, as configured)
    if sentences:
        embedder.embed(sentences)
    raw_s = time.perf_counter() - started
    # Throughput in chunks/s over the same work: the chunks, plus the sentences when ingest embeds them.
    ingest_cps = report.chunks_embedded / report.seconds
    raw_cps = len(texts) / raw_s

    # 3. Search latency, warm, 50 queries.
    retriever = library.retriever()
    queries = [meta.title.lower() for meta in itertools.islice(store.iter_first_chunk_metadata(), 50)]
    retriever.search("warm-up")
    latencies = []
    for query in queries:
        started = time.perf_counter()
        retriever.search(query)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()

    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "encoder": f"{embedder.backend} {embedder.precision}",
        },
        "corpus": {"papers": report.papers_seen, "chunks": report.chunks_embedded},
        "cold_ingest_cli_s": round(cold_cli_s, 2),
        "cold_ingest_peak_rss_mb": round(cold_peak_mb, 1),
        "warm_reingest_cli_s": round(warm_cli_s, 2),
        "warm_reingest_inprocess_s": round(warm.seconds, 3),
        "ingest_inprocess_s": round(report.seconds, 2),
        "ingest_chunks_per_s": round(ingest_cps, 1),
        "raw_encode_chunks_per_s": round(raw_cps, 1),
        "sentences_embedded": len(sentences),
        "ingest_vs_raw_encode": round(ingest_cps / raw_cps, 3),
        "search_ms_median": round(statistics.median(latencies), 1),
        "search_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "search_queries": len(latencies),
    }
    (args.out / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("cold `rag ingest` (new process, model load included)", f"{result['cold_ingest_cli_s']} s"),
        ("peak RSS of cold ingest", f"{result['cold_ingest_peak_rss_mb']} MB"),
        ("warm re-ingest, `rag ingest` (new process)", f"{result['warm_reingest_cli_s']} s"),
        ("warm re-ingest, in-process", f"{result['warm_reingest_inprocess_s']} s"),
        ("ingest throughput (chunk + embed + store)", f"{result['ingest_chunks_per_s']} chunks/s"),
        ("raw encode of the same texts (chunks + sentences)", f"{result['raw_encode_chunks_per_s']} chunks/s"),
        ("ingest / raw encode", f"{result['ingest_vs_raw_encode']:.2f}"),
        (f"search latency, median of {len(latencies)}", f"{result['search_ms_median']} ms"),
        ("search latency, p95", f"{result['search_ms_p95']} ms"),
    ]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    header = f"Built-in corpus: {result['corpus']['papers']} papers, {result['corpus']['chunks']} chunks; "
    header += f"{result['machine']['cpus']} CPUs, encoder {result['machine']['encoder']}.\n\n"
    (args.out / "ingest.md").write_text(header + table + "\n")
    print(header + table)


if __name__ == "__main__":
    main()
