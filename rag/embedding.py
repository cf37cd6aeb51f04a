"""Embedding backends: texts -> unit vectors, plus the embedder's own token counter for chunking."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.config import EmbeddingSettings
from rag.errors import RagError
from rag.model_folder import peek_model_folder, prepare_offline_env, resolve_model_path


class Embedder(Protocol):
    """What the index and retrieval need from an embedding model."""

    model_name: str
    backend: str  # the runtime that computes the vectors: torch, onnx, openvino
    precision: str  # fp32 or int8; an index never mixes the two
    dimension: int
    max_tokens: int  # the model reads at most this many tokens, special tokens included

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def pick_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """A sentence-transformers model; vectors are L2-normalised so cosine = dot product.

    The network loads on the first `embed`: a re-ingest that finds nothing new, or `rag stats`,
    reads the model's size and tokenizer from its folder and never imports torch.
    """

    backend = "torch"
    precision = "fp32"

    def __init__(self, settings: EmbeddingSettings) -> None:
        prepare_offline_env()
        self.model_name = settings.model
        self._settings = settings
        self._path = resolve_model_path(settings.model)
        self._model = None
        self._counter = None
        peeked = peek_model_folder(Path(self._path))
        if peeked is None:
            self._load()
        else:
            dimension, model_limit, self._counter = peeked
            self.dimension = dimension
            self.max_tokens = min(settings.max_tokens or model_limit, model_limit)

    def _load(self):  # -> SentenceTransformer
        if self._model is not None:
            return self._model
        from sentence_transformers import SentenceTransformer

        self.device = pick_device(self._settings.device)
        try:
            model = SentenceTransformer(self._path, device=self.device)
        except Exception as exc:  # noqa: BLE001 - any load failure means the same thing to the user
            raise RagError(
                f"cannot load embedding model '{self.model_name}' ({_first_line(exc)}); "
                "set embedding.model to a local sentence-transformers folder or a packaged model"
            ) from None
        self._model = model
        self.dimension = int(model.get_embedding_dimension())
        model_limit = int(model.max_seq_length)
        self.max_tokens = min(self._settings.max_tokens or model_limit, model_limit)
        if self._counter is None:
            # The fast tokenizer itself, without truncation: counting must see every token.
            self._counter = copy.deepcopy(model.tokenizer.backend_tokenizer)
            self._counter.no_truncation()
            self._counter.no_padding()
        return model

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._counter is None:
            self._load()
        return [len(encoding.ids) for encoding in self._counter.encode_batch(list(texts), add_special_tokens=True)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._load().encode(
            list(texts),
            batch_size=self._settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_embedder(settings: EmbeddingSettings) -> Embedder:
    match resolve_backend(settings):
        case "torch":
            return SentenceTransformerEmbedder(settings)
        case "onnx" | "openvino" as runtime:
            from rag.encoders import OnnxEmbedder

            return OnnxEmbedder(settings, resolve_model_path(settings.model), runtime)
    raise RagError(f"embedding.backend: unknown backend '{settings.backend}'")


def resolve_backend(settings: EmbeddingSettings) -> str:
    """`auto`: torch when a GPU is asked for or present, else onnxruntime (a chromadb dependency, so present).

    Decided without importing torch: a search in a fresh process should not pay for it.
    """
    if settings.backend != "auto":
        return settings.backend
    from rag.encoders import onnx_available

    wants_gpu = settings.device.startswith("cuda") or (settings.device == "auto" and _gpu_present())
    if wants_gpu and settings.precision == "fp32":
        return "torch"
    if onnx_available() and peek_model_folder(Path(resolve_model_path(settings.model))) is not None:
        return "onnx"
    if settings.precision == "int8":
        raise RagError("embedding.precision int8 needs onnxruntime (pip install onnxruntime) and a plain model folder")
    return "torch"


def _gpu_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()
