"""Throughput of the user's-library readers: PDF pages/s (first page only vs full text), BibTeX and RIS entries/s.

Fixtures are generated here (reportlab PDFs like the tests', a .bib and a .ris of synthetic
entries with accents, macros and nested braces). Reading is measured alone (files -> Paper
records), then a full `Library.ingest` of the PDFs both ways, embedding included, on this machine.

    .venv/bin/python bench/readers_bench.py [--pdfs 30] [--pages 8] [--entries 5000]
    # writes bench/results/readers.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
OUT = REPO / "bench" / "results"

SENTENCES = [
    "Multimodal models read hundreds of visual tokens for every image they see.",
    "We drop the tokens once the model has absorbed what it needs from them.",
    "On eleven benchmarks the accuracy stays within half a point of the full model.",
    "The method needs no retraining and works with any decoder-only language model.",
    "Ablations show that the exit layer matters more than the pruning ratio.",
]


def make_pdfs(folder: Path, count: int, pages: int) -> list[Path]:
    from tests.pdfs import write_paper_pdf

    paths = []
    for i in range(count):
        body = [" ".join(SENTENCES[(i + j) % 5] for j in range(6)) for _ in range(12)]
        paths.append(
            write_paper_pdf(
                folder / f"paper{i:03d}.pdf",
                title=f"Paper {i}: Dynamic Token Exit for Efficient Multimodal Models",
                abstract=" ".join(SENTENCES) + f" Variant {i}.",
                body=body,
                arxiv_stamp=f"arXiv:2501.{i:05d}v1 [cs.CV] 7 Jan 2025",
                pages=pages,
            )
        )
    return paths


def make_bib(path: Path, entries: int) -> Path:
    parts = ['@string{conf = "Conference on Things"}\n']
    for i in range(entries):
        parts.append(
            f'@inproceedings{{key{i},\n  title = {{{{Dyn{{A}}mic}} Token Exit {i} f{{\\"u}}r {{MLLMs}}}},\n'
            f"  author = {{M{{\\\"u}}ller, Jana and Fran{{\\c c}}ois, Jos{{\\'e}} and others}},\n"
            f'  booktitle = conf # " 2024", year = 2024, month = may, doi = {{10.1000/x{i}}},\n'
            f"  abstract = {{{' '.join(SENTENCES)} About 18\\% of tokens remain.}},\n}}\n"
        )
    path.write_text("".join(parts), encoding="utf-8")
    return path


def make_ris(path: Path, entries: int) -> Path:
    parts = []
    for i in range(entries):
        parts.append(
            f"TY  - JOUR\nTI  - Token Exit {i}\nAU  - Müller, Jana\nPY  - 2024///\nJO  - Journal of Things\n"
            f"DO  - 10.1000/r{i}\nAB  - {' '.join(SENTENCES)}\nER  - \n\n"
        )
    path.write_text("".join(parts), encoding="utf-8")
    return path


def read_rate(paths: list[Path], options, unit_count: int) -> dict:
    from rag.sources import load_corpus

    t0 = time.perf_counter()
    corpus = load_corpus(paths, options)
    seconds = time.perf_counter() - t0
    assert not corpus.problems, corpus.problems[:3]
    return {"papers": len(corpus.papers), "seconds": round(seconds, 3), "per_s": round(unit_count / seconds, 1)}


def ingest_rate(paths: list[Path], full_text: bool, index: Path) -> dict:
    from rag.library import Library

    library = Library.from_config(overrides={"index.path": str(index), "sources.pdf_full_text": full_text})
    library.embedder.embed(["warm-up"])
    report = library.ingest(paths, progress=False)
    return {
        "papers": report.papers_embedded,
        "chunks": report.chunks_embedded,
        "seconds": round(report.seconds, 1),
        "embed_seconds": round(report.embed_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pdfs", type=int, default=30)
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--ingest-pdfs", type=int, default=10, help="PDFs for the end-to-end ingest (0: skip)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rag.config import SourcesSettings

    results: dict = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pdfs = make_pdfs(folder, args.pdfs, args.pages)
        first = read_rate(pdfs, SourcesSettings(pdf_full_text=False), args.pdfs)
        # first-page-only reads the first two pages (running heads are told apart by repeating)
        first["pages_per_s"] = round(2 * args.pdfs / first["seconds"], 1)
        full = read_rate(pdfs, SourcesSettings(pdf_full_text=True), args.pdfs)
        full["pages_per_s"] = round(args.pages * args.pdfs / full["seconds"], 1)
        results["pdf_read"] = {"pdfs": args.pdfs, "pages_each": args.pages, "first_page": first, "full_text": full}
        bib = make_bib(folder / "refs.bib", args.entries)
        results["bibtex_read"] = {"entries": args.entries, **read_rate([bib], None, args.entries)}
        ris = make_ris(folder / "refs.ris", args.entries)
        results["ris_read"] = {"entries": args.entries, **read_rate([ris], None, args.entries)}
        if args.ingest_pdfs:
            subset = pdfs[: args.ingest_pdfs]
            results["pdf_ingest"] = {
                "pdfs": len(subset),
                "first_page": ingest_rate(subset, False, folder / "idx-first"),
                "full_text": ingest_rate(subset, True, folder / "idx-full"),
            }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "readers.json").write_text(json.dumps(results, indent=2) + "\n")
    pdf = results["pdf_read"]
    lines = [
        f"Reading only (files -> papers), {results['cpus']} CPUs:",
        "",
        "| input | rate |",
        "|---|---|",
        f"| PDF, first page only ({pdf['pdfs']} PDFs) | {pdf['first_page']['per_s']} PDFs/s "
        f"({pdf['first_page']['pages_per_s']} pages/s) |",
        f"| PDF, full text ({pdf['pdfs']} x {pdf['pages_each']} pages) | {pdf['full_text']['pages_per_s']} pages/s |",
        f"| BibTeX ({args.entries} entries) | {results['bibtex_read']['per_s']} entries/s |",
        f"| RIS ({args.entries} records) | {results['ris_read']['per_s']} records/s |",
    ]
    if "pdf_ingest" in results:
        ing = results["pdf_ingest"]
        lines += [
            "",
            f"Ingest with embedding ({ing['pdfs']} PDFs):",
            "",
            "| mode | chunks | seconds (embedding) |",
            "|---|---|---|",
        ]
        for mode in ("first_page", "full_text"):
            row = ing[mode]
            lines.append(f"| {mode.replace('_', ' ')} | {row['chunks']} | {row['seconds']} ({row['embed_seconds']}) |")
    (OUT / "readers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
