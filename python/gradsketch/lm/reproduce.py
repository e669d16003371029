"""The LM suite's driver: ``python -m gradsketch reproduce --suite lm --store NEW --out DIR``.

It prepares the shared setup once (:func:`gradsketch.lm.pipeline.prepare`: corpus, base and
expert models, their delta and the pool sketches, all in the new store NEW), then runs each
experiment of :data:`gradsketch.lm.experiments.ALL` (or ``--only``) against it, timing each,
and writes into DIR:

- ``report.html``: a standalone page — provenance block (versions, commit, command line, start
  date, run times, size config, torch and threads, cores), a summary table, the setup's
  perplexities, then each experiment's section;
- ``report.json``: the same numbers (every experiment's outcome) and the provenance;
- ``lm-section.html``: the page's body as a fragment, which ``gradsketch-reproduce --suite all``
  embeds into the Fashion-MNIST report as its LM section.

One failing experiment is reported in the page (its error and traceback) and makes the exit
status 1; the others still run. Progress goes to stderr.

An experiment whose outcome has a ``"headline"`` entry — a list of ``[figure, ours, paper]``
string triples, e.g. ``["held-out perplexity, SELECT greedy", "2.41 ± 0.05", "2.3"]`` — gets those
rows in the summary's table of figures against the papers (optional; the full tables are in
each experiment's own section).

torch is imported here (through the pipeline), so this module is only imported by the
``reproduce`` command, never by ``import gradsketch``.
"""

from __future__ import annotations

import dataclasses
import datetime as _datetime
import html as _html
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, Optional, Sequence

from . import experiments as _experiments
from .report import Report, provenance_html

__all__ = ["main", "run_suite", "provenance", "jsonable", "SUITE_TITLE"]

SUITE_TITLE = "GradSketch: the seed methods on a byte-level language model"

Log = Callable[[str], None]


