"""Request bodies. Unknown keys are errors (422) on our own endpoints, as in the config; the OpenAI
endpoint accepts and ignores the fields of that API it does not use."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.types import Turn

MAX_HISTORY = 20
MAX_FILTERS = 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CitedPaper(BaseModel):
    model_config = ConfigDict(extra="ignore")
    paper_id: str = Field(max_length=300)


class HistoryTurn(BaseModel):
    """An earlier turn; a previous /v1/ask answer can be sent back as it came (extra keys are ignored)."""

    model_config = ConfigDict(extra="ignore")
    question: str = Field(max_length=4000, description="What was asked.")
    answer: str = Field("", max_length=20_000, description="What was answered.")
    paper_ids: list[str] = Field(default_factory=list, max_length=50, description="Papers that answer cited.")
    citations: list[CitedPaper] = Field(
        default_factory=list, max_length=50, description="Or the answer's citations, as /v1/ask returned them."
    )
    standalone_question: str = Field("", max_length=8000, description="The question as it was searched.")

    def to_turn(self) -> Turn:
        ids = self.paper_ids or [c.paper_id for c in self.citations]
        return Turn(self.question, self.answer, list(dict.fromkeys(ids)), self.standalone_question)


class Choices(_Strict):
    """What a request may change for itself: retrieval size, filters and mode, profile, no LLM."""

    k: int | None = Field(None, ge=1, le=50, description="Papers retrieved (retrieval.k).")
    where: list[str] | None = Field(
        None,
        max_length=MAX_FILTERS,
        description="Filters as `rag search --where` takes them: source=FILE, date>=2024-01, KEY=VALUE.",
    )
    mode: Literal["dense", "bm25", "hybrid"] | None = Field(None, description="Retrieval mode (retrieval.mode).")
    profile: str | None = Field(None, max_length=64, description="A profile from GET /v1/models or rag/configs/.")
    extractive: bool = Field(False, description="Answer without the LLM: the best evidence sentences, each cited.")

    def overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.k is not None:
            out["retrieval.k"] = self.k
        if self.where is not None:
            out["retrieval.filters"] = self.where
        if self.mode is not None:
            out["retrieval.mode"] = self.mode
        if self.extractive:
            out["answer.mode"] = "extractive"
        return out


class AskRequest(Choices):
    question: str = Field(max_length=100_000, description="The question (at most 4,000 characters once trimmed).")
    history: list[HistoryTurn] = Field(
        default_factory=list, max_length=MAX_HISTORY, description="Earlier turns, oldest first, for follow-ups."
    )
    session: str | None = Field(
        None,
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Or let the server remember the conversation under this id (used when history is empty).",
    )
    stream: bool = Field(False, description="Server-Sent Events: `token` events, then one `answer` event.")


class IngestRecords(_Strict):
    records: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=100_000,
        description="Papers as JSON objects: title and abstract required; id, authors, date, url, categories "
        "recognised; other keys kept as metadata for filters.",
    )
    name: str = Field(
        "records.jsonl", max_length=120, description="File name they are kept under in the upload area (.jsonl)."
    )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(max_length=32)
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: [{"type": "text", "text": "..."}]
            return " ".join(str(p.get("text", "")) for p in self.content if p.get("type") in ("text", "input_text"))
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    """The OpenAI chat-completions body. `max_tokens` and `temperature` reach the model that writes the answer;
    other sampling fields (top_p, n, stop, ...) are accepted and ignored (answers are checked text)."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(max_length=128)
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    k: int | None = Field(None, ge=1, le=50)
    where: list[str] | None = Field(None, max_length=MAX_FILTERS)
    mode: Literal["dense", "bm25", "hybrid"] | None = None
    extractive: bool = False
    max_tokens: int | None = Field(
        None, ge=1, le=32_768, description="Most tokens the model writes for the answer (at least 8)."
    )
    max_completion_tokens: int | None = Field(None, ge=1, le=32_768, description="The newer name of max_tokens.")
    temperature: float | None = Field(None, ge=0, le=2, description="The model's sampling temperature.")

    def choices(self, profile: str) -> Choices:
        return Choices(k=self.k, where=self.where, mode=self.mode, profile=profile, extractive=self.extractive)

    def sampling(self, written_slots: int, slot_tokens: int) -> dict[str, Any]:
        """The model settings this request changes, as overrides (they do not reload the model).

        The model writes one statement per cited paper (`answer.written_slots` of them, at most
        `answer.slot_tokens` tokens each); `max_tokens` caps their sum: fewer written statements (the
        others quote their evidence sentence) and fewer tokens each, at least 8.
        """
        out: dict[str, Any] = {}
        limit = self.max_completion_tokens or self.max_tokens
        if limit is not None:
            written = min(written_slots, max(1, limit // 8))
            out["answer.written_slots"] = written
            out["answer.slot_tokens"] = min(slot_tokens, max(8, limit // max(written, 1)))
        if self.temperature is not None:
            out["llm.temperature"] = self.temperature
        return out


MAX_EMBEDDING_INPUTS = 2048


class EmbeddingRequest(BaseModel):
    """The OpenAI embeddings body: text in, the index's own embedding model's vectors out."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(max_length=256, description="The embedding model (GET /v1/models/{id} does not list it).")
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A string or a list of strings (token arrays are refused: send text)."
    )
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32.")
    dimensions: int | None = Field(None, ge=1, description="Must be the model's own dimension if given.")
    user: str | None = None

    def texts(self) -> list[str] | None:
        """The input as strings; None for token arrays."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(item, str) for item in self.input):
            return list(self.input)  # type: ignore[arg-type]
        return None


class ErrorDetail(BaseModel):
    message: str = Field(description="One readable line: what was wrong and what to do.")
    type: str = Field(description="invalid_request_error, authentication_error, not_found_error or server_error.")
    code: str | None = Field(description="invalid_input, unauthorized, not_found, too_large, busy, unavailable, ...")


class ErrorBody(BaseModel):
    """Every error, in the OpenAI shape."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong API key (when one is configured)."},
    422: {"model": ErrorBody, "description": "Bad input: malformed JSON, unknown keys, bad values or filters."},
    503: {
        "model": ErrorBody,
        "description": "The model is busy (its queue is full) or the index is unavailable; see the Retry-After header.",
    },  # fmt: skip
}
