"""Model shapes and run sizes of the LM suite.

Why: every experiment and the text-path CLI must agree on the model shape and on how much data
and training a run gets, so that "small" (CI), "default" (the tour) and "full" (the README's
long run) mean the same thing everywhere. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["GPTConfig", "SizeConfig", "SIZES", "size"]


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a :class:`gradsketch.lm.model.TinyGPT`: byte-level (vocab 256) by default."""

    layers: int
    width: int
    heads: int
    context: int
    vocab: int = 256

    def __post_init__(self) -> None:
        for name in ("layers", "width", "heads", "context", "vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, found {value!r}")
        if self.width % self.heads:
            raise ValueError(f"GPTConfig.width ({self.width}) must be a multiple of heads ({self.heads})")

    def to_dict(self) -> dict[str, int]:
        """The fields as a JSON-ready dict (recorded with stored models)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GPTConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (they would mean another model)."""
        known = {"layers", "width", "heads", "context", "vocab"}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"GPTConfig: unknown fields {sorted(unknown)}, expected {sorted(known)}")
        return cls(**{key: int(value) for key, value in values.items()})


@dataclass(frozen=True)
class SizeConfig:
    """One run size of the LM suite: model, data split, training lengths and sketch knobs."""

    name: str                  # "small" (CI), "default" (tour), "full" (README)
    model: GPTConfig
    per_source: int            # corpus cap per source
    held_out: str              # the expert's source, held out of the base mix
    pool_size: int             # public pool documents, every source mixed
    held_out_share: float      # share of the pool from the held-out source
    eval_docs: int             # evaluation documents per source (never trained on, never pooled)
    base_steps: int
    expert_steps: int
    retrain_steps: int
    batch: int
    lr: float
    select_k: int              # K documents to select from the pool
    sketch_k: tuple[int, int]  # LoGra (k_out, k_in) per Linear layer
    sketch_seed: int
    seeds: tuple[int, ...]     # >= 2 (standard errors)
    # Added to the contract's fields: base training's learning rate. ``lr`` is the finetuning
    # rate (expert, retraining on a selection): a trained model finetuned on a few dozen
    # documents at the base's rate overfits and loses more than it gains.
    base_lr: float | None = None

    @property
    def pretrain_lr(self) -> float:
        """Learning rate of base training: ``base_lr``, or ``lr`` when it is None."""
        return self.lr if self.base_lr is None else self.base_lr

    def __post_init__(self) -> None:
        if len(self.seeds) < 2:
            raise ValueError(f"SizeConfig {self.name!r}: seeds must hold at least 2 seeds, found {self.seeds!r}")
        if not 0.0 < self.held_out_share < 1.0:
            raise ValueError(f"SizeConfig {self.name!r}: held_out_share must be in (0, 1), found {self.held_out_share}")
        if self.select_k > self.pool_size:
            raise ValueError(f"SizeConfig {self.name!r}: select_k ({self.select_k}) exceeds pool_size "
                             f"({self.pool_size})")

    @property
    def base_checkpoint_steps(self) -> list[int]:
        """Steps after which base training stores a checkpoint "base-step<N>": 4, evenly spaced,
        the last one ``base_steps``."""
        return sorted({max(1, round(self.base_steps * i / 4)) for i in range(1, 5)})

    @property
    def document_bytes(self) -> tuple[int, int]:
        """``(min_bytes, max_bytes)`` of the size's documents: a whole document fits the context
        (``context + 1`` bytes: every byte is seen, none truncated), at most 512 bytes."""
        max_bytes = min(512, self.model.context + 1)
        return min(64, max_bytes // 2), max_bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (for provenance)."""
        return asdict(self)


SIZES: dict[str, SizeConfig] = {
    # Only exercises the code (CI): a tiny model on short documents that still learns byte statistics.
    # Measured (1 thread, shared machine): 17 s of CPU; manpages 17.7 → 15.5 base → expert.
    # Finetuning lengths are ~8 epochs of their documents (expert: 58 documents; retrain: select_k).
    "small": SizeConfig(
        name="small", model=GPTConfig(layers=2, width=64, heads=2, context=64),
        per_source=80, held_out="manpages", pool_size=120, held_out_share=0.1, eval_docs=10,
        base_steps=150, expert_steps=30, retrain_steps=12, batch=16, lr=1e-3, base_lr=3e-3,
        select_k=24, sketch_k=(4, 4), sketch_seed=7, seeds=(0, 1)),
    # The tour: meaningful results in a few minutes on 2 cores (expert: 300 documents). Measured
    # with 500 base steps, 1 thread, on the shared machine (load ~8): 305 s of CPU (1000 s wall);
    # eval perplexity base → expert: manpages 13.57 → 7.66, other sources 6.5-10.1 (uniform: 256).
    "default": SizeConfig(
        name="default", model=GPTConfig(layers=3, width=128, heads=4, context=128),
        per_source=400, held_out="manpages", pool_size=600, held_out_share=0.1, eval_docs=40,
        base_steps=450, expert_steps=75, retrain_steps=15, batch=32, lr=1e-3, base_lr=3e-3,
        select_k=60, sketch_k=(8, 8), sketch_seed=7, seeds=(0, 1, 2)),
    # The README's long run (expert: 1060 documents). Estimated, not measured (the machine was shared):
    # 0.64 s of CPU per step of 32 measured (default: 0.55 s), so ~16 min of CPU on 1 thread, less on 2.
    "full": SizeConfig(
        name="full", model=GPTConfig(layers=4, width=128, heads=4, context=128),
        per_source=1400, held_out="manpages", pool_size=2000, held_out_share=0.1, eval_docs=140,
        base_steps=1200, expert_steps=200, retrain_steps=50, batch=32, lr=1e-3, base_lr=3e-3,
        select_k=200, sketch_k=(8, 8), sketch_seed=7, seeds=(0, 1, 2)),
}


def size(name: str) -> SizeConfig:
    """The SizeConfig called ``name``, with a clear error for an unknown name."""
    try:
        return SIZES[name]
    except KeyError:
        raise ValueError(f"unknown size {name!r}: expected one of {sorted(SIZES)}") from None
