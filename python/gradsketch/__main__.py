"""``python -m gradsketch import STORE FORMAT PATH --set NAME ...``: mirrors
``gradsketch import`` (the same engine importer, through the C ABI). ``python -m gradsketch lm
...``: the LM suite's text path (gradsketch.lm.cli)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional, Sequence

from .errors import GradSketchError
from .importers import FORMATS, import_gradients


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gradsketch")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("import", help="import gradients written by another tool (Spec/import.md)")
    command.add_argument("store", help="path of the store directory")
    command.add_argument("format", choices=FORMATS)
    command.add_argument("path")
    command.add_argument("--set", required=True, help="name of the sketch set")
    command.add_argument("--ids", help="ids file, one id per source row")
    command.add_argument("--dtype", choices=("float16", "float32"), help="stored dtype of a new set")
    command.add_argument("--allow-nonfinite", action="store_true", help="keep rows with NaN or ±Inf")
    command.add_argument("--model-id", help="TRAK: model id directory (default: the lowest)")
    command.add_argument("--array", choices=("features", "grads"), help="TRAK: which array")
    command.add_argument("--checkpoint", help="checkpoint tag, kept as the set attribute checkpoint")
    command.add_argument("--module", help="Bergson: import only this module's columns")
    command.add_argument("--tensor", help="safetensors: tensor to read from each file")
    command.add_argument("--attribute", action="append", default=[], metavar="KEY=JSON",
                         help="a set attribute of a new set (repeatable)")
    command.add_argument("--batch-mb", type=int, default=64, help="batch size in MB")
    command.add_argument("--json", action="store_true", help="print the report as JSON")
    command.add_argument("--progress", action="store_true", help="progress lines on stderr even off a terminal")
    _add_reproduce_command(commands)
    _add_lm_commands(commands)
    return parser


def _add_reproduce_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """``reproduce --suite lm``: the LM suite (gradsketch.lm.reproduce). Its module, and torch, are
    imported only when the command runs, so ``import`` keeps working without torch."""
    command = commands.add_parser(
        "reproduce", help="run the LM suite (corpus, models, sketches, experiments) and write its report")
    command.add_argument("--suite", required=True, choices=("lm",), help="the suite to run (lm)")
    command.add_argument("--store", required=True, help="path of a NEW store for the suite's models and sketches")
    command.add_argument("--out", required=True, help="directory for report.html, report.json, lm-section.html")
    command.add_argument("--size", default="default",
                         help="small (CI, ~3 min), default (~15 min) or full (~1 h) (default: default)")
    command.add_argument("--only", help="comma-separated experiments to run (default: all), "
                                        "among select,less,inrun,density,paser,gradex")
    command.add_argument("--threads", type=int, help="torch threads (default: the number of cores)")
    command.add_argument("--json", action="store_true", help="print report.json's content on stdout at the end")


def _run_reproduce(arguments: argparse.Namespace, argv: Optional[Sequence[str]]) -> int:
    from .lm.reproduce import main as reproduce_main

    return reproduce_main(arguments, list(argv) if argv is not None else None)


def _add_lm_commands(commands: "argparse._SubParsersAction") -> None:
    """``python -m gradsketch lm ...``: the LM suite's text path (gradsketch.lm.cli; torch only when run)."""
    from .lm.cli import add_commands

    add_commands(commands)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit status."""
    arguments = _parser().parse_args(argv)
    if arguments.command == "reproduce":
        return _run_reproduce(arguments, argv)
    if arguments.command == "lm":
        from .lm.cli import run as run_lm

        return run_lm(arguments)
    attributes = {}
    for item in arguments.attribute:
        key, separator, text = item.partition("=")
        if not separator or not key:
            print(f"gradsketch: error: --attribute expects KEY=JSON, found {item!r}", file=sys.stderr)
            return 2
        try:
            attributes[key] = json.loads(text)
        except json.JSONDecodeError:
            attributes[key] = text
    show = arguments.progress or sys.stderr.isatty()
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, total: int, stage: str) -> None:
        now = time.monotonic()
        if show and (now - last[0] >= 0.5 or stage == "done"):
            last[0] = now
            print(f"import {arguments.format} -> {arguments.set}: {stage} {done}/{total} rows "
                  f"({now - started:.1f} s)", file=sys.stderr, flush=True)

    try:
        report = import_gradients(
            arguments.store, arguments.format, arguments.path, arguments.set, progress=progress,
            ids=arguments.ids, dtype=arguments.dtype, allow_nonfinite=arguments.allow_nonfinite or None,
            model_id=arguments.model_id, array=arguments.array, checkpoint=arguments.checkpoint,
            module=arguments.module, tensor=arguments.tensor, attributes=attributes or None,
            batch_bytes=arguments.batch_mb << 20)
    except GradSketchError as error:
        print(f"gradsketch: error: {error.message}", file=sys.stderr)
        return 1
    if arguments.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        skipped = f", skipped {report['skipped_rows']} unfeaturized" if report.get("skipped_rows") else ""
        print(f"imported {report['rows']} rows (k = {report['k']}) from {len(report['sources'])} "
              f"{report['format']} file(s) into {report['set']}{skipped}: version {report['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
