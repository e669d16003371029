"""``python -m gradsketch lm ...``: the README's text path, one step per command, JSON out.

Why commands and not only :func:`gradsketch.lm.pipeline.prepare`: the README shows each step a
user would run on their own data, with the engine's own commands in between::

    python -m gradsketch lm corpus corpus.jsonl --size small --split
    python -m gradsketch lm train run.gsk --corpus corpus-base.jsonl --name base --steps 150
    python -m gradsketch lm train run.gsk --corpus corpus-expert.jsonl --name expert --from base --steps 30
    gradsketch tensors delta run.gsk --name finetune --from base --to expert
    python -m gradsketch lm sketch run.gsk --checkpoint expert --set pool --corpus corpus-pool.jsonl
    gradsketch select run.gsk --set pool --delta finetune --negate -k 24 --json > selected.json
    python -m gradsketch lm retrain run.gsk --from base --corpus corpus-pool.jsonl --ids selected.json \\
        --name retrained --steps 4
    python -m gradsketch lm eval run.gsk --checkpoint retrained --corpus corpus-eval.jsonl

Retraining without early stopping overfits a few dozen documents quickly: on the small size,
retraining the base on 24 selected pool documents reached the lowest manpages perplexity after
~4 steps of 16 (17.64 vs base 17.71; 12 steps: 20.52), so the path above uses 4.

The model shape is recorded in each stored model's version detail (``TinyGPT {...}``), so
later commands read it from the store; ``--size`` (default "small") gives the shape of a new
model and the default training knobs, and a stored model of another shape is refused.
Every command prints one JSON object (``--json`` is accepted for symmetry with the engine's
commands; the output is JSON either way); errors go to stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .config import SIZES, GPTConfig, SizeConfig, size as size_named

__all__ = ["add_commands", "run"]


class CommandError(Exception):
    """A usage or input problem, reported as ``gradsketch lm: error: ...``."""


def add_commands(commands: Any) -> None:
    """Adds the ``lm`` command group to ``python -m gradsketch``'s subparsers."""
    lm = commands.add_parser("lm", help="the LM suite's text path: corpus, train, sketch, retrain, eval")
    steps = lm.add_subparsers(dest="lm_command", required=True)

    def common(parser: argparse.ArgumentParser, default_size: str | None = None) -> None:
        parser.add_argument("--size", choices=sorted(SIZES), default=default_size,
                            help="run size: model shape and defaults" + (f" (default {default_size})" if default_size
                                                                            else " (default: the stored model's)"))
        parser.add_argument("--json", action="store_true", help="print JSON (always on)")
        parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")

    corpus = steps.add_parser("corpus", help="build the corpus from installed packages into a JSONL file")
    corpus.add_argument("out", help="output .jsonl path")
    corpus.add_argument("--per-source", type=int, help="cap per source (default: the size's)")
    corpus.add_argument("--sources", help="comma-separated subset of the sources")
    corpus.add_argument("--split", action="store_true",
                        help="also write the suite's split next to OUT: <stem>-base/-expert/-pool/-eval.jsonl")
    common(corpus, "small")

    train = steps.add_parser("train", help="train a model (or finetune --from a stored one) and store it")
    train.add_argument("store")
    train.add_argument("--corpus", required=True, help="JSONL documents to train on")
    train.add_argument("--name", required=True, help="tensor set to store the model as")
    which = train.add_mutually_exclusive_group()
    which.add_argument("--exclude-source", help="comma-separated sources to leave out")
    which.add_argument("--source", help="comma-separated sources to keep (only these)")
    train.add_argument("--from", dest="start", help="tensor set to start from (finetuning)")
    train.add_argument("--steps", type=int, required=True)
    _training_options(train)
    common(train)

    sketch = steps.add_parser("sketch", help="LoGra sketches of documents at a stored model, one row each")
    sketch.add_argument("store")
    sketch.add_argument("--checkpoint", required=True, help="tensor set of the model")
    sketch.add_argument("--set", required=True, help="sketch set to write")
    sketch.add_argument("--corpus", required=True)
    sketch.add_argument("--k", help="k_out,k_in per Linear layer (default: the size's)")
    sketch.add_argument("--seed", type=int, help="projection seed (default: the size's)")
    sketch.add_argument("--batch", type=int, default=32)
    common(sketch)

    retrain = steps.add_parser("retrain", help="finetune a stored model on the documents whose ids are given")
    retrain.add_argument("store")
    retrain.add_argument("--from", dest="start", required=True, help="tensor set to start from")
    retrain.add_argument("--corpus", required=True, help="JSONL documents the ids refer to")
    retrain.add_argument("--ids", required=True,
                         help="one id per line, or the JSON of `gradsketch select --json`")
    retrain.add_argument("--name", required=True)
    retrain.add_argument("--steps", type=int, help="training steps (default: the size's retrain_steps)")
    _training_options(retrain)
    common(retrain)

    evaluate = steps.add_parser("eval", help="perplexity of a stored model per source")
    evaluate.add_argument("store")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--corpus", required=True)
    common(evaluate)


