"""The service layer the chat page, the HTTP API (`rag serve`) and the command line share; see core.py."""

from rag.service.core import Service
from rag.service.gate import Abandoned, Busy, ModelGate
from rag.service.jobs import IngestJob
from rag.service.sessions import Sessions
from rag.service.uploads import UPLOAD_TYPES, UploadArea, UploadRefused, safe_upload_name

__all__ = [
    "UPLOAD_TYPES",
    "Abandoned",
    "Busy",
    "IngestJob",
    "ModelGate",
    "Service",
    "Sessions",
    "UploadArea",
    "UploadRefused",
    "safe_upload_name",
]
