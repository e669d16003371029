"""Projection factors and definition records (Spec/projection.md).

:func:`rademacher` returns the engine's own dense Rademacher matrix for a stream (computed by
``gs_projection_rademacher``, so it is bit for bit the matrix the engine applies). The
``*_layout``/:func:`definition` helpers build the JSON definition record of §5 that an append
session records with a set (``Store.append_session(set, projection=...)``).
"""

from __future__ import annotations

from ctypes import POINTER, c_float
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ._native import call

__all__ = ["rademacher", "kronecker_layout", "dense_layout", "definition"]

DEFINITION_VERSION = "1.0"
GENERATOR = "philox4x32-10"


def rademacher(seed: int, stream: str, rows: int, cols: int) -> np.ndarray:
    """The ``rows`` x ``cols`` float32 matrix of Spec/projection.md §2 for ``stream`` under
    ``seed``: entries ±1/sqrt(rows), exactly as the engine applies them. A Kronecker parameter
    ``NAME`` uses streams ``"NAME/out"`` (k_out x n_out) and ``"NAME/in"`` (k_in x n_in)."""
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed: expected an integer in [0, 2**64), found {seed}")
    out = np.empty((int(rows), int(cols)), dtype=np.float32)
    call("gs_projection_rademacher", int(seed), stream.encode("utf-8"), int(rows), int(cols),
         out.ctypes.data_as(POINTER(c_float)))
    return out


def kronecker_layout(name: str, shape: Sequence[int], k_out: int, k_in: int) -> dict[str, Any]:
    """A layout entry projecting a 2-D parameter ``(n_out, n_in)`` with P_out ⊗ P_in."""
    return {"name": name, "shape": [int(n) for n in shape], "kind": "kronecker",
            "k_out": int(k_out), "k_in": int(k_in)}


def dense_layout(name: str, shape: Sequence[int]) -> dict[str, Any]:
    """A layout entry projecting a parameter with the definition's dense projection."""
    return {"name": name, "shape": [int(n) for n in shape], "kind": "dense"}


def definition(
    seed: int,
    layout: Iterable[Mapping[str, Any]],
    kind: str = "rademacher",
    k_dense: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """The definition record of Spec/projection.md §5 (``version``, ``generator``, ``seed``,
    ``kind``, ``k_dense`` (the shared block of the non-Kronecker parameters; 0 when every
    parameter is Kronecker), ``layout``, and any ``extra`` keys such as ``nonzeros`` or
    ``block``). Integers stay Python ints, so JSON writes them exactly."""
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed: expected an integer in [0, 2**64), found {seed}")
    record: dict[str, Any] = {"version": DEFINITION_VERSION, "generator": GENERATOR,
                              "seed": int(seed), "kind": kind}
    record["k_dense"] = int(k_dense)
    record.update(extra)
    record["layout"] = [dict(entry) for entry in layout]
    return record
