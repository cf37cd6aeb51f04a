"""Index stage, writing half, continued: what the last complete ingests of given files saw, so that a
re-ingest of files that did not change is decided from their fingerprints instead of re-reading them.

Parsing every record is what a no-op re-ingest spends its time on (100k papers: about a minute);
hashing the files' bytes takes a fraction of a second. So each ingest of files that completes
records, beside the index (`ingest-state.json`, written whole and atomically, under the ingest
lock), one entry: the settings fingerprint, --prune, every file read (path, size, mtime_ns, blake2b
of its bytes) and what listing them reported, whether each other file the index cites existed, the
index as the run left it (generation stamp, chunk and sentence counts and the write log's sequence
number read from chroma.sqlite3, a few stored ids for the damage probe to look up, the vector files'
fingerprints) and the counts a run over the same inputs reports again. A later run whose inputs and
index match an entry in every part reports those counts without reading a record; any difference,
however harmless (a file touched but not changed), takes the full path, which records a fresh entry
when it completes. The file also keeps the encoder rate of the last
big ingest, for the time estimate printed before the next.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.types import Problem

STATE_FILE = "ingest-state.json"
_FORMAT = 1
_ENTRIES = 8  # sets of inputs remembered per collection (alternating `rag ingest refs.bib` and `rag ingest`)
_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileFingerprint:
    """One input file as found before it was read: any change to it changes one of these."""

    path: str
    size: int
    mtime_ns: int
    digest: str  # blake2b-128 of its bytes

    @classmethod
    def of(cls, path: Path) -> FileFingerprint | None:
        """None when the file cannot be read (the full path then reports why)."""
        try:
            with path.open("rb") as handle:
                before = os.fstat(handle.fileno())
                digest = hashlib.blake2b(digest_size=16)
                while block := handle.read(_BLOCK):
                    digest.update(block)
        except OSError:
            return None
        return cls(str(path), before.st_size, before.st_mtime_ns, digest.hexdigest())


@dataclass(frozen=True)
class Inputs:
    """What a run over files is given: the same `Inputs` and the same index give the same outcome."""

    settings: str  # see `settings_fingerprint`
    prune: bool
    files: tuple[FileFingerprint, ...]  # every file the run reads, in reading order
    listing: str  # a digest of the problems found while listing the paths (unsupported files, ...)

    def same_files(self, other: Inputs) -> bool:
        return [f.path for f in self.files] == [f.path for f in other.files]


@dataclass(frozen=True)
class IndexMark:
    """The index as a run left it; every write stamps a new generation (rag.chroma)."""

    generation: str
    chunks: int
    sentences: int
    log: int = 0  # the write log's last sequence number: moves with any write, a stamping one or not


@dataclass
class Outcome:
    """The counts and problems an ingest over unchanged inputs reports (nothing embedded, pruned or updated)."""

    files_read: int
    records_read: int
    papers_seen: int
    papers_missing: int
    problems: list[Problem] = field(default_factory=list)  # as reported: the first few of each kind
    problems_total: int = 0
    problem_summary: list[str] = field(default_factory=list)


@dataclass
class Entry:
    inputs: Inputs
    others: dict[str, bool]  # every other file the index cites -> whether it existed
    index: IndexMark
    outcome: Outcome
    probe: dict[str, list[str]]  # stored chunk and sentence ids for `ChromaStore.damage(ids=...)`
    vector_files: str = ""  # the vector files' fingerprints as the run left them (rag.store_files.files_digest)


@dataclass(frozen=True)
class EncoderRate:
    """How fast the last big ingest into this index embedded, for the next one's estimate."""

    encoder: str  # model | backend | precision | sentence vectors
    seconds_per_paper: float  # chunking, embedding and writing, per paper
    texts_per_paper: float  # chunks and sentences
    texts_per_second: float  # the encoder alone


def settings_fingerprint(parts: Iterable[object]) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def listing_digest(problems: Iterable[Problem]) -> str:
    return hashlib.blake2b("\x1e".join(map(str, problems)).encode(), digest_size=16).hexdigest()


def cited_others(cited: Iterable[str], read: Iterable[str]) -> dict[str, bool]:
    """Whether each file the index cites, other than those read, exists: what --prune and "missing" look at."""
    skip = set(read)
    return {s: Path(s).exists() for s in sorted(set(cited) - skip) if s}


