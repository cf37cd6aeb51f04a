"""LLM backends behind one small interface: stream the reply to a list of chat messages.

`llamacpp` runs a local GGUF through llama-cpp-python; `openai` talks to any OpenAI-compatible
endpoint (OpenAI, vLLM, Ollama, llama.cpp's server); `llamaindex` wraps any LlamaIndex LLM class
(rag/llm_llamaindex.py). Each is chosen by `llm.backend` and imports
its heavy dependency only when selected. Every failure a user can meet (missing model, endpoint
down, timeout, bad key) becomes an `LLMError` with a one-line message, so callers can fall back
to extractive answers and still show what was retrieved.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rag.config import LLMSettings
from rag.errors import LLMError, RagError
from rag.llm_base import ChatModel, Message, continue_by_chat

__all__ = ["ChatModel", "LLMError", "LlamaCppModel", "OpenAICompatibleModel", "load_chat_model", "parse_sse_line"]


def load_chat_model(settings: LLMSettings, progress: Callable[[str], None] | None = None) -> ChatModel | None:
    match settings.backend:
        case "llamacpp":
            return LlamaCppModel(settings, progress)
        case "openai":
            return OpenAICompatibleModel(settings)
        case "llamaindex":
            from rag.llm_llamaindex import LlamaIndexModel

            return LlamaIndexModel(settings)
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

    @property
    def saved_prefix_tokens(self) -> int:
        """How many prompt tokens' evaluated state the on-disk prefix cache holds (0 without one)."""
        return len(self._prefix_cache.saved) if self._prefix_cache is not None else 0

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

    def _prompt(self, messages: Sequence[Message]) -> str | None:
        """The raw prompt the chat template makes of `messages`, ending where the assistant's reply begins."""
        llama = self.load()
        if self._settings.chat_format == "chatml":
            turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
            return turns + "<|im_start|>assistant\n"
        template = (llama.metadata or {}).get("tokenizer.chat_template") if self._settings.chat_format is None else None
        if not template:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        vocab = llama._model
        eos = vocab.token_get_text(vocab.token_eos()) if hasattr(vocab, "token_get_text") else ""
        bos = vocab.token_get_text(vocab.token_bos()) if hasattr(vocab, "token_get_text") else ""
        return Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)(messages=list(messages)).prompt

    def end_answer(self) -> None:
        """After an answer's last statement: the prefix cache learns what consecutive answers share. (Not after
        each statement: those share the whole answer so far, which the in-process prefix reuse already covers.)"""
        if self._prefix_cache is not None and self._llama is not None:
            self._prefix_cache.remember(self._llama)

    def complete(
        self, messages: Sequence[Message], prefix: str, *, max_tokens: int, temperature: float, stop: Sequence[str]
    ) -> Iterator[str]:
        prompt = self._prompt(messages)
        if prompt is None:  # a named chat format without a template to continue from
            yield from continue_by_chat(
                self, messages, prefix, max_tokens=max_tokens, temperature=temperature, stop=stop
            )
            return
        llama = self.load()
        try:
            # llama.cpp reuses the evaluated tokens the prompt shares with the previous call: the fixed system
            # prompt, and the evidence and answer so far when the next paper's line is written.
            chunks = llama.create_completion(
                prompt + prefix, max_tokens=max_tokens, temperature=temperature, stream=True, stop=list(stop)
            )
            for chunk in chunks:
                text = chunk["choices"][0].get("text")
                if text:
                    yield text
        except ValueError as exc:
            raise LLMError(f"{self.name}: {_first_line(exc)}") from None


_RETRIED_STATUSES = {429, 502, 503, 504}  # "try again": rate limits, overloaded or restarting servers
_MAX_RETRY_WAIT_S = 10.0


def retry_delay(retry_after: str | None, attempt: int) -> float:
    """Seconds to wait before retry `attempt` (0-based): the server's Retry-After, else 0.5 s doubling; capped."""
    try:
        seconds = float(retry_after) if retry_after else 0.5 * 2**attempt
    except ValueError:  # an HTTP date: not worth parsing for a wait this short
        seconds = 0.5 * 2**attempt
    return min(max(seconds, 0.0), _MAX_RETRY_WAIT_S)


class OpenAICompatibleModel:
    """POST /chat/completions with `stream: true`, read as server-sent events.

    One connection pool per model (a new client per request cost ~40 ms, bench/llm_client_bench.py);
    HTTP 429/502/503/504 are retried `llm.max_retries` times, before any text has streamed.
    """

    def __init__(self, settings: LLMSettings) -> None:
        self._settings = settings
        self.name = f"openai:{settings.model}"
        self._base_url = settings.base_url.rstrip("/")
        self._client = None  # httpx.Client, made on first use
        self._client_lock = threading.Lock()

    def _http(self):  # -> httpx.Client
        import httpx

        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client()
            return self._client

    def _headers(self, key: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def complete(
        self, messages: Sequence[Message], prefix: str, *, max_tokens: int, temperature: float, stop: Sequence[str]
    ) -> Iterator[str]:
        yield from continue_by_chat(self, messages, prefix, max_tokens=max_tokens, temperature=temperature, stop=stop)

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
            for attempt in range(self._settings.max_retries + 1):
                with self._http().stream(
                    "POST", url, json=body, headers=self._headers(key), timeout=timeout
                ) as response:
                    if response.status_code == 200:
                        yield from self._events(response, redact)
                        return
                    response.read()
                    detail = _error_detail(redact(response.text))
                    if response.status_code not in _RETRIED_STATUSES or attempt == self._settings.max_retries:
                        raise LLMError(f"{url} answered HTTP {response.status_code}: {detail}")
                    delay = retry_delay(response.headers.get("Retry-After"), attempt)
                time.sleep(delay)
        except httpx.ConnectError:
            raise LLMError(f"cannot reach the LLM endpoint {self._base_url} (is the server running?)") from None
        except httpx.TimeoutException:
            raise LLMError(
                f"the LLM endpoint {self._base_url} did not answer within {self._settings.timeout_s:g}s (llm.timeout_s)"
            ) from None
        except httpx.HTTPError as exc:
            raise LLMError(f"LLM endpoint {self._base_url}: {_first_line(exc)}") from None

    def _events(self, response, redact: Callable[[str], str]) -> Iterator[str]:
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
