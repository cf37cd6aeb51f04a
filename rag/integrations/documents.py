"""LlamaIndex `Document`s into paper-rag records, for `Library.ingest_documents`.

Duck-typed (`metadata`, `get_content()`, `id_`): this module imports nothing of LlamaIndex, so the library
can ingest documents without importing the retriever and engines in `rag.integrations.llama_index`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rag.records import Record, make_paper
from rag.types import Problem

__all__ = ["document_records"]

_TITLE_KEYS = ("title", "paper_title", "name")
_ABSTRACT_KEYS = ("abstract", "summary", "description")
_ID_KEYS = ("paper_id", "arxiv_id", "id", "entry_id")
_SOURCE_KEYS = ("file_path", "file_name", "source", "url")
_SIMPLE = {"authors": ("authors", "author"), "date": ("date", "published", "year"), "url": ("url", "link")}


def document_records(
    documents: Sequence[Any], report: Callable[[Problem], None], on_file: Callable[[str], None] = lambda _s: None
) -> Iterator[Record]:
    """LlamaIndex `Document`s as records: title and abstract from metadata, else from the text.

    A document without a `title` in its metadata takes its text's first line as the title and the
    rest as the abstract. Every other metadata value is kept (as text) for `--where` filters.
    """
    for position, document in enumerate(documents):
        metadata = {str(k): v for k, v in (getattr(document, "metadata", None) or {}).items()}
        lowered = {k.lower(): k for k in metadata}
        used: set[str] = set()

        def pick(names: Sequence[str], metadata=metadata, lowered=lowered, used=used) -> str | None:
            for name in names:
                key = lowered.get(name)
                if key is not None and metadata[key] not in (None, ""):
                    used.add(key)
                    return _as_text(metadata[key])
            return None

        text = (document.get_content() if hasattr(document, "get_content") else str(document)).strip()
        source = pick(_SOURCE_KEYS) or "llamaindex"
        on_file(source)
        title, abstract = pick(_TITLE_KEYS), pick(_ABSTRACT_KEYS)
        if title is None and abstract is None:
            first, _, rest = text.partition("\n")
            title, abstract = first.lstrip("#").strip(), rest.strip()
        abstract = abstract or text
        location = f"document {position} ({getattr(document, 'id_', '') or source})"
        if not title or not abstract:
            missing = " and ".join(name for name, value in (("title", title), ("text", abstract)) if not value)
            report(Problem(location, f"document has no {missing}; skipped"))
            continue
        paper_id = pick(_ID_KEYS)
        simple = {name: pick(keys) for name, keys in _SIMPLE.items()}
        extra = {k: _as_text(v) for k, v in metadata.items() if k not in used and v not in (None, "")}
        paper = make_paper(title, abstract, source, paper_id=paper_id, extra=extra, **simple)
        keys = tuple(f"{kind}:{extra[kind].lower()}" for kind in ("doi", "arxiv") if extra.get(kind))
        yield Record(paper, location, merge_keys=keys)


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False, default=str)
