"""The assistant as an OpenAI-compatible model: /v1/models, /v1/chat/completions (streamed or not) and
/v1/embeddings.

Any OpenAI client or chat front end (the `openai` package, Open WebUI, ...) can use it. The reply's
content is the checked answer with its `[n]` markers and a reference list; the structured citations
travel in an extra field, `citations` (and the whole `rag ask --json` object in `paper_rag`).

What a request's messages mean: the last user message is the question, searched in this server's
index; earlier user/assistant pairs are the history for follow-ups. System (and developer) messages
are neither searched nor given to the model: the model's prompt is fixed so that every `[n]` can be
checked against the passage it cites. A user message that already carries retrieved context, as
another framework's query engine sends it (LlamaIndex's "Context information is below ... Query: Q
Answer:", LangChain's "... Question: Q Helpful Answer:"), is answered from this index too, not from
that context: its `Query:` / `Question:` line is taken as the question. `max_tokens` (or
`max_completion_tokens`) caps the tokens the model writes for one answer (in all its statements; at
least 8) and `temperature` is its sampling temperature; an extractive answer has no model and
ignores them.

Streaming: a generated answer is checked only once it is written, and a statement its paper does not
support is replaced, which a stream of text cannot take back. So the model's draft streams as
`delta.reasoning_content` (front ends that show reasoning show it live; others ignore it), and the
checked answer follows as `delta.content`. An extractive answer has no draft.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from rag.config import Settings, load_settings
from rag.errors import RagError
from rag.filters import parse_filters
from rag.server.errors import ApiError, error_body, log, status_of
from rag.server.responses import SSE, ChatCompletion, EmbeddingList, Model, ModelList, ok
from rag.server.schemas import (
    ERROR_RESPONSES,
    MAX_EMBEDDING_INPUTS,
    ChatCompletionRequest,
    ChatMessage,
    EmbeddingRequest,
)
from rag.server.streaming import SSE_HEADERS, client_watch, drive, sse
from rag.service import Service
from rag.types import Answer, Turn

MODEL_PREFIX = "paper-rag"
_REFERENCES = re.compile(r"\n\nReferences:\n.*\Z", re.S)
# Profiles that are no model to offer: the test suite's, and one that only moves the index (which a
# request cannot choose). They still answer when named.
_UNLISTED = {"test", "server"}
_REACHABLE_FOR_S = 30.0
_reachable: dict[str, tuple[float, bool]] = {}
_reachable_lock = threading.Lock()
# A framework's RAG prompt: "... Query: Q\nAnswer:" (LlamaIndex) or "... Question: Q\nHelpful Answer:" (LangChain).
_CARRIED_QUERY = re.compile(
    r"(?:^|\n)[ \t]*(?:query|question)[ \t]*:[ \t]*(?P<q>(?:(?!\n[ \t]*(?:query|question)[ \t]*:).)+?)"
    r"\s*\n[ \t]*(?:helpful[ \t]+)?answer[ \t]*:\s*\Z",
    re.I | re.S,
)


def model_ids(service: Service) -> list[str]:
    """Every model id a request may name: 'paper-rag' and 'paper-rag/PROFILE' for each profile."""
    return [MODEL_PREFIX] + [f"{MODEL_PREFIX}/{p}" for p in service.profiles() if p != "default"]


def listed_model_ids(service: Service) -> list[str]:
    """The models that can answer now: not the internal profiles, nor a hosted one whose endpoint is down."""
    return [MODEL_PREFIX] + [
        f"{MODEL_PREFIX}/{p}" for p in service.profiles() if p != "default" and p not in _UNLISTED and _answers(p)
    ]


def _answers(profile: str) -> bool:
    """Whether a profile can answer: a local or extractive one always, a hosted one when its endpoint responds."""
    try:
        settings = load_settings(profile)
    except RagError:
        return False
    url = _endpoint(settings)
    return url is None or _responds(url)


def _endpoint(settings: Settings) -> str | None:
    llm = settings.llm
    if settings.answer.mode != "generate" or llm.backend in ("llamacpp", "none"):
        return None
    if llm.backend == "openai":
        return llm.base_url
    kwargs = llm.llamaindex_kwargs or {}
    return kwargs.get("api_base") or kwargs.get("base_url")  # None: a provider we cannot probe; listed


def _responds(url: str) -> bool:
    """Any HTTP answer from `url`/models (a 401 too) within a second; remembered for 30 s."""
    import httpx

    now = time.monotonic()
    with _reachable_lock:
        known = _reachable.get(url)
    if known is not None and now - known[0] < _REACHABLE_FOR_S:
        return known[1]
    try:
        httpx.get(f"{url.rstrip('/')}/models", timeout=1.0)
        up = True
    except httpx.HTTPError:
        up = False
    with _reachable_lock:
        _reachable[url] = (now, up)
    return up


def profile_of(service: Service, model: str) -> str:
    """'paper-rag' is this server's own settings; 'paper-rag/NAME' (or plain NAME) the profile NAME."""
    name = model.removeprefix(f"{MODEL_PREFIX}/") if model != MODEL_PREFIX else "default"
    if name not in service.profiles():
        raise ApiError(404, f"unknown model {model!r} (known: {', '.join(model_ids(service))})",
                       code="model_not_found")  # fmt: skip
    return name


