"""The LoGra collector against independent oracles.

Oracles: `gradsketch project` (the Swift engine's own Kronecker path), the Spec's numpy Philox
reference (Spec/reference/projection_ref.py), and per-example gradients computed one example
at a time with torch.autograd in float64, projected with numpy float64 factors.

transformers is not installed: ``Conv1D`` below is a minimal module with the same class name
and semantics as ``transformers.pytorch_utils.Conv1D`` (weight ``[nx, nf]``, ``y = x W + b``).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gradsketch as gs
from gradsketch.errors import InvalidInputError, InvalidStateError
from gradsketch.logra import LoGraCollector

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Spec" / "reference"))
import projection_ref  # noqa: E402  (the Spec's independent numpy Philox reference)

VOCAB, WIDTH, HIDDEN, TOKENS = 11, 12, 20, 6


class Conv1D(nn.Module):
    """Same class name and semantics as Hugging Face's Conv1D: weight [nx, nf], y = x W + b."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.3)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.size()[:-1] + (self.nf,)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(shape)


class TinyLM(nn.Module):
    """Token-wise LM (no mixing across tokens): embedding, Linear, tanh, Conv1D, Linear head."""

    def __init__(self, unused: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.fc = nn.Linear(WIDTH, HIDDEN)
        self.proj = Conv1D(WIDTH, HIDDEN)
        self.head = nn.Linear(WIDTH, VOCAB)
        if unused:
            self.spare = nn.Linear(WIDTH, WIDTH)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.proj(torch.tanh(self.fc(self.embed(tokens)))))


