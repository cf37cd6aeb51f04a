"""One paper, one identity, across a reference export, a PDF and the other sources of a run.

A BibTeX, RIS or PDF paper is known by its normalised title (like a page-dump paper, so it also
meets the same paper indexed by an earlier run). Within one run it also takes the identity of a
paper already read that shares its arXiv id, DOI or normalised title, so `refs.bib` beside an arXiv
snapshot or a PDF of the same paper gives one paper with several sources. Records from the other
formats keep their ids as before; they only lend them.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from rag.textclean import title_key

if TYPE_CHECKING:
    from rag.records import Record

_ARXIV_ID = re.compile(r"^(\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$")


def _digest(key: str) -> int:
    """Keys are held as 8-byte digests: a run over a large snapshot keeps three per paper."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class Identities:
    """Assigns each mergeable record the id of the first paper it matches; remembers every record's keys."""

    def __init__(self) -> None:
        self._ids: dict[int, str] = {}
        self._mergeable_ids: set[str] = set()

    def resolve(self, record: Record) -> Record:
        paper = record.paper
        keys = [*(record.merge_keys or ()), *self._implied_keys(record), "title:" + title_key(paper.title)]
        if record.merge_keys is not None:
            own = paper.paper_id
            for key in keys:
                known = self._ids.get(_digest(key))
                if known is not None:
                    paper.paper_id = known
                    break
            record.merged = _digest("id:" + paper.paper_id) in self._ids or paper.paper_id != own
            self._mergeable_ids.add(paper.paper_id)
        else:
            record.merged = paper.paper_id in self._mergeable_ids
        for key in ("id:" + paper.paper_id, *keys):
            self._ids.setdefault(_digest(key), paper.paper_id)
        return record

    @staticmethod
    def _implied_keys(record: Record) -> list[str]:
        """What a record from another format says about itself: an arXiv id as its id, a DOI column."""
        if record.merge_keys is not None:
            return []
        keys = []
        match = _ARXIV_ID.match(record.paper.paper_id)
        if match:
            keys.append("arxiv:" + match.group(1))
        doi = record.paper.extra.get("doi")
        if doi:
            keys.append("doi:" + doi.strip().lower().removeprefix("https://doi.org/"))
        return keys