def _training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the batches (and of a new model's weights)")
    parser.add_argument("--lr", type=float, help="learning rate (default: the size's base_lr, or lr when finetuning)")
    parser.add_argument("--batch", type=int, help="documents per step (default: the size's)")


# ----- helpers ---------------------------------------------------------------------------------


def _documents(path: str, *, keep: str | None = None, drop: str | None = None) -> list[Any]:
    from .corpus import read_jsonl

    if not os.path.isfile(path):
        raise CommandError(f"corpus file {path} does not exist: expected a JSONL file from `lm corpus`")
    documents = read_jsonl(path)
    if keep:
        wanted = set(keep.split(","))
        documents = [d for d in documents if d.source in wanted]
    if drop:
        unwanted = set(drop.split(","))
        documents = [d for d in documents if d.source not in unwanted]
    if not documents:
        raise CommandError(f"no documents left in {path}" + (" after the source filter" if keep or drop else ""))
    return documents


def _stored_config(store: Any, name: str) -> GPTConfig | None:
    """The GPTConfig recorded in the detail of the version that stored tensor set ``name``."""
    for version in reversed(store.versions()):
        detail = version.get("detail") or ""
        if version.get("set") == name and detail.startswith("TinyGPT "):
            try:
                return GPTConfig.from_dict(json.loads(detail[len("TinyGPT "):]))
            except (ValueError, TypeError):
                return None
    return None


def _model_config(store: Any, name: str, size_name: str | None) -> tuple[GPTConfig, SizeConfig]:
    """The shape of stored model ``name``, checked against ``--size`` when one is given."""
    stored = _stored_config(store, name)
    if size_name is None:
        if stored is None:
            raise CommandError(f"the store records no TinyGPT shape for tensor set {name!r}: give --size")
        matching = [s for s in SIZES.values() if s.model == stored]
        return stored, matching[0] if matching else SIZES["small"]
    config = size_named(size_name)
    if stored is not None and stored != config.model:
        raise CommandError(f"tensor set {name!r} is a TinyGPT of {stored}, but --size {size_name} is {config.model}: "
                           "give the size it was trained with (or leave --size out)")
    return config.model, config


def _load(store: Any, name: str, config: GPTConfig) -> Any:
    from .model import load_model

    with store.snapshot() as snapshot:
        if name not in snapshot.tensor_sets:
            raise CommandError(f"no tensor set {name!r} in {store.path}: it has {snapshot.tensor_sets}")
        return load_model(snapshot, name, config)


def _open_store(path: str, create: bool = False) -> Any:
    import gradsketch as gs

    if os.path.exists(path):
        return gs.Store.open(path)
    if create:
        return gs.Store.create(path)
    raise CommandError(f"store {path} does not exist")


def _read_ids(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise CommandError(f"ids file {path} does not exist")
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        try:
            rows = json.loads(text)["rows"]
            return [str(row["id"]) for row in rows]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise CommandError(f"{path} looks like JSON but not like `gradsketch select --json` output "
                               f"(expected {{\"rows\": [{{\"id\": ...}}, ...]}}): {error}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _threads(arguments: argparse.Namespace) -> None:
    if getattr(arguments, "threads", None):
        import torch
        torch.set_num_threads(arguments.threads)


# ----- commands --------------------------------------------------------------------------------


def _corpus(arguments: argparse.Namespace) -> dict[str, Any]:
    from .corpus import build_corpus, write_jsonl

    config = size_named(arguments.size)
    min_bytes, max_bytes = config.document_bytes
    per_source = arguments.per_source if arguments.per_source is not None else config.per_source
    sources = arguments.sources.split(",") if arguments.sources else None
    documents = build_corpus(per_source=per_source, min_bytes=min_bytes, max_bytes=max_bytes, sources=sources)
    write_jsonl(documents, arguments.out)
    counts: dict[str, int] = {}
    for document in documents:
        counts[document.source] = counts.get(document.source, 0) + 1
    result: dict[str, Any] = {"path": arguments.out, "documents": len(documents), "sources": counts,
                              "size": config.name, "per_source": per_source, "min_bytes": min_bytes,
                              "max_bytes": max_bytes}
    if arguments.split:
        from .pipeline import split_documents

        train_docs, eval_docs, pool = split_documents(documents, config)
        pool_ids = {d.id for d in pool}
        parts = {
            "base": [d for source, docs in train_docs.items() if source != config.held_out for d in docs],
            "expert": [d for d in train_docs[config.held_out] if d.id not in pool_ids],
            "pool": pool,
            "eval": [d for docs in eval_docs.values() for d in docs],
        }
        stem = arguments.out[:-len(".jsonl")] if arguments.out.endswith(".jsonl") else arguments.out
        result["split"] = {"held_out": config.held_out}
        for part, docs in parts.items():
            path = f"{stem}-{part}.jsonl"
            write_jsonl(docs, path)
            result["split"][part] = {"path": path, "documents": len(docs)}
    return result


def _train_and_store(arguments: argparse.Namespace, documents: list[Any], steps: int,
                     start: str | None) -> dict[str, Any]:
    from .model import build_model, put_model, train

    _threads(arguments)
    store = _open_store(arguments.store, create=start is None)
    try:
        if start is not None:
            shape, config = _model_config(store, start, arguments.size)
            model = _load(store, start, shape)
            lr = arguments.lr if arguments.lr is not None else config.lr
        else:
            config = size_named(arguments.size or "small")
            shape = config.model
            model = build_model(shape, seed=arguments.seed)
            lr = arguments.lr if arguments.lr is not None else config.pretrain_lr
        batch = arguments.batch or config.batch
        losses: list[float] = []
        started = time.monotonic()
        train(model, documents, steps=steps, batch=batch, lr=lr, seed=arguments.seed,
              on_step=lambda step, docs, loss: losses.append(loss))
        seconds = time.monotonic() - started
        version = put_model(store, arguments.name, model)
    finally:
        store.close()
    sources: dict[str, int] = {}
    for document in documents:
        sources[document.source] = sources.get(document.source, 0) + 1
    return {"name": arguments.name, "version": version, "from": start, "steps": steps, "batch": batch, "lr": lr,
            "seed": arguments.seed, "documents": len(documents), "sources": sources,
            "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
            "model": shape.to_dict(), "size": config.name, "seconds": round(seconds, 3)}


def _train(arguments: argparse.Namespace) -> dict[str, Any]:
    documents = _documents(arguments.corpus, keep=arguments.source, drop=arguments.exclude_source)
    return _train_and_store(arguments, documents, arguments.steps, arguments.start)


def _retrain(arguments: argparse.Namespace) -> dict[str, Any]:
    ids = _read_ids(arguments.ids)
    by_id = {d.id: d for d in _documents(arguments.corpus)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise CommandError(f"{len(missing)} of {len(ids)} ids are not in {arguments.corpus}, e.g. {missing[:3]}")
    if not ids:
        raise CommandError(f"{arguments.ids} names no documents")
    steps = arguments.steps
    if steps is None:
        with _open_store(arguments.store) as store:
            steps = _model_config(store, arguments.start, arguments.size)[1].retrain_steps
    result = _train_and_store(arguments, [by_id[i] for i in ids], steps, arguments.start)
    result["ids"] = len(ids)
    return result


def _sketch(arguments: argparse.Namespace) -> dict[str, Any]:
    from .model import collect_sketches

    _threads(arguments)
    documents = _documents(arguments.corpus)
    store = _open_store(arguments.store)
    try:
        shape, config = _model_config(store, arguments.checkpoint, arguments.size)
        model = _load(store, arguments.checkpoint, shape)
        if arguments.k:
            try:
                k_out, k_in = (int(part) for part in arguments.k.split(","))
            except ValueError:
                raise CommandError(f"--k expects two integers k_out,k_in, found {arguments.k!r}") from None
        else:
            k_out, k_in = config.sketch_k
        seed = config.sketch_seed if arguments.seed is None else arguments.seed
        started = time.monotonic()
        version = collect_sketches(model, store, arguments.set, documents, seed=seed, k=(k_out, k_in),
                                   batch=arguments.batch, attributes={"tensor_set": arguments.checkpoint},
                                   detail=f"LoGra sketches at {arguments.checkpoint!r}")
        seconds = time.monotonic() - started
        with store.snapshot() as snapshot:
            info = snapshot.info(arguments.set)
    finally:
        store.close()
    return {"set": arguments.set, "version": version, "checkpoint": arguments.checkpoint, "rows": info.rows,
            "k": info.k, "sides": [k_out, k_in], "seed": seed, "seconds": round(seconds, 3)}


def _eval(arguments: argparse.Namespace) -> dict[str, Any]:
    from .model import perplexity

    _threads(arguments)
    documents = _documents(arguments.corpus)
    with _open_store(arguments.store) as store:
        shape, _ = _model_config(store, arguments.checkpoint, arguments.size)
        model = _load(store, arguments.checkpoint, shape)
    by_source: dict[str, list[Any]] = {}
    for document in documents:
        by_source.setdefault(document.source, []).append(document)
    return {"checkpoint": arguments.checkpoint,
            "perplexity": {source: perplexity(model, docs) for source, docs in by_source.items()},
            "documents": {source: len(docs) for source, docs in by_source.items()},
            "overall": perplexity(model, documents), "uniform": shape.vocab}


_COMMANDS = {"corpus": _corpus, "train": _train, "sketch": _sketch, "retrain": _retrain, "eval": _eval}


def run(arguments: argparse.Namespace) -> int:
    """Runs ``python -m gradsketch lm <command>``; prints its JSON; returns the exit status."""
    from ..errors import GradSketchError
    from .corpus import CorpusError

    try:
        result = _COMMANDS[arguments.lm_command](arguments)
    except (CommandError, CorpusError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"gradsketch lm {arguments.lm_command}: error: {message}", file=sys.stderr)
        return 1
    except GradSketchError as error:
        print(f"gradsketch lm {arguments.lm_command}: error: {error.message}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gradsketch.lm.cli ...`` (same as ``python -m gradsketch lm ...``)."""
    parser = argparse.ArgumentParser(prog="python -m gradsketch")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["lm", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
