"""Encoder backends against the real packaged MiniLM: the ONNX export, its cache, and what an index records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.config import EmbeddingSettings, load_settings
from rag.embedding import SentenceTransformerEmbedder, load_embedder, resolve_backend
from rag.encoders import ensure_export
from rag.errors import ConfigError, IndexStoreError
from tests.conftest import make_library, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def texts(seed_corpus):
    papers = seed_corpus.papers[:12]
    return [f"{p.title}\n{p.abstract}" for p in papers] + [p.title for p in papers] + ["a", "short question?"]


@pytest.fixture(scope="module")
def torch_vectors(texts):
    return SentenceTransformerEmbedder(EmbeddingSettings(backend="torch")).embed(texts)


def test_auto_is_onnxruntime_on_a_cpu():
    assert resolve_backend(EmbeddingSettings(device="cpu")) == "onnx"
    assert resolve_backend(EmbeddingSettings(backend="torch")) == "torch"


def test_onnx_fp32_vectors_are_the_torch_vectors(texts, torch_vectors, embedder):
    assert (embedder.backend, embedder.precision) == ("onnx", "fp32")
    vectors = embedder.embed(texts)
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    assert np.abs(vectors - torch_vectors).max() < 1e-5
    # Batching and padding do not change a text's vector.
    assert np.abs(embedder.embed(texts[3:4])[0] - vectors[3]).max() < 1e-5
    assert embedder.count_tokens(["hello world"]) == [4]


def test_int8_vectors_are_close_but_not_the_same(tmp_path, texts, torch_vectors):
    int8 = load_embedder(EmbeddingSettings(precision="int8"))
    assert (int8.backend, int8.precision) == ("onnx", "int8")
    vectors = int8.embed(texts)
    cosines = (vectors * torch_vectors).sum(axis=1)
    assert cosines.min() > 0.95 and np.abs(vectors - torch_vectors).max() > 1e-3


def test_export_is_cached_with_checksums_and_remade_when_damaged(tmp_path):

    from rag.embedding import resolve_model_path

    folder = Path(resolve_model_path("all-MiniLM-L6-v2"))
    first = ensure_export(folder, tmp_path, "fp32")
    manifest = json.loads(first.with_suffix(".json").read_text())
    assert manifest["precision"] == "fp32" and len(manifest["source"]["sha256"]) == 64
    made = first.stat().st_mtime_ns
    assert ensure_export(folder, tmp_path, "fp32") == first and first.stat().st_mtime_ns == made  # reused
    with first.open("r+b") as handle:  # damage the export: it must be made again, not loaded
        handle.seek(1000)
        handle.write(b"\0" * 64)
    again = ensure_export(folder, tmp_path, "fp32")
    from rag.encoders import _sha256

    assert (
        _sha256(again)
        == json.loads(again.with_suffix(".json").read_text())["onnx"]["sha256"]
        == manifest["onnx"]["sha256"]
    )


def test_int8_with_torch_is_a_config_error():
    with pytest.raises(ConfigError, match="int8 needs backend onnx"):
        load_settings(env={}, overrides={"embedding.backend": "torch", "embedding.precision": "int8"})


def test_index_refuses_to_mix_int8_and_fp32_vectors(tmp_path, embedder, seed_corpus):
    corpus = write_jsonl(tmp_path / "small.jsonl", seed_corpus.papers[:4])
    library = make_library(tmp_path / "idx", embedder)
    library.ingest([corpus], progress=False)
    assert library.stats().precision == "fp32"
    quantized = make_library(tmp_path / "idx", **{"embedding.precision": "int8"})
    for attempt in (lambda: quantized.search("anything"), lambda: quantized.ingest([corpus], progress=False)):
        with pytest.raises(IndexStoreError) as err:
            attempt()
        message = str(err.value)
        assert "fp32" in message and "int8" in message and "--rebuild" in message and "\n" not in message
    assert quantized.ingest([corpus], rebuild=True, progress=False).papers_embedded == 4
    assert quantized.stats().precision == "int8"
    assert quantized.search(seed_corpus.papers[2].title, k=1)[0].title == seed_corpus.papers[2].title
    # A torch fp32 encoder may read an index built by onnxruntime fp32 (same vectors to ~1e-6).
    torch_library = make_library(tmp_path / "idx2", **{"embedding.backend": "torch"})
    library2 = make_library(tmp_path / "idx2", embedder)
    library2.ingest([corpus], progress=False)
    assert torch_library.search(seed_corpus.papers[1].title, k=1)[0].title == seed_corpus.papers[1].title


ROOT_LOGGER_PROBE = """
import logging, sys
root = logging.getLogger()
before = (root.level, list(root.handlers), list(root.filters))
import rag, rag.cli, rag.library, rag.answering, rag.service, rag.integrations.llama_index
from rag.config import EmbeddingSettings
from rag.embedding import load_embedder
embedder = load_embedder(EmbeddingSettings(precision="int8", cache_dir=sys.argv[1]))
embedder.embed(["a question about visual tokens"])
after = (root.level, list(root.handlers), list(root.filters))
print(before == after, before, after)
"""


def test_importing_rag_and_making_an_int8_encoder_leave_the_root_logger_alone(tmp_path):
    """A library never configures the root logger; the int8 quantizer used to set its level to ERROR."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", ROOT_LOGGER_PROBE, str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("True "), done.stdout
    assert (next(tmp_path.glob("*/model-int8.onnx"))).is_file()  # the quantizer did run
