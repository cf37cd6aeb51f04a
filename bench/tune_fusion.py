"""Tune hybrid fusion on a BEIR split we do not report (SciFact train), then check it on test.

Dense and BM25 rankings are computed once per query; fusion settings are then swept offline, so
the sweep costs seconds. Usage:
  python bench/tune_fusion.py ../shared/benchmarks/scifact --index ~/.cache/paper-rag/beir/scifact
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paper_rag_eval.beir import load_beir, score_run  # noqa: E402
from rag.lexical import KeywordIndex  # noqa: E402
from rag.library import Library  # noqa: E402
from rag.retrieval import group_by_paper, rrf_fuse  # noqa: E402


def dense_rankings(library, data, vectors, depth: int) -> dict[str, list[str]]:
    store = library.store()
    return {
        qid: [m.paper_id for m in group_by_paper(store.query(vector, n_results=depth))]
        for qid, vector in zip(data.queries, vectors, strict=True)
    }


def bm25_rankings(library, data, k1: float, b: float, stop: str) -> dict[str, list[str]]:
    keywords = KeywordIndex.build(library.catalog(), k1, b)
    return {qid: [pid for pid, _ in keywords.search(text, 100, None, stop)] for qid, text in data.queries.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("beir")
    parser.add_argument("--index", required=True)
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    library = Library.from_config(overrides={"index.path": str(Path(args.index).expanduser())})
    data = load_beir(Path(args.beir), args.split)
    library.retriever()  # opens the store and brings the catalog up to date
    vectors = library.embedder.embed(list(data.queries.values()))
    dense_by_depth = {depth: dense_rankings(library, data, vectors, depth) for depth in (40, 100)}
    results = []
    for depth, dense in dense_by_depth.items():
        results.append({"mode": "dense", "depth": depth} | score_run(dense, data.qrels))
    for k1, b, stop in itertools.product([0.9, 1.2], [0.4, 0.75], ["lucene", "english"]):
        lexical = bm25_rankings(library, data, k1, b, stop)
        base = {"k1": k1, "b": b, "stop": stop}
        results.append(base | {"mode": "bm25"} | score_run(lexical, data.qrels))
        for depth, dense in dense_by_depth.items():
            for rrf_k, w in itertools.product([5, 10, 20, 40, 60, 100], [0.5, 0.75, 1.0, 1.33, 2.0]):
                fused = {
                    q: [pid for pid, _ in rrf_fuse([(dense[q], 1.0), (lexical[q], w)], rrf_k)] for q in data.queries
                }
                row = base | {"mode": "hybrid", "depth": depth, "rrf_k": rrf_k, "lexical_weight": w}
                results.append(row | score_run(fused, data.qrels))
        print(base, flush=True)
    results.sort(key=lambda r: -r["ndcg@10"])
    for row in results[:15]:
        print(json.dumps(row))
    out = Path(__file__).resolve().parent / "results" / f"tune-fusion-{data.name}-{args.split}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
