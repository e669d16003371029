"""gradsketch.lm.model against independent oracles: hand-built byte tensors, float64
log-softmax cross-entropy, the uniform distribution, the Spec's reference store reader and
per-document float64 autograd gradients projected with the Spec's numpy Philox factors.

Tiny models only (a few thousand parameters): every test runs in well under a second.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from gradsketch.lm.config import GPTConfig
from gradsketch.lm.model import (TinyGPT, build_model, collect_sketches, encode, load_model, per_example_loss,
                                 perplexity, put_model, train)

TINY = GPTConfig(layers=1, width=8, heads=2, context=12)


@dataclass(frozen=True)
class Doc:
    """Stand-in for gradsketch.lm.corpus.Document (same fields)."""

    id: str
    source: str
    text: str


DOCS = [Doc("a/0", "a", "abcabcabcabcabc"), Doc("a/1", "a", "hello"), Doc("b/0", "b", "xyz!"),
        Doc("b/1", "b", "été à l'ombre"), Doc("c/0", "c", "0123456789012345")]


def test_encode_bytes_truncation_and_mask():
    tokens, mask = encode(["ab", Doc("x", "s", "hello"), "é"], context=3)
    assert tokens.dtype == torch.int64 and mask.dtype == torch.bool
    assert tokens.tolist() == [[97, 98, 0, 0], [104, 101, 108, 108], [0xC3, 0xA9, 0, 0]]
    assert mask.tolist() == [[True, False, False], [True, True, True], [True, False, False]]


def oracle_losses(model: nn.Module, text: str) -> tuple[float, int]:
    """Float64 summed next-token NLL of ``text`` alone (no padding) and its number of targets."""
    model64 = copy.deepcopy(model).double()
    data = list(text.encode("utf-8"))[:model.config.context + 1]
    tokens = torch.tensor([data])
    with torch.no_grad():
        log_probs = torch.log_softmax(model64(tokens[:, :-1]).double(), dim=-1)[0]
    targets = tokens[0, 1:]
    return float(-log_probs[torch.arange(len(targets)), targets].sum()), len(targets)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_per_example_loss_matches_float64_log_softmax(reduction):
    model = build_model(TINY, seed=3)
    tokens, mask = encode(DOCS, TINY.context)
    found = per_example_loss(model, tokens, mask, reduction=reduction).detach().double().numpy()
    expected = []
    for doc in DOCS:
        total, count = oracle_losses(model, doc.text)
        expected.append(total if reduction == "sum" else total / count)
    error = np.abs(found - np.array(expected)).max() / np.abs(expected).max()
    assert error < 1e-5, f"float32 per_example_loss vs float64 oracle: relative error {error:.2e}"


def test_zero_head_gives_uniform_perplexity():
    model = build_model(TINY, seed=0)
    with torch.no_grad():
        model.head.weight.zero_()
    assert abs(perplexity(model, DOCS, batch=2) - 256.0) < 1e-4


def test_perplexity_is_exp_of_token_weighted_nll():
    model = build_model(TINY, seed=4)
    totals = [oracle_losses(model, doc.text) for doc in DOCS]
    expected = math.exp(sum(t for t, _ in totals) / sum(n for _, n in totals))
    assert abs(perplexity(model, DOCS, batch=3) / expected - 1) < 1e-5


def test_train_is_deterministic_and_learns():
    steps: list[tuple[int, list[str], float]] = []
    first = train(build_model(TINY, seed=1), DOCS, steps=15, batch=2, lr=3e-2, seed=5,
                  on_step=lambda step, batch, loss: steps.append((step, [d.id for d in batch], loss)))
    second = train(build_model(TINY, seed=1), DOCS, steps=15, batch=2, lr=3e-2, seed=5)
    other = train(build_model(TINY, seed=1), DOCS, steps=15, batch=2, lr=3e-2, seed=6)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert any(not torch.equal(v, other.state_dict()[k]) for k, v in first.state_dict().items())
    assert [s for s, _, _ in steps] == list(range(15)) and all(len(ids) == 2 for _, ids, _ in steps)
    # every document is drawn once per epoch of 5 documents (an epoch spans 2.5 batches)
    drawn = [i for _, ids, _ in steps for i in ids]
    assert sorted(drawn[:5]) == sorted(d.id for d in DOCS)
    untrained = perplexity(build_model(TINY, seed=1), DOCS)
    assert perplexity(first, DOCS) < 0.7 * untrained


def test_put_model_round_trip(tmp_store, reference):
    model = build_model(TINY, seed=2)
    put_model(tmp_store, "m", model)
    stored = reference.read_tensors(str(tmp_store.path), "m")
    state = model.state_dict()
    assert sorted(stored) == sorted(state)
    for key, value in state.items():
        assert stored[key].dtype == np.float32 and np.array_equal(stored[key], value.numpy()), key
    with tmp_store.snapshot() as snapshot:
        loaded = load_model(snapshot, "m", TINY)
    loaded_from_store = load_model(tmp_store, "m", TINY)       # opens and closes its own snapshot
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key
        assert torch.equal(loaded_from_store.state_dict()[key], value), key
    with pytest.raises(KeyError, match="no tensor set 'other'"):
        load_model(tmp_store, "other", TINY)
    with pytest.raises(ValueError, match="does not fit"):
        load_model(tmp_store, "m", GPTConfig(layers=2, width=8, heads=2, context=12))


def factor64(projection_reference, seed: int, stream: str, rows: int, cols: int) -> np.ndarray:
    return projection_reference.rademacher(seed, stream, rows, cols).astype(np.float64)


def test_collect_sketches_rows_match_float64_projected_gradients(tmp_store, projection_reference):
    model = build_model(TINY, seed=6)
    seed, sides = 11, (3, 5)
    version = collect_sketches(model, tmp_store, "pool", DOCS, seed=seed, k=sides, batch=2, stored_dtype="float32")
    with tmp_store.snapshot() as snapshot:
        assert snapshot.info("pool").rows == len(DOCS)
        assert snapshot.ids("pool") == [d.id for d in DOCS]
        assert snapshot.labels("pool") == [d.source for d in DOCS]
        rows = np.array(snapshot.rows("pool"), dtype=np.float64)
    assert version == tmp_store.latest_version()
    model64 = copy.deepcopy(model).double()
    linears = [(f"{name}.weight", module.weight) for name, module in model64.named_modules()
               if isinstance(module, nn.Linear)]
    assert len(linears) == 6 * TINY.layers + 1
    for index in (1, 3):        # a short document (padded in its batch) and a multi-byte one
        data = list(DOCS[index].text.encode("utf-8"))[:TINY.context + 1]
        tokens = torch.tensor([data])
        logits = model64(tokens[:, :-1])
        loss = -torch.log_softmax(logits, dim=-1)[0, torch.arange(len(data) - 1), tokens[0, 1:]].sum()
        gradients = torch.autograd.grad(loss, [w for _, w in linears])
        blocks = []
        for (name, _), gradient in zip(linears, gradients):
            g = gradient.numpy()
            k_out, k_in = min(sides[0], g.shape[0]), min(sides[1], g.shape[1])
            p_out = factor64(projection_reference, seed, name + "/out", k_out, g.shape[0])
            p_in = factor64(projection_reference, seed, name + "/in", k_in, g.shape[1])
            blocks.append((p_out @ g @ p_in.T).ravel())
        expected = np.concatenate(blocks)
        assert rows.shape[1] == expected.shape[0]
        error = np.abs(rows[index] - expected).max() / np.abs(expected).max()
        assert error < 1e-5, f"document {index}: sketch vs float64 oracle, relative error {error:.2e}"


def test_tinygpt_refuses_a_longer_input():
    model = TinyGPT(TINY)
    with pytest.raises(ValueError, match="exceed the context"):
        model(torch.zeros(1, TINY.context + 1, dtype=torch.int64))
