"""Tests of the LM suite's driver (gradsketch.lm.reproduce).

The driver's bookkeeping (timing, failure isolation, the three output files, provenance, exit
status) is tested with a fake setup and fake experiment modules, in milliseconds; the end-to-end
run of ``python -m gradsketch reproduce --suite lm`` on the small size with one cheap experiment
is the last test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradsketch.lm.reproduce import jsonable, run_suite

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FakeModel:
    layers: int = 1
    width: int = 8
    heads: int = 1
    context: int = 16


@dataclass(frozen=True)
class FakeConfig:
    name: str = "small"
    model: FakeModel = field(default_factory=FakeModel)
    base_steps: int = 3
    expert_steps: int = 2
    held_out_share: float = 0.1
    seeds: tuple[int, ...] = (0, 1)


class FakeSetup:
    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.corpus = ["a", "b", "c"]
        self.pool = ["a", "b"]
        self.held_out = "poems"
        self.train_docs = {"poems": ["a"], "fortunes": ["b"]}
        self.eval_docs = {"poems": ["c"], "fortunes": []}
        self.base, self.expert = "base", "expert"

    def model(self, name: str) -> str:
        return name

    def perplexities(self, model: str) -> dict[str, float]:
        return {"fortunes": 20.0, "poems": 40.0 if model == "base" else 12.5}


def _experiment(name: str, *, fail_run: bool = False, fail_report: bool = False) -> types.ModuleType:
    module = types.ModuleType(f"fake_{name}")
    module.NAME, module.TITLE, module.PAPER, module.SETTINGS = name, f"Fake {name}", f"paper of {name}", {}

    def run(setup: Any, *, log: Any = print) -> dict:
        log("working")
        if fail_run:
            raise ValueError(f"{name} exploded")
        return {"values": np.array([1.0, 2.0]), "se": math.nan, "seed": np.int64(3),
                "headline": [[f"{name} figure", "1.50 ± 0.50", "2.0"]]}

    def report(outcome: dict, rep: Any) -> None:
        if fail_report:
            raise KeyError("missing figure")
        rep.heading(module.TITLE)
        rep.bars("values", [("a", 1.0, 0.1), ("b", 2.0, 0.2)])

    module.run, module.report = run, report
    return module


def test_failures_are_isolated_and_reported(tmp_path: Path) -> None:
    modules = {"select": _experiment("select"), "less": _experiment("less", fail_run=True),
               "inrun": _experiment("inrun", fail_report=True), "density": _experiment("density")}
    messages: list[str] = []
    status, data = run_suite(str(tmp_path / "store"), str(tmp_path / "out"), size="small",
                             only=["density", "less", "select", "inrun"], threads=1, command_line="cmd --x",
                             log=messages.append, prepare=lambda path, config, log, threads: FakeSetup(config),
                             load=modules.__getitem__, config=FakeConfig())
    assert status == 1
    # Report order is the registry's, not the order given to --only.
    assert list(data["experiments"]) == ["select", "less", "inrun", "density"]
    statuses = {name: entry["status"] for name, entry in data["experiments"].items()}
    assert statuses == {"select": "ok", "less": "failed", "inrun": "failed", "density": "ok"}
    assert data["experiments"]["less"]["error"] == "ValueError: less exploded"
    assert data["experiments"]["inrun"]["error"].startswith("report: KeyError")
    assert data["experiments"]["select"]["outcome"]["values"] == [1.0, 2.0]
    assert data["experiments"]["select"]["outcome"]["se"] is None and data["experiments"]["select"]["outcome"]["seed"] == 3
    assert data["setup"]["perplexity"]["expert"]["poems"] == 12.5
    assert any(message.startswith("less: FAILED") for message in messages)
    assert "working" in messages  # the experiments' own log lines pass through
    out = tmp_path / "out"
    page = (out / "report.html").read_text()
    assert "Fake less: failed" in page and "less exploded" in page and "Traceback" in page
    assert "Fake inrun: report failed" in page
    # headline rows of the experiments that ran (inrun's report failed, but its outcome exists)
    assert "<td>select figure</td><td>1.50 ± 0.50</td><td>2.0</td>" in page
    assert "density figure" in page and "less figure" not in page
    assert page.count('class="whisker"') == 4  # two bars each in select and density
    fragment = (out / "lm-section.html").read_text()
    assert "<html" not in fragment and "Fake density" in fragment and "Provenance" in fragment
    on_disk = json.loads((out / "report.json").read_text())  # strict JSON: NaN became null
    assert on_disk["experiments"]["select"]["outcome"]["se"] is None
    run_time = on_disk["provenance"]["run_time_s"]
    assert set(run_time) == {"prepare", "select", "less", "inrun", "density", "total"}
    assert run_time["total"] >= sum(run_time[name] for name in ("select", "less", "inrun", "density")) - 0.05


def test_provenance_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADSKETCH_COMMIT", "0123abcd")
    status, data = run_suite(str(tmp_path / "store"), str(tmp_path / "out"), size="small", only=["select"],
                             threads=1, command_line="python3 -m gradsketch reproduce --suite lm", log=lambda m: None,
                             prepare=lambda path, config, log, threads: FakeSetup(config),
                             load={"select": _experiment("select")}.__getitem__, config=FakeConfig())
    assert status == 0 and data["status"] == "ok"
    fields = data["provenance"]
    import gradsketch
    assert fields["gradsketch_version"] == gradsketch.__version__
    assert fields["commit"] == "0123abcd"
    assert fields["command_line"] == "python3 -m gradsketch reproduce --suite lm"
    assert fields["size"] == "small" and fields["torch_threads"] == 1 and fields["cores"] == os.cpu_count()
    assert "C ABI 1." in fields["engine"]
    assert fields["size_config"]["seeds"] == [0, 1]
    assert fields["started_utc"].endswith("Z") and fields["started_utc"][:2] == "20"
    page = (tmp_path / "out" / "report.html").read_text()
    for key in ("gradsketch_version", "engine", "commit", "command_line", "started_utc", "run_time_s", "size",
                "torch", "torch_threads", "cores"):
        assert f"<th>{key}</th>" in page
    assert "0123abcd" in page


def test_failed_prepare_still_writes_the_report(tmp_path: Path) -> None:
    def prepare(path: str, config: Any, log: Any, threads: int) -> Any:
        raise FileExistsError(f"{path} exists")

    status, data = run_suite(str(tmp_path / "store"), str(tmp_path / "out"), size="small", threads=1,
                             log=lambda m: None, prepare=prepare, config=FakeConfig(),
                             load=lambda name: pytest.fail("no experiment may run after a failed prepare"))
    assert status == 1 and data["experiments"] == {}
    assert "FileExistsError" in data["setup"]["error"]
    assert "Setup failed" in (tmp_path / "out" / "report.html").read_text()


def test_jsonable() -> None:
    assert jsonable({1: (np.float32(0.5), float("inf")), "a": np.arange(2)}) == {"1": [0.5, None], "a": [0, 1]}
    assert jsonable(FakeModel()) == {"layers": 1, "width": 8, "heads": 1, "context": 16}


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "gradsketch", "reproduce", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_command_refuses_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    refused = _cli("--suite", "lm", "--store", str(tmp_path / "exists"), "--out", str(tmp_path / "o"), "--size", "small")
    assert refused.returncode == 2 and "must name a new store" in refused.stderr
    refused = _cli("--suite", "lm", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--only", "select,nope")
    assert refused.returncode == 2 and "--only takes experiments among" in refused.stderr
    refused = _cli("--suite", "lm", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--size", "huge")
    assert refused.returncode == 2 and "--size must be one of" in refused.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "o").exists()


def test_reproduce_end_to_end_small_density(tmp_path: Path, gradsketch_cli: str) -> None:
    """The real command: prepare at the small size, then the density experiment only (the cheapest)."""
    pytest.importorskip("torch")
    store, out = tmp_path / "lm-store", tmp_path / "report"
    env = dict(os.environ, GRADSKETCH_CLI=gradsketch_cli, GRADSKETCH_COMMIT="test-commit",
               PYTHONPATH=str(REPO / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    done = subprocess.run([sys.executable, "-m", "gradsketch", "reproduce", "--suite", "lm", "--size", "small",
                           "--store", str(store), "--out", str(out), "--only", "density", "--threads", threads,
                           "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    assert data == json.loads((out / "report.json").read_text())
    assert list(data["experiments"]) == ["density"] and data["experiments"]["density"]["status"] == "ok"
    assert "prepare: done" in done.stderr and "density" in done.stderr  # progress goes to stderr
    # The base model learned something on every source: far below the uniform byte model's 256.
    base = data["setup"]["perplexity"]["base"]
    assert set(base) == {"fortunes", "poems", "manpages", "python-docs", "c-headers", "changelogs"}
    assert all(1.0 < value < 128.0 for value in base.values()), base
    run_time = data["provenance"]["run_time_s"]
    assert run_time["total"] >= run_time["prepare"] + run_time["density"] - 0.05
    assert data["provenance"]["commit"] == "test-commit" and data["provenance"]["torch_threads"] == int(threads)
    assert "--only density" in data["provenance"]["command_line"]
    page = (out / "report.html").read_text()
    assert "<th>started_utc</th>" in page and "Density" in page and "base perplexity" in page
    assert (out / "lm-section.html").read_text().count("<html") == 0
    # The store the suite wrote is whole, and has what prepare promises.
    verified = subprocess.run([gradsketch_cli, "verify", str(store), "--json"], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout
    info = json.loads(subprocess.run([gradsketch_cli, "info", str(store), "--json"], capture_output=True,
                                     text=True, check=True).stdout)
    assert {"base", "expert", "finetune"} <= {entry["name"] for entry in info["tensor_sets"]}
    from gradsketch.lm.config import SIZES
    assert {entry["name"]: entry["rows"] for entry in info["sketch_sets"]}["pool"] == SIZES["small"].pool_size


def test_setup_reads_the_corpus_packages_from_corpus_py() -> None:
    """Tools/setup.sh installs CORPUS_PACKAGES by parsing corpus.py (no import): run its parser."""
    from gradsketch.lm.corpus import CORPUS_PACKAGES

    setup = (REPO / "Tools" / "setup.sh").read_text()
    start = setup.index("<<'PY'\n") + len("<<'PY'\n")
    parser = setup[start:setup.index("\nPY\n", start)]
    done = subprocess.run([sys.executable, "-", str(REPO / "python" / "gradsketch" / "lm" / "corpus.py")],
                          input=parser, capture_output=True, text=True, check=True)
    assert done.stdout.split() == list(CORPUS_PACKAGES) and len(CORPUS_PACKAGES) > 0
