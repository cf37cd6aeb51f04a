"""Index stage, writing half: what an ingest says while it runs. After each committed batch, its progress
(counts, rate, time left); once, before a big ingest embeds, how long it should take.

The estimate comes from the rate the last big ingest into the same index measured with the same
encoder (kept in rag.ingest_state's file), else from this run's first batch: papers per second for
the whole batch (chunking, embedding, writing) and texts per paper, so it counts what the user waits
for, not only the encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rag.ingest_state import EncoderRate


@dataclass(frozen=True)
class IngestProgress:
    """Where an ingest stands after a committed batch: counts, rate and time left."""

    done: int  # papers embedded so far
    total: int  # papers planned for embedding
    chunks: int
    seconds: float  # since embedding started

    @property
    def rate(self) -> float:
        """Papers per second so far."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def describe(self) -> str:
        left = self.seconds_left
        eta = "" if left is None else f", {format_duration(left)} left"
        return f"embedded {self.done}/{self.total} papers ({self.chunks} chunks), {self.rate:.1f} papers/s{eta}"


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


ProgressCallback = Callable[[IngestProgress], None]

ESTIMATE_ABOVE = 2000  # papers to embed: a smaller ingest is over before an estimate would help
RATE_AFTER = 100  # papers embedded: fewer measure too little to estimate the next big ingest by


@dataclass(frozen=True)
class IngestEstimate:
    """Said once, before a big ingest embeds (or after its first batch): what there is to do, how long it takes."""

    papers_found: int
    papers_to_embed: int
    texts: int  # chunks and sentences to embed, from the texts per paper measured
    seconds: float  # expected time for all of it: chunking, embedding and writing
    texts_per_second: float  # the encoder's own rate
    basis: str  # where the rates come from

    def describe(self) -> str:
        return (
            f"{self.papers_found:,} papers found, {self.papers_to_embed:,} to embed (about {self.texts:,} texts: "
            f"chunks and sentences); expected time about {format_duration(self.seconds)} at "
            f"{self.texts_per_second:,.0f} texts/s ({self.basis})"
        )


EstimateCallback = Callable[[IngestEstimate], None]


class Estimator:
    """Measures the embedding rate of this run and tells `on_estimate` once what a big ingest will take."""

    def __init__(
        self, on_estimate: EstimateCallback | None, found: int, planned: int, known: EncoderRate | None, encoder: str
    ) -> None:
        self.wanted = on_estimate is not None and planned > ESTIMATE_ABOVE
        self._say = on_estimate
        self._found, self._planned, self._known, self._encoder = found, planned, known, encoder
        self.papers = self.texts = 0
        self.seconds = self.embed_seconds = 0.0

    def before(self) -> IngestEstimate | None:
        """From the rate the last big ingest into this index measured (same model, runtime and precision)."""
        known = self._known
        if not self.wanted or known is None:
            return None
        self.wanted = False
        return self._estimate(known, "rate of the last ingest into this index")

    def after_batch(self, papers: int, texts: int, seconds: float, embed_seconds: float) -> IngestEstimate | None:
        first = self.papers == 0
        self.papers += papers
        self.texts += texts
        self.seconds += seconds
        self.embed_seconds += embed_seconds
        if not (first and self.wanted) or not papers or embed_seconds <= 0:
            return None
        self.wanted = False
        return self._estimate(self._rate(), f"measured on the first {papers} papers")

    def say(self, estimate: IngestEstimate) -> None:
        if self._say is not None:
            self._say(estimate)

    def _rate(self) -> EncoderRate:
        return EncoderRate(
            self._encoder, self.seconds / self.papers, self.texts / self.papers, self.texts / self.embed_seconds
        )

    def _estimate(self, rate: EncoderRate, basis: str) -> IngestEstimate:
        texts = round(rate.texts_per_paper * self._planned)
        seconds = rate.seconds_per_paper * self._planned
        return IngestEstimate(self._found, self._planned, texts, seconds, rate.texts_per_second, basis)

    def measured(self) -> EncoderRate | None:
        """This run's rate, kept for the next big ingest's estimate (a run of a few papers measures too little)."""
        if self.papers < RATE_AFTER or self.embed_seconds <= 0:
            return None
        return self._rate()
