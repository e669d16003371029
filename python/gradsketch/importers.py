"""Importing gradients written by other tools (TRAK, LESS, Bergson, .npy/.safetensors shards).

One implementation does the work: the engine's importer behind ``gs_store_import``
(Spec/import.md). This module only passes the options through the C ABI and relays progress.

    import gradsketch as gs
    report = gs.importers.import_gradients("run.gsk", "trak", "trak_results", "train")
    report["rows"], report["skipped_rows"], report["projection"]
"""

from __future__ import annotations

import json
import os
from ctypes import byref, c_char_p, c_int64, c_void_p
from typing import Any, Callable, Optional, Union

from . import _native
from .store import Store

#: The formats ``gs_store_import`` accepts (``"auto"`` detects one from the path).
FORMATS = ("trak", "less", "bergson", "npy", "safetensors", "auto")

#: progress(done_rows, total_rows, stage) -> False to cancel (None or True continues).
ProgressCallback = Callable[[int, int, str], Optional[bool]]

_OPTION_KEYS = {
    "ids", "dtype", "allow_nonfinite", "model_id", "array", "checkpoint", "module", "tensor",
    "attributes", "detail", "batch_bytes",
}


def _options_json(options: dict[str, Any]) -> Optional[str]:
    """The ``options_json`` of Spec/c-api.md §7.1; paths become strings, None drops a key."""
    unknown = sorted(set(options) - _OPTION_KEYS)
    if unknown:
        raise TypeError(f"unknown import option(s) {', '.join(unknown)}: expected {', '.join(sorted(_OPTION_KEYS))}")
    given = {key: (os.fspath(value) if isinstance(value, os.PathLike) else value)
             for key, value in options.items() if value is not None}
    return json.dumps(given) if given else None


def import_gradients(
    store: Union[Store, str, "os.PathLike[str]"],
    format: str,
    path: Union[str, "os.PathLike[str]"],
    set: str,
    *,
    progress: Optional[ProgressCallback] = None,
    **options: Any,
) -> dict[str, Any]:
    """Imports the gradients at ``path`` (written by another tool, in ``format``) into sketch
    set ``set`` of ``store`` (a :class:`Store` or a store path), as ONE version.

    ``options``: ``ids`` (ids file), ``dtype`` ("float16"/"float32"), ``allow_nonfinite``,
    ``model_id`` and ``array`` (TRAK), ``checkpoint``, ``module`` (Bergson), ``tensor``
    (safetensors), ``attributes`` (dict), ``detail``, ``batch_bytes`` — see Spec/import.md.
    ``progress(done, total, stage)`` is called after every batch; returning False cancels
    (then :class:`gradsketch.InvalidStateError` "cancelled" is raised and nothing is committed).
    An exception raised by ``progress`` also cancels, and is re-raised.

    Returns the engine's report: ``set``, ``version``, ``rows``, ``k``, ``format``,
    ``sources``, ``ids``, ``skipped_rows``, ``projection``, ``attributes``, ``bytes``,
    ``seconds``. Raises the :mod:`gradsketch.errors` exception carrying the engine's message.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, found {format!r}")
    owned = not isinstance(store, Store)
    opened = Store.open(store) if owned else store
    failure: list[BaseException] = []

    def relay(_context: Any, done: int, total: int, stage: bytes) -> int:
        if progress is None:
            return 0
        try:
            return 1 if progress(done, total, stage.decode()) is False else 0
        except BaseException as error:  # ctypes would swallow it: keep it, cancel, re-raise
            failure.append(error)
            return 1

    callback = _native.gs_progress_fn(relay) if progress is not None else _native.gs_progress_fn()
    report = c_void_p()
    error = c_void_p()
    try:
        status = _native.lib().gs_store_import(
            opened._pointer, format.encode(), os.fspath(path).encode(), set.encode(),
            (_options_json(options) or "").encode() or None, callback, None, byref(report), byref(error))
        if failure:
            _native.take_text(error)
            _native.take_text(report)
            raise failure[0]
        _native.check(status, error)
        text = _native.take_text(report)
        return json.loads(text) if text else {}
    finally:
        if owned:
            opened.close()
