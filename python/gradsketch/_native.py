"""ctypes binding of libgradsketch-c (Sources/CGradSketchABI/include/gradsketch.h).

This module is the package's one seam to the C ABI: it finds and loads the library, declares
the argument and result types of every ``gs_*`` function, and turns a failed status into the
exception of :mod:`gradsketch.errors` carrying the engine's message. It holds no format logic.

Library lookup order: env ``GRADSKETCH_LIBRARY``; ``gradsketch/_lib/libgradsketch-c.so``
(installed by setup.py); ``<repo>/.build/release`` then ``<repo>/.build/debug`` when the
package runs from a checkout (``<repo>`` = the parent of ``python/``).

Functions are bound lazily, on first use: a library older than this binding (ABI 1.0, without
the 1.1 additions) still loads, and calling a function it lacks raises :class:`LibraryError`
naming the function and the library's ABI version.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_double,
    c_int,
    c_int32,
    c_int64,
    c_uint32,
    c_uint64,
    c_void_p,
    byref,
)
from pathlib import Path
from typing import Any, Callable

from .errors import LibraryError, error_for_status

ABI_MAJOR = 1
ABI_MINOR = 2  # the version whose declarations this module binds

# ---- constants (gradsketch.h) -------------------------------------------------------------

GS_OK = 0
GS_INVALID_INPUT = 1
GS_NOT_FOUND = 2
GS_INVALID_STATE = 8

GS_DTYPE_AUTO = 0
GS_DTYPE_FLOAT16 = 1
GS_DTYPE_FLOAT32 = 2
GS_DTYPE_BFLOAT16 = 3
GS_DTYPE_FLOAT64 = 4

GS_APPEND_ALLOW_NONFINITE = 1
GS_METADATA_JSON = 1

GS_IDS = 1
GS_LABELS = 2
GS_METADATA = 3

GS_METRIC_IP = 0
GS_METRIC_COSINE = 1
GS_INDEX_AUTO = 0
GS_INDEX_EXACT = 1
GS_INDEX_NAMED = 2
GS_AGGREGATE_NONE = 0
GS_AGGREGATE_MEAN = 1
GS_AGGREGATE_MAX = 2

GS_SOURCE_ROW = 1
GS_SOURCE_DELTA = 2
GS_SOURCE_NEGATED_DELTA = 3
GS_SOURCE_QUERY_SET = 4

GS_SELECT_GREEDY = 0
GS_SELECT_GREEDY_BATCHED = 1
GS_SELECT_TOP_K = 2
GS_SELECT_RANDOM = 3

# ---- plain types --------------------------------------------------------------------------

gs_status = c_int32
gs_dtype = c_int32


class gs_address(Structure):
    """A row's stable address; layout of numpy ``[("segment", "<i8"), ("row", "<i8")]``."""

    _fields_ = [("segment", c_int64), ("row", c_int64)]


class gs_text(Structure):
    """N packed strings: string i is ``bytes[offsets[i]:offsets[i+1]]`` (a trailing NUL ends it)."""

    _fields_ = [("bytes", c_void_p), ("offsets", POINTER(c_int64))]


class gs_segment_view(Structure):
    """A zero-copy view of one segment's rows (borrowed from its snapshot)."""

    _fields_ = [
        ("data", c_void_p),
        ("rows", c_int64),
        ("k", c_int64),
        ("dtype", gs_dtype),
        ("reserved", c_int32),
        ("deleted", POINTER(c_int64)),
        ("deleted_count", c_int64),
    ]


class gs_query_params(Structure):
    """Query parameters; initialise with ``gs_query_params_init``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("metric", c_int32),
        ("top_k", c_int64),
        ("smallest", c_int32),
        ("index", c_int32),
        ("index_name", c_char_p),
        ("nprobe", c_int64),
        ("recall_target", c_double),
        ("rerank", c_int64),
        ("aggregation", c_int32),
        ("annotations", c_int32),
    ]


class gs_select_params(Structure):
    """Selection parameters; initialise with ``gs_select_params_init``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("method", c_int32),
        ("count", c_int64),
        ("batch", c_int64),
        ("seed", c_uint64),
    ]


class gs_tensor(Structure):
    """One tensor of a tensor set to write (row-major, little-endian)."""

    _fields_ = [
        ("name", c_char_p),
        ("dtype", gs_dtype),
        ("ndim", c_int32),
        ("shape", POINTER(c_int64)),
        ("data", c_void_p),
    ]


class gs_tensor_view(Structure):
    """One stored tensor (ABI 1.2), borrowed from its snapshot: name, stored dtype, shape and
    data stay valid until the snapshot is closed; ``mapped`` says zero-copy (1) or a copy the
    snapshot owns (0)."""

    _fields_ = [
        ("name", c_char_p),
        ("dtype", gs_dtype),
        ("ndim", c_int32),
        ("shape", POINTER(c_int64)),
        ("data", c_void_p),
        ("element_count", c_int64),
        ("mapped", c_int32),
        ("reserved", c_int32),
    ]


