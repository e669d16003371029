"""A small byte-level GPT and the few operations the LM suite needs on it.

Why here: the experiments, the text-path CLI and the collector benchmark must share one model
definition, one tokenisation (UTF-8 bytes, vocab 256, no trained tokenizer to ship), one loss
(next-token cross-entropy over real bytes only) and one way of storing a model in a GradSketch
store, so that sketches, deltas and retrained models line up.

Tokens: the bytes of each text truncated to ``context + 1``, right-padded with byte 0; the
padding is never a target (``mask``). Attention is causal, so a document's loss and gradient
do not depend on the padding after it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol, Sequence, Union

import numpy as np
import torch
from torch import nn

from .config import GPTConfig

__all__ = ["TinyGPT", "encode", "per_example_loss", "train", "perplexity", "put_model", "load_model",
           "collect_sketches", "build_model", "model_from_tensors",
           "learning_rate", "default_warmup"]


class _HasText(Protocol):
    text: str


TextLike = Union[_HasText, str]


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention (q/k/v/o Linear) and a 4x GELU MLP (up/down)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.o = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        h = self.norm1(x)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, tokens, self.heads, width // self.heads).transpose(1, 2)

        attended = nn.functional.scaled_dot_product_attention(split(self.q(h)), split(self.k(h)), split(self.v(h)),
                                                              is_causal=True)
        x = x + self.o(attended.transpose(1, 2).reshape(batch, tokens, width))
        return x + self.down(nn.functional.gelu(self.up(self.norm2(x))))


class TinyGPT(nn.Module):
    """Token and position embeddings, ``config.layers`` pre-norm blocks, final LayerNorm, untied head.

    Every ``nn.Linear`` (6 per block plus the head) is what the LoGra collector sketches.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"TinyGPT expects a GPTConfig, found {type(config).__name__}")
        self.config = config
        self.token = nn.Embedding(config.vocab, config.width)
        self.position = nn.Embedding(config.context, config.width)
        self.blocks = nn.ModuleList(Block(config.width, config.heads) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.vocab, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=1 / math.sqrt(module.in_features))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` for input tokens ``[B, T]`` (T ≤ context)."""
        if tokens.shape[1] > self.config.context:
            raise ValueError(f"TinyGPT: {tokens.shape[1]} input tokens exceed the context {self.config.context}")
        x = self.token(tokens) + self.position(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def build_model(config: GPTConfig, seed: int) -> TinyGPT:
    """A freshly initialised TinyGPT whose weights depend only on ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyGPT(config)


def _text(document: TextLike) -> str:
    if isinstance(document, str):
        return document
    text = getattr(document, "text", None)
    if not isinstance(text, str):
        raise TypeError(f"expected a Document (with .text) or a str, found {type(document).__name__}")
    return text


def encode(documents: Sequence[TextLike], context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """UTF-8 bytes of each text, truncated to ``context + 1`` tokens and right-padded with 0.

    Returns ``tokens`` ``[N, context + 1]`` (int64) and ``mask`` ``[N, context]`` (bool), where
    ``mask[i, t]`` is True when target token ``t + 1`` of document ``i`` is a real byte.
    """
    if context < 1:
        raise ValueError(f"encode: context must be >= 1, found {context}")
    tokens = np.zeros((len(documents), context + 1), dtype=np.int64)
    lengths = np.zeros(len(documents), dtype=np.int64)
    for i, document in enumerate(documents):
        data = _text(document).encode("utf-8")[:context + 1]
        tokens[i, :len(data)] = np.frombuffer(data, dtype=np.uint8)
        lengths[i] = len(data)
    mask = np.arange(1, context + 1)[None, :] < lengths[:, None]
    return torch.from_numpy(tokens), torch.from_numpy(mask)


def _token_losses(model: nn.Module, tokens: torch.Tensor,
                  mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token next-token cross-entropy ``[B, T]`` with masked targets zeroed, and the float mask."""
    logits = model(tokens[:, :-1])
    losses = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                                         reduction="none").view(tokens.shape[0], -1)
    if mask is None:
        weights = torch.ones_like(losses)
    else:
        if mask.shape != losses.shape:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(losses.shape)} (tokens minus one)")
        weights = mask.to(losses.dtype)
    return losses * weights, weights


def per_example_loss(model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor | None = None,
                     reduction: str = "sum") -> torch.Tensor:
    """Next-token cross-entropy of each example ``[B]`` over its real targets.

    ``reduction="sum"``: summed over the example's targets (the loss whose gradient the sketches
    hold); ``"mean"``: divided by its number of targets. ``mask=None`` counts every target.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"per_example_loss: reduction must be 'sum' or 'mean', found {reduction!r}")
    losses, weights = _token_losses(model, tokens, mask)
    total = losses.sum(dim=1)
    if reduction == "mean":
        total = total / weights.sum(dim=1).clamp_min(1)
    return total


def default_warmup(steps: int) -> int:
    """Warm-up steps of :func:`train` by default: a tenth of the steps, at most 50."""
    return min(50, steps // 10)


def learning_rate(step: int, lr: float, warmup: int) -> float:
    """The learning rate of step ``step`` (from 0) in :func:`train`: linear warm-up to ``lr`` over
    ``warmup`` steps (step ``s < warmup`` gets ``lr · (s + 1) / (warmup + 1)``), then constant."""
    return lr * (step + 1) / (warmup + 1) if step < warmup else lr


def train(model: TinyGPT, documents: Sequence[TextLike], *, steps: int, batch: int, lr: float, seed: int,
          on_step: Callable[[int, list[Any], float], None] | None = None,
          optimizer: torch.optim.Optimizer | None = None, warmup: int | None = None) -> TinyGPT:
    """Trains ``model`` in place with AdamW (weight decay 0) for ``steps`` steps.

    The learning rate warms up linearly over ``warmup`` steps (default
    :func:`default_warmup`: a fresh Adam's first steps are sign-like, ±lr on every weight, which
    wrecks a trained model being finetuned) and is then ``lr``; :func:`learning_rate` gives it
    per step (e.g. for In-Run Data Shapley's ``η_t``).

    Batches are drawn deterministically: a torch.Generator seeded with ``seed`` shuffles the
    documents once per epoch and consecutive slices of ``batch`` are the batches (an epoch's
    remainder starts the next one's permutation, so every batch has ``batch`` documents when
    there are that many). The loss is the mean per real target token of the batch.
    ``on_step(step, batch_documents, loss)`` is called after each optimizer step (``step`` from
    0). ``optimizer``: continue with an existing AdamW (e.g. to keep its state); by default a
    new one. Returns ``model``.
    """
    if not documents:
        raise ValueError("train: no documents to train on")
    if steps < 0 or batch < 1:
        raise ValueError(f"train: steps must be >= 0 and batch >= 1, found steps={steps}, batch={batch}")
    tokens, mask = encode(documents, model.config.context)
    generator = torch.Generator().manual_seed(seed)
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = default_warmup(steps) if warmup is None else warmup
    model.train()
    order: list[int] = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, lr, warmup)
        while len(order) < min(batch, len(documents)):
            order.extend(torch.randperm(len(documents), generator=generator).tolist())
        chosen, order = order[:min(batch, len(documents))], order[min(batch, len(documents)):]
        index = torch.tensor(chosen)
        losses, weights = _token_losses(model, tokens[index], mask[index])
        loss = losses.sum() / weights.sum().clamp_min(1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step(step, [documents[i] for i in chosen], float(loss.detach()))
    return model


@torch.no_grad()
def perplexity(model: TinyGPT, documents: Sequence[TextLike], batch: int = 64) -> float:
    """``exp(total NLL / total real target tokens)`` over ``documents`` (no grad, eval mode; float64 sums)."""
    if not documents:
        raise ValueError("perplexity: no documents")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0.0
    try:
        for start in range(0, len(documents), batch):
            tokens, mask = encode(documents[start:start + batch], model.config.context)
            losses, weights = _token_losses(model, tokens, mask)
            total += float(losses.double().sum())
            count += float(weights.double().sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("perplexity: the documents have no target tokens (each needs at least 2 bytes)")
    return math.exp(total / count)


def put_model(store: Any, name: str, model: TinyGPT, detail: str | None = None) -> int:
    """Stores ``model``'s parameters as tensor set ``name`` (float32); returns the version.

    The default detail records the shape (``TinyGPT {"layers": ...}``) so readers can check it.
    """
    if detail is None:
        import json
        detail = "TinyGPT " + json.dumps(model.config.to_dict(), sort_keys=True)
    state = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in model.state_dict().items()}
    return store.put_state_dict(name, state, detail=detail)


def model_from_tensors(tensors: dict[str, Any], config: GPTConfig, what: str = "tensor set") -> TinyGPT:
    """A TinyGPT of shape ``config`` holding ``tensors`` (numpy or torch), with a clear error on a mismatch."""
    model = TinyGPT(config)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(np.shape(value)) for key, value in tensors.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        wrong = sorted(key for key in set(expected) & set(found) if expected[key] != found[key])
        details = []
        if missing:
            details.append(f"missing {missing[:4]}")
        if extra:
            details.append(f"unexpected {extra[:4]}")
        if wrong:
            details.append(", ".join(f"{key} is {found[key]} not {expected[key]}" for key in wrong[:3]))
        raise ValueError(f"{what} does not fit a TinyGPT of {config}: " + "; ".join(details))
    state = {key: (value.detach().to(torch.float32).clone() if isinstance(value, torch.Tensor)
                   else torch.from_numpy(np.array(value, dtype=np.float32))) for key, value in tensors.items()}
    model.load_state_dict(state)
    return model


def load_model(store_or_snapshot: Any, name: str, config: GPTConfig) -> TinyGPT:
    """The TinyGPT stored as tensor set ``name`` (read with ``Snapshot.tensors``, C ABI 1.2)."""
    snapshot = store_or_snapshot
    owned = False
    if not hasattr(snapshot, "tensor_sets"):
        snapshot = store_or_snapshot.snapshot()
        owned = True
    try:
        if name not in snapshot.tensor_sets:
            raise KeyError(f"no tensor set {name!r} in the store: it has {snapshot.tensor_sets}")
        tensors = snapshot.tensors(name)
        return model_from_tensors(tensors, config, what=f"tensor set {name!r}")
    finally:
        if owned:
            snapshot.close()


def collect_sketches(model: TinyGPT, store: Any, set_name: str, documents: Sequence[Any], *, seed: int,
                     k: tuple[int, int], batch: int, precondition: torch.optim.Optimizer | None = None,
                     attributes: dict[str, Any] | None = None, detail: str | None = None,
                     stored_dtype: str = "float16") -> int:
    """LoGra sketches of every ``nn.Linear`` of ``model``, one row per document, committed as one version.

    Row ``i`` is the projected gradient of document ``i``'s loss summed over its real target
    tokens (``per_example_loss(..., reduction="sum")``); its id is ``doc.id`` and its label
    ``doc.source``. ``precondition``: an AdamW whose state turns each gradient into LESS's Adam
    feature (see :class:`gradsketch.LoGraCollector`). ``stored_dtype``: the rows' dtype
    ("float16" halves the store; "float32" for exact comparisons). Returns the committed version.
    """
    from ..logra import LoGraCollector

    if not documents:
        raise ValueError("collect_sketches: no documents")
    ids = [str(document.id) for document in documents]
    if len(set(ids)) != len(ids):
        raise ValueError("collect_sketches: document ids are not unique")
    labels = [str(document.source) for document in documents]
    was_training = model.training
    model.eval()
    try:
        with LoGraCollector(model, store, set_name, seed=seed, k=tuple(k), loss_reduction="sum",
                            precondition=precondition, attributes=attributes, detail=detail,
                            stored_dtype=stored_dtype) as collector:
            for start in range(0, len(documents), batch):
                tokens, mask = encode(documents[start:start + batch], model.config.context)
                with collector.batch(ids[start:start + batch], mask=mask, labels=labels[start:start + batch]):
                    model.zero_grad(set_to_none=True)
                    per_example_loss(model, tokens, mask, reduction="sum").sum().backward()
            model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    if collector.version is None:
        raise RuntimeError(f"collect_sketches: no version was committed for set {set_name!r}")
    return collector.version
