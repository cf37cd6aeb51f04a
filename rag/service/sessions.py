"""Chat sessions: the recent turns of each conversation, by session id, kept in memory with a bound."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from rag.types import Answer, Turn

TURNS_KEPT = 10  # more than any answer.history_turns a follow-up reads


class Sessions:
    """Recent turns per session id; past `limit` sessions the least recently used one is forgotten."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._turns: OrderedDict[str, list[Turn]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(12)

    def history(self, session_id: str) -> list[Turn]:
        with self._lock:
            turns = self._turns.get(session_id)
            if turns is None:
                return []
            self._turns.move_to_end(session_id)
            return list(turns)

    def add(self, session_id: str, answer: Answer) -> None:
        with self._lock:
            turns = self._turns.setdefault(session_id, [])
            turns.append(answer.as_turn())
            del turns[:-TURNS_KEPT]
            self._turns.move_to_end(session_id)
            while len(self._turns) > self.limit:
                self._turns.popitem(last=False)

    def reset(self, session_id: str) -> None:
        with self._lock:
            self._turns.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._turns)