# int32_t (*)(void *context, int64_t done, int64_t total, const char *stage)
gs_progress_fn = CFUNCTYPE(c_int32, c_void_p, c_int64, c_int64, c_char_p)

_ERR = POINTER(c_void_p)  # char **error, read as an address so the message can be gs_free'd
_H = c_void_p  # every opaque handle
_HP = POINTER(c_void_p)  # out-parameter of a handle
_I64P = POINTER(c_int64)
_STRP = POINTER(c_void_p)  # char ** out-parameter (caller-owned text)

# name: (restype, argtypes). Every function of gradsketch.h 1.2: the 1.1 additions of helpers S
# (projection factors, tensor sets, prepared appends, versions) and I (import), and the 1.2
# tensor reads.
_DECLARATIONS: dict[str, tuple[Any, list[Any]]] = {
    "gs_abi_version": (c_uint32, []),
    "gs_status_name": (c_char_p, [gs_status]),
    "gs_free": (None, [c_void_p]),
    # strings
    "gs_strings_count": (c_int64, [_H]),
    "gs_strings_get": (c_char_p, [_H, c_int64]),
    "gs_strings_packed": (gs_text, [_H]),
    "gs_strings_free": (None, [_H]),
    # store
    "gs_store_create": (gs_status, [c_char_p, _HP, _ERR]),
    "gs_store_open": (gs_status, [c_char_p, _HP, _ERR]),
    "gs_store_close": (None, [_H]),
    "gs_store_latest_version": (gs_status, [_H, _I64P, _ERR]),
    "gs_store_delete": (gs_status, [_H, c_char_p, POINTER(gs_text), c_int64, _I64P, _ERR]),
    "gs_store_verify": (gs_status, [_H, _HP, _ERR]),
    "gs_verify_report_clean": (c_int, [_H]),
    "gs_verify_report_problem_count": (c_int64, [_H]),
    "gs_verify_report_problem": (c_char_p, [_H, c_int64]),
    "gs_verify_report_files_checked": (c_int64, [_H]),
    "gs_verify_report_bytes_checked": (c_int64, [_H]),
    "gs_verify_report_free": (None, [_H]),
    # append sessions
    "gs_append_begin": (gs_status, [_H, c_char_p, gs_dtype, c_char_p, c_uint32, _HP, _ERR]),
    "gs_append_rows": (
        gs_status,
        [_H, c_void_p, gs_dtype, c_int64, c_int64, POINTER(gs_text), POINTER(gs_text),
         POINTER(gs_text), c_uint32, _ERR],
    ),
    "gs_append_commit": (gs_status, [_H, c_char_p, _I64P, _I64P, _HP, _ERR]),
    "gs_append_abort": (None, [_H]),
    "gs_append_free": (None, [_H]),
    # snapshots
    "gs_snapshot_open": (gs_status, [_H, c_int64, _HP, _ERR]),
    "gs_snapshot_close": (None, [_H]),
    "gs_snapshot_version": (c_int64, [_H]),
    "gs_snapshot_set_count": (c_int64, [_H]),
    "gs_snapshot_set_name": (c_char_p, [_H, c_int64]),
    "gs_snapshot_set_info": (
        gs_status, [_H, c_char_p, _I64P, POINTER(gs_dtype), _I64P, _I64P, _ERR]),
    "gs_snapshot_segment_rows": (gs_status, [_H, c_char_p, _I64P, c_int64, _ERR]),
    "gs_snapshot_set_attributes": (gs_status, [_H, c_char_p, _STRP, _ERR]),
    "gs_snapshot_segment_view": (
        gs_status, [_H, c_char_p, c_int64, POINTER(gs_segment_view), _ERR]),
    "gs_snapshot_strings": (
        gs_status, [_H, c_char_p, c_int32, POINTER(gs_address), c_int64, _HP, _ERR]),
    # queries and selections
    "gs_query_params_init": (None, [POINTER(gs_query_params)]),
    "gs_snapshot_query": (
        gs_status,
        [_H, c_char_p, POINTER(ctypes.c_float), c_int64, c_int64, POINTER(gs_query_params),
         _HP, _ERR],
    ),
    "gs_snapshot_query_by": (
        gs_status, [_H, c_char_p, c_int32, c_char_p, POINTER(gs_query_params), _HP, _ERR]),
    "gs_select_params_init": (None, [POINTER(gs_select_params)]),
    "gs_snapshot_select": (
        gs_status,
        [_H, c_char_p, POINTER(ctypes.c_float), c_int64, c_char_p, c_int,
         POINTER(gs_select_params), _HP, _ERR],
    ),
    "gs_result_list_count": (c_int64, [_H]),
    "gs_result_offsets": (_I64P, [_H]),
    "gs_result_hit_count": (c_int64, [_H]),
    "gs_result_scores": (POINTER(c_double), [_H]),
    "gs_result_addresses": (POINTER(gs_address), [_H]),
    "gs_result_ids": (_H, [_H]),
    "gs_result_labels": (_H, [_H]),
    "gs_result_metadata": (_H, [_H]),
    "gs_result_version": (c_int64, [_H]),
    "gs_result_plan_json": (c_char_p, [_H]),
    "gs_result_free": (None, [_H]),
    # 1.1, helper S: projection factors, tensor sets, versions, prepared appends
    "gs_projection_rademacher": (
        gs_status, [c_uint64, c_char_p, c_int64, c_int64, POINTER(ctypes.c_float), _ERR]),
    "gs_store_put_tensors": (
        gs_status,
        [_H, c_char_p, c_char_p, POINTER(gs_tensor), c_int64, c_char_p, _I64P, _ERR],
    ),
    "gs_store_delta": (gs_status, [_H, c_char_p, c_char_p, c_char_p, c_char_p, _I64P, _ERR]),
    "gs_snapshot_tensor_set_count": (c_int64, [_H]),
    "gs_snapshot_tensor_set_name": (c_char_p, [_H, c_int64]),
    "gs_store_versions_json": (gs_status, [_H, _STRP, _ERR]),
    "gs_append_prepare": (gs_status, [_H, _STRP, _ERR]),
    "gs_store_commit_prepared": (
        gs_status, [_H, POINTER(gs_text), c_int64, c_char_p, _I64P, _I64P, _ERR]),
    # 1.2: reading stored tensors
    "gs_snapshot_tensor_count": (gs_status, [_H, c_char_p, _I64P, _ERR]),
    "gs_snapshot_tensor_view": (gs_status, [_H, c_char_p, c_int64, POINTER(gs_tensor_view), _ERR]),
    # 1.1, helper I: importers
    "gs_store_import": (
        gs_status,
        [_H, c_char_p, c_char_p, c_char_p, c_char_p, gs_progress_fn, c_void_p, _STRP, _ERR],
    ),
}

