"""Retrieval stage: a question -> ranked papers, each once, with its best passages.

Dense chunk search and BM25 over whole papers each rank papers; reciprocal rank fusion merges the
two rankings. A paper found only by keywords is then scored against every one of its chunks, so it
gets a true similarity and its best passage like the others. Results can be re-ranked by their
single best abstract sentence, and diversified (MMR). `PaperHit.score` stays the cosine similarity
of the best chunk, whatever the mode, because answering calibrates its refusal threshold on it.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import numpy as np

from rag.config import RetrievalSettings
from rag.embedding import Embedder
from rag.errors import RagError
from rag.filters import PaperFilter, paper_matches, parse_filters
from rag.lexical import KeywordIndex, PaperCatalog
from rag.store import ChromaStore, ChunkMatch
from rag.textclean import lone_surrogate
from rag.types import PaperHit

MAX_QUESTION_CHARS = 4000
_CHROMA_IN_LIMIT = 2000  # above this many allowed papers, filter after the vector query instead


def check_question(question: str) -> str:
    if not isinstance(question, str):
        raise RagError(f"the question must be text, not {type(question).__name__}")
    text = " ".join(question.split())
    bad = lone_surrogate(text)
    if bad is not None:
        position, what = bad
        raise RagError(f"the question holds {what} (character {position + 1}); retype it, or set the terminal to UTF-8")
    if not text:
        raise RagError('the question is empty; ask something, e.g. rag search "token pruning in MLLMs"')
    if len(text) > MAX_QUESTION_CHARS:
        raise RagError(f"the question is {len(text)} characters long; the limit is {MAX_QUESTION_CHARS}")
    return text


def group_by_paper(matches: list[ChunkMatch]) -> list[ChunkMatch]:
    """Each paper once, by its best chunk, best first."""
    best: dict[str, ChunkMatch] = {}
    for match in matches:
        if match.paper_id not in best or match.similarity > best[match.paper_id].similarity:
            best[match.paper_id] = match
    return sorted(best.values(), key=lambda m: m.similarity, reverse=True)


def rrf_fuse(rankings: Sequence[tuple[Sequence[str], float]], rrf_k: float) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: each ranking adds weight / (rrf_k + rank) to its items (rank from 1)."""
    scores: dict[str, float] = {}
    for ranking, weight in rankings:
        if weight <= 0:
            continue
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (rrf_k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def missed_by_vector_search(dense: dict[str, list[ChunkMatch]], best: dict[str, float]) -> list[str]:
    """Papers outside the vector search's results whose best chunk beats the weakest chunk it returned.

    HNSW search is approximate: a chunk can be unreachable in its graph (many near-identical vectors crowd
    it out), so a paper BM25 found can score higher, read exactly, than chunks the vector search did return.
    With an exact search this list is always empty.
    """
    returned = [m.similarity for matches in dense.values() for m in matches]
    if not returned:
        return []
    floor = min(returned)
    return [pid for pid, similarity in best.items() if pid not in dense and similarity > floor]


def within_reach_of_top(
    fused: list[tuple[str, float]], lexical_order: list[str], dense: Collection[str], depth: int, first_gain: float
) -> list[str]:
    """Papers only BM25 found that would reach the fused top `depth` were they first in the vector ranking
    (`first_gain` = dense weight / (rrf_k + 1)), at most `depth` of them in BM25 order: the papers whose
    exact similarity decides whether the vector search missed one that matters."""
    fused_score = dict(fused)
    floor = fused[depth - 1][1] if len(fused) >= depth else 0.0
    reach = [pid for pid in lexical_order if pid not in dense and fused_score.get(pid, 0.0) + first_gain >= floor]
    return reach[:depth]


def vector_order(
    dense: dict[str, list[ChunkMatch]], scored: dict[str, list[tuple[ChunkMatch, np.ndarray | None]]], missed: list[str]
) -> list[str]:
    """The vector ranking with the papers it missed put where their best chunk belongs."""
    best = {pid: matches[0].similarity for pid, matches in dense.items()}
    best.update({pid: scored[pid][0][0].similarity for pid in missed})
    return sorted(best, key=lambda pid: (-best[pid], pid))


def mmr_order(
    candidates: Sequence[str], relevance: dict[str, float], vectors: dict[str, np.ndarray], lam: float
) -> list[str]:
    """Maximal marginal relevance: trade relevance against similarity to papers already picked."""
    picked: list[str] = []
    left = list(candidates)
    while left:

        def gain(pid: str) -> float:
            redundancy = max(
                (float(vectors[pid] @ vectors[p]) for p in picked if p in vectors and pid in vectors), default=0.0
            )
            return lam * relevance.get(pid, 0.0) - (1 - lam) * redundancy

        best = max(left, key=gain)
        picked.append(best)
        left.remove(best)
    return picked


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def as_filter(where: PaperFilter | Iterable[str] | None) -> PaperFilter:
    if where is None:
        return PaperFilter()
    if isinstance(where, PaperFilter):
        return where
    if isinstance(where, str):
        return parse_filters([where])
    return parse_filters(where)


class Retriever:
    """Hybrid retrieval over the chunk index and the BM25 paper index, grouped to papers."""

    def __init__(
        self,
        settings: RetrievalSettings,
        store: ChromaStore,
        embedder: Embedder,
        catalog: PaperCatalog | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._embedder = embedder
        self._catalog = catalog
        self._cache_dir = cache_dir
        self._keywords: KeywordIndex | None = None
        self._keywords_lock = threading.Lock()  # concurrent first searches build the BM25 index once
        self._generation = store.generation
        self._default_filter = parse_filters(settings.filters)

    @property
    def settings(self) -> RetrievalSettings:
        return self._settings

    def derive(self, settings: RetrievalSettings) -> Retriever:
        """A retriever with other settings (k, mode, filters, ...) over the same index, model and BM25 matrix."""
        other = Retriever(settings, self._store, self._embedder, self._catalog, self._cache_dir)
        if (settings.bm25_k1, settings.bm25_b, settings.title_weight) == (
            self._settings.bm25_k1,
            self._settings.bm25_b,
            self._settings.title_weight,
        ):
            other._keywords, other._generation = self._keywords, self._generation
        return other

    def follow_writes(self) -> None:
        """See what was written to the index since the last search, by this process or another one.

        The store reopens its client when another process stamped a new generation; the BM25 index
        is rebuilt (and the catalog refreshed) when the generation moved for any reason.
        """
        self._store.refresh()
        generation = self._store.generation
        with self._keywords_lock:
            if generation != self._generation:
                self._keywords = None
                self._generation = generation

    def keyword_index(self) -> KeywordIndex:
        with self._keywords_lock:
            if self._keywords is None:
                if self._catalog is None:
                    raise RagError("BM25 needs the paper catalog; build the Retriever through Library")
                if not self._catalog.is_current(self._store):
                    self._catalog.refresh(self._store)
                self._keywords = KeywordIndex.build(
                    self._catalog, self._settings.bm25_k1, self._settings.bm25_b, self._cache_dir
                )
            return self._keywords

    def allowed_papers(self, flt: PaperFilter, only: Collection[str] | None = None) -> set[str] | None:
        """Paper ids a search may return; None means all of them."""
        allowed = set(only) if only is not None else None
        if not flt:
            return allowed
        if self._catalog is None:
            raise RagError("filters need the paper catalog; build the Retriever through Library")
        self.keyword_index()  # makes sure the catalog is current
        matching = {r.paper_id for r in self._catalog.records() if paper_matches(flt, r.sources, r.date, r.fields)}
        return matching if allowed is None else matching & allowed

    def search(
        self,
        question: str,
        k: int | None = None,
        where: PaperFilter | Iterable[str] | None = None,
        *,
        only: Collection[str] | None = None,
        mode: str | None = None,
        rerank: bool | None = None,
    ) -> list[PaperHit]:
        question = check_question(question)
        vector = self._embedder.embed([question])[0]
        return self.search_vector(question, vector, k=k, where=where, only=only, mode=mode, rerank=rerank)

    def search_vector(
        self,
        question: str,
        vector: np.ndarray,
        k: int | None = None,
        where: PaperFilter | Iterable[str] | None = None,
        *,
        only: Collection[str] | None = None,
        mode: str | None = None,
        rerank: bool | None = None,
    ) -> list[PaperHit]:
        """Search with the question already embedded (callers that embed several texts in one batch)."""
        self.follow_writes()
        s = self._settings
        k = k or s.k
        mode = mode or s.mode
        if mode not in ("dense", "bm25", "hybrid"):
            raise RagError(f"unknown retrieval mode '{mode}'; use dense, bm25 or hybrid")
        rerank = s.rerank if rerank is None else rerank
        flt = as_filter(where) if where is not None else self._default_filter
        allowed = self.allowed_papers(flt, only)
        if allowed is not None and not allowed:
            return []
        vector = _unit(np.asarray(vector, dtype=np.float32))

        rankings: list[tuple[list[str], float]] = []
        dense: dict[str, list[ChunkMatch]] = {}
        if mode in ("dense", "hybrid"):
            dense = self._dense(vector, max(s.candidates, k * 4), allowed)
            rankings.append((list(dense), s.dense_weight if mode == "hybrid" else 1.0))
        lexical: dict[str, float] = {}
        if mode in ("bm25", "hybrid"):
            found = self.keyword_index().search(question, max(s.lexical_candidates, k), allowed, s.query_stopwords)
            lexical = dict(found)
            rankings.append(([pid for pid, _ in found], s.lexical_weight if mode == "hybrid" else 1.0))
        fused = rrf_fuse(rankings, s.rrf_k)
        depth = max(k, s.rerank_depth) if (rerank or s.mmr_lambda is not None) else k
        candidates = [pid for pid, _ in fused[:depth]]

        # A paper the vector search found already has its best chunks with exact similarities; only the
        # papers BM25 alone found (or all, when MMR needs vectors) are read back and scored here.
        need_vectors = s.mmr_lambda is not None
        scored: dict[str, list[tuple[ChunkMatch, np.ndarray | None]]] = {
            pid: [(m, None) for m in dense[pid]] for pid in candidates if pid in dense and not need_vectors
        }
        unread = [pid for pid in candidates if pid not in scored]
        hybrid = mode == "hybrid"  # only a fused ranking can hold, and repair, a paper HNSW (approximate) missed
        if hybrid:  # read also the papers such a miss could lift into the top
            reach = within_reach_of_top(fused, rankings[1][0], dense, depth, rankings[0][1] / (s.rrf_k + 1))
            unread += [pid for pid in reach if pid not in candidates]
        scored.update(self._score_chunks(vector, unread))
        missed = []
        if hybrid:
            missed = missed_by_vector_search(dense, {pid: c[0][0].similarity for pid, c in scored.items() if c})
        if missed:
            rankings[0] = (vector_order(dense, scored, missed), rankings[0][1])
            fused = rrf_fuse(rankings, s.rrf_k)
            candidates = [pid for pid, _ in fused[:depth]]
            scored.update(self._score_chunks(vector, [pid for pid in candidates if pid not in scored]))
        fused_score = dict(fused)
        if rerank and candidates:
            sentence_best = self._best_sentences(vector, candidates)
            order = [pid for pid in candidates if pid in sentence_best]
            order.sort(key=lambda pid: -sentence_best[pid])
            reranked = rrf_fuse([(candidates, 1.0), (order, s.rerank_weight)], s.rrf_k)
            candidates = [pid for pid, _ in reranked]
            fused_score = dict(reranked)
        if s.mmr_lambda is not None and candidates:
            top = max(fused_score.values())
            relevance = {pid: fused_score[pid] / top for pid in candidates}
            vectors = {pid: chunks[0][1] for pid, chunks in scored.items() if chunks}
            candidates = mmr_order(candidates, relevance, vectors, s.mmr_lambda)
        return [
            self._hit(pid, scored[pid], fused_score[pid], lexical.get(pid)) for pid in candidates[:k] if scored.get(pid)
        ]

    # --- the parts ----------------------------------------------------------------------------------

    def _dense(self, vector: np.ndarray, n_chunks: int, allowed: set[str] | None) -> dict[str, list[ChunkMatch]]:
        """Papers in order of their best chunk, each with its matched chunks, best first."""
        where = None
        if allowed is not None and len(allowed) <= _CHROMA_IN_LIMIT:
            where = {"paper_id": {"$in": sorted(allowed)}}
        elif allowed is not None:
            n_chunks *= 4  # filtered afterwards: fetch more so enough survive
        matches = self._store.query(vector, n_results=n_chunks, where=where)
        if allowed is not None:
            matches = [m for m in matches if m.paper_id in allowed]
        by_paper: dict[str, list[ChunkMatch]] = {m.paper_id: [] for m in group_by_paper(matches)}
        for match in sorted(matches, key=lambda m: m.similarity, reverse=True):
            by_paper[match.paper_id].append(match)
        return by_paper

    def _score_chunks(self, vector: np.ndarray, paper_ids: list[str]) -> dict[str, list[tuple[ChunkMatch, np.ndarray]]]:
        """Every chunk of these papers scored against the question, best first per paper."""
        by_paper: dict[str, list[tuple[ChunkMatch, np.ndarray]]] = {}
        for match, chunk_vector in self._store.chunks_of(paper_ids):
            unit = _unit(chunk_vector)
            match = ChunkMatch(match.chunk_id, match.paper_id, match.text, float(unit @ vector), match.meta)
            by_paper.setdefault(match.paper_id, []).append((match, unit))
        for chunks in by_paper.values():
            chunks.sort(key=lambda item: item[0].similarity, reverse=True)
        return by_paper

    def _best_sentences(self, vector: np.ndarray, paper_ids: list[str]) -> dict[str, float]:
        best: dict[str, float] = {}
        for pid, matrix in self._store.sentence_matrix(paper_ids).items():
            norms = np.linalg.norm(matrix, axis=1)
            norms[norms == 0] = 1.0
            best[pid] = float(np.max((matrix @ vector) / norms))
        return best

    def _hit(
        self, paper_id: str, chunks: list[tuple[ChunkMatch, np.ndarray | None]], fused: float, lexical: float | None
    ) -> PaperHit:
        best = chunks[0][0]
        meta = best.meta
        passages = [
            m.text for m, _ in sorted(chunks[: self._settings.passages], key=lambda c: c[0].similarity, reverse=True)
        ]
        return PaperHit(
            paper_id=paper_id,
            title=meta.title,
            score=round(best.similarity, 4),
            passage=best.text,
            sources=list(meta.sources),
            url=meta.url,
            date=meta.date,
            fused=round(fused, 6),
            lexical=None if lexical is None else round(lexical, 4),
            passages=passages,
        )
