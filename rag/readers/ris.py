"""RIS (`.ris`) as EndNote, Zotero, Mendeley and publishers export it.

Lines are `TAG  - value`; a record runs from `TY` to `ER`. A line without a tag continues the
previous value (EndNote wraps long abstracts). Tags repeat for lists (AU, KW).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rag.readers.references import Reference, read_text_file, references_to_records
from rag.types import Problem

_TAG_LINE = re.compile(r"^([A-Z][A-Z0-9])  ?-(?: (.*)|\s*)$")
_TITLE = ("TI", "T1", "CT", "BT")
_ABSTRACT = ("AB", "N2")
_AUTHORS = ("AU", "A1")
_VENUE = ("T2", "JO", "JF", "JA", "J2", "T3", "BT")
_NAMES = {
    "T2": "journal",
    "JO": "journal",
    "JF": "journal",
    "JA": "journal_abbrev",
    "J2": "journal_abbrev",
    "T3": "series",
    "A2": "editors",
    "ED": "editors",
    "VL": "volume",
    "IS": "number",
    "SP": "start_page",
    "EP": "end_page",
    "PB": "publisher",
    "CY": "place",
    "SN": "issn",
    "LA": "language",
    "N1": "note",
    "ID": "id",
    "M3": "medium",
    "ET": "edition",
    "ST": "short_title",
}
_SKIP = {"TY", "ER", "L1", "L2", "L4", "Y2", "DB", "DP", "UR", "DO", "PY", "Y1", "DA", "KW", "A3", "A4"}


@dataclass
class RisRecord:
    line: int
    tags: dict[str, list[str]] = field(default_factory=dict)

    def first(self, *names: str) -> str | None:
        for name in names:
            values = self.tags.get(name)
            if values and values[0].strip():
                return values[0]
        return None


def parse_ris(text: str) -> tuple[list[RisRecord], list[tuple[int, str]]]:
    """Records in file order and (line, message) for text that belongs to no record."""
    records: list[RisRecord] = []
    problems: list[tuple[int, str]] = []
    current: RisRecord | None = None
    last_tag: str | None = None
    stray_from: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        match = _TAG_LINE.match(line.lstrip("\ufeff"))
        if match:
            tag, value = match.group(1), (match.group(2) or "").strip()
            if tag == "TY":
                if current is not None:
                    problems.append((current.line, "record has no 'ER  -' line; ended at the next 'TY'"))
                    records.append(current)
                current = RisRecord(number, {"TY": [value]})
                last_tag = "TY"
            elif current is None:
                if stray_from is None:
                    stray_from = number
                    problems.append((number, f"'{tag}' line outside a record (no 'TY  -' before it); skipped"))
            elif tag == "ER":
                records.append(current)
                current, last_tag = None, None
            else:
                current.tags.setdefault(tag, []).append(value)
                last_tag = tag
        elif line.strip():
            if current is not None and last_tag is not None:
                values = current.tags[last_tag]
                values[-1] = f"{values[-1]} {line.strip()}".strip()
            elif stray_from is None:
                stray_from = number
                problems.append((number, "text outside a record (no 'TY  -' before it); skipped"))
        if current is not None:
            stray_from = None
    if current is not None:
        problems.append((current.line, "record has no 'ER  -' line at the end of the file; read as it is"))
        records.append(current)
    return records, problems


def record_reference(record: RisRecord) -> Reference:
    tags = record.tags
    fields: dict[str, str] = {}
    for tag, values in tags.items():
        name = _NAMES.get(tag)
        if name and tag not in _SKIP and values and name not in fields:
            fields[name] = "; ".join(v for v in values if v) if tag in ("A2", "ED") else values[0]
    keywords = [k for value in tags.get("KW", []) for k in re.split(r"\s*;\s*", value) if k]
    if keywords:
        fields["keywords"] = ", ".join(keywords)
    date = record.first("DA", "PY", "Y1")
    urls = [u for value in tags.get("UR", []) for u in value.split()]
    link = next((u for u in urls if "arxiv.org" in u), urls[0] if urls else None)
    return Reference(
        key=record.first("ID") or "",
        kind=(record.first("TY") or "GEN").lower(),
        line=record.line,
        title=record.first(*_TITLE) or "",
        abstract=next((" ".join(tags[t]) for t in _ABSTRACT if any(v.strip() for v in tags.get(t, []))), ""),
        authors=[" ".join(reversed([p.strip() for p in name.split(",", 1)])) for name in _authors(tags)],
        date=date,
        doi=record.first("DO"),
        arxiv=_arxiv_hint(tags),
        url=link,
        venue=record.first(*_VENUE),
        fields=fields,
    )


def _authors(tags: dict[str, list[str]]) -> list[str]:
    return [name for tag in _AUTHORS for name in tags.get(tag, []) if name.strip()]


def _arxiv_hint(tags: dict[str, list[str]]) -> str | None:
    """Values that mention arXiv (an arxiv.org URL, 'arXiv:2401.01234', an arXiv DOI); the id is found later."""
    hints = [v for tag in ("UR", "T2", "JO", "M1", "DO", "N1") for v in tags.get(tag, []) if "arxiv" in v.lower()]
    return " ".join(hints) or None


def read_ris(path: Path, report: Callable[[Problem], None], _options: object = None) -> Iterator:
    text = read_text_file(path, report)
    if text is None:
        return
    records, problems = parse_ris(text)
    for line, message in problems:
        report(Problem(f"{path}:{line}", message))
    if not records and not problems:
        report(Problem(str(path), "no RIS records found (no 'TY  -' lines); skipped"))
        return
    yield from references_to_records([record_reference(r) for r in records], str(path), report)
