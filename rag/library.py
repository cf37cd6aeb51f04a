"""The library's front door: one object that the CLI, the UI and the eval harness all use.

from rag import Library
library = Library.from_config()          # rag/configs/default.yaml (+ profile, env)
library.ingest()                          # the built-in corpus, incrementally
hits = library.search("dropping visual tokens in MLLMs")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rag.chunking import abstract_sentences
from rag.config import Settings, load_settings
from rag.embedding import Embedder, load_embedder
from rag.errors import IndexStoreError
from rag.filters import PaperFilter
from rag.ingest import EstimateCallback, IngestReport, ProgressCallback, ingest
from rag.lexical import PaperCatalog, cache_dir
from rag.retrieval import Retriever
from rag.store import ChromaStore, StoreStats
from rag.types import Paper, PaperHit, Problem, SearchResult


class Library:
    """An index of papers plus the embedder that reads it; heavy parts load on first use."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        """`embedder`: an already loaded one to share (it must match `settings.embedding`)."""
        self.settings = settings
        self._embedder: Embedder | None = embedder
        self._store: ChromaStore | None = None
        self._retriever: Retriever | None = None
        self._catalog: PaperCatalog | None = None

    @classmethod
    def from_config(cls, profile: str | None = None, overrides: Mapping[str, Any] | None = None) -> Library:
        return cls(load_settings(profile, overrides=overrides))

    def derive(self, overrides: Mapping[str, Any]) -> Library:
        """The same index and loaded embedder under changed settings (retrieval, answer, ...)."""
        from rag.config import apply_overrides

        other = Library(apply_overrides(self.settings, overrides))
        if other.settings.embedding == self.settings.embedding:
            other._embedder = self._embedder
        if other.settings.index == self.settings.index:
            # One open index per process: the store, the catalog and the BM25 matrix are shared when they match.
            other._store = self._store
            if other.settings.retrieval.title_weight == self.settings.retrieval.title_weight:
                other._catalog = self._catalog
                if self._retriever is not None and other._embedder is not None:
                    other._retriever = self._retriever.derive(other.settings.retrieval)
        return other

    def reopened(self) -> Library:
        """The same open index and loaded model, with the catalog and BM25 matrix read afresh: for a writer
        of its own beside running searches, and for searches after that writer finished."""
        other = Library(self.settings, self._embedder)
        other._store = self._store
        return other

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.settings.embedding)
        return self._embedder

    def store(self, *, create: bool = False) -> ChromaStore:
        if self._store is None:
            self._store = ChromaStore(
                self.settings.index_path,
                self.settings.index.collection,
                create=create,
                server=self.settings.index.server,
            )
        return self._store

    def catalog(self) -> PaperCatalog:
        """The BM25 and filter catalog beside the index (see rag.lexical)."""
        if self._catalog is None:
            self._catalog = PaperCatalog(
                self.settings.index_path, self.settings.index.collection, self.settings.retrieval.title_weight
            )
        return self._catalog

    def close_catalog(self) -> None:
        """Let go of the catalog file (before it is replaced); the next use opens it again."""
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
            self._retriever = None

    def check(self, *, repair: bool = False, say: Callable[[str], None] = lambda _line: None):  # -> CheckReport
        """Verify the index end to end and, with `repair`, fix what can be fixed (see rag.check)."""
        from rag.check import check_index

        return check_index(self, repair=repair, say=say)

    def ingest(
        self,
        paths: Iterable[str | Path] | None = None,
        *,
        rebuild: bool = False,
        prune: bool = False,
        on_problem: Callable[[Problem], None] | None = None,
        progress: bool | ProgressCallback = True,
        on_estimate: EstimateCallback | None = None,
    ) -> IngestReport:
        """Bring the index up to date with these files (see `rag.ingest.ingest`); `on_estimate` hears how long
        a big ingest should take, before it embeds."""
        store = self.store(create=True)
        catalog = self.catalog()
        self._retriever = None
        return ingest(
            self.settings,
            store,
            self.embedder,
            paths,
            prune=prune,
            rebuild=rebuild,
            report_problem=on_problem,
            progress=progress,
            catalog=catalog,
            on_estimate=on_estimate,
        )

    def ingest_documents(
        self,
        documents: Iterable[Any],
        *,
        prune: bool = False,
        on_problem: Callable[[Problem], None] | None = None,
        progress: bool | ProgressCallback = False,
    ) -> IngestReport:
        """Ingest LlamaIndex `Document`s (from any LlamaIndex reader) the same incremental, crash-safe way.

        Title and abstract come from each document's metadata (`title`, `abstract`), else from its
        text (first line, rest); other metadata is kept for `--where` filters. See
        rag/integrations/documents.py.
        """
        from rag.integrations.documents import document_records
        from rag.readers import Identities

        documents = list(documents)

        def records(report: Callable[[Problem], None], on_file: Callable[[str], None]):
            identities = Identities()
            return (identities.resolve(r) for r in document_records(documents, report, on_file))

        store = self.store(create=True)
        self._retriever = None
        return ingest(
            self.settings,
            store,
            self.embedder,
            None,
            prune=prune,
            report_problem=on_problem,
            progress=progress,
            catalog=self.catalog(),
            records=records,
        )

    def retriever(self) -> Retriever:
        if self._retriever is None:
            store = self.store()
            # Refuse a model mismatch before paying for the model load.
            precision = self.settings.embedding.precision
            store.open_for(self.settings.embedding.model, None, create=False, precision=precision)
            store.open_for(self.embedder.model_name, self.embedder.dimension, create=False, precision=precision)
            # Lost vector files would otherwise give confident wrong answers. Sentence vectors are probed by
            # ingest and `rag check`; here that would load their whole vector index before the first search.
            damage = store.damage(which=("chunks",))
            if damage:
                raise IndexStoreError(f"{store.where} is damaged: {damage}")
            self._retriever = Retriever(
                self.settings.retrieval,
                store,
                self.embedder,
                catalog=self.catalog(),
                cache_dir=cache_dir(self.settings.index_path),
            )
        return self._retriever

    def search(
        self,
        question: str,
        k: int | None = None,
        where: PaperFilter | Iterable[str] | None = None,
        *,
        mode: str | None = None,
        rerank: bool | None = None,
    ) -> list[PaperHit]:
        """Ranked papers; `where` takes filters like ["source=000_*.txt", "date>=2024-01"]."""
        return self.search_result(question, k, where, mode=mode, rerank=rerank).hits

    def search_result(
        self,
        question: str,
        k: int | None = None,
        where: PaperFilter | Iterable[str] | None = None,
        *,
        mode: str | None = None,
        rerank: bool | None = None,
    ) -> SearchResult:
        """A search with its timing and mode, as `rag search --json` and GET /v1/search report it."""
        retriever = self.retriever()
        started = time.perf_counter()
        hits = retriever.search(question, k=k, where=where, mode=mode, rerank=rerank)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return SearchResult(question, hits, mode or retriever.settings.mode, elapsed_ms)

    def paper(self, paper_id: str) -> Paper | None:
        """One indexed paper (title, text, source files, metadata), or None when the index has no such paper."""
        self.retriever()  # a missing index or wrong model is reported as for a search
        return self.store().stored_paper(paper_id)

    def abstracts(self, paper_ids: Iterable[str]) -> dict[str, str]:
        """The indexed text of these papers, by paper id (papers not in the index are left out)."""
        passages = self.store().passages_of(list(paper_ids))
        return {pid: " ".join(abstract_sentences(texts)) for pid, texts in passages.items() if texts}

    def stats(self) -> StoreStats:
        return self.store().stats()
