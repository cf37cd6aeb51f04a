"""BibTeX (`.bib`) as Zotero / Better BibTeX, JabRef, Mendeley and Google Scholar export it.

A small recursive-descent reader rather than a dependency: it keeps the line of every entry for
error messages, expands `@string` macros and `#` concatenation, keeps nested braces, and recovers
from a malformed entry at the next line that starts a new `@entry`, so one bad entry never costs
the rest of the file.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rag.readers.references import Reference, read_text_file, references_to_records
from rag.types import Problem

MONTHS = {
    name: f"{number:02d}"
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_IDENTIFIER = re.compile(r"[^\s\"#%'(),={}@]+")
_ENTRY_START = re.compile(r"^[ \t]*@[ \t]*[A-Za-z]+[ \t]*[{(]", re.MULTILINE)
_SKIPPED_TYPES = {"comment", "preamble"}
_BRACE_OR_NEWLINE = re.compile(r"[{}\n]")
_PAREN_BRACE_OR_NEWLINE = re.compile(r"[{}()\n]")
# `@string` macros may double each other (`m1 = m0 # m0`, ...): forty lines would ask for terabytes.
# No real field comes near this (abstracts are cut at corpus.max_abstract_chars, 20,000 by default).
MAX_FIELD_CHARS = 100_000


@dataclass
class BibEntry:
    """One `@type{key, name = value, ...}` with macros expanded and the outer delimiters removed."""

    entry_type: str
    key: str
    fields: dict[str, str] = field(default_factory=dict)
    line: int = 0


class BibSyntaxError(Exception):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


def parse_bibtex(text: str) -> tuple[list[BibEntry], list[tuple[int, str]]]:
    """Entries in file order and (line, message) for each entry that could not be read."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.strings: dict[str, str] = {name: value for name, value in MONTHS.items()}
        self.cut_macros: set[str] = set()  # macros whose value was cut at MAX_FIELD_CHARS
        self.cuts: list[tuple[int, str]] = []  # (line, message): fields cut at MAX_FIELD_CHARS
        self._cut = False  # the value being read was cut
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_of(self, position: int) -> int:
        return bisect.bisect_right(self._line_starts, position)

    def parse(self) -> tuple[list[BibEntry], list[tuple[int, str]]]:
        entries: list[BibEntry] = []
        problems: list[tuple[int, str]] = []
        while True:
            at = self.text.find("@", self.pos)
            if at < 0:
                break
            self.pos = at + 1
            start_line = self.line_of(at)
            try:
                entry = self._entry(at)
            except BibSyntaxError as exc:
                where = self.line_of(exc.position)
                detail = f" (line {where})" if where != start_line else ""
                problems.append((start_line, f"{exc}{detail}; entry skipped"))
                self.pos = self._next_entry_start(at)
                continue
            if entry is not None:
                entry.line = start_line
                entries.append(entry)
        return entries, sorted(problems + self.cuts)

    def _next_entry_start(self, after: int) -> int:
        """Where reading resumes after a bad entry: the next line that starts an `@entry`."""
        newline = self.text.find("\n", after)
        match = _ENTRY_START.search(self.text, newline + 1) if newline >= 0 else None
        return match.start() if match else len(self.text)

    # --- grammar ------------------------------------------------------------------------------

    def _entry(self, at: int) -> BibEntry | None:
        self._skip_space()
        entry_type = self._identifier("an entry type after '@'").lower()
        self._skip_space()
        opener = self._peek()
        if opener not in "{(":
            if entry_type in _SKIPPED_TYPES:  # `@comment` with no braces comments out its line
                return None
            raise BibSyntaxError(f"expected '{{' after '@{entry_type}'", self.pos)
        closer = "}" if opener == "{" else ")"
        self.pos += 1
        if entry_type in _SKIPPED_TYPES:
            self._balanced(closer, entry_start=at)
            return None
        if entry_type == "string":
            name, value = self._field(closer)
            self.strings[name] = value
            if self._cut:
                self.cut_macros.add(name)
            else:
                self.cut_macros.discard(name)
            self._skip_space()
            self._expect(closer)
            return None
        self._skip_space()
        key = ""
        if self._peek() not in ",":
            key = self._identifier("a citation key")
        self._skip_space()
        entry = BibEntry(entry_type, key)
        while True:
            char = self._peek()
            if char == closer:
                self.pos += 1
                return entry
            if char != ",":
                raise BibSyntaxError(f"entry '{key}': expected ',' or '{closer}', found {self._shown(char)}", self.pos)
            self.pos += 1
            self._skip_space()
            if self._peek() == closer:  # a trailing comma
                continue
            name, value = self._field(closer)
            if self._cut and name not in entry.fields:
                self.cuts.append(
                    (
                        self.line_of(at),
                        f"entry '{key}': field '{name}' is longer than {MAX_FIELD_CHARS:,} characters "
                        "(after @string expansion); cut there",
                    )
                )
            entry.fields.setdefault(name, value)
            self._skip_space()

    def _field(self, closer: str) -> tuple[str, str]:
        self._skip_space()
        name = self._identifier("a field name").lower()
        self._skip_space()
        if self._peek() != "=":
            raise BibSyntaxError(f"field '{name}': expected '=', found {self._shown(self._peek())}", self.pos)
        self.pos += 1
        self._cut = False
        parts = [self._value(name)]
        length = len(parts[0])
        self._skip_space()
        while self._peek() == "#":
            self.pos += 1
            part = self._value(name)
            if length < MAX_FIELD_CHARS:  # past the cap, the rest is still read (to find the entry's end), not kept
                parts.append(part)
                length += len(part)
            self._skip_space()
        if length > MAX_FIELD_CHARS:
            self._cut = True
            return name, "".join(parts)[:MAX_FIELD_CHARS]
        return name, "".join(parts)

    def _value(self, name: str) -> str:
        self._skip_space()
        char = self._peek()
        start = self.pos
        if char == "{":
            self.pos += 1
            return self._balanced("}", entry_start=start, field_name=name)
        if char == '"':
            self.pos += 1
            return self._quoted(start, name)
        if char.isdigit():
            match = re.compile(r"\d+").match(self.text, self.pos)
            assert match is not None
            self.pos = match.end()
            return match.group()
        macro = self._identifier(f"a value for field '{name}'")
        if macro.lower() in self.cut_macros:
            self._cut = True
        return self.strings.get(macro.lower(), macro)

    def _balanced(self, closer: str, *, entry_start: int, field_name: str | None = None) -> str:
        """Text up to the brace that closes the one just read; nested braces are kept."""
        depth = 0
        start = self.pos
        special = _BRACE_OR_NEWLINE if closer == "}" else _PAREN_BRACE_OR_NEWLINE
        while True:
            match = special.search(self.text, self.pos)
            if match is None:
                break
            char, self.pos = match.group(), match.start()
            if char == "\n" and _ENTRY_START.match(self.text, self.pos + 1):
                break  # a new entry begins: this value never closed
            if char == "{":
                depth += 1
            elif char == "}" and depth > 0:
                depth -= 1
            elif char == closer and depth == 0:
                self.pos += 1
                return self.text[start : self.pos - 1]
            self.pos += 1
        what = f"field '{field_name}'" if field_name else "entry"
        raise BibSyntaxError(f"unbalanced braces in {what}", entry_start)

    def _quoted(self, start: int, name: str) -> str:
        depth = 0
        begin = self.pos
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\n" and _ENTRY_START.match(self.text, self.pos + 1):
                break
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
            elif char == '"' and depth <= 0:
                self.pos += 1
                return self.text[begin : self.pos - 1]
            self.pos += 1
        raise BibSyntaxError(f"unterminated quoted value in field '{name}'", start)

    # --- lexing -------------------------------------------------------------------------------

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise BibSyntaxError(f"expected '{char}', found {self._shown(self._peek())}", self.pos)
        self.pos += 1

    def _identifier(self, what: str) -> str:
        match = _IDENTIFIER.match(self.text, self.pos)
        if not match:
            raise BibSyntaxError(f"expected {what}, found {self._shown(self._peek())}", self.pos)
        self.pos = match.end()
        return match.group()

    @staticmethod
    def _shown(char: str) -> str:
        return repr(char) if char else "the end of the file"


