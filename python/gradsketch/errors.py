"""Exceptions raised by the gradsketch package.

Every failure reported by the engine arrives as a ``gs_status`` code plus the engine's own
message (Spec/c-api.md §3). :func:`error_for_status` maps the code to one class below; the
exception's ``str()`` is the engine's message unchanged, so it names what was expected and
what was found.
"""

from __future__ import annotations

__all__ = [
    "GradSketchError",
    "InvalidInputError",
    "NotFoundError",
    "ConflictError",
    "CorruptError",
    "StoreIOError",
    "UnsupportedVersionError",
    "NotAStoreError",
    "InvalidStateError",
    "InternalError",
    "LibraryError",
    "error_for_status",
]


class GradSketchError(Exception):
    """Base class of every gradsketch error.

    Attributes:
        status: the C status name without ``GS_`` (``"INVALID_INPUT"``, ``"NOT_FOUND"``, ...).
        message: the engine's message (also the exception's ``str()``).
    """

    status: str = "UNKNOWN"

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:  # KeyError-like subclasses would otherwise repr() the message
        return self.message


class InvalidInputError(GradSketchError, ValueError):
    """A rule broken by the arguments: shape, dtype, names, ids, non-finite values."""

    status = "INVALID_INPUT"


class NotFoundError(GradSketchError, LookupError):
    """No such set, tensor set, version, id or segment."""

    status = "NOT_FOUND"


class ConflictError(GradSketchError):
    """A concurrent commit made this change impossible; nothing was committed."""

    status = "CONFLICT"


class CorruptError(GradSketchError):
    """Stored data failed a checksum or structural check."""

    status = "CORRUPT"


class StoreIOError(GradSketchError, OSError):
    """The operating system or HDF5 failed."""

    status = "IO"


class UnsupportedVersionError(GradSketchError):
    """The store was written by a newer major format version."""

    status = "UNSUPPORTED_VERSION"


class NotAStoreError(GradSketchError):
    """The path is not a GradSketch store."""

    status = "NOT_A_STORE"


class InvalidStateError(GradSketchError):
    """The handle cannot do this now (a finished session, a closed snapshot)."""

    status = "INVALID_STATE"


class InternalError(GradSketchError):
    """Any other engine error; the message says what."""

    status = "INTERNAL"


class LibraryError(GradSketchError, RuntimeError):
    """The native library could not be found or loaded, or lacks a function this call needs."""

    status = "LIBRARY"


_BY_CODE: dict[int, type[GradSketchError]] = {
    1: InvalidInputError,
    2: NotFoundError,
    3: ConflictError,
    4: CorruptError,
    5: StoreIOError,
    6: UnsupportedVersionError,
    7: NotAStoreError,
    8: InvalidStateError,
    9: InternalError,
}


def error_for_status(code: int, message: str, name: str | None = None) -> GradSketchError:
    """The exception for a nonzero ``gs_status``; unknown codes (a newer library) are
    :class:`GradSketchError` carrying the status name the library gave."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return GradSketchError(message, status=name or f"STATUS_{code}")
    return cls(message)
