"""What every LLM backend shares: the `ChatModel` interface and `continue_by_chat`.

The backends (rag/llm.py: llama.cpp and OpenAI-compatible; rag/llm_llamaindex.py: any LlamaIndex LLM)
import this module; `rag.llm.load_chat_model` selects among them, so no backend imports the selector.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}

__all__ = ["ChatModel", "Message", "continue_by_chat"]


class ChatModel(Protocol):
    name: str

    def stream(self, messages: Sequence[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        """Yield the reply's text as it is generated."""
        ...

    def complete(
        self, messages: Sequence[Message], prefix: str, *, max_tokens: int, temperature: float, stop: Sequence[str]
    ) -> Iterator[str]:
        """Yield the continuation of a reply that starts with `prefix` (the system writes the start of an answer)."""
        ...


def continue_by_chat(
    model: ChatModel,
    messages: Sequence[Message],
    prefix: str,
    *,
    max_tokens: int,
    temperature: float,
    stop: Sequence[str] = (),
) -> Iterator[str]:
    """Continuation for a backend that cannot start its reply with given text: ask for the continuation, drop
    what the reply repeats of the answer so far, and cut it at the first `stop` string. Streams: only the
    first few characters wait, until they show whether the reply repeats the answer's last line."""
    from rag.prompts import CONTINUE_INSTRUCTION

    asked = [*messages, {"role": "user", "content": f"{CONTINUE_INSTRUCTION}{prefix}"}]
    last_line = prefix.strip().splitlines()[-1].strip() if prefix.strip() else ""
    pending: str | None = ""  # None once the start is settled
    for piece in model.stream(asked, max_tokens=max_tokens, temperature=temperature):
        if pending is not None:
            start = (pending + piece).lstrip()
            if not start or (last_line and len(start) < len(last_line) and last_line.startswith(start)):
                pending = start
                continue  # could still be an echo of the answer so far
            pending = None
            piece = start[len(last_line) :] if last_line and start.startswith(last_line) else start
        cuts = [piece.find(s) for s in stop if s and s in piece]
        if cuts:
            if piece[: min(cuts)]:
                yield piece[: min(cuts)]
            return
        if piece:
            yield piece
