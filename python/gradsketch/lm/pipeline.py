"""``prepare``: the shared starting point of every LM experiment, stored in a GradSketch store.

Why one function: every experiment needs the same corpus split, the same base model (trained on
every source but one), the same expert (the base finetuned on the held-out source), the delta
between them and the public pool's sketches; training them once and storing them makes the
experiments comparable and keeps each experiment's own time budget for its method.

The split is deterministic (hashes of the document ids, no RNG state): for each source, the
``eval_docs`` documents with the smallest ``sha256("eval:" + id)`` are evaluation documents and
the rest are ``train_docs``. The pool takes, from each source's ``train_docs``, the documents
with the smallest ``sha256("pool:" + id)``: ``round(pool_size · held_out_share)`` from the
held-out source and the rest spread evenly over the base sources. The expert is finetuned on the
held-out source's ``train_docs`` that are NOT in the pool, so a method that finds the held-out
documents in the pool finds documents the expert never saw.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from .config import SizeConfig
from .model import (TinyGPT, build_model, collect_sketches, load_model, perplexity, put_model,
                    train)

__all__ = ["LMSetup", "prepare", "split_documents", "corpus_bytes", "build_size_corpus"]

Log = Callable[[str], None]


def _rank(salt: str, document: Any) -> bytes:
    return hashlib.sha256(f"{salt}:{document.id}".encode("utf-8")).digest()


def corpus_bytes(config: SizeConfig) -> tuple[int, int]:
    """``(min_bytes, max_bytes)`` of the size's documents (:attr:`SizeConfig.document_bytes`)."""
    return config.document_bytes


def build_size_corpus(config: SizeConfig, sources: Sequence[str] | None = None) -> list[Any]:
    """The corpus of ``config``: ``build_corpus`` with the size's per-source cap and document bytes."""
    from .corpus import build_corpus

    min_bytes, max_bytes = corpus_bytes(config)
    return build_corpus(per_source=config.per_source, min_bytes=min_bytes, max_bytes=max_bytes, sources=sources)


def split_documents(corpus: Sequence[Any], config: SizeConfig) -> tuple[dict[str, list[Any]], dict[str, list[Any]],
                                                                       list[Any]]:
    """``(train_docs, eval_docs, pool)`` of ``corpus`` for ``config`` (see the module docstring).

    Raises ValueError when a source has too few documents for its evaluation and pool shares
    or when the held-out source is missing.
    """
    by_source: dict[str, list[Any]] = {}
    for document in corpus:
        by_source.setdefault(document.source, []).append(document)
    if config.held_out not in by_source:
        raise ValueError(f"the held-out source {config.held_out!r} has no documents in the corpus "
                         f"(sources found: {sorted(by_source)})")
    base_sources = [source for source in by_source if source != config.held_out]
    if not base_sources:
        raise ValueError("the corpus has no source besides the held-out one")
    held_out_count = max(1, round(config.pool_size * config.held_out_share))
    share, extra = divmod(config.pool_size - held_out_count, len(base_sources))
    pool_counts = {source: share + (1 if i < extra else 0) for i, source in enumerate(base_sources)}
    pool_counts[config.held_out] = held_out_count
    train_docs: dict[str, list[Any]] = {}
    eval_docs: dict[str, list[Any]] = {}
    pooled: set[str] = set()
    for source, documents in by_source.items():
        needed = config.eval_docs + pool_counts[source] + (1 if source == config.held_out else 0)
        if len(documents) < needed:
            raise ValueError(f"source {source!r} has {len(documents)} documents, expected at least {needed} "
                             f"({config.eval_docs} for evaluation, {pool_counts[source]} for the pool"
                             f"{', 1 for the expert' if source == config.held_out else ''}): raise per_source "
                             "or lower eval_docs/pool_size")
        evaluation = set(id(d) for d in sorted(documents, key=lambda d: _rank("eval", d))[:config.eval_docs])
        eval_docs[source] = [d for d in documents if id(d) in evaluation]
        train_docs[source] = [d for d in documents if id(d) not in evaluation]
        pooled.update(d.id for d in sorted(train_docs[source], key=lambda d: _rank("pool", d))[:pool_counts[source]])
    pool = [d for source in by_source for d in train_docs[source] if d.id in pooled]
    pool.sort(key=lambda d: _rank("order", d))            # sources interleaved, no source block first
    return train_docs, eval_docs, pool