def content_of(answer: Answer) -> str:
    """The answer text, then one reference line per cited paper: '[1] Title. URL'."""
    if answer.refused or not answer.citations:
        return answer.answer
    lines = [f"[{c.n}] {c.title}." + (f" {c.url}" if c.url else "") for c in answer.citations]
    return f"{answer.answer}\n\nReferences:\n" + "\n".join(lines)


def question_of(text: str) -> str:
    """The question in a user message: the `Query:` line of a framework's RAG prompt, else the whole text."""
    found = _CARRIED_QUERY.search(text)
    return found.group("q").strip() if found else text


def conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """The last user message is the question; earlier user/assistant pairs are the history (system ignored)."""
    talk = [m for m in messages if m.role in ("user", "assistant")]
    if not talk or talk[-1].role != "user":
        raise ApiError(422, "messages: the last message must be the user's question")
    turns, pending = [], None
    for message in talk[:-1]:
        if message.role == "user":
            pending = message.text()
        elif pending is not None:
            turns.append(Turn(pending, _REFERENCES.sub("", message.text())))
            pending = None
    return question_of(talk[-1].text()), turns


def _pieces(text: str, words: int = 6) -> list[str]:
    """The checked answer in small deltas, so a client renders it as a stream."""
    tokens = re.findall(r"\S+\s*|\s+", text)
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]


def backend_message(answer: Answer) -> str:
    return f"the model backend failed: {answer.error}"


def backend_failed(answer: Answer) -> JSONResponse:
    """502 in the error shape (an OpenAI client raises on it); the extractive fallback rides along in `paper_rag`."""
    body = error_body(502, backend_message(answer), "backend_error") | {"paper_rag": answer.to_json()}
    return JSONResponse(body, status_code=502)


