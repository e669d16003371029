"""Shared fixtures of the gradsketch package tests.

- ``tmp_store``: a new :class:`gradsketch.Store` in ``tmp_path`` (closed afterwards).
- ``gradsketch_cli``: path of the release ``gradsketch`` command (env GRADSKETCH_CLI, else
  ``<repo>/.build/release/gradsketch``); a missing binary fails the test that needs it.
- ``reference``: ``Spec/reference/gradsketch_ref.py``, the Spec's independent Python reader.

The library is found as gradsketch._native documents (GRADSKETCH_LIBRARY, the installed copy,
or ``<repo>/.build/release``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

import gradsketch as gs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmp_store(tmp_path: Path) -> Iterator[gs.Store]:
    store = gs.Store.create(tmp_path / "store")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="session")
def gradsketch_cli() -> str:
    path = Path(os.environ.get("GRADSKETCH_CLI", REPO / ".build" / "release" / "gradsketch"))
    if not path.is_file():
        pytest.fail(f"the gradsketch command is not at {path}: run `swift build -c release "
                    "--product gradsketch` or set GRADSKETCH_CLI")
    return str(path)


def _load_reference(name: str) -> ModuleType:
    """The module ``Spec/reference/<name>.py``, loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, REPO / "Spec" / "reference" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def reference() -> ModuleType:
    return _load_reference("gradsketch_ref")


@pytest.fixture(scope="session")
def projection_reference() -> ModuleType:
    """``Spec/reference/projection_ref.py``: the Spec's numpy Philox/Rademacher reference."""
    return _load_reference("projection_ref")
