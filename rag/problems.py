"""Problems found while reading inputs, tallied so a million bad rows cost a few lines, not a million.

The first few problems of each kind (same file, same message once names and numbers are set aside)
are passed on in full; the rest are only counted, and `summary()` gives one line per kind that
had more: "x.csv: 999,995 more like 'missing title and abstract; record skipped' (lines 7 to
1,000,001)". Memory stays flat however many rows are broken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.types import Problem

SHOWN_PER_KIND = 5
SHOWN_IN_ALL = 200
_LINE = re.compile(r"^(.*):(\d+)$")
_QUOTED = re.compile(r"'[^']*'")
_NUMBER = re.compile(r"\d[\d,]*")


@dataclass
class _Kind:
    file: str
    message: str  # the first message of the kind, as written
    count: int = 0
    shown: int = 0
    first_line: int | None = None
    last_line: int | None = None


class ProblemTally:
    """Counts problems by kind; `add` says whether a problem is one of the few to show in full."""

    def __init__(self, per_kind: int = SHOWN_PER_KIND, in_all: int = SHOWN_IN_ALL) -> None:
        self.per_kind = per_kind
        self.in_all = in_all
        self.total = 0
        self.shown = 0
        self._kinds: dict[tuple[str, str], _Kind] = {}

    def add(self, problem: Problem) -> bool:
        self.total += 1
        file, line = _split_location(problem.location)
        key = (file, _NUMBER.sub("#", _QUOTED.sub("'…'", problem.message)))
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = _Kind(file, problem.message, first_line=line)
        kind.count += 1
        kind.last_line = line if line is not None else kind.last_line
        if kind.shown < self.per_kind and self.shown < self.in_all:
            kind.shown += 1
            self.shown += 1
            return True
        return False

    def summary(self) -> list[str]:
        """One line per kind with problems not shown in full."""
        lines = []
        for kind in self._kinds.values():
            hidden = kind.count - kind.shown
            if hidden <= 0:
                continue
            where = ""
            if kind.first_line is not None and kind.last_line is not None:
                where = f" (lines {kind.first_line:,} to {kind.last_line:,})"
            lines.append(f"{kind.file}: {hidden:,} more like '{kind.message}'{where}; {kind.count:,} in all")
        return lines


def _split_location(location: str) -> tuple[str, int | None]:
    match = _LINE.match(location)
    return (match.group(1), int(match.group(2))) if match else (location, None)
