"""Readers for the user's own library: reference-manager exports (BibTeX, RIS) and PDF papers.

`rag.sources` dispatches to `READERS` by file extension; every reader yields `rag.records.Record`s
and reports problems instead of raising, like the readers in `rag.sources`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from rag.readers.bibtex import read_bibtex
from rag.readers.identity import Identities
from rag.readers.pdf import read_pdf
from rag.readers.ris import read_ris

READERS: dict[str, Callable[..., Iterator]] = {".bib": read_bibtex, ".ris": read_ris, ".pdf": read_pdf}
MERGEABLE_SUFFIXES = tuple(READERS)

__all__ = ["MERGEABLE_SUFFIXES", "READERS", "Identities", "read_with"]


def read_with(path: Path, report, options) -> Iterator:
    yield from READERS[path.suffix.lower()](path, report, options)
