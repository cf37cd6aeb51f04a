"""The baseline: the same corpus through a LlamaIndex quickstart, measured the way bench/scale_bench.py
measures this project. Runs as its own process (so its peak RSS is its own) and prints one JSON object.

    python bench/quickstart_baseline.py --ask 5

The quickstart is `VectorStoreIndex.from_documents(documents)` and `index.as_query_engine()` with
default settings, except the two that cannot be defaults offline: the embedding model is the same
all-MiniLM-L6-v2 (HuggingFaceEmbedding on its local folder) and the LLM is the same packaged
Qwen2.5-Coder-0.5B GGUF through llama.cpp (LlamaCPP). Each paper is one Document, "title\\nabstract".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from paper_rag_eval.harness import load_golden  # noqa: E402
from paper_rag_eval.metrics import hit_at_k, title_key  # noqa: E402


def golden_questions() -> list[tuple[str, set[str]]]:
    """(question, gold title keys) for the golden set's answerable one-turn items."""
    return [
        (item.question, {title_key(t) for t in item.gold_titles})
        for item in load_golden()
        if item.answerable and not item.turns and item.gold_titles
    ]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def measure_search(search: Callable[[str], list[str]], questions: list[tuple[str, set[str]]]) -> dict:
    """Latency and hit@1 / hit@5 of a search that returns ranked paper titles, after one warm-up call."""
    search("warm-up")
    latencies, hits1, hits5 = [], [], []
    for question, gold in questions:
        started = time.perf_counter()
        titles = search(question)
        latencies.append((time.perf_counter() - started) * 1000)
        ranked = list(dict.fromkeys(title_key(t) for t in titles))
        hits1.append(hit_at_k(ranked, gold, 1))
        hits5.append(hit_at_k(ranked, gold, 5))
    return {
        "search_ms_p50": round(statistics.median(latencies), 1),
        "search_ms_p95": round(percentile(latencies, 95), 1),
        "hit@1": round(statistics.mean(hits1), 3),
        "hit@5": round(statistics.mean(hits5), 3),
        "questions": len(questions),
    }


def result_row(system: str, papers: int, nodes: int, ingest_s: float, search: dict, ask: list[dict]) -> dict:
    """One system's figures, the same keys for this project and the quickstart."""
    return {
        "system": system,
        "papers": papers,
        "nodes": nodes,
        "ingest_s": round(ingest_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **search,
        "ask": ask,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ask", type=int, default=5, help="questions answered end to end (0 = none)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from rag.config import load_settings
    from rag.embedding import resolve_model_path
    from rag.sources import builtin_corpus_paths, load_corpus

    settings = load_settings(env={})
    Settings.embed_model = HuggingFaceEmbedding(
        model_name=str(resolve_model_path(settings.embedding.model)), device="cpu"
    )
    Settings.embed_model.get_text_embedding("warm-up")  # model load is not ingest
    papers = load_corpus(builtin_corpus_paths()).papers
    documents = [Document(text=f"{p.title}\n{p.abstract}", metadata={"title": p.title}) for p in papers]

    started = time.perf_counter()
    index = VectorStoreIndex.from_documents(documents)
    ingest_s = time.perf_counter() - started
    nodes = len(index.docstore.docs)

    retriever = index.as_retriever(similarity_top_k=5)
    questions = golden_questions()
    searched = measure_search(lambda q: [n.node.metadata["title"] for n in retriever.retrieve(q)], questions)

    ask = []
    if args.ask:
        from llama_index.llms.llama_cpp import LlamaCPP

        from rag.models import PACKAGED_MODELS, ensure_joined

        gguf = ensure_joined(PACKAGED_MODELS["qwen2.5-coder-0.5b-instruct"], settings.llm.model_dir)
        Settings.llm = LlamaCPP(
            model_path=str(gguf), temperature=0.1, max_new_tokens=200, context_window=4096, verbose=False
        )
        engine = index.as_query_engine(streaming=True)
        engine.query("warm-up").get_response()
        for question, _ in questions[: args.ask]:
            t0 = time.perf_counter()
            first = None
            for _token in engine.query(question).response_gen:
                first = first or time.perf_counter()
            done = time.perf_counter()
            ask.append({"first_token_s": (first or done) - t0, "total_s": done - t0})

    print(json.dumps(result_row("LlamaIndex quickstart", len(papers), nodes, ingest_s, searched, ask)))


if __name__ == "__main__":
    main()
