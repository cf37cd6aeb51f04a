"""The model's door: a few answers at once, a short queue behind them, and a clear "busy" past it.

A local llama.cpp model computes one answer at a time on the CPU; a hosted endpoint takes up to
`llm.concurrency`. Requests beyond the slots wait in a queue of `llm.queue_size`; one more is refused at
once with `Busy`, which says how many wait and when to try again, so nobody waits without end. A
request whose client has gone away (`cancelled()` says so) leaves the queue with `Abandoned` instead of
taking the model: nobody would read its answer.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from rag.errors import RagError

T = TypeVar("T")
POLL_S = 0.1  # how often a waiting request asks whether its client is still there


class Busy(RagError):
    """Every slot is answering and the queue is full; `retry_after_s` estimates when a slot frees up."""

    def __init__(self, message: str, *, retry_after_s: int, waiting: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.waiting = waiting


class Abandoned(RagError):
    """The client went away while its question waited for the model; the question was dropped unanswered."""


class ModelGate:
    """At most `slots` holders at once and `queue_size` waiting; the next one is refused with `Busy`."""

    def __init__(self, name: str, slots: int, queue_size: int, typical_s: float = 10.0) -> None:
        self.name = name
        self.slots = slots
        self.queue_size = queue_size
        self.active = 0
        self.waiting = 0
        self.refused = 0
        self.served = 0  # questions that took the model
        self.abandoned = 0  # questions dropped from the queue: their client had gone
        self._typical_s = typical_s  # moving average of how long one answer holds a slot
        self._cond = threading.Condition()

    def retry_after_s(self) -> int:
        return max(1, min(600, math.ceil((self.waiting + 1) * self._typical_s / self.slots)))

    def acquire(self, cancelled: Callable[[], bool] | None = None) -> float:
        """Take a slot, waiting in the queue if there is room; returns the time it was taken (for `release`).

        `cancelled` (the client has gone) is asked while waiting and once more before the slot is taken.
        """
        with self._cond:
            if self.active >= self.slots:
                if self.waiting >= self.queue_size:
                    self.refused += 1
                    raise Busy(
                        f"busy: {self.name} is answering {self.active} question(s) and {self.waiting} are waiting "
                        f"(llm.queue_size={self.queue_size}); try again in about {self.retry_after_s()} s",
                        retry_after_s=self.retry_after_s(),
                        waiting=self.waiting,
                    )
                self.waiting += 1
                try:
                    while self.active >= self.slots and not (cancelled is not None and cancelled()):
                        self._cond.wait(None if cancelled is None else POLL_S)
                finally:
                    self.waiting -= 1
            if cancelled is not None and cancelled():
                self.abandoned += 1
                self._cond.notify()  # a slot this one was woken for goes to the next in line
                raise Abandoned(f"the client went away while its question waited for {self.name}; dropped unanswered")
            self.active += 1
            self.served += 1
        return time.monotonic()

    def release(self, taken_at: float) -> None:
        with self._cond:
            self.active -= 1
            self._typical_s = 0.8 * self._typical_s + 0.2 * (time.monotonic() - taken_at)
            self._cond.notify()

    def status(self) -> dict:
        return {"slots": self.slots, "active": self.active, "waiting": self.waiting, "queue_size": self.queue_size,
                "served": self.served, "abandoned": self.abandoned, "refused": self.refused}  # fmt: skip

    def hold(self, items: Iterator[T], cancelled: Callable[[], bool] | None = None) -> HeldStream[T]:
        """Take a slot now (or raise `Busy`, or `Abandoned`) and keep it until `items` is exhausted or closed."""
        return HeldStream(self, self.acquire(cancelled), items)


class HeldStream(Generic[T]):
    """An iterator that owns a gate slot: released when exhausted, closed, or dropped unfinished."""

    def __init__(self, gate: ModelGate, taken_at: float, items: Iterator[T]) -> None:
        self._gate = gate
        self._taken_at: float | None = taken_at
        self._items = items

    def __iter__(self) -> HeldStream[T]:
        return self

    def __next__(self) -> T:
        try:
            return next(self._items)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._taken_at is not None:
            taken_at, self._taken_at = self._taken_at, None
            try:
                close = getattr(self._items, "close", None)
                if close is not None:
                    close()
            finally:
                self._gate.release(taken_at)

    def __del__(self) -> None:
        self.close()
