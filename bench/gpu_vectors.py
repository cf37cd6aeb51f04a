"""Embed a big corpus on a GPU machine, then ingest it here with those vectors.

On 2 CPU cores MiniLM embeds SciFact (5,183 abstracts: ~13k chunks and ~50k sentences) in over an
hour; a GPU does it in seconds. Three steps, the middle one on the GPU machine:

  python bench/gpu_vectors.py texts CORPUS.jsonl work/            # here: the exact texts ingest would embed
  python3 bench/gpu_vectors.py embed work/ MODEL_DIR work/out/      # GPU machine: plain sentence-transformers
  python bench/gpu_vectors.py ingest CORPUS.jsonl work/ work/out/ --index DIR   # here: ingest, vectors looked up

The `embed` step imports only sentence-transformers and numpy, so it runs on a bare GPU image. Vectors
travel as float16 and are re-normalised here; texts not found (none, normally) are embedded locally.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

PART_ROWS = 15000  # 15000 x 384 float16 = 11.5 MB per file


def _texts(args) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rag.chunking import ChunkPlan, chunk_paper, tiktoken_counter
    from rag.config import load_settings
    from rag.embedding import load_embedder
    from rag.ingest import sentences_of
    from rag.sources import load_corpus

    settings = load_settings(overrides={"index.path": "/tmp/unused"})
    embedder = load_embedder(settings.embedding)
    plan = ChunkPlan(
        chunk_tokens=settings.chunking.chunk_tokens,
        overlap_tokens=settings.chunking.overlap_tokens,
        embed_limit=embedder.max_tokens,
        prepend_title=settings.chunking.prepend_title,
    )
    corpus = load_corpus([Path(args.corpus)])
    count = tiktoken_counter()
    texts: dict[str, None] = {}
    for paper in corpus.papers:
        chunks = chunk_paper(paper, plan, count, embedder.count_tokens)
        for chunk in chunks:
            texts[chunk.embed_text] = None
        for _, _, sentence in sentences_of(chunks):
            texts[sentence] = None
    out = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / "texts.json.gz", "wt", encoding="utf-8") as handle:
        json.dump(list(texts), handle)
    print(f"{len(corpus.papers)} papers -> {len(texts)} unique texts in {out / 'texts.json.gz'}")


def _embed(args) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    with gzip.open(Path(args.work) / "texts.json.gz", "rt", encoding="utf-8") as handle:
        texts = json.load(handle)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(args.model_dir, device=device)
    model.encode(texts[:512], batch_size=256)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, len(texts), PART_ROWS)):
        np.save(out / f"vectors-{part:02d}.npy", vectors[start : start + PART_ROWS].astype(np.float16))
    info = {
        "texts": len(texts),
        "seconds": round(seconds, 2),
        "texts_per_s": round(len(texts) / seconds, 1),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "weights_dtype": str(next(model.parameters()).dtype),
    }
    (out / "embed.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info))


class StandInEmbedder:
    """Stands in for the real embedder at ingest: its identity and tokenizer, vectors from elsewhere."""

    def __init__(self, base) -> None:
        self._base = base
        self.model_name = base.model_name
        self.backend = base.backend
        self.precision = base.precision
        self.dimension = base.dimension
        self.max_tokens = base.max_tokens

    def count_tokens(self, texts):
        return self._base.count_tokens(texts)


class PrecomputedEmbedder(StandInEmbedder):
    """Vectors computed elsewhere (a GPU), looked up by text; the real model embeds any text not found."""

    def __init__(self, base, table: dict[str, np.ndarray]) -> None:
        super().__init__(base)
        self._table = table
        self.misses = 0

    def embed(self, texts):
        missing = [t for t in texts if t not in self._table]
        if missing:
            self.misses += len(missing)
            self._table.update(zip(missing, self._base.embed(missing), strict=True))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._table[t] for t in texts]).astype(np.float32)


def _ingest(args) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rag.config import load_settings
    from rag.embedding import load_embedder
    from rag.library import Library

    with gzip.open(Path(args.work) / "texts.json.gz", "rt", encoding="utf-8") as handle:
        texts = json.load(handle)
    parts = sorted(Path(args.vectors).glob("vectors-*.npy"))
    matrix = np.concatenate([np.load(p).astype(np.float32) for p in parts])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    if len(matrix) != len(texts):
        raise SystemExit(f"{len(texts)} texts but {len(matrix)} vectors: re-run the embed step")
    settings = load_settings(overrides={"index.path": args.index})
    embedder = PrecomputedEmbedder(load_embedder(settings.embedding), dict(zip(texts, matrix, strict=True)))
    library = Library(settings, embedder)
    started = time.perf_counter()
    report = library.ingest([Path(args.corpus)], progress=True)
    print(
        f"ingested {report.papers_embedded} papers ({report.chunks_embedded} chunks) in "
        f"{time.perf_counter() - started:.1f}s; {embedder.misses} texts embedded locally"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    texts = steps.add_parser("texts")
    texts.add_argument("corpus")
    texts.add_argument("work")
    embed = steps.add_parser("embed")
    embed.add_argument("work")
    embed.add_argument("model_dir")
    embed.add_argument("out")
    ingest = steps.add_parser("ingest")
    ingest.add_argument("corpus")
    ingest.add_argument("work")
    ingest.add_argument("vectors")
    ingest.add_argument("--index", required=True)
    args = parser.parse_args()
    {"texts": _texts, "embed": _embed, "ingest": _ingest}[args.step](args)


if __name__ == "__main__":
    main()