def example_losses(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Per-example next-token loss summed over every position, pads included ([B])."""
    logits = model(tokens[:, :-1])
    losses = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1), reduction="none")
    return losses.view(tokens.shape[0], -1).sum(dim=1)


def make_batch(examples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens [B, TOKENS + 1] right-padded with token 0, and the mask of the inputs [B, TOKENS]."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (examples, TOKENS + 1), generator=generator)
    lengths = torch.randint(2, TOKENS + 1, (examples,), generator=generator)
    mask = (torch.arange(TOKENS)[None, :] < lengths[:, None]).to(torch.int64)
    tokens[:, :-1] = tokens[:, :-1] * mask
    return tokens, mask


def model_with_seed(seed: int = 0, unused: bool = False) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM(unused=unused)


def collect(store: gs.Store, model: nn.Module, batches, set_name: str = "train", reduction: str = "sum",
            masked: bool = True, **options) -> LoGraCollector:
    """Runs the collector over (ids, tokens, mask) batches with the reduction's loss."""
    with LoGraCollector(model, store, set_name, loss_reduction=reduction, **options) as collector:
        for ids, tokens, mask in batches:
            with collector.batch(ids, mask=mask if masked else None):
                losses = example_losses(model, tokens)
                loss = losses.sum() if reduction == "sum" else losses.mean()
                model.zero_grad()
                loss.backward()
    return collector


def stored_rows(store: gs.Store, set_name: str) -> tuple[list[str], np.ndarray]:
    with store.snapshot() as snapshot:
        return snapshot.ids(set_name), np.array(snapshot.rows(set_name), dtype=np.float64)


def factor64(seed: int, stream: str, rows: int, cols: int) -> np.ndarray:
    return projection_ref.rademacher(seed, stream, rows, cols).astype(np.float64)


def naive_sketches(model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor, seed: int, sides: tuple[int, int],
                   precondition: dict | None = None) -> np.ndarray:
    """Float64 oracle: each example's own loss (its unpadded tokens only, batch of 1), its
    weight gradients by autograd, optionally LESS's Adam feature, then P_out G P_inᵀ per layer."""
    model64 = copy.deepcopy(model).double()
    layers = [("fc.weight", model64.fc.weight), ("proj.weight", model64.proj.weight), ("head.weight", model64.head.weight)]
    rows = []
    for b in range(tokens.shape[0]):
        length = int(mask[b].sum())
        single = tokens[b:b + 1, :length + 1]
        loss = example_losses(model64, single).sum()
        gradients = torch.autograd.grad(loss, [w for _, w in layers])
        blocks = []
        for (name, weight), gradient in zip(layers, gradients):
            g = gradient.numpy()
            if precondition is not None:
                m, v, beta1, beta2, eps = precondition[name]
                m_next = beta1 * m + (1 - beta1) * g
                v_next = beta2 * v + (1 - beta2) * g * g
                g = m_next / np.sqrt(v_next + eps)
            k_out, k_in = min(sides[0], g.shape[0]), min(sides[1], g.shape[1])
            p_out = factor64(seed, name + "/out", k_out, g.shape[0])
            p_in = factor64(seed, name + "/in", k_in, g.shape[1])
            blocks.append((p_out @ g @ p_in.T).ravel())
        rows.append(np.concatenate(blocks))
    return np.array(rows)


def relative_error(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(found - expected).max() / np.abs(expected).max())


# ----- 1. the collector equals `gradsketch project` -------------------------------------------

def test_collector_matches_gradsketch_project_and_factors_match_the_spec_reference(tmp_store, gradsketch_cli, tmp_path):
    seed, side = 1234567, 8
    model = model_with_seed(3)
    tokens, _ = make_batch(5, seed=11)
    ids = [f"ex{i}" for i in range(5)]

    # Plain torch hooks capture the fc layer's activations and output gradients.
    captured: dict[str, torch.Tensor] = {}

    def keep_gradient(gradient: torch.Tensor) -> None:
        captured["gradients"] = gradient.detach().clone()

    def forward_hook(module, inputs, output):
        captured["activations"] = inputs[0].detach().clone()
        output.register_hook(keep_gradient)

    handle = model.fc.register_forward_hook(forward_hook)
    model.zero_grad()
    example_losses(model, tokens).sum().backward()
    handle.remove()
    np.save(tmp_path / "a.npy", captured["activations"].numpy().astype(np.float32))
    np.save(tmp_path / "g.npy", captured["gradients"].numpy().astype(np.float32))
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    result = subprocess.run(
        [gradsketch_cli, "project", str(tmp_store.path), "--seed", str(seed),
         "--activations", str(tmp_path / "a.npy"), "--output-gradients", str(tmp_path / "g.npy"),
         "--side", str(side), "--parameter", "fc.weight", "--set", "cli", "--ids", str(tmp_path / "ids.txt"), "--json"],
        capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["k"] == side * side

    collector = collect(tmp_store, model, [(ids, tokens, None)], set_name="collector", masked=False,
                        seed=seed, k=(side, side), modules=["fc"], stored_dtype="float32")
    cli_ids, cli_rows = stored_rows(tmp_store, "cli")
    collector_ids, collector_rows = stored_rows(tmp_store, "collector")
    assert cli_ids == collector_ids == ids
    # float32 on both sides, different summation orders (torch matmul vs the engine's sgemm).
    scale = np.abs(cli_rows).max()
    max_abs = np.abs(collector_rows - cli_rows).max()
    print(f"collector vs gradsketch project: max abs {max_abs:.3g}, max rel {max_abs / scale:.3g}")
    assert max_abs <= 1e-5 * scale

    # The definition the collector records is the one the engine writes, key for key.
    with tmp_store.snapshot() as snapshot:
        assert snapshot.projection("collector") == snapshot.projection("cli")
    # ... so the engine accepts the collector's rows into the CLI's set.
    collect(tmp_store, model, [([f"more{i}" for i in range(5)], tokens, None)], set_name="cli", masked=False,
            seed=seed, k=(side, side), modules=["fc"], stored_dtype="float32")
    assert len(stored_rows(tmp_store, "cli")[0]) == 10

    # The factors are the Spec's Philox matrices bit for bit.
    for stream, rows, cols in [("fc.weight/out", side, HIDDEN), ("fc.weight/in", side, WIDTH)]:
        reference = projection_ref.rademacher(seed, stream, rows, cols)
        assert np.array_equal(gs.projection.rademacher(seed, stream, rows, cols), reference)
        assert np.array_equal(collector._factors[(stream, rows, cols)].numpy(), reference)


# ----- 2. the collector against a float64 per-example oracle ----------------------------------

@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_collector_matches_float64_per_example_gradients(tmp_store, reduction):
    seed, sides = 77, (4, 6)
    model = model_with_seed(5)
    batches = []
    for index in range(2):
        tokens, mask = make_batch(4, seed=100 + index)
        batches.append(([f"b{index}-{i}" for i in range(4)], tokens, mask))
    collector = collect(tmp_store, model, batches, reduction=reduction, seed=seed, k=sides, stored_dtype="float32")
    assert [entry.parameter for entry in collector.layout] == ["fc.weight", "proj.weight", "head.weight"]
    assert collector.layout[1].shape == (HIDDEN, WIDTH) and collector.layout[1].transposed
    ids, rows = stored_rows(tmp_store, "train")
    assert ids == [i for batch in batches for i in batch[0]]
    expected = np.concatenate([naive_sketches(model, tokens, mask, seed, sides) for _, tokens, mask in batches])
    assert rows.shape == expected.shape == (8, 4 * 6 * 3)
    error = relative_error(rows, expected)
    print(f"{reduction}: collector vs float64 oracle, max error / max value {error:.3g}")
    assert error < 1e-5


def test_padding_mask_removes_the_padded_tokens(tmp_store):
    """Without the mask, the padded positions (whose loss the batch includes) change the rows."""
    seed, sides = 8, (4, 4)
    model = model_with_seed(6)
    tokens, mask = make_batch(4, seed=3)
    assert (mask == 0).any()
    collect(tmp_store, model, [(list("abcd"), tokens, None)], set_name="unmasked", masked=False, seed=seed, k=sides,
            stored_dtype="float32")
    _, unmasked = stored_rows(tmp_store, "unmasked")
    expected = naive_sketches(model, tokens, mask, seed, sides)
    assert relative_error(unmasked, expected) > 1e-2


# ----- 3. select --delta on the collected set -------------------------------------------------

def test_select_delta_on_collected_rows_matches_numpy(tmp_store, gradsketch_cli):
    seed, sides = 21, (4, 4)
    model = model_with_seed(9)
    batches = [([f"r{b}-{i}" for i in range(6)], *make_batch(6, seed=40 + b)) for b in range(2)]
    collect(tmp_store, model, batches, seed=seed, k=sides)                # float16 rows
    base = {name: value.detach().clone() for name, value in model.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    finetuned = {name: value + 0.01 * torch.randn(value.shape, generator=generator) for name, value in base.items()}
    tmp_store.put_state_dict("base", base)
    tmp_store.put_state_dict("finetuned", finetuned)
    tmp_store.delta("delta", "base", "finetuned")

    query = []
    for name in ["fc.weight", "proj.weight", "head.weight"]:
        delta = (finetuned[name] - base[name]).numpy().astype(np.float64)
        p_out = factor64(seed, name + "/out", min(sides[0], delta.shape[0]), delta.shape[0])
        p_in = factor64(seed, name + "/in", min(sides[1], delta.shape[1]), delta.shape[1])
        query.append((p_out @ delta @ p_in.T).ravel())
    query = -np.concatenate(query)                    # base − finetuned: the engine's convention
    ids, rows = stored_rows(tmp_store, "train")
    inner = rows @ query
    # SELECT's top-k ranks by cos(row, query) (Sources/GradSketchSelect/Select.swift).
    scores = inner / (np.linalg.norm(rows, axis=1) * np.linalg.norm(query))
    order = np.argsort(-scores, kind="stable")[:4]

    with tmp_store.snapshot() as snapshot:
        selection = snapshot.select("train", delta="delta", count=4, method="top-k")
        hits = snapshot.query("train", delta="delta", negate=True, k=len(ids))
    assert list(selection.ids) == [ids[i] for i in order]
    np.testing.assert_allclose(np.asarray(selection.scores, dtype=np.float64), scores[order], rtol=1e-4, atol=1e-6)
    # The delta query (inner products) sees the same projected delta.
    by_id = {hit.id: hit.score for hit in hits}
    np.testing.assert_allclose([by_id[i] for i in ids], inner, rtol=1e-4, atol=1e-6 * np.abs(inner).max())

    result = subprocess.run([gradsketch_cli, "select", str(tmp_store.path), "--set", "train",
                             "--delta", "delta", "--negate", "--strategy", "topk", "-k", "4", "--json"],
                            capture_output=True, text=True, check=True)
    picked = json.loads(result.stdout)["rows"]
    assert [row["id"] for row in picked] == [ids[i] for i in order]
    np.testing.assert_allclose([row["score"] for row in picked], scores[order], rtol=1e-4, atol=1e-6)


# ----- 4. reduced-precision compute and Adam preconditioning ----------------------------------

@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
def test_reduced_precision_compute_is_close_to_float32(tmp_store, dtype, tolerance):
    seed, sides = 5, (8, 8)
    model = model_with_seed(2)
    batch = [(list("abcdef"), *make_batch(6, seed=9))]
    collect(tmp_store, model, batch, set_name="fp32", seed=seed, k=sides, stored_dtype="float32")
    collect(tmp_store, model, batch, set_name="low", seed=seed, k=sides, stored_dtype="float32", compute_dtype=dtype)
    _, reference = stored_rows(tmp_store, "fp32")
    _, low = stored_rows(tmp_store, "low")
    error = relative_error(low, reference)
    print(f"{dtype}: max error / max value vs float32 compute {error:.3g}")
    assert error < tolerance


def test_adam_preconditioning_matches_less_formula(tmp_store):
    seed, sides = 13, (4, 4)
    model = model_with_seed(4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-6)
    for step in range(2):                            # populate exp_avg / exp_avg_sq
        tokens, _ = make_batch(4, seed=500 + step)
        optimizer.zero_grad()
        example_losses(model, tokens).sum().backward()
        optimizer.step()
    tokens, mask = make_batch(5, seed=7)
    collect(tmp_store, model, [(list("vwxyz"), tokens, mask)], reduction="mean", seed=seed, k=sides,
            stored_dtype="float32", precondition=optimizer)
    state = {}
    for name, weight in [("fc.weight", model.fc.weight), ("proj.weight", model.proj.weight), ("head.weight", model.head.weight)]:
        moments = optimizer.state[weight]
        state[name] = (moments["exp_avg"].double().numpy(), moments["exp_avg_sq"].double().numpy(), 0.8, 0.99, 1e-6)
    expected = naive_sketches(model, tokens, mask, seed, sides, precondition=state)
    _, rows = stored_rows(tmp_store, "train")
    error = relative_error(rows, expected)
    print(f"Adam-preconditioned rows vs float64 oracle: {error:.3g}")
    assert error < 1e-5
    with tmp_store.snapshot() as snapshot:
        assert snapshot.attributes("train")["gradient_kind"] == "adam-preconditioned-loss-gradient"


def test_preconditioning_needs_optimizer_state(tmp_store):
    model = model_with_seed(4)
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(InvalidInputError, match="no Adam state"):
        collect(tmp_store, model, [(list("ab"), *make_batch(2, seed=1))], seed=1, k=(2, 2), precondition=optimizer)


# ----- 5. errors ------------------------------------------------------------------------------

def test_a_module_without_gradient_fails_and_commits_nothing(tmp_store):
    model = model_with_seed(1, unused=True)
    with pytest.raises(InvalidStateError, match="module spare received no gradient"):
        collect(tmp_store, model, [(list("abc"), *make_batch(3, seed=2))], seed=1, k=(2, 2))
    with tmp_store.snapshot() as snapshot:
        assert "train" not in snapshot.sets


def test_ids_count_mismatch_is_refused(tmp_store):
    model = model_with_seed(1)
    with pytest.raises(InvalidInputError, match="batch of 4 examples but the batch has 3 ids"):
        collect(tmp_store, model, [(list("abc"), *make_batch(4, seed=2))], seed=1, k=(2, 2), masked=False)
    with tmp_store.snapshot() as snapshot:
        assert "train" not in snapshot.sets


def test_k_larger_than_a_dimension_is_clamped_like_the_cli(tmp_store):
    model = model_with_seed(1)
    collector = collect(tmp_store, model, [(list("ab"), *make_batch(2, seed=2))], seed=1, k=(16, 64),
                        stored_dtype="float32")
    layout = {entry["name"]: (entry["k_out"], entry["k_in"]) for entry in collector.definition["layout"]}
    # fc.weight is [HIDDEN, WIDTH], proj.weight (Conv1D) [HIDDEN, WIDTH], head.weight [VOCAB, WIDTH].
    assert layout == {"fc.weight": (16, WIDTH), "proj.weight": (16, WIDTH), "head.weight": (VOCAB, WIDTH)}
    with tmp_store.snapshot() as snapshot:
        assert snapshot.info("train").k == 2 * 16 * WIDTH + VOCAB * WIDTH


def test_per_module_k_generated_ids_labels_and_metadata(tmp_store):
    model = model_with_seed(1)
    with LoGraCollector(model, tmp_store, "train", seed=9, k={"fc": (2, 3), "head.weight": (5, 1)},
                        stored_dtype="float32") as collector:
        for batch in range(2):
            tokens, _ = make_batch(3, seed=batch)
            with collector.batch(labels=["x", "y", "z"], metadata=[{"batch": batch, "i": i} for i in range(3)]):
                example_losses(model, tokens).sum().backward()
    assert [(e.parameter, e.k_out, e.k_in) for e in collector.layout] == [("fc.weight", 2, 3), ("head.weight", 5, 1)]
    ids, rows = stored_rows(tmp_store, "train")
    assert ids == [f"0-{i}" for i in range(6)] and rows.shape == (6, 11)
    with tmp_store.snapshot() as snapshot:
        assert snapshot.labels("train") == ["x", "y", "z"] * 2
        assert [json.loads(m) for m in snapshot.metadata("train")] == [{"batch": b, "i": i} for b in range(2) for i in range(3)]


def test_a_second_collector_with_another_seed_is_refused_by_the_engine(tmp_store):
    model = model_with_seed(1)
    batch = [(list("ab"), *make_batch(2, seed=2))]
    collect(tmp_store, model, batch, seed=1, k=(2, 2))
    with pytest.raises(InvalidInputError, match="seed"):
        collect(tmp_store, model, [(list("cd"), *make_batch(2, seed=3))], seed=2, k=(2, 2))
    ids, _ = stored_rows(tmp_store, "train")
    assert ids == ["a", "b"]
