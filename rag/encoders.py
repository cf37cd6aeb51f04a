"""The encoder without PyTorch at run time: an ONNX export of a sentence-transformers model, run by
onnxruntime (`embedding.backend: onnx`) or OpenVINO (`openvino`).

The export is made once from the same weights (torch is needed for that step only), optionally
quantized to int8, and kept in `embedding.cache_dir` with a manifest: the sha256 of the weights it
was made from, its own sha256 and the recipe. A file whose size or time changed is re-hashed, and
one that no longer matches is made again, so a damaged or stale export is never used. Vectors are
the same computation sentence-transformers does (tokenize with the model's own tokenizer, mean or
CLS pooling, L2 normalisation): fp32 exports agree with torch to ~1e-6.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.config import EmbeddingSettings
from rag.errors import RagError

# Bumped whenever the export steps change, so old exports are made again.
EXPORT_RECIPE = "torchscript-opset17-eager/v1"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

log = logging.getLogger(__name__)


class OnnxEmbedder:
    """A transformer + pooling sentence-transformers model, run from its ONNX export."""

    def __init__(self, settings: EmbeddingSettings, model_path: str, runtime: str = "onnx") -> None:
        from rag.model_folder import peek_model_folder, prepare_offline_env

        prepare_offline_env()
        self.model_name = settings.model
        self.backend = runtime
        self.precision = settings.precision
        self._settings = settings
        self._folder = Path(model_path)
        peeked = peek_model_folder(self._folder)
        if peeked is None:
            raise RagError(
                f"embedding.backend {runtime}: '{settings.model}' is not a plain transformer + pooling model "
                "folder; use embedding.backend torch"
            )
        self.dimension, model_limit, self._counter = peeked
        self.max_tokens = min(settings.max_tokens or model_limit, model_limit)
        self._pooling = _pooling_mode(self._folder)
        self._truncating = _truncating_tokenizer(self._folder, model_limit)
        self._run = None  # (ids, mask, types) -> last hidden state; made on the first embed

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=True)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        run = self._runner()
        encodings = self._truncating.encode_batch(list(texts), add_special_tokens=True)
        # Longest first, in batches of similar length: little padding, as sentence-transformers does.
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        size = self._settings.batch_size
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            width = len(encodings[rows[0]].ids)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for r, row in enumerate(rows):
                e = encodings[row]
                ids[r, : len(e.ids)] = e.ids
                mask[r, : len(e.ids)] = 1
                types[r, : len(e.ids)] = e.type_ids
            hidden = run(ids, mask, types)
            if self._pooling == "cls":
                pooled = hidden[:, 0]
            else:
                pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[rows] = pooled / np.maximum(norms, 1e-12)
        return out

    def _runner(self):
        if self._run is None:
            path = ensure_export(self._folder, Path(self._settings.cache_dir), self.precision)
            threads = self._settings.threads or os.cpu_count() or 1
            self._run = _openvino_runner(path, threads) if self.backend == "openvino" else _ort_runner(path, threads)
        return self._run


def _ort_runner(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        # Same courtesy as llama.cpp's threads: on a shared CPU, idle workers sleep instead of spinning.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}

    def run(ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return session.run(None, {k: v for k, v in feed.items() if k in names})[0]

    return run


def _openvino_runner(path: Path, threads: int):
    try:
        import openvino as ov
    except ImportError:
        raise RagError("embedding.backend openvino needs the openvino package: pip install -e '.[openvino]'") from None
    compiled = ov.Core().compile_model(
        str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    )
    request = compiled.create_infer_request()
    names = {name for port in compiled.inputs for name in port.get_names()}
    output = compiled.output(0)

    def run(ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return request.infer({k: v for k, v in feed.items() if k in names})[output]

    return run


def onnx_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


# --- the export and its cache ------------------------------------------------------------------------


def ensure_export(folder: Path, cache_dir: Path, precision: str) -> Path:
    """The verified ONNX file for this model folder and precision, made once."""
    weights = next((folder / name for name in _WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise RagError(f"embedding: no {' or '.join(_WEIGHT_FILES)} in {folder} to export to ONNX")
    slug = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    target_dir = Path(os.path.expanduser(cache_dir)) / f"{folder.name}-{slug}"
    target = target_dir / f"model-{precision}.onnx"
    manifest_path = target.with_suffix(".json")
    manifest = _read_json(manifest_path)
    source_sha = _stamped_sha(weights, manifest.get("source"))
    if (
        manifest.get("recipe") == EXPORT_RECIPE
        and manifest.get("source", {}).get("sha256") == source_sha
        and target.is_file()
        and _stamped_sha(target, manifest.get("onnx")) == manifest.get("onnx", {}).get("sha256")
    ):
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}.onnx")
    try:
        if precision == "int8":
            fp32 = ensure_export(folder, cache_dir, "fp32")
            _quantize_int8(fp32, partial)
        else:
            log.info("exporting %s to ONNX in %s", folder.name, target_dir)
            _export_fp32(folder, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    manifest = {
        "recipe": EXPORT_RECIPE,
        "precision": precision,
        "source": _stamp(weights, source_sha),
        "onnx": _stamp(target, _sha256(target)),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return target


def _export_fp32(folder: Path, out: Path) -> None:
    try:
        import torch
        from transformers import AutoModel
    except ImportError:
        raise RagError("making the ONNX export of the encoder needs torch and transformers (once)") from None

    model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    names = ["input_ids", "attention_mask", "token_type_ids"]
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden(model),
            (sample, (sample > 0).long(), torch.zeros_like(sample)),
            str(out),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )


def _quantize_int8(source: Path, out: Path) -> None:
    """Dynamic per-channel int8 weights, made in a child process.

    onnxruntime's quantizer logs through the root logger (`logging.warning(...)`, which also installs a
    handler on it when it has none); a library must leave the root logger to the application, so the
    quantizer runs apart and what it says goes to this module's logger at DEBUG.
    """
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("onnx") is None:
        raise RagError("embedding.precision int8 needs the onnx package: pip install onnx")
    log.info("quantizing %s to int8", source.name)
    done = subprocess.run(
        [sys.executable, "-c", _QUANTIZE, str(source), str(out)], capture_output=True, text=True, check=False
    )
    for line in done.stderr.splitlines():
        log.debug("onnxruntime quantizer: %s", line)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RagError(f"embedding.precision int8: quantizing {source} failed ({last})")


_QUANTIZE = """
import sys
from onnxruntime.quantization import QuantType, quantize_dynamic
quantize_dynamic(
    sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8, per_channel=True,
    extra_options={"DefaultTensorType": 1},  # FLOAT, for tensors shape inference cannot type
)
"""


def _pooling_mode(folder: Path) -> str:
    modules = json.loads((folder / "modules.json").read_text())
    pooling = next(m for m in modules if m.get("type", "").endswith("Pooling"))
    config = json.loads((folder / pooling["path"] / "config.json").read_text())
    if config.get("pooling_mode_cls_token"):
        return "cls"
    if config.get("pooling_mode_mean_tokens", True):
        return "mean"
    raise RagError(f"embedding: pooling in {folder} is neither mean nor CLS; use embedding.backend torch")


def _truncating_tokenizer(folder: Path, limit: int):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()  # some tokenizer.json files pad to a fixed length; batches are padded here
    tokenizer.enable_truncation(max_length=limit)
    return tokenizer


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path, sha256: str) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def _stamped_sha(path: Path, stamp: dict | None) -> str:
    """The file's sha256, re-hashed only when its size or modification time differ from the stamp."""
    st = path.stat()
    if stamp and stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns and "sha256" in stamp:
        return stamp["sha256"]
    return _sha256(path)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
