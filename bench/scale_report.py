"""Markdown tables and a PNG chart from bench/scale_bench.py's results (pure formatting)."""

from __future__ import annotations

from pathlib import Path


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs else "–"


def markdown(results: dict) -> str:
    machine = results["machine"]
    lines = [f"Machine: {machine['cpus']} CPUs, Python {machine['python']}, CUDA: {machine['cuda'] or 'none'}.", ""]
    builtin = results.get("builtin")
    if builtin:
        lines += [
            "**Built-in corpus, real model** (`bench/ingest_bench.py`)",
            "",
            "| measure | value |",
            "|---|---|",
            f"| cold `rag ingest` (new process) | {builtin['cold_ingest_cli_s']} s, "
            f"peak RSS {builtin['cold_ingest_peak_rss_mb']} MB |",
            f"| ingest throughput | {builtin['ingest_chunks_per_s']} texts/s |",
            f"| raw `SentenceTransformer.encode`, same texts | {builtin['raw_encode_chunks_per_s']} texts/s |",
            f"| ingest ÷ raw encode | {builtin['ingest_vs_raw_encode']:.2f} |",
            f"| warm re-ingest (new process / in-process) | {builtin['warm_reingest_cli_s']} s / "
            f"{builtin['warm_reingest_inprocess_s']} s |",
            f"| search p50 / p95 | {builtin['search_ms_median']} / {builtin['search_ms_p95']} ms |",
            "",
        ]
    baseline = results.get("baseline")
    if baseline:
        ours, theirs = baseline["ours"], baseline["quickstart"]
        oa, ta = ours.get("ask_summary") or {}, theirs.get("ask_summary") or {}

        def compared(label: str, key: str, mine: dict, other: dict, ratio: bool = True) -> tuple:
            return (label, mine[key], other[key], _ratio(mine[key], other[key]) if ratio else "")

        rows = [
            compared("texts embedded (chunks; + sentences for ours)", "nodes", ours, theirs, ratio=False),
            compared("ingest, model loaded (s)", "ingest_s", ours, theirs),
            compared("search p50 (ms)", "search_ms_p50", ours, theirs),
            compared("search p95 (ms)", "search_ms_p95", ours, theirs),
            compared(f"hit@1 ({ours['questions']} golden questions)", "hit@1", ours, theirs, ratio=False),
            compared("hit@5", "hit@5", ours, theirs, ratio=False),
            compared("peak RSS (MB)", "peak_rss_mb", ours, theirs),
        ]
        if oa and ta:
            rows += [
                compared(f"ask: first token, median of {oa['questions']} (s)", "first_token_s_median", oa, ta),
                compared("ask: total, median (s)", "total_s_median", oa, ta),
            ]
        lines += [
            "**Against a LlamaIndex quickstart** (same corpus, same MiniLM and GGUF model, same run)",
            "",
            "| measure | paper-rag | quickstart | ratio |",
            "|---|---|---|---|",
            *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
            "",
        ]
    if results.get("scale"):
        lines += [
            "**Synthetic arXiv-format corpora** (composed vectors; see bench/scale_bench.py)",
            "",
            "| papers | chunks | ingest (s) | papers/s | peak RSS (MB) | index on disk (MB) | warm re-ingest (s) "
            "| dense p50 / p95 (ms) | hybrid p50 / p95 (ms) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in results["scale"]:
            lines.append(
                f"| {row['papers']:,} | {row['chunks']:,} | {row['ingest_s']} | {row['ingest_papers_per_s']} | "
                f"{row['peak_rss_mb']:,} | {row['index_mb']:,} | {row['warm_reingest_s']} | "
                f"{row['dense']['p50_ms']} / {row['dense']['p95_ms']} | "
                f"{row['hybrid']['p50_ms']} / {row['hybrid']['p95_ms']} |"
            )
        lines.append("")
    pool = results.get("pool_vectors")
    if pool:
        lines.append(
            f"Sentence-pool vectors: {pool['texts']:,} texts embedded on {pool['device']} "
            f"at {pool['texts_per_s']:,} texts/s "
            f"({pool['weights_dtype']})."
        )
    return "\n".join(lines) + "\n"


def chart(results: dict, path: Path) -> Path | None:
    rows = results.get("scale") or []
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    papers = [r["papers"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, style in (("dense", "o-"), ("hybrid", "s-")):
        left.plot(papers, [r[mode]["p50_ms"] for r in rows], style, label=f"{mode} p50")
        left.plot(papers, [r[mode]["p95_ms"] for r in rows], style, alpha=0.5, label=f"{mode} p95")
    left.axhline(100, color="grey", linestyle="--", linewidth=1, label="target p95 100 ms")
    left.set(xscale="log", xlabel="papers", ylabel="search latency (ms)", title="Search latency vs corpus size")
    left.legend(fontsize=8)
    right.plot(papers, [r["peak_rss_mb"] for r in rows], "o-", label="peak RSS during ingest (MB)")
    right.plot(papers, [r["index_mb"] for r in rows], "s-", label="index on disk (MB)")
    right.axhline(4096, color="grey", linestyle="--", linewidth=1, label="target RSS 4 GB")
    right.set(xscale="log", yscale="log", xlabel="papers", title="Memory and disk vs corpus size")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: dict, out: Path) -> str:
    text = markdown(results)
    png = chart(results, out / "scale.png")
    if png:
        text += f"\n![search latency and memory vs corpus size]({png.name})\n"
    (out / "scale.md").write_text(text)
    return text
