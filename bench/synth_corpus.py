"""Synthetic paper corpora in the arXiv metadata-snapshot format, for scale benchmarks.

Each synthetic abstract recombines real abstract sentences (the built-in corpus, plus SciFact's
5,183 abstracts when found), so BM25 sees a real vocabulary and dense vectors real sentences; each
title splices the halves of two real titles. Output is one JSON object per line with the snapshot's
keys (id, submitter, authors, title, comments, journal-ref, doi, report-no, categories, license,
abstract, versions, update_date, authors_parsed); the same seed gives the same file.

  python bench/synth_corpus.py --papers 10000 --out /tmp/synth-10k.jsonl
  python bench/synth_corpus.py --pool-texts .gpu/pool    # the pool's sentences, for bench/gpu_vectors.py embed
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.chunking import split_sentences  # noqa: E402
from rag.sources import builtin_corpus_paths, load_corpus  # noqa: E402
from rag.textclean import clean_text  # noqa: E402

CATEGORIES = ["cs.CV", "cs.CL", "cs.LG", "cs.AI", "cs.IR", "q-bio.GN", "q-bio.NC", "stat.ML", "eess.IV", "cs.RO"]
SURNAMES = ["Chen", "Garcia", "Okafor", "Ivanova", "Nakamura", "Schmidt", "Haddad", "Silva", "Kowalski", "Nguyen"]
INITIALS = "ABCDEFGHJKLMNPRSTVWY"


def find_scifact() -> Path | None:
    for candidate in (ROOT.parent / "shared/benchmarks/scifact", Path("/work/shared/benchmarks/scifact")):
        if (candidate / "corpus.jsonl").is_file():
            return candidate
    return None


@dataclass
class SentencePool:
    """Real abstract sentences and titles to recombine."""

    openers: list[str]  # first sentences of abstracts
    sentences: list[str]  # every other sentence
    titles: list[str]

    @property
    def all_sentences(self) -> list[str]:
        return list(dict.fromkeys(self.openers + self.sentences))


def load_pool(scifact: Path | None) -> SentencePool:
    openers: list[str] = []
    sentences: list[str] = []
    titles: list[str] = []

    def add(title: str, abstract: str) -> None:
        parts = [" ".join(s.split()) for s in split_sentences(clean_text(abstract))]
        parts = [s for s in parts if 30 <= len(s) <= 400]
        if len(parts) < 2:
            return
        titles.append(clean_text(title))
        openers.append(parts[0])
        sentences.extend(parts[1:])

    for paper in load_corpus(builtin_corpus_paths()).papers:
        add(paper.title, paper.abstract)
    if scifact is not None:
        with (scifact / "corpus.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                add(row.get("title", ""), row.get("text", ""))
    return SentencePool(openers, sentences, titles)


def synthetic_papers(pool: SentencePool, count: int, seed: int = 13) -> Iterator[dict]:
    """`count` snapshot records, deterministic for a seed; ids are unique arXiv-style YYMM.NNNNN."""
    rng = random.Random(seed)
    per_month: dict[str, int] = {}
    for _ in range(count):
        year, month = rng.randint(2015, 2026), rng.randint(1, 12)
        yymm = f"{year % 100:02d}{month:02d}"
        per_month[yymm] = per_month.get(yymm, 0) + 1
        paper_id = f"{yymm}.{per_month[yymm]:05d}"
        first, second = rng.choice(pool.titles).split(), rng.choice(pool.titles).split()
        title = " ".join(first[: max(1, len(first) // 2)] + second[len(second) // 2 :])
        body = [rng.choice(pool.openers)] + rng.sample(pool.sentences, rng.randint(3, 8))
        authors = [(rng.choice(SURNAMES), rng.choice(INITIALS) + ".") for _ in range(rng.randint(1, 6))]
        categories = " ".join(rng.sample(CATEGORIES, rng.randint(1, 3)))
        date = f"{year}-{month:02d}-{rng.randint(1, 28):02d}"
        yield {
            "id": paper_id,
            "submitter": f"{authors[0][1]} {authors[0][0]}",
            "authors": ", ".join(f"{initial} {surname}" for surname, initial in authors),
            "title": title,
            "comments": f"{rng.randint(6, 40)} pages",
            "journal-ref": None,
            "doi": None,
            "report-no": None,
            "categories": categories,
            "license": "http://creativecommons.org/licenses/by/4.0/",
            "abstract": " ".join(body),
            "versions": [{"version": "v1", "created": date}],
            "update_date": date,
            "authors_parsed": [[surname, initial, ""] for surname, initial in authors],
        }


def write_corpus(pool: SentencePool, count: int, out: Path, seed: int = 13) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for record in synthetic_papers(pool, count, seed):
            handle.write(json.dumps(record) + "\n")
    return out


def write_pool_texts(pool: SentencePool, folder: Path) -> Path:
    """The pool's sentences as texts.json.gz, the input of `bench/gpu_vectors.py embed`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "texts.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump(pool.all_sentences, handle)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--papers", type=int, default=10000)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--scifact", type=Path, default=None, help="BEIR SciFact folder (default: ../shared)")
    parser.add_argument("--no-scifact", action="store_true", help="recombine the built-in corpus only")
    parser.add_argument("--pool-texts", type=Path, help="write the pool's sentences to FOLDER/texts.json.gz")
    args = parser.parse_args()
    pool = load_pool(None if args.no_scifact else (args.scifact or find_scifact()))
    print(f"pool: {len(pool.titles)} abstracts, {len(pool.all_sentences)} sentences", file=sys.stderr)
    if args.pool_texts:
        print(write_pool_texts(pool, args.pool_texts))
    if args.out:
        print(write_corpus(pool, args.papers, args.out, args.seed))


if __name__ == "__main__":
    main()
