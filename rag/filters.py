"""Paper filters: `source=FILE`, `date>=2024-01`, `date<=2024-06-30`, `KEY=VALUE` — parsed and matched purely.

Dates compare as ISO text at the precision given, so `date<=2024-06` keeps all of June and
`date=2024` keeps the whole year. Several `source=` filters widen the match (any of them); every
other filter narrows it. A paper with no date fails any date filter.
"""

from __future__ import annotations

import calendar
import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from rag.errors import RagError

_EXPRESSION = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(>=|<=|=)\s*(.+?)\s*$")
_ISO_PREFIX = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


@dataclass(frozen=True)
class PaperFilter:
    sources: tuple[str, ...] = ()
    date_from: str | None = None
    date_to: str | None = None
    fields: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.sources or self.date_from or self.date_to or self.fields)

    def describe(self) -> str:
        parts = [f"source={s}" for s in self.sources]
        parts += [f"date>={self.date_from}"] if self.date_from else []
        parts += [f"date<={self.date_to}"] if self.date_to else []
        parts += [f"{key}={value}" for key, value in self.fields]
        return ", ".join(parts)


def parse_filters(expressions: Iterable[str]) -> PaperFilter:
    """Turn `--where` expressions into a filter; a malformed one is a one-line error naming it."""
    sources: list[str] = []
    date_from = date_to = None
    fields: list[tuple[str, str]] = []
    for expression in expressions:
        match = _EXPRESSION.match(expression)
        if not match:
            raise RagError(f"bad filter '{expression}': write KEY=VALUE, date>=YYYY[-MM[-DD]] or date<=YYYY[-MM[-DD]]")
        key, op, value = match.group(1).lower(), match.group(2), match.group(3)
        if key in ("source", "sources", "file"):
            if op != "=":
                raise RagError(f"bad filter '{expression}': source takes '=' (a file name, path or glob)")
            sources.append(value)
        elif key in ("date", "year"):
            if not _ISO_PREFIX.match(value):
                raise RagError(f"bad filter '{expression}': dates are YYYY, YYYY-MM or YYYY-MM-DD")
            problem = _calendar_problem(value)
            if problem:
                raise RagError(f"bad filter '{expression}': {problem}")
            if op in (">=", "="):
                date_from = value
            if op in ("<=", "="):
                date_to = value
        else:
            if op != "=":
                raise RagError(f"bad filter '{expression}': only dates take >= or <=")
            fields.append((key, value))
    return PaperFilter(tuple(sources), date_from, date_to, tuple(fields))


def _calendar_problem(value: str) -> str | None:
    """Why an ISO-shaped date is not on the calendar (month 13, February 30th), or None."""
    parts = [int(p) for p in value.split("-")]
    if len(parts) > 1 and not 1 <= parts[1] <= 12:
        return f"there is no month {parts[1]:02d}"
    if len(parts) > 2:
        last = calendar.monthrange(parts[0], parts[1])[1]
        if not 1 <= parts[2] <= last:
            return f"{calendar.month_name[parts[1]]} {parts[0]} has days 01 to {last}"
    return None


def source_matches(pattern: str, sources: Sequence[str]) -> bool:
    """A source filter names a file by path, by file name, or by a glob on either."""
    for source in sources:
        name = PurePath(source).name
        if pattern in (source, name) or fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(source, pattern):
            return True
    return False


def field_matches(wanted: str, value: object) -> bool:
    """Case-insensitive equality, or membership for list-like values such as 'cs.CL cs.CV'."""
    text = str(value).strip().lower()
    wanted = wanted.strip().lower()
    return text == wanted or wanted in re.split(r"[\s,;]+", text)


def paper_matches(flt: PaperFilter, sources: Sequence[str], date: str | None, fields: dict) -> bool:
    if flt.sources and not any(source_matches(p, sources) for p in flt.sources):
        return False
    if flt.date_from or flt.date_to:
        if not date:
            return False
        if flt.date_from and date[: len(flt.date_from)] < flt.date_from:
            return False
        if flt.date_to and date[: len(flt.date_to)] > flt.date_to:
            return False
    lowered = {str(k).lower(): v for k, v in fields.items()}
    return all(key in lowered and field_matches(value, lowered[key]) for key, value in flt.fields)
