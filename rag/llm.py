"""LLM backends behind one small interface: stream the reply to a list of chat messages.

`llamacpp` runs a local GGUF through llama-cpp-python; `openai` talks to any OpenAI-compatible
endpoint (OpenAI, vLLM, Ollama, llama.cpp's server). Each is chosen by `llm.backend` and imports
its heavy dependency only when selected. Every failure a user can meet (missing model, endpoint
down, timeout, bad key) becomes an `LLMError` with a one-line message, so callers can fall back
to extractive answers and still show what was retrieved.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from rag.config import LLMSettings
from rag.errors import LLMError, RagError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}

__all__ = ["ChatModel", "LLMError", "LlamaCppModel", "OpenAICompatibleModel", "load_chat_model", "parse_sse_line"]


class ChatModel(Protocol):
    name: str

    def stream(self, messages: Sequence[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        """Yield the reply's text as it is generated."""
        ...


def load_chat_model(settings: LLMSettings, progress: Callable[[str], None] | None = None) -> ChatModel | None:
    match settings.backend:
        case "llamacpp":
            return LlamaCppModel(settings, progress)
        case "openai":
            return OpenAICompatibleModel(settings)
        case "none":
            return None
    raise RagError(f"llm.backend: unknown backend '{settings.backend}'")


class LlamaCppModel:
    """A local GGUF via llama-cpp-python; loaded on first use, then kept (with its prompt cache).

    llama-cpp-python already skips the prompt tokens a request shares with the one before it in the
    same process. `llm.prompt_cache` adds a memory across processes and interleaved requests: the
    evaluated state of the prefix that consecutive prompts share (the system prompt and instructions,
    whatever their text) is kept on disk beside the model and restored on load.
    """

    def __init__(self, settings: LLMSettings, progress: Callable[[str], None] | None = None) -> None:
        self._settings = settings
        self._progress = progress
        self._llama = None
        self._prefix_cache = None
        self.name = f"llamacpp:{Path(settings.model).stem if settings.model.endswith('.gguf') else settings.model}"

    def load(self):  # -> llama_cpp.Llama
        if self._llama is not None:
            return self._llama
        from rag.models import resolve_gguf

        path = resolve_gguf(self._settings.model, Path(self._settings.model_dir), self._progress)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # busy-waiting threads starve a shared CPU
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LLMError(
                "llama-cpp-python is not installed; install it portable with "
                "CMAKE_ARGS='-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF' pip install llama-cpp-python (or: make setup)"
            ) from None
        settings = self._settings
        try:
            self._llama = Llama(
                model_path=str(path),
                n_ctx=settings.n_ctx,
                n_threads=settings.n_threads or os.cpu_count(),
                n_batch=settings.n_batch,
                n_ubatch=settings.n_ubatch,
                flash_attn=settings.flash_attn,
                chat_format=settings.chat_format,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LLMError(f"cannot load model {path}: {_first_line(exc)}") from None
        if settings.prompt_cache:
            from rag.prompt_cache import PrefixStateCache

            self._prefix_cache = PrefixStateCache.for_model(self._llama, path, settings)
            self._prefix_cache.restore(self._llama)
        return self._llama

    def stream(self, messages: Sequence[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        llama = self.load()
        try:
            chunks = llama.create_chat_completion(
                messages=list(messages), stream=True, max_tokens=max_tokens, temperature=temperature
            )
            for chunk in chunks:
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    yield text
        except ValueError as exc:  # e.g. prompt longer than the context window
            raise LLMError(f"{self.name}: {_first_line(exc)}") from None
        if self._prefix_cache is not None:
            self._prefix_cache.remember(llama)


class OpenAICompatibleModel:
    """POST /chat/completions with `stream: true`, read as server-sent events."""

    def __init__(self, settings: LLMSettings) -> None:
        self._settings = settings
        self.name = f"openai:{settings.model}"
        self._base_url = settings.base_url.rstrip("/")

    def _headers(self, key: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def stream(self, messages: Sequence[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        import httpx

        body = {
            "model": self._settings.model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        url = f"{self._base_url}/chat/completions"
        timeout = httpx.Timeout(self._settings.timeout_s, connect=min(10.0, self._settings.timeout_s))
        key = os.environ.get(self._settings.api_key_env) or ""

        def redact(text: str) -> str:
            """Everything the server sends loses the API key before it is parsed, cut short or shown."""
            return text.replace(key, "[api key]") if len(key) >= 4 else text

        try:
            with (
                httpx.Client(timeout=timeout) as client,
                client.stream("POST", url, json=body, headers=self._headers(key)) as response,
            ):
                if response.status_code != 200:
                    response.read()
                    detail = _error_detail(redact(response.text))
                    raise LLMError(f"{url} answered HTTP {response.status_code}: {detail}")
                events, first_line = 0, None
                for raw_line in response.iter_lines():
                    line = redact(raw_line)
                    first_line = first_line or line.strip()
                    events += line.startswith("data:")
                    text = parse_sse_line(line)
                    if text is _DONE:
                        return
                    if text:
                        yield text
                if not events:
                    got = " ".join((first_line or "an empty body").split())[:80]
                    raise LLMError(
                        f"the LLM endpoint {self._base_url} answered without a chat-completion stream (got {got!r}); "
                        "is it OpenAI-compatible?"
                    )
        except httpx.ConnectError:
            raise LLMError(f"cannot reach the LLM endpoint {self._base_url} (is the server running?)") from None
        except httpx.TimeoutException:
            raise LLMError(
                f"the LLM endpoint {self._base_url} did not answer within {self._settings.timeout_s:g}s (llm.timeout_s)"
            ) from None
        except httpx.HTTPError as exc:
            raise LLMError(f"LLM endpoint {self._base_url}: {_first_line(exc)}") from None


_DONE = object()


def parse_sse_line(line: str):  # -> str | None | _DONE
    """The text delta carried by one server-sent-event line of a streamed chat completion."""
    if not line.startswith("data:"):
        return None
    payload = line[len("data:") :].strip()
    if payload == "[DONE]":
        return _DONE
    try:
        event = json.loads(payload)
    except ValueError:
        raise LLMError(f"the LLM endpoint sent a malformed event: {' '.join(payload.split())[:60]!r}") from None
    if isinstance(event, dict) and "error" in event:
        raise LLMError(f"the LLM endpoint reported an error: {_error_detail(json.dumps(event))}")
    choices = event.get("choices") or [{}] if isinstance(event, dict) else [{}]
    delta = choices[0].get("delta") or {}
    return delta.get("content")


def _error_detail(body: str) -> str:
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = body
    return " ".join(str(message or "no details").split())[:200]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
