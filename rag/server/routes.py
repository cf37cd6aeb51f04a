"""The paper-rag API: ask (JSON or Server-Sent Events), search, papers, stats and ingest jobs.

Each route checks its input, calls the service in a worker thread and returns the service's record as
JSON: /v1/ask gives exactly `rag ask --json`, /v1/search exactly `rag search --json`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import RagError
from rag.filters import parse_filters
from rag.server.errors import ApiError, error_body, log, status_of, validation_message
from rag.server.responses import SSE, AnswerRecord, IngestJobRecord, PaperRecord, SearchRecord, StatsRecord, ok
from rag.server.schemas import ERROR_RESPONSES, AskRequest, IngestRecords
from rag.server.streaming import SSE_HEADERS, client_watch, drive, sse
from rag.service import Service
from rag.service.jobs import JOBS_KEPT
from rag.types import Answer

ANSWER_EXAMPLE = {
    "question": "Is there work that drops all visual tokens partway through an MLLM?",
    "standalone_question": "Is there work that drops all visual tokens partway through an MLLM?",
    "answer": "Yes — **DyVTE** (dynamic visual-token exit): ... [1].",
    "refused": False,
    "grounded": 1.0,
    "citations": [
        {
            "n": 1,
            "paper_id": "t:4a32...",
            "title": "Accelerating Multimodal Large Language Models via "
            "Dynamic Visual-Token Exit and the Empirical Findings",
            "url": None,
            "supporting_passage": "...",
            "supported": True,
        }
    ],  # fmt: skip
    "sources": [{"paper_id": "t:4a32...", "title": "...", "score": 0.6017}],
    "model": "llamacpp:qwen2.5-coder-0.5b-instruct",
    "timings": {"retrieve_ms": 60.1, "first_token_ms": 900.0, "total_ms": 4000.0},
    "mode": "generate",
    "shape": "exists",
    "unsupported_sentences": [],
    "notes": [],
    "error": None,
}


def multipart_refused(reason: str, max_files: int) -> ApiError:
    """413 for a multipart body past the limits (files, fields, a field's size), 422 for one that cannot be read."""
    if reason.startswith("Too many files"):
        return ApiError(413, f"files: at most {max_files} files per request (server.max_upload_files)")
    if reason.startswith(("Too many fields", "Field exceeded", "Part exceeded")):
        return ApiError(413, f"the multipart body is too large: {reason}")
    return ApiError(422, f"the multipart body cannot be read: {reason}")


def router(service: Service, *, json_limit: int, upload_limit: int, max_files: int) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["paper-rag"], responses=ERROR_RESPONSES)

    def checked(choices) -> tuple[str, dict[str, Any]]:
        profile = service.check_profile(choices.profile)
        if choices.where:
            parse_filters(choices.where)  # a malformed filter is a 422 before anything loads
        return profile, choices.overrides()

    @api.post(
        "/ask",
        summary="Answer a question, citing the papers",
        description='Returns exactly the `rag ask --json` object. With `"stream": true`: Server-Sent Events, '
        "`event: token` (the draft as written) then one `event: answer` carrying the checked answer.",
        responses=ok(
            AnswerRecord,
            "The answer; with stream: Server-Sent Events",
            **{"application/json": {"example": ANSWER_EXAMPLE}, "text/event-stream": SSE},
        ),  # fmt: skip
        max_body_size=json_limit,
    )
    async def ask(body: AskRequest, request: Request):
        profile, overrides = checked(body)
        history = [turn.to_turn() for turn in body.history]
        # A question whose client leaves while it waits for the model is dropped, not answered to nobody.
        async with client_watch(request) as gone:
            if not body.stream:
                answer = await run_in_threadpool(service.ask, body.question, history, profile=profile,
                                                 overrides=overrides, session=body.session, cancelled=gone)  # fmt: skip
                return JSONResponse(answer.to_json())
            # Taking the model's slot happens here, so "busy" is a 503 before any event is sent.
            items = await run_in_threadpool(service.stream, body.question, history, profile=profile,
                                            overrides=overrides, session=body.session, cancelled=gone)  # fmt: skip

        async def events() -> AsyncIterator[bytes]:
            try:
                async for item in drive(items):
                    if isinstance(item, Answer):
                        yield sse(item.to_json(), "answer")
                    else:
                        yield sse({"text": item}, "token")
            except RagError as exc:
                yield sse(error_body(status_of(exc), str(exc)), "error")
            except Exception as exc:  # noqa: BLE001 - the client gets one line, the log the traceback
                log.exception("unexpected error while streaming an answer")
                yield sse(error_body(500, f"internal error ({type(exc).__name__})"), "error")

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    @api.get(
        "/search",
        summary="Rank papers for a question",
        description="Exactly the `rag search --json` object.",
        responses=ok(SearchRecord),
    )
    async def search(
        q: Annotated[str, Query(max_length=100_000, description="The question or keywords.")],
        k: Annotated[int | None, Query(ge=1, le=100, description="Papers returned (default retrieval.k).")] = None,
        where: Annotated[list[str] | None, Query(max_length=20, description="Filters, repeatable.")] = None,
        mode: Annotated[Literal["dense", "bm25", "hybrid"] | None, Query(description="Retrieval mode.")] = None,
        rerank: Annotated[bool | None, Query(description="Sentence re-ranking (default retrieval.rerank).")] = None,
    ):
        if where:
            parse_filters(where)
        result = await run_in_threadpool(service.search, q, k, where or None, mode=mode, rerank=rerank)
        return result.to_json()

    @api.get(
        "/papers/{paper_id:path}",
        summary="One indexed paper: title, abstract, sources, metadata",
        responses=ok(PaperRecord),
    )
    async def paper(paper_id: str):
        found = await run_in_threadpool(service.paper, paper_id)
        if found is None:
            raise ApiError(404, f"no paper with id {paper_id!r} in the index")
        return {
            "paper_id": found.paper_id,
            "title": found.title,
            "abstract": found.abstract,
            "sources": found.sources,
            "url": found.url,
            "date": found.date,
            "authors": found.authors,
            "categories": found.categories,
            "metadata": found.extra,
        }

    @api.get(
        "/stats",
        summary="What the index holds (as `rag stats --json`), and the model queues",
        responses=ok(StatsRecord),
    )
    async def stats():
        found = await run_in_threadpool(service.stats)
        return {**found.__dict__, "service": service.status()}

    @api.post(
        "/ingest",
        status_code=202,
        summary="Add papers: upload files, or send JSON records; returns a job at once",
        description="`multipart/form-data` with one or more `files` (JSONL, CSV, TXT, BibTeX, RIS, PDF; the chat "
        'page\'s size and type limits and name sanitising), or `application/json` `{"records": [...]}`. One job '
        "runs at a time; poll GET /v1/ingest/{job}. Searches keep working and see the papers when it is done.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                            "required": ["files"],
                        }
                    },
                    "application/json": {"schema": IngestRecords.model_json_schema()},
                },
            }
        },
        responses=ok(IngestJobRecord, "The job, queued", status=202),
        max_body_size=upload_limit,
    )
    async def ingest(request: Request):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            try:
                form = await request.form(max_files=max_files, max_fields=max_files + 10)
            except StarletteHTTPException as exc:  # Starlette's parser says 400 for all it refuses
                raise multipart_refused(str(exc.detail), max_files) from None
            try:
                uploads = [(f.filename or "upload", f.file) for f in form.getlist("files") if hasattr(f, "file")]
                if not uploads:
                    raise ApiError(422, "files: send one or more files in the multipart field 'files'")
                job = await run_in_threadpool(service.ingest_files, uploads)
            finally:
                await form.close()
        elif kind == "application/json":
            try:
                body = IngestRecords.model_validate_json(await request.body())
            except ValidationError as exc:
                raise ApiError(422, validation_message(exc)) from None
            job = await run_in_threadpool(service.ingest_records, body.records, body.name)
        else:
            raise ApiError(415, "send multipart/form-data (field 'files') or application/json ({\"records\": [...]})")
        return JSONResponse(job.to_json(), status_code=202, headers={"Location": f"/v1/ingest/{job.job_id}"})

    @api.get(
        "/ingest/{job_id}", summary="An ingest job: state, progress, report, problems", responses=ok(IngestJobRecord)
    )
    async def ingest_job(job_id: str):
        job = service.jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no ingest job {job_id!r} (the last {JOBS_KEPT} jobs are kept, also across restarts)")
        return job.to_json()

    return api
