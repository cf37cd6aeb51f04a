"""Server-Sent Events from the service's (blocking) answer streams, one step at a time in a worker thread;
and whether a request's client is still there while its question waits for the model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

T = TypeVar("T")
_END = object()

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # a proxy must not hold events back


def sse(data: Any, event: str | None = None) -> bytes:
    """One event: `event: NAME` (when named) and `data: JSON`, ended by a blank line."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


async def drive(items: Iterator[T]) -> AsyncIterator[T]:
    """Iterate a blocking iterator without blocking the event loop; closed (its model slot freed) on the way out,
    also when the client goes away mid-answer."""
    try:
        while True:
            item = await run_in_threadpool(next, items, _END)
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            await run_in_threadpool(close)


@contextlib.asynccontextmanager
async def client_watch(request: Request, every_s: float = 0.1) -> AsyncIterator[Callable[[], bool]]:
    """A thread-safe "has the client gone?" for the service's model queue, answered by polling the connection
    while the block runs (a worker thread waiting for the model cannot await the ASGI channel itself)."""
    gone = threading.Event()

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(every_s)
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        yield gone.is_set
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
