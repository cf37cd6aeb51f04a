"""Speed at the hardware's limit: each encoder backend and llama.cpp set-up beside the raw limits, in one run.

    .venv/bin/python bench/speed.py [--out bench/results/speed] [--rounds 2] [--questions 20]
        [--backends torch:fp32,onnx:fp32,onnx:int8] [--xllamacpp-python /path/to/venv/bin/python]
        [--setup]

Encoder, per backend: the encoder alone on the built-in corpus's ingest texts (every chunk and
abstract sentence, exactly what `rag ingest` embeds) vs `rag ingest` itself (texts/s), one
question's embedding (ms) and a hybrid `search` (ms). LLM, default model: raw prompt-processing
and generation tok/s measured with the runtime alone on the product's own prompt
(bench/llm_probe.py, in subprocesses: threads, batch sizes, flash attention, OpenMP wait policy,
and xllamacpp when a Python with it is given) vs the product's first token and total time (cold
prompt, the same process's second question, and a new process that restored the prompt cache).
`--setup` also times a fresh virtual env with each runtime (minutes: one compiles llama.cpp).
Rounds alternate the candidates so a shared machine's load falls on all of them alike; medians
are reported. Writes speed.json, speed.md and speed.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

LLM_VARIANTS = {  # name -> (probe flags, environment)
    "default (2 threads, batch 512, OMP passive)": ([], {}),
    "1 thread": (["--threads", "1"], {}),
    "batch 128 / ubatch 128": (["--n-batch", "128", "--n-ubatch", "128"], {}),
    "flash attention": (["--flash-attn"], {}),
    "OMP_WAIT_POLICY=ACTIVE": ([], {"OMP_WAIT_POLICY": "ACTIVE"}),
}


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[int(0.95 * (len(ordered) - 1))], 2) if ordered else float("nan")


def corpus_paths(files: int | None) -> list[Path]:
    from rag.sources import builtin_corpus_paths

    return builtin_corpus_paths()[:files] if files else builtin_corpus_paths()


def ingest_texts(library: Library, paths: list[Path]) -> list[str]:
    """Exactly the texts `rag ingest` embeds for the built-in corpus: chunk texts, then abstract sentences."""
    from rag.chunking import ChunkPlan, chunk_paper, tiktoken_counter
    from rag.ingest import sentences_of
    from rag.sources import load_corpus

    settings, embedder = library.settings, library.embedder
    plan = ChunkPlan(
        chunk_tokens=settings.chunking.chunk_tokens,
        overlap_tokens=settings.chunking.overlap_tokens,
        embed_limit=embedder.max_tokens,
        prepend_title=settings.chunking.prepend_title,
    )
    counter = tiktoken_counter()
    chunks = [c for p in load_corpus(paths).papers for c in chunk_paper(p, plan, counter, embedder.count_tokens)]
    return [c.embed_text for c in chunks] + [text for _, _, text in sentences_of(chunks)]


def golden_questions(n: int) -> list[str]:
    lines = (REPO / "eval" / "golden" / "seed_papers.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    return [i["question"] for i in items if i.get("kind") in ("single", "numeric")][:n]


def encoder_round(
    spec: str, work: Path, paths: list[Path], texts: list[str], questions: list[str], results: dict
) -> None:
    backend, precision = spec.split(":")
    overrides = {"embedding.backend": backend, "embedding.precision": precision}
    library = Library(load_settings(overrides={**overrides, "index.path": str(work / f"idx-{spec}-{time.time_ns()}")}))
    embedder = library.embedder
    embedder.embed(["warm-up"])  # model load (and a first ONNX export) is not throughput
    row = results.setdefault(spec, {"raw_texts_s": [], "ingest_texts_s": [], "question_ms": [], "search_ms": []})
    started = time.perf_counter()
    embedder.embed(texts)
    row["raw_texts_s"].append(len(texts) / (time.perf_counter() - started))
    report = library.ingest(paths, progress=False)
    row["ingest_texts_s"].append(len(texts) / report.seconds)
    row["chunks"] = report.chunks_embedded
    for question in questions:
        started = time.perf_counter()
        embedder.embed([question])
        row["question_ms"].append((time.perf_counter() - started) * 1000)
    retriever = library.retriever()
    retriever.search("warm-up")
    for question in questions:
        started = time.perf_counter()
        retriever.search(question)
        row["search_ms"].append((time.perf_counter() - started) * 1000)


class Recording:
    """A chat model that remembers the messages it was sent (the product's real prompt)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.sent = inner, inner.name, []

    def load(self):
        return self.inner.load()

    def stream(self, messages, **kwargs):
        self.sent.append(list(messages))
        yield from self.inner.stream(messages, **kwargs)


def product_llm(work: Path, questions: list[str], index: Path) -> tuple[dict, list[dict]]:
    """First token and total time of `Assistant.ask`: cold prompt, same process, new process with the cache."""
    from rag.answering import Assistant
    from rag.llm import LlamaCppModel
    from rag.models import resolve_gguf

    settings = load_settings(overrides={"index.path": str(index)})
    gguf = resolve_gguf(settings.llm.model, Path(settings.llm.model_dir).expanduser())
    model_dir = work / "models"  # a prompt cache of this run's own
    model_dir.mkdir(exist_ok=True)
    (model_dir / gguf.name).symlink_to(gguf)
    stamp = gguf.with_suffix(".verified.json")
    if stamp.exists():
        (model_dir / stamp.name).write_text(stamp.read_text())
    library = Library(settings)
    out: dict = {
        "cold_first_ms": [],
        "cold_total_ms": [],
        "cold_pp_tok_s": [],
        "warm_first_ms": [],
        "warm_total_ms": [],
    }
    llm = settings.llm.model_copy(update={"model_dir": str(model_dir), "prompt_cache": True})
    recorder = Recording(LlamaCppModel(llm))
    assistant = Assistant(library, recorder)
    assistant.warm_up()
    llama = recorder.inner.load()
    for question in questions:
        llama.reset()  # cold: nothing of the prompt evaluated
        answer = assistant.ask(question)
        if answer.mode not in ("generate", "fallback") or not recorder.sent:
            continue
        tokens = len(llama.tokenize(_chatml(recorder.sent[-1]).encode(), add_bos=False, special=True))
        first, total = answer.timings["first_token_ms"], answer.timings["total_ms"]
        out["cold_first_ms"].append(first)
        out["cold_total_ms"].append(total)
        out["cold_pp_tok_s"].append(tokens / max((first - answer.timings["retrieve_ms"]) / 1000, 1e-6))
        out.setdefault("prompt_tokens", []).append(tokens)
    for question in questions:  # same process: llama-cpp-python reuses the previous prompt's shared prefix
        answer = assistant.ask(question)
        if answer.mode in ("generate", "fallback"):
            out["warm_first_ms"].append(answer.timings["first_token_ms"])
            out["warm_total_ms"].append(answer.timings["total_ms"])
    messages = recorder.sent[0]
    del assistant, recorder, llama
    # A new process: a fresh model instance restores the prefix state the first one saved on disk.
    out["restored_first_ms"], out["restored_total_ms"] = [], []
    for question in questions[:5]:
        fresh = Assistant(library, LlamaCppModel(llm))
        fresh.warm_up()
        answer = fresh.ask(question)
        if answer.mode in ("generate", "fallback"):
            out["restored_first_ms"].append(answer.timings["first_token_ms"])
            out["restored_total_ms"].append(answer.timings["total_ms"])
        out["restored_prefix_tokens"] = fresh.chat_model.saved_prefix_tokens
        del fresh
    return out, messages


def _chatml(messages: list[dict]) -> str:
    from llama_cpp.llama_chat_format import format_chatml

    return format_chatml(messages=messages).prompt


def raw_llm(prompt_file: Path, gguf: Path, rounds: int, xllamacpp_python: str | None) -> dict:
    results: dict = {}
    variants = dict(LLM_VARIANTS)
    if xllamacpp_python:
        variants["xllamacpp (prebuilt wheel)"] = (["--runtime", "xllamacpp"], {})
    for _ in range(rounds):
        for name, (flags, env) in variants.items():
            python = xllamacpp_python if "xllamacpp" in flags else sys.executable
            cmd = [
                python,
                str(REPO / "bench" / "llm_probe.py"),
                "--model",
                str(gguf),
                "--prompt-file",
                str(prompt_file),
            ]
            proc = subprocess.run(
                [*cmd, *flags], capture_output=True, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **env}
            )
            row = results.setdefault(name, {"pp_tok_s": [], "tg_tok_s": [], "load_s": [], "errors": []})
            if proc.returncode != 0:
                row["errors"].append((proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:200])
                continue
            probe = json.loads(proc.stdout.strip().splitlines()[-1])
            for key in ("pp_tok_s", "tg_tok_s", "load_s"):
                row[key].append(probe[key])
            row["prompt_tokens"] = probe["prompt_tokens"]
    return results


