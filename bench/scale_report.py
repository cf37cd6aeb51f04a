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
    if results.get("baseline_error"):
        lines += [f"LlamaIndex quickstart comparison not run: {results['baseline_error']}.", ""]
    rows = results.get("scale") or []
    if rows:
        lines += scale_tables(results, rows)
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
    for key, label, style in (("hybrid", "hybrid, embedded", "s-"), ("server_hybrid", "hybrid, chroma run", "^-")):
        have = [(p, r[key]) for p, r in zip(papers, rows, strict=True) if key in r]
        if have:
            left.plot([p for p, _ in have], [v["p50_ms"] for _, v in have], style, label=f"{label} p50")
            left.plot([p for p, _ in have], [v["p95_ms"] for _, v in have], style, alpha=0.5, label=f"{label} p95")
    left.axhline(100, color="grey", linestyle="--", linewidth=1, label="target p95 100 ms")
    left.set(xscale="log", xlabel="papers", ylabel="search latency (ms)", title="Hybrid search vs corpus size")
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


def batch_note(row: dict) -> str:
    batch = row.get("batch_papers")
    return f", ingested {batch} papers a batch (default 64)" if batch and batch != 64 else ""


def _pair(entry: dict | None) -> str:
    return f"{entry['p50_ms']} / {entry['p95_ms']}" if entry else "–"


def projected(row: dict, raw_texts_per_s: float | None) -> dict | None:
    """A stand-in or composed row with MiniLM's measured speed put back: the encoder alone on its texts
    (at the rate measured on the real-vector size, same run) plus the rest of ingest, measured here."""
    if row["vectors"] == "real" or not raw_texts_per_s:
        return None
    encoder_s = (row["chunks"] + row["sentences"]) / raw_texts_per_s
    rest_s = row["ingest_s"] - row["ingest_embed_s"]
    return {"papers_per_s": row["papers"] / (encoder_s + rest_s), "ingest_vs_raw": encoder_s / (encoder_s + rest_s)}