def router(service: Service, *, json_limit: int) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], responses=ERROR_RESPONSES)
    started = int(time.time())

    def model_record(model_id: str) -> dict:
        return {"id": model_id, "object": "model", "created": started, "owned_by": MODEL_PREFIX}

    @api.get(
        "/models",
        summary="The assistant's profiles that can answer, as OpenAI models",
        description="'paper-rag' is this server's own settings, 'paper-rag/NAME' the profile NAME. Internal profiles "
        "(test, server) and hosted profiles whose endpoint does not respond are not listed (named, they still "
        "answer, or fail with the backend's error).",
        responses=ok(ModelList),
    )
    async def models():
        ids = await run_in_threadpool(listed_model_ids, service)
        return {"object": "list", "data": [model_record(m) for m in ids]}

    @api.get("/models/{model_id:path}", summary="One model, if it is listed", responses=ok(Model))
    async def model(model_id: str):
        ids = await run_in_threadpool(listed_model_ids, service)
        if model_id not in ids:
            raise ApiError(404, f"no model {model_id!r} (listed: {', '.join(ids)})", code="model_not_found")
        return model_record(model_id)

    @api.post(
        "/chat/completions",
        summary="Chat completion in the OpenAI format (streamed or not), with citations",
        description="The last user message is the question, earlier turns the history. System messages are "
        "neither searched nor given to the model (its prompt is fixed so that citations can be checked). A user "
        "message carrying another framework's retrieved context ('Context information is below ... Query: Q "
        "Answer:') is answered from this index: its `Query:`/`Question:` line is the question. `max_tokens` "
        "caps the tokens the model writes for the answer (at least 8) and `temperature` is its sampling temperature; "
        "an extractive answer ignores both. "
        "Extra fields beside the OpenAI ones: `k`, `where`, `mode`, `extractive` (as in /v1/ask). The reply carries "
        "`citations` and `paper_rag` (the `rag ask --json` object).",
        responses=ok(
            ChatCompletion, "The completion; with stream: Server-Sent Events of chunks", **{"text/event-stream": SSE}
        ),  # fmt: skip
        max_body_size=json_limit,
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        profile = profile_of(service, body.model)
        choices = body.choices(profile)
        if choices.where:
            parse_filters(choices.where)
        question, history = conversation(body.messages)
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"
        created = int(time.time())
        overrides = choices.overrides()
        if body.max_tokens or body.max_completion_tokens or body.temperature is not None:
            answer_settings = (await run_in_threadpool(service.assistant, profile, overrides)).settings.answer
            overrides |= body.sampling(answer_settings.written_slots, answer_settings.slot_tokens)
        async with client_watch(request) as gone:  # a client gone while its question waits: dropped unanswered
            items = await run_in_threadpool(
                service.stream, question, history, profile=profile, overrides=overrides, cancelled=gone
            )  # "busy" is a 503 here, before any event

        def usage(answer_text: str) -> dict:
            prompt = sum(service.count_tokens(m.text()) for m in body.messages)
            completion = service.count_tokens(answer_text)
            return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

        if not body.stream:
            answer = None
            async for item in drive(items):
                if isinstance(item, Answer):
                    answer = item
            if answer is None:
                raise RagError("no answer came back")
            if answer.error:
                return backend_failed(answer)
            content = content_of(answer)
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": body.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],  # fmt: skip
                    "usage": usage(content),
                    "citations": answer.to_json()["citations"],
                    "paper_rag": answer.to_json(),
                }
            )
        drafting = service.generates(profile, overrides)

        def chunk(delta: dict, finish: str | None = None, **extra) -> bytes:
            return sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                        "model": body.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                        **extra})  # fmt: skip

        # The first item is awaited before any byte is sent: a backend that is down fails before its first
        # token, and that is an HTTP error the client raises on, not a 200 stream with fallback text.
        stream = drive(items)
        try:
            first = await anext(stream, None)
        except BaseException:
            await stream.aclose()
            raise
        if isinstance(first, Answer) and first.error:
            await stream.aclose()
            return backend_failed(first)

        async def replayed() -> AsyncIterator[str | Answer]:
            if first is not None:
                yield first
            async for item in stream:
                yield item

        async def events() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            try:
                async for item in replayed():
                    if isinstance(item, Answer) and item.error:  # the backend failed after its draft began
                        yield sse(error_body(502, backend_message(item), "backend_error"))
                        break
                    if not isinstance(item, Answer):
                        if drafting and item:
                            yield chunk({"reasoning_content": item})
                        continue
                    content = content_of(item)
                    for piece in _pieces(content):
                        yield chunk({"content": piece})
                    record = item.to_json()
                    yield chunk({}, "stop", citations=record["citations"], paper_rag=record)
                    if (body.stream_options or {}).get("include_usage"):
                        yield sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                   "model": body.model, "choices": [], "usage": usage(content)})  # fmt: skip
            except RagError as exc:
                yield sse(error_body(status_of(exc), str(exc)))
            except Exception as exc:  # noqa: BLE001 - the client gets one line, the log the traceback
                log.exception("unexpected error while streaming a chat completion")
                yield sse(error_body(500, f"internal error ({type(exc).__name__})"))
            finally:
                await stream.aclose()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    @api.post(
        "/embeddings",
        summary="Embed text with the index's own embedding model, in the OpenAI format",
        description="`input`: a string or a list of strings (at most 2,048); `model`: the embedding model's name "
        "(all-MiniLM-L6-v2 by default, as `rag stats` shows it). Vectors are unit length, in the index's own "
        "space, so another tool can search with them; text beyond the model's window (256 wordpieces for MiniLM) "
        "is cut, as when indexing. `encoding_format: base64` gives little-endian float32. Usage counts the "
        "embedder's own wordpieces.",
        responses=ok(EmbeddingList),
        max_body_size=json_limit,
    )
    async def embeddings(body: EmbeddingRequest):
        texts = body.texts()
        if texts is None:
            raise ApiError(422, "input: send text (a string or a list of strings); token arrays are not read")
        if not texts or len(texts) > MAX_EMBEDDING_INPUTS:
            raise ApiError(422, f"input: send 1 to {MAX_EMBEDDING_INPUTS} strings")
        if any(not text.strip() for text in texts):
            raise ApiError(422, "input: a string is empty")
        configured = service.settings.embedding.model
        names = {configured, configured.rstrip("/").rsplit("/", 1)[-1]}
        names.add(f"sentence-transformers/{configured.rstrip('/').rsplit('/', 1)[-1]}")
        if body.model not in names:
            raise ApiError(404, f"no embedding model {body.model!r}; this server embeds with {configured!r}",
                           code="model_not_found")  # fmt: skip

        def embed() -> tuple[np.ndarray, list[int], int]:
            embedder = service.library.embedder
            return embedder.embed(texts), embedder.count_tokens(texts), embedder.dimension

        vectors, tokens, dimension = await run_in_threadpool(embed)
        if body.dimensions is not None and body.dimensions != dimension:
            raise ApiError(422, f"dimensions: this model gives {dimension}-dimensional vectors, not {body.dimensions}")
        vectors = np.asarray(vectors, dtype="<f4")
        if body.encoding_format == "base64":
            encoded: list = [base64.b64encode(v.tobytes()).decode("ascii") for v in vectors]
        else:
            encoded = [v.tolist() for v in vectors]
        used = sum(tokens)
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
            "model": body.model,
            "usage": {"prompt_tokens": used, "total_tokens": used},
        }

    return api
