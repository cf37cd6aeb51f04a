"""Answer latency and quality on the golden questions, per answer mode / model, on this machine.

    python bench/answer_bench.py                       # extractive + the default local model
    python bench/answer_bench.py --config answer.mode=extractive --config llm.model=qwen2.5-coder-0.5b-instruct

Each configuration runs every golden item once after a warm-up (models loaded, prompt prefix
cached); timings are medians. Results go to bench/results/answer-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from paper_rag_eval.harness import DEFAULT_GOLDEN, load_golden, run_items  # noqa: E402
from paper_rag_eval.metrics import summarize  # noqa: E402
from rag.answering import Assistant  # noqa: E402
from rag.library import Library  # noqa: E402

DEFAULT_CONFIGS = [
    "answer.mode=extractive",
    "llm.model=qwen2.5-coder-1.5b-instruct-q4_k_m",
    "llm.model=qwen2.5-coder-0.5b-instruct",
]


def parse_config(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(",") if part)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="comma-separated key=value overrides; repeatable")
    parser.add_argument("--golden", type=Path, default=DEFAULT_GOLDEN)
    parser.add_argument("--limit", type=int, default=None, help="first N items only")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    items = load_golden(args.golden)[: args.limit]
    library = Library.from_config(args.profile)
    library.retriever()
    library.embedder.embed(["warm-up"])
    report = {"machine": {"cpus": os.cpu_count()}, "items": len(items), "runs": []}
    for config in args.config or DEFAULT_CONFIGS:
        overrides = parse_config(config)
        library.embedder  # noqa: B018 - load it once; derive() shares the loaded embedder and open index
        run_library = library.derive(overrides)  # validated like any config layer
        assistant = Assistant.from_config(library=run_library)
        load_started = time.perf_counter()
        assistant.ask(items[0].question)  # warm-up: loads the LLM, caches the system prompt
        load_s = time.perf_counter() - load_started

        def show(item, answer, score):
            print(
                f"  {item.id}: {score.mode:10s} refused={score.refused!s:5} cites={score.cites_expected!s:5} "
                f"facts={score.facts_found}/{score.facts_total} first={score.first_token_ms:7.0f}ms "
                f"total={score.total_ms:7.0f}ms | {answer['answer'][:90]!r}",
                flush=True,
            )

        print(f"== {config} (warm-up {load_s:.1f}s)", flush=True)
        results = run_items(assistant, items, show)
        summary = summarize([score for _, score in results])
        print(json.dumps(summary), flush=True)
        report["runs"].append(
            {
                "config": overrides,
                "model": assistant.model_name,
                "warm_up_s": round(load_s, 1),
                "summary": summary,
                "answers": [answer for answer, _ in results],
            }
        )
    out = Path(__file__).resolve().parent / "results" / f"answer-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