def scale_tables(results: dict, rows: list[dict]) -> list[str]:
    real = next((r for r in rows if r["vectors"] == "real" and r.get("raw_texts_per_s")), None)
    raw_rate = real["raw_texts_per_s"] if real else None
    start, end = results["machine"].get("start"), results["machine"].get("end")
    lines = []
    for run in results.get("runs") or []:  # sizes measured by separate invocations (--append)
        sizes = ", ".join(f"{n:,}" for n in run["sizes"])
        loads = [
            f"{when} {run[key]['at']} load average {', '.join(f'{x:.2f}' for x in run[key]['loadavg_1_5_15'])}"
            for key, when in (("start", "start"), ("end", "end"))
            if run.get(key)
        ]
        note = f" ({run['end']['note']})" if run.get("end", {}).get("note") else ""
        wall = f", wall time {run['wall_s']} s" if run.get("wall_s") else ""
        what = f"Run for {sizes} papers" if sizes else "Run for the built-in corpus and the quickstart baseline"
        lines.append(f"{what}: {'; '.join(loads)}{note}{wall}.")
    if results.get("runs"):
        lines.append("")
    elif start:
        load = ", ".join(f"{x:.2f}" for x in start["loadavg_1_5_15"])
        lines.append(f"Load average (1/5/15 min) at the start ({start['at']}): {load}.")
    if end and not results.get("runs"):
        load = ", ".join(f"{x:.2f}" for x in end["loadavg_1_5_15"])
        lines.append(f"At the end ({end['at']}): {load}. Bench wall time: {results.get('wall_s', '?')} s.")
    lines += [
        "",
        "**Synthetic arXiv-format corpora** (`bench/synth_corpus.py`; vectors: `real` = MiniLM embedded every "
        "text during ingest; `stand-in` = a seeded random unit vector per text, the real tokenizer and chunking; "
        "`composed` = means of real sentence vectors from the pool). Every search embeds the question with the "
        "real model.",
        "",
        "| papers | vectors | chunks + sentences | ingest papers/s | peak RSS (MB) | index on disk (MB) "
        "| no-op re-ingest: `rag ingest` / in-process (s) | `rag check` (s) | hybrid p50 / p95 (ms) "
        "| extractive answer p50 / p95 (ms) | default answer p50 / p95 (ms) "
        "| via `chroma run`: hybrid p50 / p95 (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['papers']:,} | {r['vectors']}{batch_note(r)} | {r['chunks']:,} + {r['sentences']:,} "
            f"| {r['ingest_papers_per_s']} "
            f"| {r['peak_rss_mb']:,} | {r['index_mb']:,} | {r.get('noop_cli_s', '–')} / {r['noop_inprocess_s']} "
            f"| {r.get('check_cli_s', '–')} | {_pair(r.get('hybrid'))} | {_pair(r.get('extractive'))} "
            f"| {_pair(r.get('default'))} | {_pair(r.get('server_hybrid'))} |"
        )
    base = rows[0]
    lines += [
        "",
        "**Ratios, each from this run** (the claims; absolute times move with the shared machine's load)",
        "",
        "| papers | ingest ÷ raw encoder | encoder's share of ingest | hybrid p50 ÷ first size's | "
        "`chroma run` ÷ embedded, hybrid p50 | no-op in-process ÷ first ingest |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["vectors"] == "real":
            how = "measured" if "all_calls_estimated_s" in r.get("raw_encoder", {}) else "sample rate, biased"
            ratio = f"{r['ingest_vs_raw']:.2f} ({how})"
            share = f"{r['ingest_embed_s'] / r['ingest_s']:.2f}"
        else:
            guess = projected(r, raw_rate)
            ratio = f"{guess['ingest_vs_raw']:.2f} (derived)" if guess else "–"
            share = "– (stand-in)"
        server = f"{r['server_hybrid']['p50_ms'] / r['hybrid']['p50_ms']:.2f}" if r.get("server_hybrid") else "–"
        lines.append(
            f"| {r['papers']:,} | {ratio} | {share} | {r['hybrid']['p50_ms'] / base['hybrid']['p50_ms']:.2f} "
            f"| {server} | {r['noop_inprocess_s'] / r['ingest_s']:.4f} |"
        )
    lines.append("")
    if real:
        raw = real["raw_encoder"]
        text = (
            f"Raw encoder: the configured MiniLM embedder given again {raw['texts']:,} of the {raw['of']:,} texts "
            f"ingest embedded at {real['papers']:,} papers, as the same calls (a seeded sample of its "
            f"{raw['calls']} calls), right after that ingest in the same process, in {raw['seconds']} s. "
        )
        if "all_calls_estimated_s" in raw:
            text += (
                f"Those calls took {raw['same_calls_during_ingest_s']} s inside ingest; scaled to all calls "
                f"(ingest spent {real['ingest_embed_s']} s in the encoder), the raw encoder alone would take "
                f"{raw['all_calls_estimated_s']} s for everything ingest embedded: {real['raw_texts_per_s']} "
                f"texts/s, against ingest's {real['ingest_texts_per_s']} texts/s end to end. "
            )
        else:  # the sample's own rate (an earlier version of this bench): biased by the sample's mix of calls
            text += (
                f"Sample rate {real['raw_texts_per_s']} texts/s against ingest's {real['ingest_texts_per_s']} "
                "texts/s (chunk calls and sentence calls differ in length, so a sample's rate depends on its mix). "
            )
        text += (
            "Derived rows: the raw encoder's time for that size's texts at that rate, plus what the rest of that "
            "size's ingest took (its stand-in encoder's time taken out); not measured with MiniLM."
        )
        lines.append(text)
        for r in rows:
            guess = projected(r, raw_rate)
            if guess:
                lines.append(
                    f"- {r['papers']:,} papers: about {guess['papers_per_s']:.1f} papers/s with MiniLM (derived)."
                )
        lines.append("")
    notes = [r for r in rows if r.get("check_findings")]
    for r in notes:
        lines.append(f"`rag check` at {r['papers']:,} ({r['vectors']}): " + "; ".join(r["check_findings"]) + ".")
    if notes:
        lines.append("")
    servers = [r for r in rows if r.get("server_start_s") is not None]
    if servers:
        lines.append(
            "`chroma run --path INDEX` on 127.0.0.1 serving the index just built, this project as its client "
            "(`index.server`; the BM25 catalog copied to the client's own folder): "
            + "; ".join(
                f"{r['papers']:,} papers: server up in {r['server_start_s']} s, first search "
                f"{r['server_first_search_s']} s, server peak RSS {r.get('server_peak_rss_mb', '–')} MB, "
                f"extractive answer p50 / p95 {_pair(r.get('server_extractive'))} ms"
                for r in servers
            )
            + "."
        )
        lines.append("")
    lines += eta_lines(rows) + concurrency_lines(rows)
    errors = [(r["papers"], k, v) for r in rows for k, v in r.items() if k.endswith("_error")]
    for papers, key, value in errors:
        lines.append(f"{papers:,} papers, {key}: {value}")
    default = results.get("default_answer")
    if default:
        lines += [
            f"Default answer mode (extractive with the judge model {default['judge_model']}): p50 "
            f"{default['p50_ms']} ms, p95 {default['p95_ms']} ms over {default['items']} golden items on the "
            f"built-in corpus (its own questions), taken from {default['source']} (finished {default['finished']}).",
            "",
        ]
    return lines


def eta_lines(rows: list[dict]) -> list[str]:
    """What `rag ingest` told the user against how long it then took (1.00 = exact, within 0.75-1.25 = ±25 %)."""
    timed = [r for r in rows if (r.get("eta") or {}).get("eta_vs_actual")]
    if not timed:
        return []
    shares = list(timed[0]["eta"]["eta_vs_actual"])
    lines = [
        "**Time left as `rag ingest` shows it, ÷ the time it then took** (1.00 = exact; ±25 % = 0.75–1.25). "
        "The up-front estimate is printed before embedding starts (from the first batch, or the last big "
        "ingest into the same index).",
        "",
        "| papers | up-front estimate ÷ actual | " + " | ".join(f"bar's ETA at {s} done" for s in shares) + " |",
        "|---|---|" + "---|" * len(shares),
    ]
    for r in timed:
        eta = r["eta"]
        upfront = eta.get("estimate_vs_actual")
        shown = " | ".join(f"{eta['eta_vs_actual'].get(s, '–')}" for s in shares)
        lines.append(f"| {r['papers']:,} | {upfront if upfront is not None else '–'} | {shown} |")
    return [*lines, ""]


def concurrency_lines(rows: list[dict]) -> list[str]:
    """Several client processes searching one `chroma run` at once."""
    served = [r for r in rows if r.get("server_concurrent")]
    if not served:
        return []
    lines = [
        "**Users at once against one `chroma run`** (each a client process with its own model, all searching "
        "together; the server and the clients share this machine's cores)",
        "",
        "| papers | clients | hybrid searches/s, all clients | p50 / p95 (ms) |",
        "|---|---|---|---|",
    ]
    for r in served:
        for c in r["server_concurrent"]:
            lines.append(f"| {r['papers']:,} | {c['clients']} | {c['searches_per_s']} | {_pair(c)} |")
    return [*lines, ""]