@dataclass
class LMSetup:
    """Everything ``prepare`` built: the split, the store and its tensor sets and sketch set.

    Models are loaded from the store with :meth:`model` (a new TinyGPT per call, free to train).
    """

    config: SizeConfig
    store_path: str
    store: Any
    corpus: list[Any]
    train_docs: dict[str, list[Any]]
    eval_docs: dict[str, list[Any]]
    held_out: str
    base_sources: list[str]
    pool: list[Any]
    base_checkpoints: list[str]            # e.g. ["base-step38", "base-step75", "base-step113", "base"]
    base: str = "base"
    expert: str = "expert"
    delta: str = "finetune"
    pool_set: str = "pool"
    # Not in the contract's list, added for the experiments (all filled by prepare):
    expert_docs: list[Any] = field(default_factory=list)          # what the expert was finetuned on
    base_docs: list[Any] = field(default_factory=list)            # what the base was trained on
    base_batches: list[list[str]] = field(default_factory=list)   # ids of each base training step's batch
    perplexity_table: dict[str, dict[str, float]] = field(default_factory=dict)  # "base"/"expert" -> source -> ppl
    timings: dict[str, float] = field(default_factory=dict)       # phase -> wall seconds; "total", "cpu_total"

    def model(self, tensor_set: str) -> TinyGPT:
        """A new TinyGPT holding tensor set ``tensor_set``, read from the store."""
        return load_model(self.store, tensor_set, self.config.model)

    def perplexities(self, model: TinyGPT) -> dict[str, float]:
        """Perplexity of ``model`` on each source's evaluation documents."""
        return {source: perplexity(model, documents) for source, documents in self.eval_docs.items()}

    def close(self) -> None:
        """Closes the store."""
        self.store.close()

    def __enter__(self) -> "LMSetup":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _format_ppl(table: dict[str, float]) -> str:
    return ", ".join(f"{source} {value:.2f}" for source, value in table.items())


