"""Response bodies, typed for the OpenAPI document so client generators get a schema for every 2xx.

The routes return the service's records (`Answer.to_json()`, `SearchResult.to_json()`, ...) as they
are; these models describe them. They allow extra keys, so a field added to a record reaches clients
before it is described here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- health ---------------------------------------------------------------------------------------


class Health(_Open):
    status: Literal["ok"]
    version: str


class Readiness(_Open):
    status: Literal["ready", "not ready"]
    index: str = Field(description="'open', 'loading' or why it cannot open.")
    model: str = Field(description="'loaded', 'loading', 'none (extractive answers)' or why it cannot load.")
    ingest: str | None = Field(None, description="The running ingest job, if any.")


# --- paper-rag API ---------------------------------------------------------------------------------


class CitationRecord(_Open):
    n: int = Field(description="The [n] marker in the answer.")
    paper_id: str
    title: str
    url: str | None
    supporting_passage: str = Field(description="The abstract sentences the marker was checked against.")
    supported: bool = Field(description="Whether the cited statement was found supported by the passage.")


class NearPaper(_Open):
    paper_id: str
    title: str
    score: float = Field(description="Cosine similarity of the paper's best passage to the question.")


class AnswerRecord(_Open):
    """Exactly `rag ask --json`."""

    question: str
    standalone_question: str = Field(description="The question as searched (a follow-up made standalone).")
    answer: str = Field(description="The checked answer, with [n] markers.")
    refused: bool = Field(description="True when the indexed abstracts do not answer; `sources` are the nearest.")
    grounded: float = Field(description="Share of the answer's statements supported by their citation.")
    citations: list[CitationRecord]
    sources: list[NearPaper] = Field(description="The papers retrieved for the question, best first.")
    model: str
    timings: dict[str, float] = Field(description="Milliseconds: retrieve_ms, first_token_ms, total_ms, ...")
    mode: str = Field(description="generate, fallback, extractive or refused.")
    shape: str | None = Field(None, description="What the question asks for: exists, which, list, number, describe.")
    unsupported_sentences: list[str]
    notes: list[str]
    error: str | None


class SearchHit(_Open):
    rank: int
    paper_id: str
    title: str
    score: float = Field(description="Cosine similarity of the paper's best passage.")
    fused: float = Field(description="The reciprocal-rank-fusion score that ordered the results.")
    bm25: float | None
    passage: str
    passages: list[str]
    sources: list[str] = Field(description="The files the paper was read from.")
    url: str | None
    date: str | None


class SearchRecord(_Open):
    """Exactly `rag search --json`."""

    question: str
    results: list[SearchHit]
    mode: str
    timings: dict[str, float]


class PaperRecord(_Open):
    paper_id: str
    title: str
    abstract: str
    sources: list[str]
    url: str | None
    date: str | None
    authors: str | None
    categories: str | None
    metadata: dict[str, Any] = Field(description="Every other field read with the paper (journal, doi, ...).")


class StatsRecord(_Open):
    """As `rag stats --json`, plus the service's model queues."""

    path: str
    collection: str
    model: str | None
    dimension: int | None
    papers: int
    chunks: int
    size_bytes: int | None
    precision: str | None
    service: dict[str, Any] = Field(description="Model queues, remembered sessions, the running ingest job.")


class JobProgress(_Open):
    papers_done: int
    papers_total: int
    chunks: int
    text: str


class IngestJobRecord(_Open):
    job: str
    state: str = Field(description="queued, running, done or failed.")
    files: list[str]
    refused: list[str] = Field(description="Uploads refused before the job, with the reason.")
    progress: JobProgress
    report: dict[str, Any] | None = Field(description="Counts once the job is done (as `rag ingest --json`).")
    problems: list[str]
    error: str | None
    created: float
    started: float | None
    finished: float | None


# --- OpenAI-compatible -----------------------------------------------------------------------------


class Model(_Open):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(_Open):
    object: Literal["list"] = "list"
    data: list[Model]


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(_Open):
    role: Literal["assistant"] = "assistant"
    content: str = Field(description="The checked answer with [n] markers, then 'References:' one line per paper.")


class CompletionChoice(_Open):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    citations: list[CitationRecord] = Field(description="The answer's citations (an extension).")
    paper_rag: AnswerRecord = Field(description="The whole `rag ask --json` object (an extension).")


class EmbeddingUsage(_Open):
    prompt_tokens: int = Field(description="The embedder's own wordpieces, special tokens included.")
    total_tokens: int


class EmbeddingItem(_Open):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32 values.")


class EmbeddingList(_Open):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


SSE = {"schema": {"type": "string", "description": "Server-Sent Events, one JSON object per `data:` line."}}


def ok(model: type[BaseModel], description: str = "Success", status: int = 200, **content: Any) -> dict:
    """`responses=` for a route: the 2xx body's model (documentation; the route returns its record as is)."""
    entry: dict[str, Any] = {"model": model, "description": description}
    if content:
        entry["content"] = content
    return {status: entry}