def _stderr_log(started: float) -> Log:
    def log(message: str) -> None:
        print(f"[lm {time.monotonic() - started:7.1f} s] {message}", file=sys.stderr, flush=True)
    return log


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON data: numpy scalars and arrays become Python numbers and lists,
    dataclasses dicts, tuples lists, and non-finite floats ``None`` (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars, torch tensors
        return jsonable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _git_commit() -> str:
    """GRADSKETCH_COMMIT, else ``git rev-parse HEAD`` of the checkout this package runs from
    (with "+modified" when its tracked files differ from HEAD), else "unknown"."""
    given = os.environ.get("GRADSKETCH_COMMIT")
    if given:
        return given
    source = Path(__file__).resolve().parents[3]  # python/gradsketch/lm/reproduce.py -> repo
    if not (source / "Package.swift").is_file():
        return "unknown"
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        commit = head.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return commit + ("+modified" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _engine_version() -> str:
    """The engine library's C ABI version and path, and the gradsketch CLI's version when found."""
    from .. import _native

    try:
        library = _native.lib()
        text = f"libgradsketch-c, C ABI {library.abi_version[0]}.{library.abi_version[1]} ({library.path})"
    except Exception as error:  # the report still gets written without the engine
        text = f"libgradsketch-c not loaded: {error}"
    try:
        cli = _experiments.cli_path()
        version = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        text += f"; gradsketch CLI {version or '?'} ({cli})"
    except (RuntimeError, OSError, subprocess.SubprocessError):
        text += "; gradsketch CLI not found"
    return text


def _command_line(argv: Optional[Sequence[str]]) -> str:
    """GRADSKETCH_COMMAND_LINE (gradsketch-reproduce passes the command it was given), else this
    process's command line written as ``python3 -m gradsketch ...``."""
    given = os.environ.get("GRADSKETCH_COMMAND_LINE")
    if given:
        return given
    if argv is not None:
        return "python3 -m gradsketch " + shlex.join(argv)
    if sys.argv and sys.argv[0].endswith("__main__.py"):
        return "python3 -m gradsketch " + shlex.join(sys.argv[1:])
    return shlex.join(sys.argv)


def provenance(*, command_line: str, started_utc: str, run_times: Mapping[str, float], size: str,
               threads: int, size_config: Any = None) -> dict[str, Any]:
    """The provenance fields of the page and report.json (every field is always present)."""
    from .. import __version__

    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    fields: dict[str, Any] = {
        "gradsketch_version": __version__,
        "engine": _engine_version(),
        "commit": _git_commit(),
        "command_line": command_line,
        "started_utc": started_utc,
        "run_time_s": {name: round(seconds, 2) for name, seconds in run_times.items()},
        "size": size,
        "torch": torch_version,
        "torch_threads": threads,
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
    }
    if size_config is not None:
        fields["size_config"] = jsonable(size_config)
    return fields


def _failure_html(what: str, error: BaseException) -> str:
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    tail = "".join(lines)[-3000:]
    return (f"<p><strong>{_html.escape(what)} failed</strong>: {_html.escape(type(error).__name__)}: "
            f"{_html.escape(str(error))}</p><pre>{_html.escape(tail)}</pre>")


@dataclasses.dataclass
class _Result:
    name: str
    title: str
    paper: str
    status: str  # "ok" or "failed"
    seconds: float
    outcome: Any = None
    error: Optional[str] = None
    section: str = ""


def _run_experiment(name: str, setup: Any, load: Callable[[str], ModuleType], log: Log) -> _Result:
    """Runs and reports one experiment; any exception becomes a failed result with its section."""
    started = time.monotonic()
    title, paper = name, ""
    module: Optional[ModuleType] = None
    try:
        module = load(name)
        title, paper = str(module.TITLE), str(module.PAPER)
        log(f"{name}: running ({title})")
        outcome = module.run(setup, log=log)
    except Exception as error:
        seconds = time.monotonic() - started
        log(f"{name}: FAILED after {seconds:.1f} s: {type(error).__name__}: {error}")
        rep = Report()
        rep.heading(f"{title}: failed")
        rep.raw(_failure_html(f"Experiment {name}", error))
        return _Result(name, title, paper, "failed", seconds, error=f"{type(error).__name__}: {error}",
                       section=rep.fragment())
    rep = Report()
    try:
        module.report(outcome, rep)
    except Exception as error:
        seconds = time.monotonic() - started
        log(f"{name}: report FAILED: {type(error).__name__}: {error}")
        failed = Report()
        failed.heading(f"{title}: report failed")
        failed.raw(_failure_html(f"The report of {name}", error))
        return _Result(name, title, paper, "failed", seconds, outcome=outcome,
                       error=f"report: {type(error).__name__}: {error}", section=failed.fragment())
    seconds = time.monotonic() - started
    rep.paragraph(f"Run time of this experiment: {seconds:.1f} s (including its report).")
    log(f"{name}: done in {seconds:.1f} s")
    return _Result(name, title, paper, "ok", seconds, outcome=outcome, section=rep.fragment())


def _setup_section(setup: Any, log: Log) -> tuple[str, dict[str, Any]]:
    """The setup's description: sizes, corpus, and per-source eval perplexity of base and expert."""
    rep = Report()
    config = setup.config
    rep.heading("Setup: corpus, base model and expert")
    model = config.model
    rep.paragraph(
        f"Size {config.name}: a byte-level GPT ({model.layers} layers, width {model.width}, {model.heads} heads, "
        f"context {model.context}), base trained {config.base_steps} steps on every source but "
        f"{setup.held_out!r}, the expert finetuned {config.expert_steps} steps on {setup.held_out!r}. "
        f"Corpus: {len(setup.corpus)} documents; public pool {len(setup.pool)} documents "
        f"({config.held_out_share:.0%} from {setup.held_out!r}); seeds {list(config.seeds)}.")
    numbers: dict[str, Any] = {
        "corpus_documents": len(setup.corpus),
        "pool_documents": len(setup.pool),
        "held_out": setup.held_out,
        "train_documents": {source: len(docs) for source, docs in setup.train_docs.items()},
        "eval_documents": {source: len(docs) for source, docs in setup.eval_docs.items()},
    }
    try:
        perplexities = {name: setup.perplexities(setup.model(tensor_set))
                        for name, tensor_set in (("base", setup.base), ("expert", setup.expert))}
    except Exception as error:
        log(f"setup perplexities failed: {type(error).__name__}: {error}")
        rep.raw(_failure_html("Measuring the base and expert perplexities", error))
        return rep.fragment(), numbers
    numbers["perplexity"] = perplexities
    sources = list(perplexities["base"])
    rep.table(["source", "base perplexity", "expert perplexity"],
              [[source + (" (held out)" if source == setup.held_out else ""),
                f"{perplexities['base'][source]:.3f}", f"{perplexities['expert'][source]:.3f}"]
               for source in sources])
    rep.paragraph("Perplexity is per byte on each source's evaluation documents (never trained on, never in "
                  "the pool); a model that knows nothing scores 256.")
    return rep.fragment(), numbers


def _summary_html(results: Sequence[_Result], prepare_seconds: float, prepare_error: Optional[str]) -> str:
    rep = Report()
    rep.heading("Summary")
    rows = [["prepare (corpus, base, expert, delta, pool sketches)", "",
             "failed" if prepare_error else "ok", f"{prepare_seconds:.1f}"]]
    rows += [[result.title, result.paper, result.status, f"{result.seconds:.1f}"] for result in results]
    rep.table(["step", "paper's headline", "status", "run time (s)"], rows)
    headline_rows = []
    for result in results:
        headline = result.outcome.get("headline") if isinstance(result.outcome, Mapping) else None
        if isinstance(headline, Sequence) and not isinstance(headline, str):
            for row in headline:
                if isinstance(row, Sequence) and not isinstance(row, str) and len(row) == 3:
                    headline_rows.append([result.name, *(str(cell) for cell in row)])
    if headline_rows:
        rep.table(["experiment", "figure", "here (mean ± SE over seeds)", "paper"], headline_rows)
    failed = [result.name for result in results if result.status != "ok"]
    if prepare_error:
        rep.paragraph(f"The setup failed ({prepare_error}), so no experiment ran.")
    elif failed:
        rep.paragraph(f"Failed: {', '.join(failed)} (their sections below give the error).")
    return rep.fragment()


def run_suite(store: str, out: str, *, size: str = "small", only: Optional[Sequence[str]] = None,
              threads: Optional[int] = None, command_line: str = "", log: Optional[Log] = None,
              prepare: Optional[Callable[..., Any]] = None,
              load: Callable[[str], ModuleType] = _experiments.load,
              config: Any = None) -> tuple[int, dict[str, Any]]:
    """Prepares, runs the experiments, writes DIR's three files; returns (exit status, report.json data).

    ``prepare``, ``load`` and ``config`` default to the pipeline's, the registry's and
    ``SIZES[size]`` (tests pass small fakes).
    """
    clock = time.monotonic()
    started_utc = _datetime.datetime.now(_datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    log = log or _stderr_log(clock)
    wanted = set(only or ())
    names = list(_experiments.ALL) if only is None else [name for name in _experiments.ALL if name in wanted]
    threads = threads or os.cpu_count() or 1
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    if prepare is None:
        from .pipeline import prepare as pipeline_prepare
        prepare = pipeline_prepare
    if config is None:
        from .config import SIZES

        config = SIZES[size]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)

    run_times: dict[str, float] = {}
    results: list[_Result] = []
    setup_html, setup_numbers = "", {}
    prepare_error: Optional[str] = None
    prepare_section = ""
    log(f"prepare: size {size}, store {store}, {threads} torch thread(s)")
    started = time.monotonic()
    try:
        setup = prepare(store, config, log=log, threads=threads)
    except Exception as error:
        prepare_error = f"{type(error).__name__}: {error}"
        log(f"prepare: FAILED: {prepare_error}")
        failed = Report()
        failed.heading("Setup failed")
        failed.raw(_failure_html("Preparing the corpus, models and sketches", error))
        prepare_section = failed.fragment()
        setup = None
    run_times["prepare"] = time.monotonic() - started
    if setup is not None:
        log(f"prepare: done in {run_times['prepare']:.1f} s")
        setup_html, setup_numbers = _setup_section(setup, log)
        for name in names:
            result = _run_experiment(name, setup, load, log)
            run_times[name] = result.seconds
            results.append(result)
        close = getattr(getattr(setup, "store", None), "close", None)
        if callable(close):
            close()
    run_times["total"] = time.monotonic() - clock

    fields = provenance(command_line=command_line, started_utc=started_utc, run_times=run_times, size=size,
                        threads=threads, size_config=config)
    body = "\n".join([_summary_html(results, run_times["prepare"], prepare_error), prepare_section, setup_html,
                      *(result.section for result in results)])
    page_report = Report()
    page_report.raw(body)
    (out_dir / "report.html").write_text(page_report.html(SUITE_TITLE, fields), encoding="utf-8")
    # The embedding report (gradsketch-reproduce --suite all) gives the section its own heading.
    section = "\n".join([provenance_html(fields), body])
    (out_dir / "lm-section.html").write_text(section + "\n", encoding="utf-8")
    status = 0 if prepare_error is None and all(result.status == "ok" for result in results) else 1
    data = {
        "suite": "lm",
        "status": "ok" if status == 0 else "failed",
        "provenance": fields,
        "setup": jsonable(setup_numbers) if prepare_error is None else {"error": prepare_error},
        "experiments": {
            result.name: jsonable({"title": result.title, "paper": result.paper, "status": result.status,
                                   "run_time_s": round(result.seconds, 2), "outcome": result.outcome,
                                   "error": result.error})
            for result in results
        },
    }
    (out_dir / "report.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    log(f"wrote {out_dir / 'report.html'}, report.json and lm-section.html in {run_times['total']:.1f} s"
        + ("" if status == 0 else " — with FAILURES"))
    return status, data


def main(arguments: Any, argv: Optional[Sequence[str]] = None) -> int:
    """The ``reproduce`` command, from its parsed arguments (see ``gradsketch.__main__``); ``argv``
    is the whole command line after ``python -m gradsketch`` when the caller has it."""
    from .config import SIZES

    if arguments.suite != "lm":
        print(f"gradsketch: error: python -m gradsketch reproduce runs --suite lm; found {arguments.suite!r} "
              "(the Fashion-MNIST suite is the Swift tool `gradsketch-reproduce`)", file=sys.stderr)
        return 2
    if arguments.size not in SIZES:
        print(f"gradsketch: error: --size must be one of {', '.join(SIZES)}, found {arguments.size!r}",
              file=sys.stderr)
        return 2
    only = None
    if arguments.only:
        only = [name.strip() for name in arguments.only.split(",") if name.strip()]
        unknown = [name for name in only if name not in _experiments.ALL]
        if unknown or not only:
            print(f"gradsketch: error: --only takes experiments among {', '.join(_experiments.ALL)}, "
                  f"found {arguments.only!r}", file=sys.stderr)
            return 2
    if os.path.exists(arguments.store):
        print(f"gradsketch: error: --store must name a new store, found an existing path {arguments.store}",
              file=sys.stderr)
        return 2
    if arguments.threads is not None and arguments.threads < 1:
        print(f"gradsketch: error: --threads must be at least 1, found {arguments.threads}", file=sys.stderr)
        return 2
    status, data = run_suite(arguments.store, arguments.out, size=arguments.size, only=only,
                             threads=arguments.threads, command_line=_command_line(argv))
    if arguments.json:
        print(json.dumps(data, indent=2, allow_nan=False))
    return status