def setup_times(work: Path) -> dict:
    """Seconds for a fresh venv plus each llama.cpp runtime (the source build compiles, without pip's cache)."""
    times = {}
    for name, packages, env in (
        ("xllamacpp (prebuilt wheel)", ["xllamacpp"], {}),
        (
            "llama-cpp-python (source build, portable)",
            ["--no-cache-dir", "llama-cpp-python==0.3.36"],
            {"CMAKE_ARGS": "-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"},
        ),
    ):
        venv = work / f"venv-{len(times)}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        proc = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", *packages], env={**os.environ, **env}, capture_output=True
        )
        times[name] = round(time.perf_counter() - started, 1) if proc.returncode == 0 else None
    return times


def write_report(out: Path, result: dict) -> None:
    enc, llm = result["encoder"], result["llm"]
    lines = [
        f"{result['machine']['cpus']} CPUs ({result['machine']['cpu']}); {result['rounds']} rounds, medians; "
        "a shared machine: compare ratios within this run.",
        "",
        "### Encoder (built-in corpus: every chunk and abstract sentence)",
        "",
        "| backend | encoder alone, texts/s | `rag ingest`, texts/s | ingest / encoder | vs torch ingest | "
        "question embedding p50 ms | hybrid search p50 / p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    torch_ingest = enc.get("torch:fp32", {}).get("ingest_texts_s")
    for spec, row in enc.items():
        ratio = f"{row['ingest_texts_s'] / torch_ingest:.2f}×" if torch_ingest else "–"
        lines.append(
            f"| {spec} | {row['raw_texts_s']} | {row['ingest_texts_s']} "
            f"| {row['ingest_texts_s'] / row['raw_texts_s']:.2f} "
            f"| {ratio} | {row['question_ms']} | {row['search_ms']} / {row['search_ms_p95']} |"
        )
    lines += ["", "### llama.cpp, raw (runtime alone, the product's prompt)", ""]
    lines += ["| set-up | prompt tok/s | generate tok/s | load s |", "|---|---|---|---|"]
    for name, row in llm["raw"].items():
        note = f" ({row['errors'][0]})" if row.get("errors") and not row["pp_tok_s"] else ""
        lines.append(f"| {name}{note} | {row['pp_tok_s']} | {row['tg_tok_s']} | {row['load_s']} |")
    product = llm["product"]
    lines += [
        "",
        "### The product (`Assistant.ask`, default model)",
        "",
        "| measure | median |",
        "|---|---|",
        f"| prompt tokens | {product['prompt_tokens']} |",
        f"| first token, cold prompt | {product['cold_first_ms']} ms |",
        f"| product prompt tok/s (cold) vs raw | {product['cold_pp_tok_s']} vs {llm['raw_default_pp']} "
        f"({product['cold_pp_tok_s'] / llm['raw_default_pp']:.0%}) |",
        f"| first token, same process (shared prefix reused) | {product['warm_first_ms']} ms |",
        f"| first token, new process (prompt cache restored, {product.get('restored_prefix_tokens', 0)} tokens) "
        f"| {product['restored_first_ms']} ms |",
        f"| total, cold / warm | {product['cold_total_ms']} / {product['warm_total_ms']} ms |",
    ]
    if result.get("setup_s"):
        lines += ["", "### Fresh virtual env + runtime", "", "| runtime | seconds |", "|---|---|"]
        lines += [f"| {name} | {s} |" for name, s in result["setup_s"].items()]
    (out / "speed.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    chart(out, result)


def chart(out: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    specs = list(result["encoder"])
    xs = range(len(specs))
    left.bar([x - 0.2 for x in xs], [result["encoder"][s]["raw_texts_s"] for s in specs], 0.4, label="encoder alone")
    left.bar([x + 0.2 for x in xs], [result["encoder"][s]["ingest_texts_s"] for s in specs], 0.4, label="rag ingest")
    left.set_xticks(list(xs), specs)
    left.set_ylabel("texts / s")
    left.set_title("Encoder: limit vs product")
    left.legend()
    names = list(result["llm"]["raw"])
    right.barh(names, [result["llm"]["raw"][n]["pp_tok_s"] or 0 for n in names], label="raw prompt tok/s")
    right.axvline(result["llm"]["product"]["cold_pp_tok_s"], color="k", ls="--", label="product (cold prompt)")
    right.set_xlabel("prompt tokens / s")
    right.set_title("llama.cpp prompt processing")
    right.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "speed.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "speed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--backends", default="torch:fp32,onnx:fp32,onnx:int8")
    parser.add_argument(
        "--xllamacpp-python", help="a Python with xllamacpp installed, to measure it beside llama-cpp-python"
    )
    parser.add_argument("--setup", action="store_true", help="also time fresh venvs with each runtime (minutes)")
    parser.add_argument("--corpus-files", type=int, help="only the first N files of the built-in corpus (a quick run)")
    parser.add_argument("--skip-encoder", action="store_true")
    parser.add_argument("--skip-llm", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rag-speed-"))
    questions = golden_questions(args.questions)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    result: dict = {"machine": {"cpus": os.cpu_count(), "cpu": cpu}, "rounds": args.rounds, "encoder": {}, "llm": {}}

    specs = [s for s in args.backends.split(",") if s] if not args.skip_encoder else []
    paths = corpus_paths(args.corpus_files)
    if specs:
        texts = ingest_texts(Library(load_settings()), paths)
        raw: dict = {}
        for number in range(args.rounds):
            for spec in specs if number % 2 == 0 else reversed(specs):
                print(f"encoder round {number + 1}/{args.rounds}: {spec}", file=sys.stderr, flush=True)
                encoder_round(spec, work, paths, texts, questions, raw)
        for spec in specs:
            row = raw[spec]
            result["encoder"][spec] = {
                "texts": len(texts),
                "raw_texts_s": median(row["raw_texts_s"]),
                "ingest_texts_s": median(row["ingest_texts_s"]),
                "question_ms": median(row["question_ms"]),
                "question_ms_p95": p95(row["question_ms"]),
                "search_ms": median(row["search_ms"]),
                "search_ms_p95": p95(row["search_ms"]),
                "samples": row,
            }

    if not args.skip_llm:
        index = work / "llm-index"
        Library(load_settings(overrides={"index.path": str(index)})).ingest(paths, progress=False)
        print("llm: the product", file=sys.stderr, flush=True)
        product, messages = product_llm(work, questions, index)
        prompt_file = work / "prompt.txt"
        prompt_file.write_text(_chatml(messages), encoding="utf-8")
        gguf = next((work / "models").glob("*.gguf")).resolve()
        print("llm: raw runtime probes", file=sys.stderr, flush=True)
        raw_llm_rows = raw_llm(prompt_file, gguf, args.rounds, args.xllamacpp_python)
        result["llm"] = {
            "raw": {
                name: {k: (median(v) if k != "errors" else v) if isinstance(v, list) else v for k, v in row.items()}
                for name, row in raw_llm_rows.items()
            },
            "product": {k: (median(v) if isinstance(v, list) else v) for k, v in product.items()},
            "product_samples": product,
        }
        result["llm"]["raw_default_pp"] = result["llm"]["raw"][next(iter(LLM_VARIANTS))]["pp_tok_s"]
    if args.setup:
        result["setup_s"] = setup_times(work)
    (args.out / "speed.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if result["encoder"] and result["llm"]:
        write_report(args.out, result)


if __name__ == "__main__":
    main()
