"""The assistant as an OpenAI-compatible model: /v1/models and /v1/chat/completions, streamed or not.

Any OpenAI client or chat front end (the `openai` package, Open WebUI, ...) can use it. The reply's
content is the checked answer with its `[n]` markers and a reference list; the structured citations
travel in an extra field, `citations` (and the whole `rag ask --json` object in `paper_rag`).

Streaming: a generated answer is checked only once it is written, and a statement its paper does not
support is replaced, which a stream of text cannot take back. So the model's draft streams as
`delta.reasoning_content` (front ends that show reasoning show it live; others ignore it), and the
checked answer follows as `delta.content`. An extractive answer has no draft.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from rag.errors import RagError
from rag.filters import parse_filters
from rag.service import Service
from rag.types import Answer, Turn
from server.errors import ApiError, error_body, log, status_of
from server.schemas import ERROR_RESPONSES, ChatCompletionRequest, ChatMessage
from server.streaming import SSE_HEADERS, drive, sse

MODEL_PREFIX = "paper-rag"
_REFERENCES = re.compile(r"\n\nReferences:\n.*\Z", re.S)


def model_ids(service: Service) -> list[str]:
    return [MODEL_PREFIX] + [f"{MODEL_PREFIX}/{p}" for p in service.profiles() if p != "default"]


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
    return talk[-1].text(), turns


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

    @api.get("/models", summary="The assistant's profiles as OpenAI models")
    async def models():
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": started, "owned_by": MODEL_PREFIX} for m in model_ids(service)
            ],  # fmt: skip
        }

    @api.post(
        "/chat/completions",
        summary="Chat completion in the OpenAI format (streamed or not), with citations",
        description="The last user message is the question, earlier turns the history. Extra fields beside the "
        "OpenAI ones: `k`, `where`, `mode`, `extractive` (as in /v1/ask). The reply carries `citations` and "
        "`paper_rag` (the `rag ask --json` object).",
        max_body_size=json_limit,
    )
    async def chat_completions(body: ChatCompletionRequest):
        profile = profile_of(service, body.model)
        choices = body.choices(profile)
        if choices.where:
            parse_filters(choices.where)
        question, history = conversation(body.messages)
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"
        created = int(time.time())
        items = await run_in_threadpool(
            service.stream, question, history, profile=profile, overrides=choices.overrides()
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
        drafting = service.generates(profile, choices.overrides())

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

    return api