def prepare(store_path: str, config: SizeConfig, *, log: Log = print, threads: int | None = None,
            corpus: Sequence[Any] | None = None) -> LMSetup:
    """Creates the store at ``store_path`` (it must not exist) and fills it for the experiments.

    Builds the corpus (or uses ``corpus``, e.g. in tests), splits it, trains the base on every
    source but ``config.held_out`` (checkpoints "base-step<N>", the last also "base"), finetunes
    the expert on the held-out source, stores the delta "finetune" = expert − base and the pool's
    LoGra sketches at the expert ("pool"). Logs each phase with its time. ``threads``: torch
    threads for the run (unchanged when None).
    """
    import gradsketch as gs

    if os.path.exists(store_path):
        raise FileExistsError(f"prepare: {store_path} already exists; expected a new path for the store")
    if threads is not None:
        torch.set_num_threads(threads)
    timings: dict[str, float] = {}
    started = time.monotonic()
    cpu_started = time.process_time()       # the machine may be shared: CPU seconds say what the run cost

    def phase(name: str, since: float) -> float:
        now = time.monotonic()
        timings[name] = round(now - since, 3)
        return now

    clock = time.monotonic()
    documents = list(corpus) if corpus is not None else build_size_corpus(config)
    train_docs, eval_docs, pool = split_documents(documents, config)
    base_sources = [source for source in train_docs if source != config.held_out]
    pool_ids = {d.id for d in pool}
    expert_docs = [d for d in train_docs[config.held_out] if d.id not in pool_ids]
    base_docs = [d for source in base_sources for d in train_docs[source]]
    clock = phase("corpus", clock)
    log(f"[prepare {config.name}] corpus: {len(documents)} documents from {len(train_docs)} sources; base trains on "
        f"{len(base_docs)} ({', '.join(base_sources)}), expert on {len(expert_docs)} {config.held_out}, pool "
        f"{len(pool)} ({sum(d.source == config.held_out for d in pool)} {config.held_out}), eval {config.eval_docs}"
        f"/source ({timings['corpus']:.1f} s)")

    store = gs.Store.create(store_path)
    try:
        setup = LMSetup(config=config, store_path=store_path, store=store, corpus=documents, train_docs=train_docs,
                        eval_docs=eval_docs, held_out=config.held_out, base_sources=base_sources, pool=pool,
                        base_checkpoints=[], expert_docs=expert_docs, base_docs=base_docs, timings=timings)
        model = build_model(config.model, seed=config.seeds[0])
        checkpoints = set(config.base_checkpoint_steps)
        parameters = sum(p.numel() for p in model.parameters())

        def on_base_step(step: int, batch: list[Any], loss: float) -> None:
            setup.base_batches.append([d.id for d in batch])
            if step + 1 in checkpoints:
                name = f"base-step{step + 1}"
                put_model(store, name, model)
                if step + 1 < config.base_steps:         # the final checkpoint is listed as "base" (below)
                    setup.base_checkpoints.append(name)
                log(f"[prepare {config.name}] base step {step + 1}/{config.base_steps}: loss {loss:.3f} "
                    f"({time.monotonic() - clock:.1f} s)")

        train(model, base_docs, steps=config.base_steps, batch=config.batch, lr=config.pretrain_lr,
              seed=config.seeds[0], on_step=on_base_step)
        put_model(store, setup.base, model)
        setup.base_checkpoints.append(setup.base)
        clock = phase("base", clock)
        log(f"[prepare {config.name}] base: TinyGPT {parameters / 1e6:.2f}M parameters, {config.base_steps} steps of "
            f"{config.batch} ({timings['base']:.1f} s)")

        expert = setup.model(setup.base)
        train(expert, expert_docs, steps=config.expert_steps, batch=config.batch, lr=config.lr,
              seed=config.seeds[0] + 1000)
        put_model(store, setup.expert, expert)
        store.delta(setup.delta, setup.base, setup.expert, detail=f"{setup.expert} - {setup.base}")
        clock = phase("expert", clock)
        log(f"[prepare {config.name}] expert: {config.expert_steps} steps on {config.held_out}, delta "
            f"{setup.delta!r} stored ({timings['expert']:.1f} s)")

        collect_sketches(expert, store, setup.pool_set, pool, seed=config.sketch_seed, k=config.sketch_k,
                         batch=max(config.batch, 32), attributes={"tensor_set": setup.expert, "size": config.name},
                         detail=f"LoGra sketches of the pool at {setup.expert!r}")
        clock = phase("sketch", clock)
        log(f"[prepare {config.name}] pool sketches: {len(pool)} rows at {setup.expert!r} "
            f"({timings['sketch']:.1f} s)")

        setup.perplexity_table = {"base": setup.perplexities(model), "expert": setup.perplexities(expert)}
        clock = phase("eval", clock)
        timings["total"] = round(time.monotonic() - started, 3)
        timings["cpu_total"] = round(time.process_time() - cpu_started, 3)
        for name, table in setup.perplexity_table.items():
            log(f"[prepare {config.name}] {name} eval perplexity: {_format_ppl(table)}")
        log(f"[prepare {config.name}] done in {timings['total']:.1f} s, {timings['cpu_total']:.1f} s of CPU on "
            f"{torch.get_num_threads()} torch thread(s) (uniform perplexity = {config.model.vocab})")
        if not all(math.isfinite(v) for t in setup.perplexity_table.values() for v in t.values()):
            log(f"[prepare {config.name}] warning: a perplexity is not finite")
        return setup
    except BaseException:
        store.close()
        raise
