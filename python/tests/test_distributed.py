"""The collector under torchrun: every rank writes its own segments, one commit publishes them all.

Runs ``python -m torch.distributed.run --standalone --nproc_per_node 2`` (gloo, CPU) on a small
script; the oracle for the rows is the same collector run in this process, one rank's inputs
at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from gradsketch.logra import LoGraCollector

PYTHON_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = 6

WORKER = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    import gradsketch as gs
    from gradsketch.logra import LoGraCollector

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    path, examples, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    inputs = torch.randn(examples, 6, generator=torch.Generator().manual_seed(rank))
    code = 0
    with gs.Store.open(path) as store:
        try:
            with LoGraCollector(model, store, "train", seed=3, k=(2, 2), stored_dtype="float32") as collector:
                for start in range(0, examples, 2):
                    # "same-ids": both ranks name their rows x-0, x-1, ...: the one commit must refuse.
                    ids = [f"x-{start + i}" for i in range(2)] if mode == "same-ids" else None
                    with collector.batch(ids):
                        if mode == "fail" and rank == 1:
                            raise RuntimeError("rank 1 fails on purpose")
                        model(inputs[start:start + 2]).pow(2).sum().backward()
            print(f"rank {rank} committed version {collector.version}", flush=True)
        except Exception as error:
            print(f"rank {rank} raised {type(error).__name__}: {error}", flush=True)
            code = 3
    dist.destroy_process_group()
    sys.exit(code)
""")


def run_ranks(tmp_path: Path, store_path: Path, mode: str) -> subprocess.CompletedProcess:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PYTHON_DIR), environment.get("PYTHONPATH")]))
    environment["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(store_path), str(EXAMPLES), mode],
                          capture_output=True, text=True, env=environment, timeout=300)


def test_two_ranks_commit_one_version_with_every_row(tmp_store, tmp_path):
    before = tmp_store.latest_version()
    result = run_ranks(tmp_path, Path(tmp_store.path), "ok")
    assert result.returncode == 0, result.stdout + result.stderr
    after = tmp_store.latest_version()
    assert after == before + 1
    assert f"rank 0 committed version {after}" in result.stdout
    assert f"rank 1 committed version {after}" in result.stdout
    with tmp_store.snapshot() as snapshot:
        ids = snapshot.ids("train")
        rows = np.array(snapshot.rows("train"), dtype=np.float64)
    assert sorted(ids) == sorted(f"{rank}-{i}" for rank in range(2) for i in range(EXAMPLES))
    assert len(ids) == 2 * EXAMPLES

    # The same rows from one process, rank by rank.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    with LoGraCollector(model, tmp_store, "local", seed=3, k=(2, 2), stored_dtype="float32") as collector:
        for rank in range(2):
            inputs = torch.randn(EXAMPLES, 6, generator=torch.Generator().manual_seed(rank))
            for start in range(0, EXAMPLES, 2):
                with collector.batch([f"{rank}-{start + i}" for i in range(2)]):
                    model(inputs[start:start + 2]).pow(2).sum().backward()
    with tmp_store.snapshot() as snapshot:
        local = dict(zip(snapshot.ids("local"), np.array(snapshot.rows("local"), dtype=np.float64)))
    for identifier, row in zip(ids, rows):
        np.testing.assert_allclose(row, local[identifier], rtol=1e-6, atol=1e-7)


def test_a_failing_rank_commits_nothing_on_any_rank(tmp_store, tmp_path):
    before = tmp_store.latest_version()
    result = run_ranks(tmp_path, Path(tmp_store.path), "fail")
    assert result.returncode != 0
    assert "rank 1 raised RuntimeError: rank 1 fails on purpose" in result.stdout, result.stdout + result.stderr
    assert ("rank 0 raised InvalidStateError: the distributed commit of 2 ranks failed: rank 1: failed while collecting "
            "(RuntimeError: rank 1 fails on purpose)") in result.stdout
    assert tmp_store.latest_version() == before
    assert list((Path(tmp_store.path) / "segments").iterdir()) == []     # rank 0's prepared files removed
    assert tmp_store.verify().clean


def test_a_refused_commit_raises_on_every_rank_and_keeps_the_store(tmp_store, tmp_path):
    before = tmp_store.latest_version()
    result = run_ranks(tmp_path, Path(tmp_store.path), "same-ids")
    assert result.returncode != 0
    for rank in range(2):
        assert f"rank {rank} raised InvalidInputError: the distributed commit of 2 ranks failed: " in result.stdout, \
            result.stdout + result.stderr
    assert "x-0" in result.stdout                   # the engine's message names the duplicate id
    assert tmp_store.latest_version() == before
    assert list((Path(tmp_store.path) / "segments").iterdir()) == []     # both ranks' prepared files removed
    assert tmp_store.verify().clean
