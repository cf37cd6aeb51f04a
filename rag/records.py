"""What a reader yields: a `Record` (one paper as found at one place in one file) and `make_paper`, which
cleans a raw title and abstract into a `Paper`.

Shared by `rag.sources` and every reader in `rag.readers` (and the LlamaIndex document bridge), so the
readers never import the module that dispatches to them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from rag.textclean import clean_text, storable, title_key
from rag.types import Paper

__all__ = ["Record", "make_paper"]


@dataclass
class Record:
    """One (title, abstract) as found at one place in one file, before papers are merged."""

    paper: Paper
    location: str
    merge_keys: tuple[str, ...] | None = None  # ("arxiv:...", "doi:..."): may join a paper of the run
    merged: bool = False  # joined a paper read before it: differing text is expected, not a problem


def make_paper(
    raw_title: str,
    raw_abstract: str,
    source: str,
    *,
    paper_id: str | None = None,
    authors: str | None = None,
    date: str | None = None,
    url: str | None = None,
    categories: str | None = None,
    extra: dict[str, str] | None = None,
) -> Paper:
    raw_title, raw_abstract = storable(raw_title), storable(raw_abstract)
    authors, date, url, categories = (storable(v) if v else v for v in (authors, date, url, categories))
    extra = {storable(k): storable(v) for k, v in (extra or {}).items()}
    paper_id = storable(paper_id) if paper_id is not None else None
    title = clean_text(raw_title)
    if paper_id is None:
        paper_id = "t:" + hashlib.sha1(title_key(title).encode()).hexdigest()[:16]
    if url is None and _looks_like_arxiv_id(paper_id):
        url = f"https://arxiv.org/abs/{paper_id}"
    return Paper(
        paper_id=str(paper_id).strip(),
        title=title,
        abstract=clean_text(raw_abstract),
        sources=[source],
        raw_title=raw_title,
        raw_abstract=raw_abstract,
        authors=clean_text(authors) if authors else None,
        date=date,
        url=url,
        categories=categories,
        extra=extra or {},
    )


_ARXIV_ID = re.compile(r"^(\d{4}\.\d{4,5}|[a-z\-]+(\.[A-Z]{2})?/\d{7})(v\d+)?$")


def _looks_like_arxiv_id(paper_id: str) -> bool:
    return bool(_ARXIV_ID.match(paper_id))
