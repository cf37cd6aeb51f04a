"""Any LlamaIndex LLM class as an answer backend (`llm.backend: llamaindex`).

The class is named in config (`llm.llamaindex_class`, e.g. `llama_index.llms.ollama.Ollama`) with
its keyword arguments (`llm.llamaindex_kwargs`); its package is an optional extra, imported only
here. Replies stream through the same `ChatModel` interface as the built-in backends, so the
answer is verified, and falls back or refuses, exactly as theirs. Every failure is an `LLMError`
of one line with the API key removed.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

from rag.config import LLMSettings
from rag.errors import LLMError

# Packages with an extra of their own in pyproject.toml; any other class: its package by name.
EXTRAS = {
    "llama_index.llms.openai_like": "llm-openai-like",
    "llama_index.llms.openai": "llm-openai",
    "llama_index.llms.ollama": "llm-ollama",
    "llama_index.llms.anthropic": "llm-anthropic",
}


def install_hint(module_name: str) -> str:
    extra = EXTRAS.get(module_name)
    package = module_name.replace("_", "-").replace(".", "-")
    if extra:
        return f"pip install 'paper-rag[{extra}]' (or: pip install {package})"
    return f"pip install {package}"


def build_llm(settings: LLMSettings) -> Any:  # -> llama_index.core.llms.LLM
    """Import and construct the configured class; the API key comes from `llm.api_key_env` only."""
    module_name, _, class_name = settings.llamaindex_class.rpartition(".")
    if not module_name:
        raise LLMError(
            f"llm.llamaindex_class '{settings.llamaindex_class}': write it as module.Class, "
            "e.g. llama_index.llms.ollama.Ollama"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module_name
        raise LLMError(
            f"llm.llamaindex_class: cannot import {module_name} ({missing} is not installed); "
            f"install it: {install_hint(module_name)}"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None or not hasattr(cls, "stream_chat"):
        raise LLMError(f"llm.llamaindex_class: {module_name} has no LlamaIndex LLM class '{class_name}'")
    kwargs = dict(settings.llamaindex_kwargs)
    fields = getattr(cls, "model_fields", {})
    key = os.environ.get(settings.api_key_env) or ""
    if key and "api_key" in fields and "api_key" not in kwargs:
        kwargs["api_key"] = key
    if "max_retries" in fields and "max_retries" not in kwargs:
        kwargs["max_retries"] = settings.max_retries
    for timeout_field in ("timeout", "request_timeout"):
        if timeout_field in fields and not {"timeout", "request_timeout"} & kwargs.keys():
            kwargs[timeout_field] = settings.timeout_s
    try:
        return cls(**kwargs)
    except Exception as exc:  # a provider's own validation: wrong or missing arguments
        raise LLMError(f"llm.llamaindex_kwargs: {class_name} refused them: {_redact(_first_line(exc), key)}") from None


class LlamaIndexModel:
    """A `ChatModel` over a LlamaIndex LLM; built on first use, then kept."""

    def __init__(self, settings: LLMSettings) -> None:
        self._settings = settings
        self._llm: Any = None
        self._variants: dict[tuple[int, float], Any] = {}
        class_name = settings.llamaindex_class.rpartition(".")[2]
        model = settings.llamaindex_kwargs.get("model") or settings.llamaindex_kwargs.get("model_name")
        self.name = f"llamaindex:{class_name}" + (f":{model}" if model else "")

    def load(self) -> Any:
        if self._llm is None:
            self._llm = build_llm(self._settings)
        return self._llm

    def _variant(self, max_tokens: int, temperature: float) -> Any:
        """The LLM with this call's length and temperature, for classes that hold them as fields."""
        key = (max_tokens, temperature)
        if key not in self._variants:
            llm = self.load()
            fields = getattr(type(llm), "model_fields", {})
            update = {name: value for name, value in (("max_tokens", max_tokens), ("temperature", temperature))}
            update = {name: value for name, value in update.items() if name in fields}
            self._variants[key] = llm.model_copy(update=update) if update else llm
        return self._variants[key]

    def complete(
        self,
        messages: Sequence[dict[str, str]],
        prefix: str,
        *,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str],
    ) -> Iterator[str]:
        from rag.llm_base import continue_by_chat

        yield from continue_by_chat(self, messages, prefix, max_tokens=max_tokens, temperature=temperature, stop=stop)

    def stream(self, messages: Sequence[dict[str, str]], *, max_tokens: int, temperature: float) -> Iterator[str]:
        from llama_index.core.llms import ChatMessage

        llm = self._variant(max_tokens, temperature)
        chat = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
        key = os.environ.get(self._settings.api_key_env) or ""
        try:
            try:
                responses = llm.stream_chat(chat)
            except NotImplementedError:  # a class that cannot stream answers in one piece
                yield llm.chat(chat).message.content or ""
                return
            for response in responses:
                if response.delta:
                    yield _redact(response.delta, key)
        except LLMError:
            raise
        except Exception as exc:  # whatever the provider's client raises: connection, HTTP status, timeout
            raise LLMError(f"{self.name}: {type(exc).__name__}: {_redact(_first_line(exc), key)}") from None


def _redact(text: str, key: str) -> str:
    return text.replace(key, "[api key]") if len(key) >= 4 else text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return " ".join(lines[0].split())[:300] if lines else type(exc).__name__
