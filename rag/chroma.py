"""Index stage, plumbing under the store: one Chroma client per index, the index's generation stamp,
and storage errors turned into one line that names the cause.

Chroma's embedded client keeps what it read (the vector index above all) in memory and is not told
when another process writes the folder: a long-running reader (`rag ui`, `rag chat`, a server)
would go on answering from the old state, and fail with "Error finding id" on chunks it has not
seen. So every write stamps the index with a new generation (`.generation`, a token in the index
folder); a reader compares the stamp with the one its client was opened at, before each search
(`ChromaStore.refresh`) and once more when a read fails, and reopens its client when they differ.
All stores of one index in a process share one client, so a process's own writes never count
as foreign.
"""

from __future__ import annotations

import errno
import functools
import inspect
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from rag.errors import IndexStoreError

STAMP_FILE = ".generation"

# How wide Chroma's HNSW search looks (its default is 100). Chroma persists an HNSW graph only every
# 1,000 additions; the rest it re-inserts from its log each time a process opens the index, in
# parallel and in no set order, so every open builds a slightly different graph. At ef 100 about 2
# queries in 100 then miss one of their true 40 nearest chunks on some opens and not others: the same
# index answered differently after a reopen, a copy or a repair. From 200 on, the 40 found were the
# exact 40 on every open measured; 256 leaves room, for well under a millisecond more per search.
SEARCH_EF = 256
HNSW_CONFIG = {"space": "cosine", "ef_search": SEARCH_EF}
# The sentence collection is only ever read back by paper id (its vectors feed the evidence stage), never
# searched by vector, yet Chroma builds an HNSW graph for every collection. A sparse graph (4 neighbours,
# build width 8) makes its inserts ~2.5x cheaper (40,000 rows: 43.7 s -> 17.2 s, most of what is left is
# SQLite); a search over it would still work, only less exactly.
SENTENCE_HNSW_CONFIG = HNSW_CONFIG | {"ef_construction": 8, "max_neighbors": 4}


PAGE = 5000  # rows per read of a whole collection; keeps memory flat on big indexes


def pages(collection, include: list[str], where: dict | None = None) -> Iterator[dict]:  # a Chroma collection
    """Every row of a collection (or those matching `where`), PAGE rows a read: memory stays flat, and one read
    of many rows' metadata fails in Chroma's SQLite past about 32,000 rows ("too many SQL variables")."""
    offset = 0
    while True:
        page = collection.get(where=where, include=include, limit=PAGE, offset=offset)
        yield page
        if len(page["ids"]) < PAGE:
            return
        offset += PAGE


