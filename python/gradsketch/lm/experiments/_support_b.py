"""Shared helpers of the In-Run, Density and PASER experiments (exp-b).

Why a module of its own: the three experiments all write sketch sets with float columns (which
only the CLI's ``append --column`` can do), call the CLI for selections and valuations, report
per-seed figures as mean ± standard error, and retrain small models from scratch with the same
deterministic batching. Keeping that in one place keeps their numbers comparable.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..model import encode, per_example_loss
from ..report import format_mean_se, mean_se
from . import cli_json

__all__ = ["cli_json", "mean_se", "summary", "format_summary", "append_with_columns", "sgd_train", "excerpt", "source_shares",
           "nll_per_token", "CaptureStore", "epoch_batches", "cpu_seconds"]


def summary(values: Sequence[float]) -> dict[str, Any]:
    """``{"values", "mean", "se"}`` of per-seed figures (JSON-serialisable)."""
    mean, se = mean_se(values)
    return {"values": [float(v) for v in values], "mean": mean, "se": se}


def format_summary(entry: Mapping[str, Any], digits: int = 3) -> str:
    """A :func:`summary` as "mean ± SE" for the report's tables."""
    return format_mean_se(entry["mean"], entry["se"], digits)


def append_with_columns(store_path: str, set_name: str, rows: np.ndarray, ids: Sequence[str], *,
                        labels: Sequence[str] | None = None, columns: Mapping[str, np.ndarray] | None = None,
                        projection: Mapping[str, Any] | None = None, attributes: Mapping[str, Any] | None = None,
                        metadata: Sequence[str] | None = None) -> int:
    """Appends ``rows`` (float32 stored) with float columns through ``gradsketch append`` and returns the version.

    The Python store API has no columns; the CLI does. The set records ``projection`` (the
    collector's definition) so its rows are comparable with other sets of the same projection.
    """
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    with _open_snapshot(store_path) as snapshot:
        if set_name in snapshot.sets:
            raise ValueError(f"set {set_name!r} already exists in {store_path}: an experiment writes its sets once "
                             "per store (run it on a fresh store from prepare)")
    if rows.ndim != 2 or rows.shape[0] != len(ids):
        raise ValueError(f"append_with_columns: expected rows [len(ids)={len(ids)}, k], found {rows.shape}")
    with tempfile.TemporaryDirectory(prefix="gs-expb-") as scratch:
        np.save(os.path.join(scratch, "rows.npy"), rows)
        args = ["append", store_path, "--set", set_name, "--rows", os.path.join(scratch, "rows.npy"),
                "--dtype", "float32"]

        def text_file(name: str, values: Sequence[str]) -> str:
            path = os.path.join(scratch, name)
            with open(path, "w", encoding="utf-8", newline="\n") as handle:
                for value in values:
                    if "\n" in value or "\r" in value:
                        raise ValueError(f"{name}: entries must not contain line breaks, found {value!r}")
                    handle.write(value + "\n")
            return path

        args += ["--ids", text_file("ids.txt", [str(i) for i in ids])]
        if labels is not None:
            args += ["--labels", text_file("labels.txt", list(labels))]
        if metadata is not None:
            args += ["--metadata", text_file("metadata.txt", list(metadata))]
        for name, values in (columns or {}).items():
            column = np.asarray(values, dtype=np.float64).reshape(-1)
            if column.shape[0] != rows.shape[0]:
                raise ValueError(f"column {name!r}: expected {rows.shape[0]} values, found {column.shape[0]}")
            path = os.path.join(scratch, f"column-{name}.npy")
            np.save(path, column)
            args += ["--column", f"{name}={path}"]
        merged = dict(attributes or {})
        if projection is not None:
            merged["projection"] = dict(projection)
        for key, value in merged.items():
            args += ["--attribute", f"{key}={json.dumps(value)}"]
        return int(cli_json(args)["version"])


def _open_snapshot(store_path: str) -> Any:
    """A snapshot of the latest version of the store at ``store_path`` (its own handle, closed by ``with``)."""
    from ...store import Store

    class _Latest:
        def __enter__(self) -> Any:
            self.store = Store.open(store_path)
            self.snapshot = self.store.snapshot()
            return self.snapshot

        def __exit__(self, *exc: Any) -> None:
            self.snapshot.close()
            self.store.close()

    return _Latest()


