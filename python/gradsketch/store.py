"""Stores, snapshots, append sessions and query results over the C ABI.

Ownership: every ``gs_*`` handle belongs to exactly one Python object (a :class:`Store`,
:class:`Snapshot` or :class:`AppendSession`, through a :class:`gradsketch._native.Handle`) and
is released once, by ``close()``/the context manager or by garbage collection.

Borrowed memory: the numpy arrays of :meth:`Snapshot.segments`, :meth:`Snapshot.rows` and
:meth:`Snapshot.tensors` point into the snapshot's file mappings (zero-copy, read-only; a
tensor whose stored layout cannot be mapped is a copy the engine snapshot owns, same rules). Each such array references the
snapshot's handle, so :meth:`Snapshot.close` only marks the Python snapshot closed; the engine
snapshot (and its mappings) is freed when the last array viewing it is garbage collected.
Closing a snapshot while arrays are alive is therefore safe, and the arrays stay valid.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from ctypes import POINTER, byref, c_float, c_int64, c_void_p
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence, Union

import numpy as np

from . import _native
from ._native import Handle, PackedText, call, decode_strings, lib, take_text
from .errors import InvalidInputError, InvalidStateError

__all__ = [
    "ADDRESS_DTYPE",
    "AppendSession",
    "Hit",
    "QueryResult",
    "SelectionResult",
    "SetInfo",
    "Snapshot",
    "Store",
    "VerifyReport",
]

PathLike = Union[str, "os.PathLike[str]"]

#: numpy dtype of a row address, the layout of ``gs_address``.
ADDRESS_DTYPE = np.dtype([("segment", "<i8"), ("row", "<i8")])

_STORED_DTYPES = {_native.GS_DTYPE_FLOAT16: np.dtype("<f2"), _native.GS_DTYPE_FLOAT32: np.dtype("<f4")}
_DTYPE_NAMES = {_native.GS_DTYPE_FLOAT16: "float16", _native.GS_DTYPE_FLOAT32: "float32"}
_STORED_DTYPE_CODES = {
    "auto": _native.GS_DTYPE_AUTO,
    "float16": _native.GS_DTYPE_FLOAT16,
    "float32": _native.GS_DTYPE_FLOAT32,
}
_NUMPY_INPUT_CODES = {
    np.dtype("float16"): _native.GS_DTYPE_FLOAT16,
    np.dtype("float32"): _native.GS_DTYPE_FLOAT32,
    np.dtype("float64"): _native.GS_DTYPE_FLOAT64,
}


def _encode(text: str | os.PathLike[str] | None) -> bytes | None:
    if text is None:
        return None
    return os.fsencode(text) if isinstance(text, os.PathLike) else text.encode("utf-8")


# ---- input buffers ------------------------------------------------------------------------


@dataclass
class _Buffer:
    """A contiguous little-endian float buffer ready for the C ABI; ``keep`` holds the object
    owning the memory for as long as the buffer is used."""

    keep: Any
    address: int
    dtype: int
    shape: tuple[int, ...]


def _torch_tensor_type() -> Any:
    torch = sys.modules.get("torch")  # never import torch unless the caller already did
    return getattr(torch, "Tensor", None) if torch is not None else None


def _float_buffer(value: Any, what: str) -> _Buffer:
    """``value`` (numpy array, array-like or CPU torch tensor of float16/32/64 or bfloat16)
    as a contiguous buffer, copied only when it is not contiguous already (or is big-endian)."""
    tensor_type = _torch_tensor_type()
    if tensor_type is not None and isinstance(value, tensor_type):
        import torch

        codes = {
            torch.float16: _native.GS_DTYPE_FLOAT16,
            torch.float32: _native.GS_DTYPE_FLOAT32,
            torch.bfloat16: _native.GS_DTYPE_BFLOAT16,
            torch.float64: _native.GS_DTYPE_FLOAT64,
        }
        if value.dtype not in codes:
            raise InvalidInputError(
                f"{what}: expected a float16, bfloat16, float32 or float64 tensor, found {value.dtype}")
        if value.device.type != "cpu":
            raise InvalidInputError(
                f"{what}: expected a CPU tensor, found one on {value.device} (call .cpu() first)")
        tensor = value.detach()
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()
        return _Buffer(tensor, tensor.data_ptr(), codes[value.dtype], tuple(tensor.shape))
    array = np.asarray(value)
    code = _NUMPY_INPUT_CODES.get(array.dtype.newbyteorder("=")) if array.dtype.kind == "f" else None
    if code is None:
        raise InvalidInputError(
            f"{what}: expected float16, float32 or float64 values, found dtype {array.dtype}")
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.astype(array.dtype.newbyteorder("<"))
    shape = tuple(array.shape)
    # ascontiguousarray turns a 0-d array into shape (1,); the reshape keeps the caller's shape.
    array = np.ascontiguousarray(array).reshape(shape)
    return _Buffer(array, array.ctypes.data, code, shape)


def _text_list(values: Sequence[str] | None, count: int, what: str) -> PackedText | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise InvalidInputError(f"{what}: expected a sequence of {count} strings, found one string")
    packed = PackedText(values)
    if packed.count != count:
        raise InvalidInputError(f"{what}: expected {count} strings (one per row), found {packed.count}")
    return packed


def _metadata_list(values: Sequence[Any] | None, count: int) -> tuple[PackedText | None, int]:
    """Metadata as packed text plus flags: all strings are passed as they are; otherwise
    every entry is JSON-encoded (``json.dumps``) and flagged GS_METADATA_JSON."""
    if values is None:
        return None, 0
    if isinstance(values, (str, bytes)):
        raise InvalidInputError(f"metadata: expected a sequence of {count} entries, found one string")
    values = list(values)
    if all(isinstance(value, str) for value in values):
        return _text_list(values, count, "metadata"), 0
    encoded = [json.dumps(value, ensure_ascii=False, separators=(",", ":")) for value in values]
    return _text_list(encoded, count, "metadata"), _native.GS_METADATA_JSON


def _address_array(addresses: Any) -> np.ndarray:
    if isinstance(addresses, np.ndarray) and addresses.dtype == ADDRESS_DTYPE:
        return np.ascontiguousarray(addresses)
    array = np.asarray(addresses, dtype=np.int64)
    if array.size == 0:
        return np.empty(0, dtype=ADDRESS_DTYPE)
    if array.ndim != 2 or array.shape[1] != 2:
        raise InvalidInputError(
            f"addresses: expected (segment, row) pairs, found an array of shape {array.shape}")
    return np.ascontiguousarray(array).view(ADDRESS_DTYPE).reshape(-1)


def _copied(address: int, count: int, dtype: np.dtype | str) -> np.ndarray:
    """A copy of ``count`` elements of ``dtype`` at a borrowed ``address``."""
    dtype = np.dtype(dtype)
    if count <= 0 or not address:
        return np.empty(0, dtype=dtype)
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(address)
    return np.frombuffer(raw, dtype=dtype).copy()


class _BorrowedView:
    """Exposes borrowed memory to numpy read-only; holds ``owner`` (the handle lending it),
    which numpy keeps alive as the array's base."""

    __slots__ = ("__array_interface__", "owner")

    def __init__(self, owner: Handle, address: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.owner = owner
        self.__array_interface__ = {
            "shape": shape,
            "typestr": dtype.str,
            "data": (address, True),  # read-only
            "version": 3,
        }


def _borrowed_array(owner: Handle, address: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if not address or 0 in shape:
        array = np.empty(shape, dtype=dtype)
        array.flags.writeable = False
        return array
    return np.asarray(_BorrowedView(owner, address, shape, dtype))


# ---- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One ranked row: its id, score (float64), address ``(segment, row)``, label and metadata
    (``None`` when annotations were not fetched)."""

    id: str
    score: float
    address: tuple[int, int]
    label: str | None = None
    metadata: str | None = None


@dataclass
class QueryResult:
    """Hits of a query, one list per query vector (one list when aggregated).

    For a single list the result itself behaves as that list (``len``, indexing, iteration).
    """

    lists: list[list[Hit]]
    version: int
    plan: dict[str, Any] = field(default_factory=dict)

    def _primary(self) -> list[Any]:
        return self.lists[0] if len(self.lists) == 1 else self.lists  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._primary())

    def __getitem__(self, index: int) -> Any:
        return self._primary()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._primary())

    def ids(self) -> list[list[str]]:
        """Ids of every list."""
        return [[hit.id for hit in hits] for hits in self.lists]

    def scores(self) -> list[np.ndarray]:
        """Scores (float64) of every list."""
        return [np.array([hit.score for hit in hits], dtype=np.float64) for hits in self.lists]


@dataclass
class SelectionResult:
    """Rows chosen by a selection, in the order chosen."""

    ids: list[str]
    scores: np.ndarray
    addresses: np.ndarray
    plan: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SetInfo:
    """Shape of a sketch set: width ``k``, stored ``dtype`` name, live ``rows``, ``segments``."""

    k: int
    dtype: str
    rows: int
    segments: int


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :meth:`Store.verify`."""

    clean: bool
    problems: list[str]
    files_checked: int
    bytes_checked: int


def _take_result(pointer: c_void_p) -> tuple[list[list[Hit]], np.ndarray, np.ndarray, int, dict[str, Any]]:
    """Copies everything out of a ``gs_result`` and frees it."""
    library = lib()
    handle = Handle(pointer, "gs_result_free")
    try:
        result = handle.pointer
        list_count = library.gs_result_list_count(result)
        hit_count = library.gs_result_hit_count(result)
        offsets = _copied(ctypes.cast(library.gs_result_offsets(result), c_void_p).value or 0,
                          list_count + 1, np.int64)
        scores = _copied(ctypes.cast(library.gs_result_scores(result), c_void_p).value or 0,
                         hit_count, np.float64)
        addresses = _copied(ctypes.cast(library.gs_result_addresses(result), c_void_p).value or 0,
                            hit_count, ADDRESS_DTYPE)
        ids = decode_strings(library.gs_result_ids(result))
        labels_handle = library.gs_result_labels(result)
        metadata_handle = library.gs_result_metadata(result)
        labels = decode_strings(labels_handle) if labels_handle else None
        metadata = decode_strings(metadata_handle) if metadata_handle else None
        version = library.gs_result_version(result)
        plan_text = library.gs_result_plan_json(result)
        plan = json.loads(plan_text.decode("utf-8")) if plan_text else {}
    finally:
        handle.release()
    # Plain Python lists first: indexing numpy arrays element by element costs a scalar object
    # per access, which dominated a one-query call.
    bounds = offsets.tolist()
    score_values = scores.tolist()
    segments = addresses["segment"].tolist() if hit_count else []
    rows = addresses["row"].tolist() if hit_count else []
    lists: list[list[Hit]] = [
        [Hit(id=ids[i], score=score_values[i], address=(segments[i], rows[i]),
             label=labels[i] if labels is not None else None,
             metadata=metadata[i] if metadata is not None else None)
         for i in range(bounds[q], bounds[q + 1])]
        for q in range(list_count)
    ]
    return lists, scores, addresses, version, plan


# ---- store --------------------------------------------------------------------------------


class Store:
    """An open GradSketch store (a directory). Use :meth:`create` or :meth:`open`; the object
    is a context manager that closes the store handle. Snapshots and sessions opened from it
    stay usable after it is closed. Every method may be called from several threads."""

    def __init__(self, handle: Handle, path: str) -> None:
        self._handle = handle
        self.path = path

    @classmethod
    def create(cls, path: PathLike) -> "Store":
        """Creates a new, empty store at ``path`` (a new path or an empty directory),
        committing version 0."""
        out = c_void_p()
        call("gs_store_create", _encode(os.fspath(path)), byref(out))
        return cls(Handle(out, "gs_store_close"), os.fspath(path))

    @classmethod
    def open(cls, path: PathLike) -> "Store":
        """Opens an existing store (:class:`NotAStoreError` when ``path`` is not one)."""
        out = c_void_p()
        call("gs_store_open", _encode(os.fspath(path)), byref(out))
        return cls(Handle(out, "gs_store_close"), os.fspath(path))

    def close(self) -> None:
        """Releases the store handle (idempotent)."""
        self._handle.release()

    @property
    def closed(self) -> bool:
        return self._handle.released

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"gradsketch.Store({self.path!r}{', closed' if self.closed else ''})"

    @property
    def _pointer(self) -> int:
        if self._handle.released:
            raise InvalidStateError(f"the store {self.path} is closed")
        return self._handle.pointer

    def latest_version(self) -> int:
        """The latest committed version."""
        version = c_int64()
        call("gs_store_latest_version", self._pointer, byref(version))
        return version.value

    def versions(self) -> list[dict[str, Any]]:
        """The retained versions: ``[{"version": 0, "detail": ..., "time": ...}, ...]``."""
        text = c_void_p()
        call("gs_store_versions_json", self._pointer, byref(text))
        return json.loads(take_text(text) or "[]")

    def verify(self) -> VerifyReport:
        """Checks every retained version's files (checksums, structure)."""
        out = c_void_p()
        call("gs_store_verify", self._pointer, byref(out))
        library = lib()
        handle = Handle(out, "gs_verify_report_free")
        try:
            report = handle.pointer
            count = library.gs_verify_report_problem_count(report)
            problems = [library.gs_verify_report_problem(report, i).decode("utf-8") for i in range(count)]
            return VerifyReport(
                clean=bool(library.gs_verify_report_clean(report)),
                problems=problems,
                files_checked=library.gs_verify_report_files_checked(report),
                bytes_checked=library.gs_verify_report_bytes_checked(report),
            )
        finally:
            handle.release()

    def delete(self, set: str, ids: Sequence[str]) -> int:
        """Deletes rows by id from ``set`` as one version (returned); an unknown id is
        :class:`NotFoundError` and nothing is committed."""
        ids = list(ids)
        packed = _text_list(ids, len(ids), "ids")
        assert packed is not None
        version = c_int64()
        call("gs_store_delete", self._pointer, _encode(set), packed.pointer(), packed.count, byref(version))
        return version.value

    def snapshot(self, version: int | None = None) -> "Snapshot":
        """Opens ``version`` (the latest when None) once; it answers many calls."""
        out = c_void_p()
        call("gs_snapshot_open", self._pointer, -1 if version is None else int(version), byref(out))
        return Snapshot(Handle(out, "gs_snapshot_close"))

    def append_session(
        self,
        set: str,
        dtype: str = "auto",
        projection: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
        allow_nonfinite: bool = False,
    ) -> "AppendSession":
        """Begins a streaming append to ``set`` (created by the first batch when new).

        dtype: ``"auto"`` (float16 input stays float16, anything else becomes float32),
        ``"float16"`` or ``"float32"``. projection: the projection definition
        (Spec/projection.md §5) recorded as the set's ``projection`` attribute (an existing
        set must record the same one). attributes: other set attributes, used when the set is
        created. As a context manager the session commits on success and aborts on exception.
        """
        if dtype not in _STORED_DTYPE_CODES:
            raise InvalidInputError(f"dtype: expected 'auto', 'float16' or 'float32', found {dtype!r}")
        merged: dict[str, Any] = dict(attributes or {})
        if projection is not None:
            merged["projection"] = dict(projection)
        attributes_json = json.dumps(merged, ensure_ascii=False) if merged else None
        out = c_void_p()
        call(
            "gs_append_begin", self._pointer, _encode(set), _STORED_DTYPE_CODES[dtype],
            _encode(attributes_json), _native.GS_APPEND_ALLOW_NONFINITE if allow_nonfinite else 0,
            byref(out),
        )
        return AppendSession(Handle(out, "gs_append_free"), set)

    def put_tensors(
        self,
        name: str,
        tensors: Mapping[str, Any],
        kind: str = "weights",
        detail: str | None = None,
    ) -> int:
        """Writes tensor set ``name`` (numpy arrays or CPU torch tensors of float16, bfloat16,
        float32 or float64, any shape) and commits it as one version (returned)."""
        items = list(tensors.items())
        buffers = [_float_buffer(value, f"tensor {key!r}") for key, value in items]
        names = [key.encode("utf-8") for key, _ in items]
        shapes = [np.array(buffer.shape or (0,), dtype=np.int64) for buffer in buffers]
        array = (_native.gs_tensor * max(len(items), 1))()
        for i, buffer in enumerate(buffers):
            array[i].name = names[i]
            array[i].dtype = buffer.dtype
            array[i].ndim = len(buffer.shape)
            array[i].shape = shapes[i].ctypes.data_as(POINTER(c_int64))
            array[i].data = buffer.address
        version = c_int64()
        call("gs_store_put_tensors", self._pointer, _encode(name), _encode(kind), array, len(items),
             _encode(detail), byref(version))
        del buffers, names, shapes  # kept alive until after the call
        return version.value

    def put_state_dict(
        self,
        name: str,
        state_dict: Mapping[str, Any] | PathLike,
        kind: str = "weights",
        detail: str | None = None,
    ) -> int:
        """Writes a model's parameters as tensor set ``name``: a ``state_dict`` (tensors or
        arrays) or the path of a ``.safetensors`` file (read with the ``safetensors`` package,
        which is then required). Entries that are not floating point (integer buffers such as
        BatchNorm's ``num_batches_tracked``) are skipped: a tensor set holds floating-point
        tensors only."""
        if isinstance(state_dict, (str, os.PathLike)):
            state_dict = _read_safetensors(os.fspath(state_dict))
        floating = {key: value for key, value in state_dict.items() if _is_floating(value)}
        return self.put_tensors(name, floating, kind=kind, detail=detail)

    def delta(self, name: str, base: str, finetuned: str, detail: str | None = None) -> int:
        """Commits tensor set ``name`` = ``finetuned`` − ``base`` (float32) as one version."""
        version = c_int64()
        call("gs_store_delta", self._pointer, _encode(name), _encode(base), _encode(finetuned),
             _encode(detail), byref(version))
        return version.value

    def commit_prepared(self, tokens: Sequence[str], detail: str | None = None) -> tuple[int, int]:
        """Commits the prepared appends ``tokens`` (from :meth:`AppendSession.prepare`, any
        process) as ONE version, all or nothing; returns ``(version, rows added)``."""
        tokens = list(tokens)
        packed = _text_list(tokens, len(tokens), "tokens")
        assert packed is not None
        version, rows = c_int64(), c_int64()
        call("gs_store_commit_prepared", self._pointer, packed.pointer(), packed.count, _encode(detail),
             byref(version), byref(rows))
        return version.value, rows.value


def _is_floating(value: Any) -> bool:
    tensor_type = _torch_tensor_type()
    if tensor_type is not None and isinstance(value, tensor_type):
        return bool(value.is_floating_point())
    return np.asarray(value).dtype.kind == "f"


def _read_safetensors(path: str) -> dict[str, Any]:
    try:
        from safetensors import safe_open
    except ImportError as error:
        raise ImportError(
            "put_state_dict of a .safetensors path needs the `safetensors` package "
            "(pip install safetensors), or pass a state_dict instead") from error
    try:
        import torch  # noqa: F401  (bfloat16 tensors need torch's reader)
        framework = "pt"
    except ImportError:
        framework = "numpy"
    tensors: dict[str, Any] = {}
    with safe_open(path, framework=framework) as file:
        for key in file.keys():
            tensors[key] = file.get_tensor(key)
    return tensors


# ---- append session -----------------------------------------------------------------------


class AppendSession:
    """A streaming append to one set; see :meth:`Store.append_session`.

    Used by one thread at a time. As a context manager: commits when the block ends normally
    (unless already committed, aborted or prepared), aborts when it raises, and then releases
    the handle, except after :meth:`prepare`: a prepared session keeps its handle (the engine's
    writer pin that stops vacuum removing its files) until :meth:`close` or garbage collection,
    so keep it until the token is committed.
    """

    def __init__(self, handle: Handle, set: str) -> None:
        self._handle = handle
        self.set = set
        self.state = "open"  # open | committed | failed (commit refused) | aborted | prepared
        self.version: int | None = None
        self.rows_committed: int | None = None
        self.warnings: list[str] = []

    def __enter__(self) -> "AppendSession":
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        try:
            if self.state == "open":
                if exc_type is None:
                    self.commit()
                else:
                    self.abort()
        finally:
            if self.state != "prepared":
                self._handle.release()

    def _require_open(self) -> int:
        if self.state != "open" or self._handle.released:
            raise InvalidStateError(f"the append session to {self.set!r} is {self.state}")
        return self._handle.pointer

    def append(
        self,
        rows: Any,
        ids: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        metadata: Sequence[Any] | None = None,
    ) -> None:
        """Writes one batch: ``rows`` is 2-D ``(n, k)``, a numpy array (float16/32/64) or a CPU
        torch tensor (float16/bfloat16/32/64). Contiguous input is read in place, without a
        copy; non-contiguous input is made contiguous first. ``ids``/``labels``: ``n`` strings;
        ``metadata``: ``n`` strings, or ``n`` JSON values (dicts...) encoded as JSON."""
        session = self._require_open()
        buffer = _float_buffer(rows, "rows")
        if len(buffer.shape) != 2:
            raise InvalidInputError(f"rows: expected a 2-D (rows, k) array, found shape {buffer.shape}")
        count, k = buffer.shape
        packed_ids = _text_list(ids, count, "ids")
        packed_labels = _text_list(labels, count, "labels")
        packed_metadata, flags = _metadata_list(metadata, count)
        if count == 0:
            return
        call(
            "gs_append_rows", session, buffer.address, buffer.dtype, count, k,
            packed_ids.pointer() if packed_ids else None,
            packed_labels.pointer() if packed_labels else None,
            packed_metadata.pointer() if packed_metadata else None,
            flags,
        )
        del buffer  # the engine read the rows during the call

    def commit(self, detail: str | None = None) -> int:
        """Publishes every batch as ONE version and returns it; :attr:`rows_committed` and
        :attr:`warnings` (post-commit warnings; the version is committed) are set. The session
        is finished afterwards whatever happens."""
        session = self._require_open()
        version, rows, warnings = c_int64(), c_int64(), c_void_p()
        try:
            call("gs_append_commit", session, _encode(detail), byref(version), byref(rows), byref(warnings))
        except BaseException:
            self.state = "failed"  # finished: nothing was committed
            raise
        self.state = "committed"
        warnings_handle = Handle(warnings, "gs_strings_free")
        self.warnings = decode_strings(warnings_handle.pointer) if warnings.value else []
        warnings_handle.release()
        self.version, self.rows_committed = version.value, rows.value
        return version.value

    def abort(self) -> None:
        """Discards every batch; nothing becomes visible. After :meth:`prepare` it removes the
        prepared files: call it only when the token was not (and will not be) committed."""
        if self.state in ("open", "prepared") and not self._handle.released:
            lib().gs_append_abort(self._handle.pointer)
            self.state = "aborted"

    def prepare(self) -> str:
        """Finishes writing the batches without committing and returns the token (JSON text)
        that :meth:`Store.commit_prepared` commits, possibly with other sessions' tokens."""
        session = self._require_open()
        token = c_void_p()
        call("gs_append_prepare", session, byref(token))
        self.state = "prepared"
        return take_text(token) or ""

    def close(self) -> None:
        """Releases the session (a session neither committed nor prepared is aborted)."""
        self._handle.release()


# ---- snapshot -----------------------------------------------------------------------------


class Snapshot:
    """One version of the store, opened once; every read and query runs against it.

    :meth:`close` marks it closed; the engine snapshot is released once no array borrowed from
    it is alive (see the module docstring). Every method may be called from several threads.
    """

    def __init__(self, handle: Handle) -> None:
        self._handle: Handle | None = handle
        self.version: int = lib().gs_snapshot_version(handle.pointer)

    def close(self) -> None:
        """Marks the snapshot closed; later calls raise :class:`InvalidStateError`. Arrays
        borrowed from it stay valid (they keep the engine snapshot alive)."""
        self._handle = None

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"gradsketch.Snapshot(version={self.version}{', closed' if self.closed else ''})"

    def _owner(self) -> Handle:
        if self._handle is None:
            raise InvalidStateError(f"the snapshot of version {self.version} is closed")
        return self._handle

    @property
    def _pointer(self) -> int:
        return self._owner().pointer

    @property
    def sets(self) -> list[str]:
        """Sketch set names, sorted by their bytes."""
        library, pointer = lib(), self._pointer
        return [library.gs_snapshot_set_name(pointer, i).decode("utf-8")
                for i in range(library.gs_snapshot_set_count(pointer))]

    @property
    def tensor_sets(self) -> list[str]:
        """Tensor set names, sorted by their bytes."""
        library, pointer = lib(), self._pointer
        return [library.gs_snapshot_tensor_set_name(pointer, i).decode("utf-8")
                for i in range(library.gs_snapshot_tensor_set_count(pointer))]

    def tensors(self, tensor_set: str) -> dict[str, np.ndarray]:
        """The tensors of ``tensor_set`` by name (sorted by name bytes): read-only arrays of
        the stored dtype (float16 or float32) and shape, borrowed from the engine snapshot with
        the lifetime rules of :meth:`rows` (no copy when the stored dataset is contiguous).

        Raises NotFoundError for an unknown tensor set (C ABI 1.2, ``gs_snapshot_tensor_view``).
        """
        owner = self._owner()
        encoded = _encode(tensor_set)
        count = c_int64()
        call("gs_snapshot_tensor_count", owner.pointer, encoded, byref(count))
        arrays: dict[str, np.ndarray] = {}
        for index in range(count.value):
            view = _native.gs_tensor_view()
            call("gs_snapshot_tensor_view", owner.pointer, encoded, index, byref(view))
            shape = tuple(int(view.shape[axis]) for axis in range(view.ndim))
            arrays[view.name.decode("utf-8")] = _borrowed_array(
                owner, view.data or 0, shape, _STORED_DTYPES[view.dtype])
        return arrays

    def info(self, set: str) -> SetInfo:
        """Width, stored dtype, live rows and segment count of ``set``."""
        k, dtype, rows, segments = c_int64(), _native.gs_dtype(), c_int64(), c_int64()
        call("gs_snapshot_set_info", self._pointer, _encode(set), byref(k), byref(dtype), byref(rows),
             byref(segments))
        return SetInfo(k.value, _DTYPE_NAMES.get(dtype.value, str(dtype.value)), rows.value, segments.value)

    def attributes(self, set: str) -> dict[str, Any]:
        """The set's attributes (JSON object; integers exact)."""
        text = c_void_p()
        call("gs_snapshot_set_attributes", self._pointer, _encode(set), byref(text))
        return json.loads(take_text(text) or "{}")

    def projection(self, set: str) -> dict[str, Any] | None:
        """The set's projection definition (Spec/projection.md §5), or None."""
        return self.attributes(set).get("projection")

    def _views(self, set: str) -> list[_native.gs_segment_view]:
        owner = self._owner()
        segments = self.info(set).segments
        views = []
        for segment in range(segments):
            view = _native.gs_segment_view()
            call("gs_snapshot_segment_view", owner.pointer, _encode(set), segment, byref(view))
            views.append(view)
        return views

    def _view_array(self, view: _native.gs_segment_view) -> np.ndarray:
        dtype = _STORED_DTYPES[view.dtype]
        return _borrowed_array(self._owner(), view.data or 0, (view.rows, view.k), dtype)

    def segments(self, set: str) -> list[np.ndarray]:
        """One read-only zero-copy array ``(rows, k)`` per segment (deleted rows included; see
        :meth:`deleted`), of the stored dtype (float16 sets give float16 arrays)."""
        return [self._view_array(view) for view in self._views(set)]

    def deleted(self, set: str) -> list[np.ndarray]:
        """Per segment, the sorted rows deleted in this snapshot (int64)."""
        return [_copied(ctypes.cast(view.deleted, c_void_p).value or 0, view.deleted_count, np.int64)
                for view in self._views(set)]

    def rows(self, set: str, copy: bool | None = None) -> np.ndarray:
        """The live rows of ``set`` in address order, ``(rows, k)`` of the stored dtype.

        Zero-copy and read-only when the set is one segment without deletions (and ``copy``
        is not True); otherwise a new array (``copy=False`` then raises InvalidInputError).
        """
        views = self._views(set)
        if len(views) == 1 and views[0].deleted_count == 0 and copy is not True:
            return self._view_array(views[0])
        if copy is False:
            raise InvalidInputError(
                f"rows of {set!r} cannot be returned without a copy: expected one segment with no "
                f"deleted rows, found {len(views)} segments and "
                f"{sum(view.deleted_count for view in views)} deleted rows")
        if not views:
            info = self.info(set)
            return np.empty((0, info.k), dtype=np.dtype(info.dtype) if info.dtype in ("float16", "float32") else np.float32)
        parts = []
        for view, deleted in zip(views, self.deleted(set)):
            array = self._view_array(view)
            if len(deleted):
                keep = np.ones(view.rows, dtype=bool)
                keep[deleted] = False
                parts.append(array[keep])
            else:
                parts.append(array)
        return np.concatenate(parts, axis=0)

    def addresses(self, set: str) -> np.ndarray:
        """Addresses ``[("segment","<i8"),("row","<i8")]`` of the live rows, in order."""
        parts = []
        for segment, view in enumerate(self._views(set)):
            rows = np.arange(view.rows, dtype=np.int64)
            if view.deleted_count:
                deleted = _copied(ctypes.cast(view.deleted, c_void_p).value or 0, view.deleted_count, np.int64)
                rows = np.setdiff1d(rows, deleted, assume_unique=True)
            part = np.empty(len(rows), dtype=ADDRESS_DTYPE)
            part["segment"] = segment
            part["row"] = rows
            parts.append(part)
        return np.concatenate(parts) if parts else np.empty(0, dtype=ADDRESS_DTYPE)

    def _strings(self, set: str, what: int, addresses: Any) -> list[str]:
        array = self.addresses(set) if addresses is None else _address_array(addresses)
        if len(array) == 0:
            return []
        out = c_void_p()
        call("gs_snapshot_strings", self._pointer, _encode(set), what,
             array.ctypes.data_as(POINTER(_native.gs_address)), len(array), byref(out))
        handle = Handle(out, "gs_strings_free")
        try:
            return decode_strings(handle.pointer)
        finally:
            handle.release()

    def ids(self, set: str, addresses: Any = None) -> list[str]:
        """Ids of the rows at ``addresses`` (default: every live row, in order)."""
        return self._strings(set, _native.GS_IDS, addresses)

    def labels(self, set: str, addresses: Any = None) -> list[str]:
        """Labels (empty strings where absent) of the rows at ``addresses``."""
        return self._strings(set, _native.GS_LABELS, addresses)

    def metadata(self, set: str, addresses: Any = None) -> list[str]:
        """Metadata strings (JSON text for JSON metadata; empty where absent)."""
        return self._strings(set, _native.GS_METADATA, addresses)

    def query(
        self,
        set: str,
        vectors: Any = None,
        *,
        row_id: str | None = None,
        delta: str | None = None,
        negate: bool = False,
        query_set: str | None = None,
        k: int = 10,
        metric: str = "ip",
        smallest: bool = False,
        index: str = "auto",
        nprobe: int = 0,
        recall: float | None = None,
        rerank: int = 0,
        aggregate: str | None = None,
        annotations: bool = True,
    ) -> QueryResult:
        """Top-``k`` rows of ``set`` for each query, which is exactly one of: ``vectors``
        (``(width,)`` or ``(q, width)``, converted to float32), ``row_id`` (a stored row),
        ``delta`` (a tensor set projected with the set's projection; ``negate`` flips it) or
        ``query_set`` (every live row of another set). ``metric``: ``"ip"`` or ``"cosine"``;
        ``index``: ``"auto"``, ``"exact"`` or an index name; ``aggregate``: None, ``"mean"`` or
        ``"max"`` (one list over all queries)."""
        sources = [vectors is not None, row_id is not None, delta is not None, query_set is not None]
        if sum(sources) != 1:
            raise InvalidInputError(
                f"query: expected exactly one of vectors, row_id, delta, query_set; found {sum(sources)}")
        params = _native.gs_query_params()
        lib().gs_query_params_init(byref(params))
        metrics = {"ip": _native.GS_METRIC_IP, "cosine": _native.GS_METRIC_COSINE}
        if metric not in metrics:
            raise InvalidInputError(f"metric: expected 'ip' or 'cosine', found {metric!r}")
        aggregations = {None: _native.GS_AGGREGATE_NONE, "mean": _native.GS_AGGREGATE_MEAN,
                        "max": _native.GS_AGGREGATE_MAX}
        if aggregate not in aggregations:
            raise InvalidInputError(f"aggregate: expected None, 'mean' or 'max', found {aggregate!r}")
        params.metric = metrics[metric]
        params.top_k = int(k)
        params.smallest = 1 if smallest else 0
        index_name = None
        if index == "auto":
            params.index = _native.GS_INDEX_AUTO
        elif index == "exact":
            params.index = _native.GS_INDEX_EXACT
        else:
            params.index = _native.GS_INDEX_NAMED
            index_name = _encode(index)
            params.index_name = index_name
        params.nprobe = int(nprobe)
        params.recall_target = float(recall) if recall is not None else 0.0
        params.rerank = int(rerank)
        params.aggregation = aggregations[aggregate]
        params.annotations = 1 if annotations else 0
        out = c_void_p()
        if vectors is not None:
            matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
            if matrix.ndim == 1:
                matrix = matrix.reshape(1, -1)
            if matrix.ndim != 2:
                raise InvalidInputError(
                    f"vectors: expected shape (width,) or (queries, width), found {matrix.shape}")
            call("gs_snapshot_query", self._pointer, _encode(set), matrix.ctypes.data_as(POINTER(c_float)),
                 matrix.shape[0], matrix.shape[1], byref(params), byref(out))
        else:
            if row_id is not None:
                source, name = _native.GS_SOURCE_ROW, row_id
            elif delta is not None:
                source = _native.GS_SOURCE_NEGATED_DELTA if negate else _native.GS_SOURCE_DELTA
                name = delta
            else:
                source, name = _native.GS_SOURCE_QUERY_SET, query_set  # type: ignore[assignment]
            call("gs_snapshot_query_by", self._pointer, _encode(set), source, _encode(name),
                 byref(params), byref(out))
        lists, _, _, version, plan = _take_result(out)
        return QueryResult(lists=lists, version=version, plan=plan)

    def select(
        self,
        set: str,
        target: Any = None,
        *,
        delta: str | None = None,
        negate: bool = True,
        count: int = 10,
        method: str = "greedy",
        batch: int = 0,
        seed: int = 0,
    ) -> SelectionResult:
        """Selects ``count`` rows of ``set`` towards ``target`` (a float32 vector of the set's
        width) or, when ``target`` is None, the tensor set ``delta`` projected with the set's
        projection (negated when ``negate``, the default: rows whose descent direction follows
        the delta). ``method``: ``"greedy"``, ``"greedy-batched"`` (``batch``), ``"top-k"`` or
        ``"random"`` (``seed``)."""
        if (target is None) == (delta is None):
            raise InvalidInputError("select: expected exactly one of target and delta")
        methods = {"greedy": _native.GS_SELECT_GREEDY, "greedy-batched": _native.GS_SELECT_GREEDY_BATCHED,
                   "top-k": _native.GS_SELECT_TOP_K, "random": _native.GS_SELECT_RANDOM}
        if method not in methods:
            raise InvalidInputError(
                f"method: expected 'greedy', 'greedy-batched', 'top-k' or 'random', found {method!r}")
        params = _native.gs_select_params()
        lib().gs_select_params_init(byref(params))
        params.method = methods[method]
        params.count = int(count)
        params.batch = int(batch)
        params.seed = int(seed)
        out = c_void_p()
        if target is not None:
            vector = np.ascontiguousarray(np.asarray(target, dtype=np.float32).reshape(-1))
            call("gs_snapshot_select", self._pointer, _encode(set), vector.ctypes.data_as(POINTER(c_float)),
                 len(vector), None, 0, byref(params), byref(out))
        else:
            call("gs_snapshot_select", self._pointer, _encode(set), None, 0, _encode(delta),
                 1 if negate else 0, byref(params), byref(out))
        lists, scores, addresses, _, plan = _take_result(out)
        hits = lists[0] if lists else []
        return SelectionResult(ids=[hit.id for hit in hits], scores=scores, addresses=addresses, plan=plan)
