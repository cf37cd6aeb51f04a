"""The evaluated prompt prefix that requests share, kept on disk so a new process need not read it again.

Nothing here knows the prompt text. After each request the token sequence in llama.cpp's KV cache
is compared with the previous request's (also kept on disk, so two one-shot `rag ask` runs teach
it too); when they share a prefix of at least `MIN_TOKENS` that is not yet saved, the KV cache is
cut back to that prefix and written with llama.cpp's own state file. On load the file is
restored, and llama-cpp-python's prefix matching then evaluates only the tokens after it. The
file's name carries everything its contents depend on (the model file, context size, batch and
attention settings, the llama.cpp build), so a stale state is never loaded; a file llama.cpp
rejects is deleted.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from rag.config import LLMSettings

MIN_TOKENS = 32  # shorter shared prefixes are not worth a file
_KEEP_TOKENS = 8192  # at most this much of the last sequence is remembered


class PrefixStateCache:
    def __init__(self, folder: Path, key: str) -> None:
        self.state_path = folder / f"{key}.state"
        self._last_path = folder / f"{key}.last.json"
        self.saved: tuple[int, ...] = ()  # the tokens whose state is in the file

    @classmethod
    def for_model(cls, llama, model_path: Path, settings: LLMSettings) -> PrefixStateCache:
        import llama_cpp

        st = Path(model_path).stat()
        identity = "|".join(
            str(part)
            for part in (
                Path(model_path).resolve(),
                st.st_size,
                st.st_mtime_ns,
                llama.n_ctx(),
                settings.n_batch,
                settings.n_ubatch,
                settings.flash_attn,
                getattr(llama_cpp, "__version__", "?"),
            )
        )
        key = f"{Path(model_path).stem}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
        return cls(Path(os.path.expanduser(settings.model_dir)) / "prompt-cache", key)

    def restore(self, llama) -> int:
        """Load the saved prefix into a freshly loaded model; the number of tokens restored (0 if none)."""
        import llama_cpp

        if not self.state_path.is_file():
            return 0
        capacity = llama.n_ctx()
        tokens = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        ok = llama_cpp.llama_state_load_file(
            llama._ctx.ctx, str(self.state_path).encode(), tokens, capacity, ctypes.byref(count)
        )
        if not ok or not 0 < count.value <= capacity:
            self.state_path.unlink(missing_ok=True)
            llama.reset()
            return 0
        n = count.value
        llama.input_ids[:n] = tokens[:n]
        llama.n_tokens = n
        self.saved = tuple(tokens[:n])
        return n

    def remember(self, llama) -> None:
        """After a request: learn the prefix it shares with the previous one, and save it when it is new."""
        import llama_cpp

        sequence = [int(t) for t in llama.input_ids[: llama.n_tokens]]
        previous = _read_tokens(self._last_path)
        _write_tokens(self._last_path, sequence[:_KEEP_TOKENS])
        shared = _common_prefix(previous, sequence)
        if shared < MIN_TOKENS or shared >= len(sequence) or tuple(sequence[:shared]) == self.saved:
            return
        if not llama._ctx.kv_cache_seq_rm(-1, shared, -1):
            return
        llama.n_tokens = shared  # the KV cache now holds exactly the shared prefix
        prefix = (llama_cpp.llama_token * shared)(*sequence[:shared])
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_path.with_suffix(f".partial-{os.getpid()}")
        try:
            if llama_cpp.llama_state_save_file(llama._ctx.ctx, str(partial).encode(), prefix, shared):
                os.replace(partial, self.state_path)
                self.saved = tuple(sequence[:shared])
        finally:
            partial.unlink(missing_ok=True)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _read_tokens(path: Path) -> list[int]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [int(t) for t in data] if isinstance(data, list) else []


def _write_tokens(path: Path, tokens: list[int]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".partial-{os.getpid()}")
        partial.write_text(json.dumps(tokens))
        os.replace(partial, path)
    except OSError:
        pass  # a read-only model folder: the in-process prefix reuse still works