# --- entries -> references --------------------------------------------------------------------

_NAME_SPLIT = re.compile(r"\s+and\s+", re.IGNORECASE)


def split_authors(value: str) -> list[str]:
    """'Last, First and First Last and {Team} and others' -> ['First Last', 'First Last', '{Team}', 'et al.']."""
    names: list[str] = []
    for part in _split_top_level(value):
        part = " ".join(part.split())
        if not part:
            continue
        if part.lower() == "others":
            names.append("et al.")
            continue
        pieces = _split_top_level(part, ",")
        if len(pieces) >= 2:  # "von Last, Jr, First" or "Last, First"
            first = pieces[-1].strip()
            last = pieces[0].strip()
            part = f"{first} {last}".strip()
        names.append(part)
    return names


def _split_top_level(text: str, separator: str | None = None) -> list[str]:
    """Split on ' and ' (or a separator) outside braces."""
    out: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif depth == 0:
            if separator is not None and char == separator:
                out.append(text[start:i])
                start = i + 1
            elif separator is None and char.isspace():
                match = _NAME_SPLIT.match(text, i)
                if match:
                    out.append(text[start:i])
                    start = i = match.end()
                    continue
        i += 1
    out.append(text[start:])
    return out


def entry_reference(entry: BibEntry) -> Reference:
    fields = dict(entry.fields)
    eprint_type = (fields.get("archiveprefix") or fields.get("eprinttype") or "").lower()
    arxiv = fields.pop("arxivid", None) or fields.pop("arxiv", None)
    if not arxiv and "eprint" in fields and (eprint_type == "arxiv" or not eprint_type):
        arxiv = fields["eprint"]
    return Reference(
        key=entry.key,
        kind=entry.entry_type,
        line=entry.line,
        title=fields.pop("title", ""),
        abstract=fields.pop("abstract", ""),
        authors=split_authors(fields.pop("author", "")),
        date=fields.pop("date", None),
        year=fields.pop("year", None),
        month=fields.pop("month", None),
        doi=fields.pop("doi", None),
        arxiv=arxiv,
        url=fields.pop("url", None),
        venue=fields.get("journal") or fields.get("journaltitle") or fields.get("booktitle"),
        fields={name: value for name, value in fields.items() if name != "file"},  # file: local attachment paths
    )


def read_bibtex(path: Path, report: Callable[[Problem], None], _options: object = None) -> Iterator:
    text = read_text_file(path, report)
    if text is None:
        return
    entries, problems = parse_bibtex(text)
    for line, message in problems:
        report(Problem(f"{path}:{line}", message))
    if not entries and not problems:
        report(Problem(str(path), "no BibTeX entries found; skipped"))
        return
    yield from references_to_records([entry_reference(e) for e in entries], str(path), report)