# ---- loading ------------------------------------------------------------------------------

_LIB_NAME = "libgradsketch-c.dylib" if sys.platform == "darwin" else "libgradsketch-c.so"


def candidate_paths() -> list[Path]:
    """Where the library is looked for, in order (see the module docstring)."""
    env = os.environ.get("GRADSKETCH_LIBRARY")
    if env:
        return [Path(env)]
    package_dir = Path(__file__).resolve().parent
    paths = [package_dir / "_lib" / _LIB_NAME]
    repo = package_dir.parent.parent  # python/gradsketch -> python -> repo
    if (repo / "Package.swift").exists():
        paths += [repo / ".build" / "release" / _LIB_NAME, repo / ".build" / "debug" / _LIB_NAME]
    return paths


class Library:
    """The loaded library; attribute ``gs_x`` is the typed ctypes function ``gs_x``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._cdll = ctypes.CDLL(str(path))
        except OSError as error:
            raise LibraryError(f"cannot load {path}: {error}") from error
        self._bound: dict[str, Any] = {}
        version = self.gs_abi_version()
        self.abi_version = (version >> 16, version & 0xFFFF)
        if self.abi_version[0] != ABI_MAJOR:
            raise LibraryError(
                f"{path} has C ABI {self.abi_version[0]}.{self.abi_version[1]}; this package "
                f"needs major version {ABI_MAJOR}"
            )

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("gs_"):
            raise AttributeError(name)
        function = self._bound.get(name)
        if function is not None:
            return function
        declaration = _DECLARATIONS.get(name)
        if declaration is None:
            raise AttributeError(f"gs function {name} is not declared in gradsketch._native")
        try:
            function = getattr(self._cdll, name)
        except AttributeError:
            major, minor = getattr(self, "abi_version", ("?", "?"))
            raise LibraryError(
                f"{self.path} has no function {name} (the library reports C ABI {major}.{minor}; "
                f"this package binds {ABI_MAJOR}.{ABI_MINOR}): rebuild it from a checkout that "
                "has the function with `swift build -c release --product gradsketch-c`"
            ) from None
        function.restype, function.argtypes = declaration
        self._bound[name] = function
        return function

    def has(self, name: str) -> bool:
        """Whether the loaded library exports ``name``."""
        try:
            getattr(self._cdll, name)
            return True
        except AttributeError:
            return False


_library: Library | None = None
_lock = threading.Lock()


def lib() -> Library:
    """The loaded library (loaded on first call)."""
    global _library
    if _library is None:
        with _lock:
            if _library is None:
                _library = _load()
    return _library


def _load() -> Library:
    tried = []
    for path in candidate_paths():
        if path.exists():
            return Library(path)
        tried.append(str(path))
    raise LibraryError(
        "libgradsketch-c not found; looked at " + ", ".join(tried) + ". Install the package "
        "with `pip install ./python`, or build it with `swift build -c release --product "
        "gradsketch-c` and set GRADSKETCH_LIBRARY to the .so"
    )


# ---- errors and calls ---------------------------------------------------------------------


def take_text(pointer: c_void_p | int | None) -> str | None:
    """Decodes and frees caller-owned text the library handed over (messages, JSON)."""
    address = pointer.value if isinstance(pointer, c_void_p) else pointer
    if not address:
        return None
    try:
        return ctypes.string_at(address).decode("utf-8", errors="replace")
    finally:
        lib().gs_free(address)


def check(status: int, error: c_void_p | None = None) -> None:
    """Raises the exception for ``status`` (nothing for GS_OK), with the engine's message
    taken from ``error`` (a ``char *`` filled by the call), which it frees."""
    message = take_text(error) if error is not None else None
    if status == GS_OK:
        return
    library = lib()
    name_bytes = library.gs_status_name(status)
    name = name_bytes.decode() if name_bytes else f"STATUS_{status}"
    raise error_for_status(status, message or f"gradsketch call failed with status {name}", name)


def call(name: str, *args: Any) -> None:
    """Calls fallible function ``name`` with ``args`` plus a trailing ``char **error``, and
    raises the matching exception when it fails."""
    error = c_void_p()
    status = getattr(lib(), name)(*args, byref(error))
    check(status, error)


def status_name(status: int) -> str:
    """``gs_status_name`` of a code."""
    value = lib().gs_status_name(status)
    return value.decode() if value else "UNKNOWN"


# ---- owned handles ------------------------------------------------------------------------


class Handle:
    """Owns one ``gs_*`` handle and releases it exactly once with its release function.

    Release happens at :meth:`release` or when the object is garbage collected, whichever is
    first. Objects that borrow from the handle (numpy views of a snapshot's segments) keep a
    reference to it, so the handle outlives them.
    """

    __slots__ = ("_pointer", "_release_name", "__weakref__")

    def __init__(self, pointer: c_void_p | int, release_name: str) -> None:
        value = pointer.value if isinstance(pointer, c_void_p) else pointer
        self._pointer: int | None = value or None
        self._release_name = release_name

    @property
    def pointer(self) -> int:
        """The raw address; raises :class:`InvalidStateError` after release."""
        if self._pointer is None:
            from .errors import InvalidStateError

            raise InvalidStateError(f"the {self._release_name.split('_')[1]} handle is released")
        return self._pointer

    @property
    def released(self) -> bool:
        return self._pointer is None

    def release(self) -> None:
        """Releases the handle now (idempotent)."""
        pointer, self._pointer = self._pointer, None
        if pointer is not None and _library is not None:
            getattr(_library, self._release_name)(pointer)

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


# ---- text lists ---------------------------------------------------------------------------


class PackedText:
    """``strings`` as one ``gs_text`` (one bytes join plus int64 offsets); keeps its buffers
    alive for as long as the object lives, so pass it while holding a reference."""

    __slots__ = ("count", "_buffer", "_offsets", "struct")

    def __init__(self, strings: Any) -> None:
        import numpy as np

        encoded = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in strings]
        self.count = len(encoded)
        offsets = np.zeros(self.count + 1, dtype=np.int64)
        if self.count:
            np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=self.count),
                      out=offsets[1:])
        # The joined bytes are passed in place (the library only reads them during the call).
        self._buffer = c_char_p(b"".join(encoded))
        self._offsets = offsets
        self.struct = gs_text(ctypes.cast(self._buffer, c_void_p),
                              offsets.ctypes.data_as(POINTER(c_int64)))

    def pointer(self) -> Any:
        """``const gs_text *`` for a call."""
        return byref(self.struct)


def decode_strings(handle: int | None) -> list[str]:
    """The strings of a ``gs_strings`` handle (not freed here), decoded in one pass."""
    if not handle:
        return []
    library = lib()
    count = library.gs_strings_count(handle)
    if count <= 0:
        return []
    packed = library.gs_strings_packed(handle)
    end = packed.offsets[count]
    data = ctypes.string_at(packed.bytes, end)
    return [part.decode("utf-8") for part in data.split(b"\0")[:-1]]


def abi_version() -> tuple[int, int]:
    """``(major, minor)`` of the loaded library's C ABI."""
    return lib().abi_version


ProgressCallback = Callable[[int, int, str], Any]
