"""Registry of the LM suite's experiments, and the helper they use to call the gradsketch CLI.

Each experiment is a module ``gradsketch.lm.experiments.<name>`` with ``NAME``, ``TITLE``,
``PAPER``, ``SETTINGS``, ``run(setup, *, log)`` and ``report(outcome, rep)`` (see
/work/wt/prompts/contract.md, "Experiments"). :data:`ALL` is the report order. Modules are
imported lazily by :func:`load` so that one broken experiment does not stop the others.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
from types import ModuleType
from typing import Any, Sequence

__all__ = ["ALL", "load", "cli_path", "cli_json"]

#: Every experiment, in the order the report shows them.
ALL: tuple[str, ...] = ("select", "less", "inrun", "density", "paser", "gradex")

_REQUIRED = ("NAME", "TITLE", "PAPER", "SETTINGS", "run", "report")


def load(name: str) -> ModuleType:
    """The experiment module ``name`` (one of :data:`ALL`), checked to have the contract's names."""
    if name not in ALL:
        raise ValueError(f"unknown LM experiment {name!r}: expected one of {', '.join(ALL)}")
    module = importlib.import_module(f"{__name__}.{name}")
    missing = [attribute for attribute in _REQUIRED if not hasattr(module, attribute)]
    if missing:
        raise AttributeError(f"experiment module {module.__name__} lacks {', '.join(missing)}")
    return module


def cli_path() -> str:
    """The gradsketch command: ``$GRADSKETCH_CLI``, else ``gradsketch`` on PATH."""
    given = os.environ.get("GRADSKETCH_CLI")
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise RuntimeError(f"GRADSKETCH_CLI={given} is not an executable file")
        return given
    found = shutil.which("gradsketch")
    if found is None:
        raise RuntimeError(
            "the gradsketch command was not found: set GRADSKETCH_CLI to its path or put it on PATH "
            "(build it with `swift build -c release --product gradsketch`)")
    return found


def cli_json(args: Sequence[str]) -> Any:
    """Runs ``gradsketch ARGS --json`` and returns its parsed JSON output.

    ``--json`` is added unless ``args`` has it. On a non-zero exit the CLI prints
    ``{"error": {"code", "message", "path"}}``; that message (or stderr) becomes the
    :class:`RuntimeError`, together with the command line, so a failed selection says why.
    """
    command = [cli_path(), *map(str, args)]
    if "--json" not in command:
        command.append("--json")
    completed = subprocess.run(command, capture_output=True, text=True)
    try:
        answer = json.loads(completed.stdout) if completed.stdout.strip() else None
    except json.JSONDecodeError:
        answer = None
        if completed.returncode == 0:
            raise RuntimeError(f"`{' '.join(command)}` did not print JSON: {completed.stdout[:300]!r}")
    if completed.returncode != 0:
        message = None
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            error = answer["error"]
            message = f"{error.get('code', 'error')}: {error.get('message', '')}"
            if error.get("path"):
                message += f" ({error['path']})"
        if not message:
            message = completed.stderr.strip() or "no message"
        raise RuntimeError(f"`{' '.join(command)}` failed with exit status {completed.returncode}: {message}")
    if answer is None:
        raise RuntimeError(f"`{' '.join(command)}` printed nothing; expected JSON")
    return answer
