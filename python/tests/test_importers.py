"""gradsketch.importers and ``python -m gradsketch import``: thin over gs_store_import.

numpy and torch write the sources; rows read back through a snapshot are compared exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradsketch as gs
from gradsketch.importers import import_gradients

PYTHON_DIR = Path(__file__).resolve().parents[1]


def write_shards(directory: Path, rows: list[int], k: int = 16, seed: int = 0) -> np.ndarray:
    """numpy writes part-<n>.npy shards (n = 1, 2, ..., 10, ... to exercise natural order)."""
    directory.mkdir()
    rng = np.random.default_rng(seed)
    arrays = []
    for number, count in zip([1, 2, 10, 11][: len(rows)], rows):
        array = rng.standard_normal((count, k)).astype(np.float32)
        np.save(directory / f"part-{number}.npy", array)
        arrays.append(array)
    return np.concatenate(arrays)


def test_npy_shards_stream_in_batches_with_progress(tmp_store: gs.Store, tmp_path: Path) -> None:
    expected = write_shards(tmp_path / "shards", [40, 25, 35])
    (tmp_path / "shards" / "ids.txt").write_text("".join(f"ex-{i}\n" for i in range(100)))
    calls: list[tuple[int, int, str]] = []
    # 16 floats = 64 bytes a row: batches of 10 rows, so about ten progress calls.
    report = import_gradients(tmp_store, "npy", tmp_path / "shards", "g", batch_bytes=640,
                              progress=lambda done, total, stage: calls.append((done, total, stage)))
    assert report["rows"] == 100 and report["k"] == 16 and report["format"] == "npy"
    assert [Path(p).name for p in report["sources"]] == ["part-1.npy", "part-2.npy", "part-10.npy"]
    assert report["projection"] is None
    assert report["version"] == tmp_store.latest_version() == 1
    dones = [done for done, _, stage in calls if stage == "append"]
    assert dones == list(range(0, 101, 10))
    assert all(total == 100 for _, total, _ in calls)
    assert calls[-1] == (100, 100, "done")
    with tmp_store.snapshot() as snap:
        np.testing.assert_array_equal(snap.rows("g", copy=True), expected)
        assert snap.ids("g") == [f"ex-{i}" for i in range(100)]
        attributes = snap.attributes("g")
        assert attributes["import_format"] == "npy"
        assert snap.projection("g") is None


def test_cancel_and_callback_errors_commit_nothing(tmp_store: gs.Store, tmp_path: Path) -> None:
    write_shards(tmp_path / "shards", [30])
    with pytest.raises(gs.InvalidStateError, match="cancelled"):
        import_gradients(tmp_store, "npy", tmp_path / "shards", "g", batch_bytes=640,
                         progress=lambda done, total, stage: done < 20)

    def explode(done: int, total: int, stage: str) -> None:
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        import_gradients(tmp_store, "npy", tmp_path / "shards", "g", progress=explode)
    assert tmp_store.latest_version() == 0
    with pytest.raises(TypeError, match="unknown import option"):
        import_gradients(tmp_store, "npy", tmp_path / "shards", "g", colour="red")
    with pytest.raises(ValueError, match="format must be one of"):
        import_gradients(tmp_store, "pickle", tmp_path / "shards", "g")
    with pytest.raises(gs.InvalidInputError, match="unknown dtype"):
        import_gradients(tmp_store, "npy", tmp_path / "shards", "g", dtype="int8")
    assert tmp_store.latest_version() == 0


def test_less_torch_save_files_by_store_path(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    store_path = tmp_path / "store"
    gs.Store.create(store_path).close()
    output = tmp_path / "less" / "dim24"
    output.mkdir(parents=True)
    torch.manual_seed(3)
    chunks = [torch.randn(6, 24).half(), torch.randn(5, 24).half()]
    for count, chunk in zip((160, 320), chunks):
        torch.save(chunk, output / f"grads-{count}.pt")
    (tmp_path / "ids.txt").write_text("".join(f"doc{i}\n" for i in range(11)))
    report = import_gradients(str(store_path), "auto", tmp_path / "less", "less", ids=tmp_path / "ids.txt",
                              checkpoint="checkpoint-100")
    assert report["format"] == "less" and report["rows"] == 11
    assert report["projection"] == {"tool": "less", "proj_dim": 24}
    with gs.Store.open(store_path) as store, store.snapshot() as snap:
        rows = snap.rows("less", copy=True)
        assert rows.dtype == np.float16
        np.testing.assert_array_equal(rows, torch.cat(chunks).numpy())
        assert snap.ids("less") == [f"doc{i}" for i in range(11)]
        assert snap.attributes("less")["checkpoint"] == "checkpoint-100"


def run_module(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PYTHON_DIR), environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "gradsketch", *arguments], capture_output=True, text=True,
                          env=environment, timeout=300)


def test_module_command_line_mirrors_the_cli(tmp_path: Path) -> None:
    expected = write_shards(tmp_path / "shards", [12, 8], seed=4)
    store_path = tmp_path / "store"
    gs.Store.create(store_path).close()
    result = run_module("import", str(store_path), "npy", str(tmp_path / "shards"), "--set", "cli",
                        "--dtype", "float16", "--json", "--progress", "--attribute", "training_step=100")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 20 and report["set"] == "cli"
    assert "20/20 rows" in result.stderr
    with gs.Store.open(store_path) as store, store.snapshot() as snap:
        np.testing.assert_array_equal(snap.rows("cli", copy=True), expected.astype(np.float16))
        assert snap.attributes("cli")["training_step"] == 100

    failed = run_module("import", str(store_path), "npy", str(tmp_path / "missing"), "--set", "x")
    assert failed.returncode == 1
    assert "missing" in failed.stderr and "does not exist" in failed.stderr
    with gs.Store.open(store_path) as store:
        assert store.latest_version() == 1
