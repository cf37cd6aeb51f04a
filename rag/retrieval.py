"""Retrieval stage: a question -> ranked papers, each once, with its best-matching passage."""

from __future__ import annotations

from rag.config import RetrievalSettings
from rag.embedding import Embedder
from rag.errors import RagError
from rag.store import SOURCE_SEPARATOR, ChromaStore, ChunkMatch
from rag.types import PaperHit

MAX_QUESTION_CHARS = 4000


def check_question(question: str) -> str:
    text = " ".join(question.split())
    if not text:
        raise RagError('the question is empty; ask something, e.g. rag search "token pruning in MLLMs"')
    if len(text) > MAX_QUESTION_CHARS:
        raise RagError(f"the question is {len(text)} characters long; the limit is {MAX_QUESTION_CHARS}")
    return text


def group_by_paper(matches: list[ChunkMatch], k: int) -> list[PaperHit]:
    """Keep each paper's best chunk; rank papers by that chunk's similarity."""
    best: dict[str, ChunkMatch] = {}
    for match in matches:
        if match.paper_id not in best or match.similarity > best[match.paper_id].similarity:
            best[match.paper_id] = match
    ranked = sorted(best.values(), key=lambda m: m.similarity, reverse=True)[:k]
    return [
        PaperHit(
            paper_id=m.paper_id,
            title=str(m.metadata.get("title", "")),
            score=round(m.similarity, 4),
            passage=m.text,
            sources=[s for s in str(m.metadata.get("sources", "")).split(SOURCE_SEPARATOR) if s],
            url=m.metadata.get("url"),
            date=m.metadata.get("date"),
        )
        for m in ranked
    ]


class Retriever:
    """Dense retrieval over the chunk index, grouped to papers."""

    def __init__(self, settings: RetrievalSettings, store: ChromaStore, embedder: Embedder) -> None:
        self._settings = settings
        self._store = store
        self._embedder = embedder

    def search(self, question: str, k: int | None = None, where: dict | None = None) -> list[PaperHit]:
        question = check_question(question)
        return self.search_vector(self._embedder.embed([question])[0], k=k, where=where)

    def search_vector(self, vector, k: int | None = None, where: dict | None = None) -> list[PaperHit]:
        """Search with a question already embedded (callers that embed several texts in one batch)."""
        k = k or self._settings.k
        n_results = max(self._settings.candidates, k * 4)
        matches = self._store.query(vector, n_results=n_results, where=where)
        return group_by_paper(matches, k)
