"""paper-rag: cited, verified answers over research-paper abstracts.

    from rag import Library, Assistant, Service
    library = Library.from_config()             # the index: ingest, search
    assistant = Assistant.from_config()         # answers that cite the papers
    service = Service.from_config()             # what `rag serve` and the chat page share

The names load on first use, so `import rag` stays cheap for the command line. Modules log through
`logging.getLogger(__name__)` under the "rag" logger and never configure logging: the application
decides what is shown (`logging.basicConfig(level=logging.INFO)` shows model exports and loads).
"""

from __future__ import annotations

import logging
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("paper-rag")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

logging.getLogger(__name__).addHandler(logging.NullHandler())

_EXPORTS = {"Library": "rag.library", "Assistant": "rag.answering", "Service": "rag.service", "Answer": "rag.types"}

__all__ = ["Answer", "Assistant", "Library", "Service", "__version__"]

if TYPE_CHECKING:
    from rag.answering import Assistant
    from rag.library import Library
    from rag.service import Service
    from rag.types import Answer


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