def telemetry_off() -> None:
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def parse_server(server: str) -> tuple[str, int, bool]:
    """'http://127.0.0.1:8000', 'https://host', '127.0.0.1:8000' -> (host, port, ssl)."""
    parts = urlsplit(server if "://" in server else f"http://{server}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IndexStoreError(f"index.server: expected http://HOST:PORT, got {server!r}")
    ssl = parts.scheme == "https"
    try:
        port = parts.port or (443 if ssl else 8000)
    except ValueError:
        raise IndexStoreError(f"index.server: the port in {server!r} is not a number") from None
    return parts.hostname, port, ssl


def read_stamp(index_path: Path) -> str:
    try:
        return (index_path / STAMP_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def write_stamp(index_path: Path) -> str:
    """A new generation token, written atomically (readers see the old token or the new, never half)."""
    token = uuid.uuid4().hex
    temporary = index_path / f"{STAMP_FILE}.{os.getpid()}.tmp"
    try:
        temporary.write_text(token + "\n", encoding="ascii")
        os.replace(temporary, index_path / STAMP_FILE)
    except OSError:
        temporary.unlink(missing_ok=True)
        return read_stamp(index_path)  # a read-only folder: nothing was written to announce either
    return token


class Connection:
    """The Chroma client of one index in this process, and the generation it was opened at."""

    def __init__(self, path: Path, server: str | None) -> None:
        self.path = path
        self.server = server
        self.epoch = 0  # bumped at each reopen; stores re-fetch their collections when it moves
        self.lock = threading.Lock()
        self.stamp = read_stamp(path)
        self.client = self._open()
        self.stores: weakref.WeakSet = weakref.WeakSet()  # told to let go of old collection handles on reopen

    def guard(self) -> None:
        """Refuse an index whose vector files are damaged before Chroma loads them (it would crash the
        process: native code, no exception). Costs a few stat calls once the files were judged."""
        if self.server is None:
            from rag.store_files import damage_error

            if (error := damage_error(self.path)) is not None:
                raise error

    def _open(self):  # -> chromadb.ClientAPI
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        if self.server is not None:
            host, port, ssl = parse_server(self.server)
            return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings)
        self.guard()
        return chromadb.PersistentClient(path=str(self.path), settings=settings)

    def stale(self) -> bool:
        """Another process wrote a local index since this client was opened (a server is never stale)."""
        return self.server is None and read_stamp(self.path) != self.stamp

    def reopen(self) -> None:
        """A fresh client that reads the index as it is now.

        Chroma keeps one system per folder in a process; it is forgotten, not stopped, so a search
        running in another thread finishes on the old one, which is freed once nothing holds it.
        """
        from chromadb.api.shared_system_client import SharedSystemClient

        with self.lock:
            self.stamp = read_stamp(self.path)
            SharedSystemClient._identifier_to_system.pop(str(self.path), None)
            SharedSystemClient._identifier_to_refcount.pop(str(self.path), None)
            self.client = self._open()
            self.epoch += 1
            for store in list(self.stores):  # so nothing keeps the old system (and its vectors) in memory
                store.forget_collections()

    def announce_write(self) -> None:
        """Stamp a new generation after a write, so readers in other processes reopen."""
        if self.server is None:
            self.stamp = write_stamp(self.path)


_CONNECTIONS: dict[tuple[str, str | None], Connection] = {}
_CONNECTIONS_LOCK = threading.Lock()


def connect(path: Path, server: str | None) -> Connection:
    key = (str(path), server)
    with _CONNECTIONS_LOCK:
        connection = _CONNECTIONS.get(key)
        if connection is None:
            connection = _CONNECTIONS[key] = Connection(path, server)
        return connection


def open_connection(path: Path, server: str | None, *, create: bool) -> tuple[str, Connection]:
    """(where, connection) for an index folder or a Chroma server; every way it fails is one line."""
    if server is not None:
        host, port, _ssl = parse_server(server)
        try:  # this client's own state (BM25 catalog, ingest lock) stays local
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexStoreError(f"cannot create the local folder {path} ({exc.strerror})") from None
        try:
            return f"the Chroma server at {host}:{port}", connect(path, server)
        except Exception as exc:  # noqa: BLE001 - connection failures surface as ValueError or httpx errors
            raise IndexStoreError(
                f"cannot reach the Chroma server at {host}:{port} ({one_line(exc)}); start one with "
                f"`chroma run --host {host} --port {port} --path DIR`, or check index.server"
            ) from None
    if not create and not path.is_dir():
        raise IndexStoreError(f"no index at {path}; run `rag ingest` first")
    if path.exists() and not path.is_dir():
        raise IndexStoreError(f"index path {path} is a file, not a folder; set index.path to a folder")
    visible = [p for p in path.iterdir() if not p.name.startswith(".")] if path.is_dir() else []
    if visible and not (path / "chroma.sqlite3").exists():
        raise IndexStoreError(
            f"{path} is not a Chroma index (no chroma.sqlite3) and is not empty; choose another index.path"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        return f"the index at {path}", connect(path, None)
    except PermissionError:
        raise IndexStoreError(f"cannot write the index at {path}: permission denied") from None
    except IndexStoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - Chroma raises many types for a broken folder
        if "readonly" in str(exc).lower() or "read-only" in str(exc).lower():
            raise IndexStoreError(
                f"the index at {path} is read-only, and Chroma writes to its folder even to search; copy it "
                "to a writable folder (and set index.path) or make it writable"
            ) from None
        raise IndexStoreError(
            f"cannot open the index at {path} ({one_line(exc)}); its chroma.sqlite3 may be damaged: move the "
            "folder aside (or delete it) and run `rag ingest` to build it again from your sources"
        ) from None


# --- storage errors, one line each ------------------------------------------------------------------


def _connection_errors() -> tuple[type[BaseException], ...]:
    import httpx

    return (ConnectionError, httpx.TransportError)


def _store_errors() -> tuple[type[BaseException], ...]:
    """Failures of the storage itself: lost connections, and Chroma or the OS failing to read or write."""
    from chromadb.errors import InternalError, NotFoundError

    return (*CONNECTION_ERRORS, InternalError, NotFoundError, OSError)


CONNECTION_ERRORS = _connection_errors()
STORE_ERRORS = _store_errors()
_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM}
_DISK_WORDS = ("disk", "full", "read-only", "readonly", "file too large", "no space", "permission")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def explain(store, exc: BaseException) -> IndexStoreError:
    """The real cause where it can be found: a lost server, a full or read-only disk, a damaged index."""
    if store.server is not None and isinstance(exc, CONNECTION_ERRORS):
        return IndexStoreError(f"lost {store.where} ({one_line(exc)}); is `chroma run` still up?")
    text = one_line(exc)
    if type(exc).__name__ == "NotFoundError":
        return IndexStoreError(f"{store.where} was rebuilt or removed by another process meanwhile; run it again")
    if getattr(exc, "errno", None) in _DISK_ERRNOS or any(word in text.lower() for word in _DISK_WORDS):
        return IndexStoreError(
            f"{store.where} failed ({text}); is the disk full or the folder read-only? What was "
            "committed is kept: run the command again once that is fixed"
        )
    damage = store.damage() if hasattr(store, "damage") else None
    if damage:
        return IndexStoreError(f"{store.where} is damaged: {damage}")
    return IndexStoreError(f"{store.where} failed ({text}); `rag check` looks for the cause")


def _retrying(method: Callable) -> Callable:
    """Turn a storage failure inside a store method into one line naming where and why.

    A failure just after another process wrote the index is retried once with a reopened client:
    it is this process's view that was old, not the index that is broken.
    """

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self, *args, **kwargs):
            try:
                yield from method(self, *args, **kwargs)
            except STORE_ERRORS as exc:
                raise explain(self, exc) from None

        return generator

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except STORE_ERRORS as exc:
            if not self.refresh():
                raise explain(self, exc) from None
        try:
            return method(self, *args, **kwargs)
        except STORE_ERRORS as exc:
            raise explain(self, exc) from None

    return call


def explain_store_errors(cls: type) -> type:
    """Wrap every public method that talks to Chroma (see `_retrying`)."""
    for name, member in list(vars(cls).items()):
        if inspect.isfunction(member) and not name.startswith("_") and name not in ("refresh", "damage"):
            setattr(cls, name, _retrying(member))
    return cls
