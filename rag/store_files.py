"""Index stage, storage half: the vector index's files checked before Chroma loads them.

Chroma keeps each collection's vectors in an HNSW folder beside chroma.sqlite3 (header.bin,
data_level0.bin, length.bin, link_lists.bin, index_metadata.pickle) and loads it into native code
that trusts every byte: a few flipped bytes in a neighbour list end the process with a segfault,
no message, no way for Python to catch it. So the folders are read here first, as plain numbers:
the header's fields against each other and against the file sizes, every neighbour id and list
length against the element count, every label against the id map, every stored vector's length
(cosine space keeps them at 1) and every original length (`length.bin`: 1 as well, since every
vector this project stores is L2-normalised). A folder that fails is named with the file and what is wrong,
and nothing loads it; `rag check --repair` moves it aside and re-embeds its vectors from the
stored texts.

Reading a folder costs about a second per 100,000 vectors, so the verdict is kept per folder under
the files' sizes and modification times (`.vector-files-checked`) and a folder is read again only
when one of them changes.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERDICTS_FILE = ".vector-files-checked"
QUARANTINE = ".damaged-vector-files"
FILES = ("header.bin", "data_level0.bin", "length.bin", "link_lists.bin", "index_metadata.pickle")
_SEGMENT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEADER = struct.Struct("<i6QiI3QdQ")  # version, offsetLevel0, max_elements, cur_count, size_data, label_offset,
# offset_data, maxlevel, enterpoint, maxM, maxM0, M, mult, ef_construction
_DELETED = 1 << 16  # hnswlib marks a deleted element in the third byte of its level-0 list header
_ROWS = 20_000  # elements read at a time: memory stays flat on big indexes


@dataclass(frozen=True)
class DamagedFile:
    """A vector-index file that must not be loaded: which, and what is wrong with it."""

    folder: Path
    file: str
    problem: str

    def __str__(self) -> str:
        return f"{self.folder.name}/{self.file} ({self.problem})"


_LOCK = threading.Lock()
_MEMORY: dict[str, tuple] = {}  # folder -> (fingerprint, problem): for read-only index folders


def segment_folders(index_path: Path) -> list[Path]:
    try:
        return sorted(p for p in index_path.iterdir() if p.is_dir() and _SEGMENT.fullmatch(p.name))
    except OSError:
        return []


def _fingerprint(folder: Path) -> list:
    found = []
    for name in FILES:
        try:
            stat = (folder / name).stat()
            found.append([name, stat.st_size, stat.st_mtime_ns, stat.st_ino])
        except OSError:
            found.append([name, None, None, None])
    return found


def damaged_files(index_path: Path) -> list[DamagedFile]:
    """Every HNSW file of the index that fails its check (empty for a sound index, or one without folders)."""
    with _LOCK:
        verdicts = _load_verdicts(index_path)
        damaged: list[DamagedFile] = []
        changed = False
        for folder in segment_folders(index_path):
            fingerprint = _fingerprint(folder)
            known = verdicts.get(folder.name) or _MEMORY.get(str(folder))
            if known and known[0] == fingerprint:
                problem = known[1]
            else:
                problem, fingerprint = _stable_verdict(folder)
                if fingerprint is not None:
                    verdicts[folder.name] = _MEMORY[str(folder)] = (fingerprint, problem)
                    changed = True
            if problem:
                damaged.append(DamagedFile(folder, problem[0], problem[1]))
        if changed:
            _save_verdicts(index_path, verdicts)
        return damaged


def trust_written(index_path: Path, collections: set[str]) -> None:
    """Record these collections' folders as sound without reading them: for a writer that has just finished
    saving them.

    Chroma loaded these vectors from files that passed the check (`damaged_files` runs before any load)
    and saved them whole from memory, so what it wrote is what it read plus what was added. Reading
    them again would cost the next command about a second per 100,000 vectors (about 10 s at 100k papers).
    Only the files' current fingerprints are recorded: any later change to them is read again.
    """
    owners = collection_names(index_path)
    with _LOCK:
        verdicts = _load_verdicts(index_path)
        for folder in segment_folders(index_path):
            known = verdicts.get(folder.name) or _MEMORY.get(str(folder))
            if owners.get(folder.name) not in collections or (known and known[1]):
                continue  # another collection's, or judged damaged: only a check may clear it
            verdicts[folder.name] = _MEMORY[str(folder)] = (_fingerprint(folder), None)
        _save_verdicts(index_path, verdicts)


def files_digest(index_path: Path) -> str:
    """Names every vector folder's files as they are (sizes, modification times, inodes): equal digests mean
    no file was written, replaced or lost in between."""
    import hashlib

    listing = [[folder.name, _fingerprint(folder)] for folder in segment_folders(index_path)]
    return hashlib.blake2b(json.dumps(listing).encode(), digest_size=16).hexdigest()


def stored_counts(index_path: Path) -> dict[str, int] | None:
    """{collection name: records it holds} and, under "", the write log's last sequence number, read from
    chroma.sqlite3 without loading any collection (Chroma's own count loads it first: about a second per
    10,000 papers). None where the file is not laid out as Chroma 1.x lays it out."""

    def read(db) -> dict[str, int]:
        rows = db.execute(
            "SELECT c.name, COUNT(e.id) FROM collections c JOIN segments s ON s.collection = c.id "
            "AND s.scope = 'METADATA' LEFT JOIN embeddings e ON e.segment_id = s.id GROUP BY c.name"
        ).fetchall()
        (last,) = db.execute("SELECT COALESCE(MAX(seq_id), 0) FROM embeddings_queue").fetchone()
        return {str(name): int(count) for name, count in rows} | {"": int(last)}

    return _read_sqlite(index_path, read)


def _stable_verdict(folder: Path) -> tuple[list[str] | None, list | None]:
    """(verdict, fingerprint) on files that did not change while they were read. A writer (in another
    process, or a thread of this one) may be half-way through saving them: they are read again once it
    is done, and files that never keep still are not judged (None fingerprint: nothing is cached)."""
    for _attempt in range(10):
        before = _fingerprint(folder)
        try:
            problem = check_folder(folder)
        except OSError as exc:
            problem = ("its files", f"cannot be read: {exc.strerror}")
        if _fingerprint(folder) == before:
            return (list(problem) if problem else None), before
        time.sleep(0.2)
    return None, None


def _load_verdicts(index_path: Path) -> dict:
    try:
        data = json.loads((index_path / VERDICTS_FILE).read_text(encoding="utf-8"))
        return {k: (v[0], v[1]) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError, TypeError, IndexError, KeyError):
        return {}


def _save_verdicts(index_path: Path, verdicts: dict) -> None:
    live = {p.name for p in segment_folders(index_path)}
    data = {k: [v[0], v[1]] for k, v in verdicts.items() if k in live}
    temporary = index_path / f"{VERDICTS_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        temporary.write_text(json.dumps(data), encoding="utf-8")
        os.replace(temporary, index_path / VERDICTS_FILE)
    except OSError:
        temporary.unlink(missing_ok=True)  # a read-only index: the verdicts stay in this process's memory


def _read_sqlite(index_path: Path, read):  # -> what `read(connection)` returns, or None
    """Run `read` on chroma.sqlite3 opened read-only (nothing is changed); None where it cannot be read."""
    import sqlite3
    from urllib.parse import quote

    try:
        db = sqlite3.connect(f"file:{quote(str(index_path / 'chroma.sqlite3'))}?mode=ro", uri=True, timeout=5)
        try:
            return read(db)
        finally:
            db.close()
    except sqlite3.Error:
        return None


def collection_names(index_path: Path) -> dict[str, str]:
    """{segment folder name: collection name}, read from chroma.sqlite3 without changing it."""

    def read(db) -> dict[str, str]:
        rows = db.execute("SELECT s.id, c.name FROM segments s JOIN collections c ON s.collection = c.id")
        return {str(segment): str(name) for segment, name in rows}

    return _read_sqlite(index_path, read) or {}


def describe(index_path: Path, damaged: list[DamagedFile]) -> str:
    """One line naming each damaged file and the collection whose vectors it holds."""
    names = collection_names(index_path)
    parts = []
    for item in damaged:
        owner = f" (the vectors of '{names[item.folder.name]}')" if item.folder.name in names else ""
        parts.append(f"{item.folder / item.file}{owner}: {item.problem}")
    return "; ".join(parts)


def damage_error(index_path: Path):  # -> IndexStoreError | None
    """The one-line refusal for an index whose vector files are damaged, or None when they are sound."""
    from rag.errors import IndexStoreError

    damaged = damaged_files(index_path)
    if not damaged:
        return None
    return IndexStoreError(
        f"the index at {index_path} is damaged: its vector file {describe(index_path, damaged)}; run "
        "`rag check --repair` to rebuild the vector index from the stored texts"
    )


def quarantine(damaged: list[DamagedFile]) -> list[Path]:
    """Move damaged folders aside (under `.damaged-vector-files/`) so that Chroma sees their vectors
    as lost, which a repair re-embeds; returns where they went."""
    moved = []
    for item in damaged:
        target_root = item.folder.parent / QUARANTINE
        target_root.mkdir(exist_ok=True)
        target = target_root / f"{item.folder.name}-{int(time.time())}"
        os.replace(item.folder, target)
        moved.append(target)
    return moved


def forget_quarantine(index_path: Path) -> None:
    shutil.rmtree(index_path / QUARANTINE, ignore_errors=True)


# --- one folder --------------------------------------------------------------------------------------


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # plain dicts, ints and strings only: never code
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def check_folder(folder: Path) -> tuple[str, str] | None:
    """(file, problem) for the first thing wrong with one HNSW folder, or None."""
    sizes = {name: (folder / name).stat().st_size if (folder / name).is_file() else None for name in FILES}
    if sizes["header.bin"] is None:
        return None if not any(sizes.values()) else ("header.bin", "missing while its other files are there")
    if sizes["header.bin"] != _HEADER.size:
        return "header.bin", f"{sizes['header.bin']} bytes, expected {_HEADER.size}"
    (version, offset0, max_elements, count, size_data, label_offset, offset_data, max_level, enter, max_m, max_m0, m,
     mult, ef) = _HEADER.unpack((folder / "header.bin").read_bytes())  # fmt: skip
    dim, rest = divmod(label_offset - offset_data, 4)
    wrong = (
        version != 1
        or offset0 != 0
        or not 0 < m <= 4096
        or max_m != m
        or max_m0 != 2 * m
        or offset_data != 4 + 4 * max_m0
        or rest
        or not 0 < dim <= 65536
        or size_data != label_offset + 8
        or not count <= max_elements < 1 << 40
        or not (0 <= max_level < 64 if count else max_level in (-1, 0))
        or (count and enter >= count)
        or not math.isclose(mult, 1 / math.log(m) if m > 1 else mult, rel_tol=1e-9)
        or not 0 < ef < 1 << 24
    )
    if wrong:
        return "header.bin", "its fields do not agree with each other"
    # A file holds the elements (`count`) or the whole capacity (`max_elements`), as Chroma last saved it.
    if sizes["data_level0.bin"] not in (count * size_data, max_elements * size_data):
        return "data_level0.bin", f"{sizes['data_level0.bin']} bytes where the header says {count:,} x {size_data}"
    if sizes["length.bin"] not in (count * 4, max_elements * 4):
        return "length.bin", f"{sizes['length.bin']} bytes where the header says {count:,} x 4"
    labels = _pickled_labels(folder) if sizes["index_metadata.pickle"] else None
    if isinstance(labels, str):
        return "index_metadata.pickle", labels
    problem = _level0(folder / "data_level0.bin", count, size_data, offset_data, label_offset, max_m0, labels)
    if problem:
        return "data_level0.bin", problem
    norms = np.fromfile(folder / "length.bin", dtype=np.float32, count=count)
    if count and not (np.isfinite(norms).all() and (np.abs(norms - 1.0) <= 1e-3).all()):
        return "length.bin", "vector lengths other than 1 (every vector stored here is normalised)"
    problem = _link_lists(folder / "link_lists.bin", sizes["link_lists.bin"], count, max_m, max_level, enter)
    return ("link_lists.bin", problem) if problem else None


def _pickled_labels(folder: Path) -> set[int] | str | None:
    try:
        with (folder / "index_metadata.pickle").open("rb") as handle:
            data = _Unpickler(handle).load()
        labels = data["label_to_id"]
        return {int(label) for label in labels}
    except Exception as exc:  # noqa: BLE001 - any way it fails to read is damage
        return f"cannot be read ({type(exc).__name__})"


def _level0(path: Path, count: int, size_data: int, offset_data: int, label_offset: int, max_m0: int, labels):
    seen: list[np.ndarray] = []
    data = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, size_data)) if count else None
    for start in range(0, count, _ROWS):
        rows = np.array(data[start : start + _ROWS])
        head = rows[:, :4].copy().view(np.uint32)[:, 0]
        links = head & 0xFFFF
        if (head >> 16 & ~np.uint32(1)).any() or (links > max_m0).any():
            return f"an element with a broken neighbour list (element {start + int(np.argmax(links > max_m0))})"
        neighbours = rows[:, 4:offset_data].copy().view(np.uint32)
        used = np.arange(max_m0)[None, :] < links[:, None]
        if (neighbours[used] >= count).any():
            return "a neighbour id beyond the element count"
        live = (head & _DELETED) == 0
        vectors = rows[live, offset_data:label_offset].copy().view(np.float32)
        with np.errstate(all="ignore"):
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1) if len(vectors) else np.ones(0)
        if not np.isfinite(norms).all() or (np.abs(norms - 1.0) > 1e-4).any():
            return "stored vectors that are not of unit length (altered numbers)"
        seen.append(rows[live, label_offset : label_offset + 8].copy().view(np.uint64)[:, 0])
    found = np.concatenate(seen) if seen else np.zeros(0, dtype=np.uint64)
    if len(np.unique(found)) != len(found):
        return "two elements with the same label"
    if labels is not None and not set(found.tolist()) <= labels:
        return "labels that its id map (index_metadata.pickle) does not know"
    return None


def _link_lists(path: Path, size: int | None, count: int, max_m: int, max_level: int, enter: int) -> str | None:
    if size is None:
        return "missing" if count else None
    raw = path.read_bytes()
    per_level = 4 + 4 * max_m
    position = 0
    top_level = 0
    for element in range(count):
        if position + 4 > len(raw):
            return f"ends early (at element {element:,} of {count:,})"
        (length,) = struct.unpack_from("<I", raw, position)
        position += 4
        if length % per_level or length // per_level > max_level or position + length > len(raw):
            return f"a broken list length at element {element:,}"
        if length:
            block = np.frombuffer(raw, dtype=np.uint32, count=length // 4, offset=position).reshape(-1, 1 + max_m)
            links = block[:, 0]
            if (links > max_m).any():
                return f"a broken neighbour list at element {element:,}"
            used = np.arange(max_m)[None, :] < links[:, None]
            if (block[:, 1:][used] >= count).any():
                return f"a neighbour id beyond the element count at element {element:,}"
            if element == enter:
                top_level = length // per_level
        position += length
    if position != len(raw):
        return f"{len(raw) - position:,} bytes more than its lists hold"
    if count and top_level != max_level:
        return "the entry point's level differs from the header's"
    return None