class IngestState:
    """The state file of one index folder, as read; `save` writes it back whole."""

    def __init__(self, index_path: Path, collection: str) -> None:
        self.path = index_path / STATE_FILE
        self.collection = collection
        self._data = _read(self.path)
        mine = self._data.setdefault("collections", {}).setdefault(collection, {})
        self._entries: list[dict] = [e for e in mine.get("entries", []) if isinstance(e, dict)]
        self._rate: dict | None = mine.get("rate") if isinstance(mine.get("rate"), dict) else None

    # --- the no-op shortcut -------------------------------------------------------------------------

    def match(self, inputs: Inputs, index: IndexMark) -> Entry | None:
        """The run recorded for exactly these inputs on exactly this index, else None."""
        wanted = _inputs_json(inputs)
        for raw in self._entries:
            try:
                if raw["inputs"] != wanted or raw["index"] != asdict(index):
                    continue
                if cited_others(raw["others"], ()) != raw["others"]:
                    return None
                probe = {str(k): [str(i) for i in v] for k, v in raw["probe"].items()}
                outcome = _outcome(raw["outcome"])
                return Entry(inputs, dict(raw["others"]), index, outcome, probe, str(raw.get("vector_files", "")))
            except (KeyError, TypeError, ValueError, AttributeError):
                return None  # a hand-edited or older file: the full path is always right
        return None

    def record(self, entry: Entry) -> None:
        """Remember a completed run; entries made at another generation of the index no longer apply."""
        raw = {
            "inputs": _inputs_json(entry.inputs),
            "others": entry.others,
            "index": asdict(entry.index),
            "outcome": asdict(entry.outcome) | {"problems": [[p.location, p.message] for p in entry.outcome.problems]},
            "probe": entry.probe,
            "vector_files": entry.vector_files,
        }
        kept = [
            e
            for e in self._entries
            if e.get("index", {}).get("generation") == entry.index.generation
            and not _same_key(e.get("inputs"), raw["inputs"])
        ]
        self._entries = [raw, *kept][:_ENTRIES]

    def forget(self) -> None:
        self._entries = []

    # --- the encoder rate ---------------------------------------------------------------------------

    def rate(self, encoder: str) -> EncoderRate | None:
        try:
            rate = EncoderRate(**self._rate) if self._rate else None
        except TypeError:
            return None
        return rate if rate is not None and rate.encoder == encoder else None

    def set_rate(self, rate: EncoderRate) -> None:
        self._rate = asdict(rate)

    def save(self) -> None:
        """Write the file whole through a temporary name, so a reader sees the old state or the new."""
        self._data["format"] = _FORMAT
        self._data["collections"][self.collection] = {"entries": self._entries, "rate": self._rate}
        temporary = self.path.with_name(f"{STATE_FILE}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(self._data), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError:
            temporary.unlink(missing_ok=True)  # a read-only index: the next run takes the full path


def forget_ingest_state(index_path: Path) -> None:
    """After `rag check --repair` or `--rebuild`: no run is trusted to have seen the index as it is now."""
    (index_path / STATE_FILE).unlink(missing_ok=True)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("collections"), dict):
        return {}
    return data


def _inputs_json(inputs: Inputs) -> dict:
    return {
        "settings": inputs.settings,
        "prune": inputs.prune,
        "files": [[f.path, f.size, f.mtime_ns, f.digest] for f in inputs.files],
        "listing": inputs.listing,
    }


def _same_key(old: object, new: Mapping) -> bool:
    """The same settings, --prune and files (by path, in order): a newer entry replaces the older."""
    if not isinstance(old, dict):
        return False
    paths = [f[0] for f in old.get("files", []) if isinstance(f, list) and f]
    return (old.get("settings"), old.get("prune"), paths) == (
        new["settings"],
        new["prune"],
        [f[0] for f in new["files"]],
    )


def _outcome(raw: Mapping) -> Outcome:
    outcome = Outcome(**{k: v for k, v in raw.items() if k != "problems"})
    outcome.problems = [Problem(str(location), str(message)) for location, message in raw.get("problems", [])]
    return outcome
