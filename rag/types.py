"""The records that travel between pipeline stages: Paper -> Chunk -> ChunkHit -> PaperHit."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Paper:
    """One paper as read from a source, after text normalisation.

    `paper_id` is stable across runs: the arXiv/JSON id when the source has one,
    otherwise derived from the normalised title, so the same paper found in several
    files (or re-read after an edit) keeps its identity.
    """

    paper_id: str
    title: str
    abstract: str
    sources: list[str] = field(default_factory=list)
    raw_title: str = ""
    raw_abstract: str = ""
    authors: str | None = None
    date: str | None = None
    url: str | None = None
    categories: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A piece of one paper's abstract, sized to fit the embedder.

    `text` is the passage shown to people; `embed_text` is what the embedder reads
    (the title prepended, so every chunk knows which paper it belongs to).
    """

    chunk_id: str
    paper_id: str
    index: int
    text: str
    embed_text: str


@dataclass(frozen=True)
class Problem:
    """An input that was skipped or only partly read, reported to the user in one line."""

    location: str  # "path" or "path:line"
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass
class PaperHit:
    """One retrieved paper: its best-matching passage and the similarity that ranked it."""

    paper_id: str
    title: str
    score: float
    passage: str
    sources: list[str]
    url: str | None = None
    date: str | None = None
