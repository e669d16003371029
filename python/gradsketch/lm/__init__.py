"""The LM suite: GradSketch's seed methods on a small byte-level GPT trained here on real text.

Why a package of its own: it is the only part of gradsketch that needs torch, so the names
below are imported lazily (``import gradsketch.lm.corpus`` or ``gradsketch.lm.config`` works
without torch). ``prepare(store_path, SIZES["small"])`` builds the corpus, trains the base and
expert models and stores them with the pool's sketches; the experiments run on the returned
:class:`LMSetup`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["Document", "GPTConfig", "SizeConfig", "SIZES", "TinyGPT", "prepare", "LMSetup"]

_WHERE = {
    "Document": "corpus",
    "GPTConfig": "config",
    "SizeConfig": "config",
    "SIZES": "config",
    "TinyGPT": "model",
    "prepare": "pipeline",
    "LMSetup": "pipeline",
}


def __getattr__(name: str) -> Any:
    """Imports ``name`` from its module on first use (torch only when a torch-backed name is asked for)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gradsketch.lm' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
