"""BEIR-format retrieval benchmarks (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) through the library.

The corpus is ingested like any JSONL source (BEIR's `_id`, `title`, `text` are understood), into an
index of its own, then every test query is searched in each retrieval mode and scored with the pure
metrics in paper_rag_eval.metrics. Published reference figures are printed beside ours.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paper_rag_eval.metrics import hit_at_k, mean, mrr_at_k, ndcg_at_k, percentile, recall_at_k

MODES = {
    "bm25": {"mode": "bm25", "rerank": False},
    "dense": {"mode": "dense", "rerank": False},
    "hybrid": {"mode": "hybrid", "rerank": False},
    "hybrid+rerank": {"mode": "hybrid", "rerank": True},
}

# nDCG@10 on the test split, as ../shared/benchmarks/scifact/README.md lists them (BEIR and MTEB papers).
PUBLISHED_NDCG10 = {
    "scifact": {"BM25": 0.665, "all-MiniLM-L6-v2": 0.645, "e5-small-v2": 0.689, "bge-small-en-v1.5": 0.713},
}


@dataclass
class BeirData:
    name: str
    folder: Path
    queries: dict[str, str]  # only the queries judged in the split
    qrels: dict[str, dict[str, int]]

    @property
    def corpus_path(self) -> Path:
        return self.folder / "corpus.jsonl"


def load_beir(folder: Path, split: str = "test") -> BeirData:
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} is missing; a BEIR folder has corpus.jsonl, queries.jsonl, qrels/")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    queries: dict[str, str] = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["_id"] in qrels:
                queries[record["_id"]] = record["text"]
    return BeirData(folder.name, folder, queries, {q: r for q, r in qrels.items() if q in queries})


def write_slice(data: BeirData, out: Path, n_queries: int, extra_docs: int, seed: int = 13) -> Path:
    """A small BEIR folder: the first n judged queries, their relevant documents and some distractors."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    query_ids = sorted(data.queries, key=lambda q: int(q) if q.isdigit() else q)[:n_queries]
    relevant = {doc for q in query_ids for doc in data.qrels[q]}
    with data.corpus_path.open(encoding="utf-8") as handle:
        lines = handle.readlines()
    others = [line for line in lines if json.loads(line)["_id"] not in relevant]
    random.Random(seed).shuffle(others)
    kept = [line for line in lines if json.loads(line)["_id"] in relevant] + others[:extra_docs]
    (out / "corpus.jsonl").write_text("".join(kept), encoding="utf-8")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for q in query_ids:
            handle.write(json.dumps({"_id": q, "text": data.queries[q]}) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for q in query_ids:
            for doc, score in data.qrels[q].items():
                handle.write(f"{q}\t{doc}\t{score}\n")
    return out


def score_run(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean metrics over the judged queries (a query with no ranking scores 0)."""
    per_query = {
        "ndcg@10": [],
        "recall@10": [],
        "recall@100": [],
        "mrr@10": [],
        "hit@1": [],
        "hit@10": [],
    }
    for query_id, judged in qrels.items():
        ranked = rankings.get(query_id, [])
        relevant = {doc for doc, score in judged.items() if score > 0}
        per_query["ndcg@10"].append(ndcg_at_k(ranked, judged, 10))
        per_query["recall@10"].append(recall_at_k(ranked, relevant, 10))
        per_query["recall@100"].append(recall_at_k(ranked, relevant, 100))
        per_query["mrr@10"].append(mrr_at_k(ranked, relevant, 10))
        per_query["hit@1"].append(hit_at_k(ranked, relevant, 1))
        per_query["hit@10"].append(hit_at_k(ranked, relevant, 10))
    return {name: round(mean(values), 4) for name, values in per_query.items()}


def run_beir(
    library,
    data: BeirData,
    modes: list[str],
    depth: int = 100,
    latency_k: int = 10,
    on_query: Callable[[str], None] | None = None,
) -> dict:
    """Search every judged query in each mode; metrics from depth-100 rankings, latency from k=latency_k."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown retrieval mode(s) {unknown}; choose from {sorted(MODES)}")
    retriever = library.retriever()
    embedder = library.embedder
    retriever.search("warm up", k=1)  # model, BM25 matrix and Chroma caches loaded before timing
    query_ids = list(data.queries)
    started = time.perf_counter()
    vectors = embedder.embed([data.queries[q] for q in query_ids])
    embed_ms = (time.perf_counter() - started) * 1000 / max(1, len(query_ids))
    results: dict[str, dict] = {}
    for name in modes:
        options = MODES[name]
        rankings: dict[str, list[str]] = {}
        latencies: list[float] = []
        for query_id, vector in zip(query_ids, vectors, strict=True):
            text = data.queries[query_id]
            hits = retriever.search_vector(text, vector, k=depth, **options)
            rankings[query_id] = [h.paper_id for h in hits]
            t0 = time.perf_counter()
            retriever.search(text, k=latency_k, **options)  # end to end, the question embedded too
            latencies.append((time.perf_counter() - t0) * 1000)
            if on_query:
                on_query(name)
        results[name] = {
            "metrics": score_run(rankings, data.qrels),
            "latency_ms": {
                "p50": round(percentile(latencies, 50), 1),
                "p95": round(percentile(latencies, 95), 1),
                "k": latency_k,
            },
            "rankings": {q: r[:10] for q, r in rankings.items()},
        }
    return {
        "dataset": data.name,
        "queries": len(query_ids),
        "query_embed_ms": round(embed_ms, 1),
        "published_ndcg@10": PUBLISHED_NDCG10.get(data.name.lower(), {}),
        "modes": results,
    }


def beir_table(report: dict) -> str:
    """Markdown: our modes, then the published reference figures."""
    lines = [
        "| mode | nDCG@10 | recall@10 | recall@100 | MRR@10 | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in report["modes"].items():
        m, lat = result["metrics"], result["latency_ms"]
        lines.append(
            f"| {name} | {m['ndcg@10']:.3f} | {m['recall@10']:.3f} | {m['recall@100']:.3f} | {m['mrr@10']:.3f} "
            f"| {lat['p50']:.1f} | {lat['p95']:.1f} |"
        )
    for name, value in report.get("published_ndcg@10", {}).items():
        lines.append(f"| published: {name} | {value:.3f} | | | | | |")
    return "\n".join(lines)
