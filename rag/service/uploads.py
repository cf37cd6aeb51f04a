"""The upload area: files people send to be ingested, kept under sanitised names and size and type limits.

The chat page's Ingest tab and POST /v1/ingest both save through here, so a file is refused or kept
the same way whichever door it came through. Each request's files go to a folder of their own
(`uploads/<batch>/`): a job queued behind another reads exactly the bytes sent with it, even when a
later upload has the same name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any, BinaryIO

from rag.errors import RagError

UPLOAD_TYPES = (".jsonl", ".json", ".csv", ".txt", ".bib", ".ris", ".pdf")
_COPY_BLOCK = 1 << 20


class UploadRefused(RagError):
    """A file that is not kept: wrong type or too large. The message names the file."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def safe_upload_name(name: str) -> str:
    """A plain file name: no folders, no leading dots, only [A-Za-z0-9._-]; keeps the extension."""
    base = PurePath(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".") or "upload"
    return cleaned[-120:]


class UploadArea:
    """A folder of uploads; `max_mb` bounds each file."""

    def __init__(self, folder: Path, max_mb: float) -> None:
        self.folder = folder
        self.max_mb = max_mb

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1e6)

    def check_name(self, original: str) -> str:
        """The name the file will be kept under; `UploadRefused` when its type is not one ingest reads."""
        name = safe_upload_name(original)
        if not name.lower().endswith(UPLOAD_TYPES):
            raise UploadRefused(f"{original}: only {', '.join(UPLOAD_TYPES)} files are accepted")
        return name

    def new_batch(self) -> Path:
        """A fresh folder for one request's files (never shared with another request's)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            batch = self.folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            try:
                batch.mkdir()
                return batch
            except FileExistsError:
                continue

    def discard_batch(self, batch: Path) -> None:
        """Remove a batch folder that kept nothing."""
        with contextlib.suppress(OSError):
            batch.rmdir()

    def save(self, original: str, data: BinaryIO | Path, batch: Path | None = None) -> Path:
        """Keep one file (a path, or a stream read to its end) in `batch` (default: a new one); refused past
        the size limit, nothing half-written."""
        name = self.check_name(original)
        if isinstance(data, Path) and data.stat().st_size > self.max_bytes:
            raise UploadRefused(f"{original}: larger than {self.max_mb:g} MB", too_large=True)
        folder = batch or self.new_batch()
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as out:
                if isinstance(data, Path):
                    with data.open("rb") as source:
                        shutil.copyfileobj(source, out, _COPY_BLOCK)
                else:
                    size = 0
                    while block := data.read(_COPY_BLOCK):
                        size += len(block)
                        if size > self.max_bytes:
                            raise UploadRefused(f"{original}: larger than {self.max_mb:g} MB", too_large=True)
                        out.write(block)
            target = folder / name
            os.replace(temporary, target)  # the same name twice in one request: the later one is kept
            return target
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def save_records(self, records: Iterable[Mapping[str, Any]], name: str) -> Path:
        """Keep JSON records (title, abstract, ...) as a JSON Lines file that ingest reads like any upload."""
        filename = self.check_name(name)
        lines = "".join(json.dumps(dict(record), ensure_ascii=False) + "\n" for record in records)
        if len(lines.encode("utf-8")) > self.max_bytes:
            raise UploadRefused(f"{name}: larger than {self.max_mb:g} MB", too_large=True)
        target = self.new_batch() / filename
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(lines)
        os.replace(temporary, target)
        return target
