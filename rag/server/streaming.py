"""Server-Sent Events from the service's (blocking) answer streams, one step at a time in a worker thread."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

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
