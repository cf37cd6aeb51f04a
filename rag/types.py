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
    fused: float = 0.0  # the reciprocal-rank-fusion score that ordered the results
    lexical: float | None = None  # BM25 score, when keyword search found the paper
    passages: list[str] = field(default_factory=list)  # its best passages, best first


@dataclass
class Source:
    """One paper given to the model as numbered evidence: `[n] title — sentences`."""

    n: int
    paper_id: str
    title: str
    score: float
    sentences: list[str]
    url: str | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def passage(self) -> str:
        return " ".join(self.sentences)


@dataclass
class Citation:
    """A `[n]` marker in an answer, resolved to its paper and checked against the evidence."""

    n: int
    paper_id: str
    title: str
    url: str | None
    supporting_passage: str
    supported: bool


@dataclass
class AnswerSentence:
    """One sentence of an answer and what verification found for it."""

    text: str
    cited: list[int]
    supported: bool
    support: float  # best similarity to a cited evidence sentence; 0 when it cites nothing


@dataclass
class Turn:
    """One exchange of a chat: what was asked, what was answered, and which papers it cited."""

    question: str
    answer: str
    paper_ids: list[str] = field(default_factory=list)
    standalone_question: str = ""


@dataclass
class Answer:
    """What `Assistant.ask` returns; `to_json()` is the `rag ask --json` schema."""

    question: str
    standalone_question: str
    answer: str
    refused: bool
    grounded: float
    citations: list[Citation]
    sources: list[PaperHit]
    model: str
    timings: dict[str, float]
    mode: str = "generate"  # "generate" | "extractive" | "fallback" (no model statement kept) | "refusal"
    sentences: list[AnswerSentence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # removed markers, fallbacks
    error: str | None = None  # the LLM backend's one-line error when it failed and the answer fell back
    evidence: list[Source] = field(default_factory=list)
    shape: str = ""  # what the question asked for: exists | which | list | number | describe (rag.answer.question)

    def as_turn(self) -> Turn:
        return Turn(self.question, self.answer, [c.paper_id for c in self.citations], self.standalone_question)

    def to_json(self) -> dict:
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "answer": self.answer,
            "refused": self.refused,
            "grounded": round(self.grounded, 3),
            "citations": [
                {
                    "n": c.n,
                    "paper_id": c.paper_id,
                    "title": c.title,
                    "url": c.url,
                    "supporting_passage": c.supporting_passage,
                    "supported": c.supported,
                }
                for c in self.citations
            ],
            "sources": [{"paper_id": h.paper_id, "title": h.title, "score": h.score} for h in self.sources],
            "model": self.model,
            "timings": {key: round(value, 1) for key, value in self.timings.items()},
            "mode": self.mode,
            "shape": self.shape,
            "unsupported_sentences": [s.text for s in self.sentences if s.cited and not s.supported],
            "notes": self.notes,
            "error": self.error,
        }


@dataclass
class SearchResult:
    """What `Library.search_result` returns; `to_json()` is the `rag search --json` schema (and GET /v1/search)."""

    question: str
    hits: list[PaperHit]
    mode: str  # the retrieval mode that ranked them: dense | bm25 | hybrid
    search_ms: float

    def to_json(self) -> dict:
        return {
            "question": self.question,
            "results": [
                {
                    "rank": rank,
                    "paper_id": hit.paper_id,
                    "title": hit.title,
                    "score": hit.score,
                    "fused": hit.fused,
                    "bm25": hit.lexical,
                    "passage": hit.passage,
                    "passages": hit.passages,
                    "sources": hit.sources,
                    "url": hit.url,
                    "date": hit.date,
                }
                for rank, hit in enumerate(self.hits, start=1)
            ],
            "mode": self.mode,
            "timings": {"search_ms": round(self.search_ms, 1)},
        }
