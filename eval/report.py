"""Writing an eval report: report.json (everything, per item) and report.md with two PNG charts."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json"]
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    charts = _charts(report, out)
    (out / "report.md").write_text(markdown(report, [c.name for c in charts]), encoding="utf-8")
    return written + [out / "report.md", *charts]


def markdown(report: dict, charts: list[str]) -> str:
    meta, summary = report["meta"], report["summary"]
    lines = [
        f"# Eval report: {Path(meta['golden']).name} ({meta['mode']} mode)",
        "",
        f"- finished {meta['finished']}, {meta['items']} items ({meta['resumed_items']} taken from an interrupted run)",
        f"- model `{meta['model']}`, prompt `{meta['prompt_version']}`, embeddings `{meta['embedding_model']}`, "
        f"retrieval `{meta['retrieval_mode']}`, index `{meta['index_fingerprint']}`",
        "",
        "## Retrieval (answerable items)",
        "",
        "| kind | items | hit@1 | hit@5 | recall@10 | MRR |",
        "|---|---|---|---|---|---|",
    ]
    rows = [("all", summary["retrieval"])] + list(summary["retrieval_by_kind"].items())
    for kind, m in rows:
        if m.get("items"):
            lines.append(
                f"| {kind} | {m['items']} | {m['hit@1']:.3f} | {m['hit@5']:.3f} "
                f"| {m['recall@10']:.3f} | {m['mrr']:.3f} |"
            )
    if "answer" in summary:
        lines += [
            "",
            "## Answers",
            "",
            "| kind | items | pass | cites gold | citation P | citation R | facts | refused (unanswerable) "
            "| false refusals | grounded | p50 ms | p95 ms |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        answerable_cols = ("cites_expected_paper", "citation_precision", "citation_recall", "must_include_rate")
        for kind, m in [("all", summary["answer"]), *summary["answer_by_kind"].items()]:

            def cell(name: str, kind: str = kind, m: dict = m) -> str:
                # a rate with nothing to count for this kind is shown as a dash, not as 0
                if kind == "unanswerable" and name in (*answerable_cols, "false_refusal_rate", "mean_grounded"):
                    return "–"
                if kind not in ("all", "unanswerable") and name == "refusal_accuracy_unanswerable":
                    return "–"
                return f"{m[name]:.3f}"

            lines.append(
                f"| {kind} | {m['items']} | {m['pass_rate']:.3f} | {cell('cites_expected_paper')} "
                f"| {cell('citation_precision')} | {cell('citation_recall')} | {cell('must_include_rate')} "
                f"| {cell('refusal_accuracy_unanswerable')} | {cell('false_refusal_rate')} "
                f"| {cell('mean_grounded')} | {m['p50_total_ms']:.0f} | {m['p95_total_ms']:.0f} |"
            )
    lines += ["", *[f"![{name}]({name})" for name in charts]]
    failed = [r for r in report["items"] if _failed(r)]
    if failed:
        lines += ["", "## Items that did not pass", ""]
        for record in failed:
            got = (record.get("answer") or "")[:120].replace("\n", " ")
            top = record["retrieved_titles"][0][:60] if record["retrieved_titles"] else "-"
            lines.append(f"- `{record['id']}` ({record['kind']}) {record['question'][:90]} — top: {top}; answer: {got}")
    return "\n".join(lines) + "\n"


def _failed(record: dict) -> bool:
    scores = record["scores"]
    answer = scores.get("answer")
    if answer is not None:
        if answer["answerable"]:
            return answer["refused"] or not answer["cites_expected"] or answer["facts_found"] < answer["facts_total"]
        return not answer["refused"]
    retrieval = scores.get("retrieval")
    return retrieval is not None and retrieval["hit@5"] < 1.0


def _charts(report: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    paths = []
    kinds = [k for k, m in summary["retrieval_by_kind"].items() if m.get("items")]
    answer_by_kind = summary.get("answer_by_kind", {})
    all_kinds = sorted(set(kinds) | set(answer_by_kind))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.38
    xs = range(len(all_kinds))
    ax.bar(
        [x - width / 2 for x in xs],
        [summary["retrieval_by_kind"].get(k, {}).get("hit@5", 0) for k in all_kinds],
        width,
        label="retrieval hit@5",
    )
    if answer_by_kind:
        ax.bar(
            [x + width / 2 for x in xs],
            [answer_by_kind.get(k, {}).get("pass_rate", 0) for k in all_kinds],
            width,
            label="answer pass rate",
        )
    ax.set_xticks(list(xs), all_kinds)
    ax.set_ylim(0, 1.05)
    ax.set_title("Metrics by question kind")
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths.append(out / "metrics_by_kind.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    key = "total_ms" if answer_by_kind else "retrieve_ms"
    latencies = [r["timings"].get(key, 0.0) for r in report["items"]]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.hist(latencies, bins=min(30, max(5, len(latencies) // 3)))
    ax.set_xlabel(f"{key} per item")
    ax.set_ylabel("items")
    ax.set_title("Latency distribution")
    fig.tight_layout()
    paths.append(out / "latency.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
