"""GradSketch for Python: a thin layer over the engine's C ABI (libgradsketch-c).

Open or create a store, append per-example gradient sketches from numpy or torch, and query
or select rows against a snapshot kept open::

    import gradsketch as gs
    with gs.Store.create("run.gsk") as store:
        with store.append_session("train") as session:
            session.append(rows, ids=ids)
        with store.snapshot() as snap:
            hits = snap.query("train", vector, k=10)
"""

from __future__ import annotations

from . import errors, projection
from ._native import abi_version
from .errors import (
    ConflictError,
    CorruptError,
    GradSketchError,
    InternalError,
    InvalidInputError,
    InvalidStateError,
    LibraryError,
    NotAStoreError,
    NotFoundError,
    StoreIOError,
    UnsupportedVersionError,
)
from .store import (
    ADDRESS_DTYPE,
    AppendSession,
    Hit,
    QueryResult,
    SelectionResult,
    SetInfo,
    Snapshot,
    Store,
    VerifyReport,
)

__version__ = "0.1.0"

__all__ = [
    "ADDRESS_DTYPE",
    "AppendSession",
    "ConflictError",
    "CorruptError",
    "GradSketchError",
    "Hit",
    "InternalError",
    "InvalidInputError",
    "InvalidStateError",
    "LibraryError",
    "NotAStoreError",
    "NotFoundError",
    "QueryResult",
    "SelectionResult",
    "SetInfo",
    "Snapshot",
    "Store",
    "StoreIOError",
    "UnsupportedVersionError",
    "VerifyReport",
    "abi_version",
    "errors",
    "projection",
    "__version__",
]
