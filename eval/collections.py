"""Evaluation collections: which papers each golden split is asked over, and where their index lives.

The built-in corpus's splits (`dev`, `test`) use the index the config names. A second field keeps the
judge and the answer stage honest: `scifact-dev` and `scifact-test` are asked over 300 biomedical
abstracts of BEIR SciFact (non-commercial licence: the repository keeps only their ids,
`collections/scifact-300.ids`; the texts are read from the shared benchmark folder and ingested with
the ordinary `rag ingest` path into a cache folder the first time they are needed).

    python -m paper_rag_eval.collections scifact-300     # builds (once) and prints the index folder
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rag.errors import RagError

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Collection:
    name: str
    ids_file: Path  # the BEIR corpus ids, one a line
    corpus_env: str  # environment variable naming the BEIR folder
    corpus_default: Path  # the shared benchmark folder beside the repository

    def corpus_folder(self) -> Path:
        return Path(os.environ.get(self.corpus_env) or self.corpus_default)

    def index_path(self) -> Path:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cache / "paper-rag" / "collections" / self.name / "index"


COLLECTIONS = {
    "scifact-300": Collection(
        "scifact-300",
        HERE / "collections" / "scifact-300.ids",
        "RAG_SCIFACT_DIR",
        HERE.parent.parent / "shared" / "benchmarks" / "scifact",
    ),
}
# Which collection each golden split is asked over (None: the configured index, the built-in corpus).
SPLIT_COLLECTION: dict[str, str | None] = {
    "dev": None,
    "test": None,
    "scifact-dev": "scifact-300",
    "scifact-test": "scifact-300",
}


def write_subset(collection: Collection, out: Path) -> Path:
    """The collection's abstracts as BEIR JSONL (`_id`, `title`, `text`), read from the shared corpus."""
    corpus = collection.corpus_folder() / "corpus.jsonl"
    if not corpus.exists():
        raise RagError(f"{collection.name}: {corpus} not found; set {collection.corpus_env} to a BEIR SciFact folder")
    wanted = [line.strip() for line in collection.ids_file.read_text().splitlines() if line.strip()]
    keep = set(wanted)
    found: dict[str, str] = {}
    with corpus.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("_id") in keep:
                found[record["_id"]] = line if line.endswith("\n") else line + "\n"
    missing = keep - set(found)
    if missing:
        raise RagError(f"{collection.name}: {len(missing)} ids are not in {corpus} (e.g. {sorted(missing)[0]})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(found[i] for i in wanted), encoding="utf-8")
    return out


def ensure_index(name: str, progress=None) -> Path:
    """The collection's index folder, ingested on first use (and brought up to date if the ids changed)."""
    from rag.library import Library

    collection = COLLECTIONS[name]
    index = collection.index_path()
    subset = write_subset(collection, index.parent / f"{name}.jsonl")
    library = Library.from_config(overrides={"index.path": str(index)})
    report = library.ingest([subset], progress=progress if progress is not None else False)
    library.close_catalog()
    if report.problems:
        raise RagError(f"{collection.name}: ingest reported {len(report.problems)} problems")
    return index


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "scifact-300"
    print(ensure_index(target))