class _CaptureSession:
    """An append session that keeps the collector's rows in memory instead of writing them."""

    def __init__(self, sink: "CaptureStore") -> None:
        self.sink = sink

    def append(self, values: np.ndarray, ids: Sequence[str] | None = None, labels: Sequence[str] | None = None,
               metadata: Any = None) -> None:
        self.sink.rows.append(np.asarray(values, dtype=np.float32))
        self.sink.ids.extend(ids or [])

    def commit(self, detail: str | None = None) -> int:
        return 0

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class CaptureStore:
    """Stands in for a Store in :class:`gradsketch.logra.LoGraCollector` to get the sketches in memory.

    Why: the In-Run log needs float columns (step, learning rate) that only the CLI writes, and
    the validation row of a step is the mean of the validation examples' sketches, which is
    formed here before anything is stored. ``take()`` returns and clears what was captured.
    """

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.ids: list[str] = []

    def append_session(self, set: str, **_: Any) -> _CaptureSession:
        return _CaptureSession(self)

    def take(self) -> tuple[np.ndarray, list[str]]:
        rows = np.concatenate(self.rows, axis=0) if self.rows else np.zeros((0, 0), dtype=np.float32)
        ids = list(self.ids)
        self.rows.clear()
        self.ids.clear()
        return rows, ids


def epoch_batches(count: int, steps: int, batch: int, seed: int) -> list[list[int]]:
    """Deterministic batches of indices into ``count`` documents: a fresh permutation per epoch
    (torch.Generator(seed)), consecutive chunks of ``batch``; every document is seen once per epoch.

    A batch that straddles two epochs never holds a document twice (the In-Run log's ids
    ``<doc>@<step>`` must be unique): the next epoch's permutation puts the documents still
    waiting from the previous epoch after the others (it stays a permutation).
    """
    if count < batch:
        raise ValueError(f"need at least batch={batch} documents to train on, found {count}")
    generator = torch.Generator().manual_seed(int(seed))
    order: list[int] = []
    batches = []
    for _ in range(steps):
        if len(order) < batch:
            waiting = set(order)
            permutation = torch.randperm(count, generator=generator).tolist()
            order += [i for i in permutation if i not in waiting] + [i for i in permutation if i in waiting]
        batches.append(order[:batch])
        order = order[batch:]
    return batches


def sgd_train(model: torch.nn.Module, documents: Sequence[Any], *, steps: int, batch: int, lr: float, seed: int,
              context: int, clip: float | None = None) -> torch.nn.Module:
    """Plain SGD on the mean-per-token loss of each batch (no momentum, no weight decay), in place.

    Why SGD: In-Run Data Shapley's closed forms are derived for SGD, where a step moves the
    weights by exactly −η·(batch gradient); the removal retrainings use the same loop so the
    comparison changes only the data. ``clip``: the step's η is scaled down when the batch
    gradient's norm exceeds ``clip`` (global-norm clipping, still a plain SGD step).
    """
    model.train()
    for step, indices in enumerate(epoch_batches(len(documents), steps, batch, seed)):
        docs = [documents[i] for i in indices]
        tokens, mask = encode(docs, context)
        model.zero_grad(set_to_none=True)
        loss = per_example_loss(model, tokens, mask, "sum").sum() / mask.sum()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
        rate = lr * (min(1.0, clip / norm) if clip and norm > 0 else 1.0)
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.grad is not None:
                    parameter.add_(parameter.grad, alpha=-rate)
    return model


@torch.no_grad()
def nll_per_token(model: torch.nn.Module, documents: Sequence[Any], context: int, batch: int = 64) -> float:
    """Mean next-token NLL (nats per target byte) of ``documents``: log of their perplexity."""
    was_training = model.training
    model.eval()
    total, tokens_seen = 0.0, 0
    for start in range(0, len(documents), batch):
        tokens, mask = encode(documents[start:start + batch], context)
        total += float(per_example_loss(model, tokens, mask, "sum").sum())
        tokens_seen += int(mask.sum())
    model.train(was_training)
    return total / max(tokens_seen, 1)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the CLI calls), user + system.

    Why: the machine is shared, so wall-clock time overstates what a run costs on idle cores;
    outcomes report both.
    """
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def excerpt(text: str, length: int = 90) -> str:
    """A one-line excerpt: whitespace runs shown as single spaces, control bytes escaped."""
    flat = " ".join(text.split())
    flat = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in flat)
    return flat if len(flat) <= length else flat[:length - 1] + "…"


def source_shares(sources: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """Share of each name in ``sources`` (0 for names absent; shares of ``names`` only)."""
    total = len(sources)
    return {name: (sum(1 for s in sources if s == name) / total if total else math.nan) for name in names}
