"""Tests of the LM suite's In-Run, Density and PASER experiments (gradsketch.lm.experiments.{inrun,density,paser}).

Oracles are independent of the code under test: hand-built id/step/rate lists, numpy float64
projections of autograd gradients with the engine's Rademacher factors, a float64 replay of the
SGD steps, numpy argsort for the pruning, and hand-computed coverage arithmetic. The end-to-end
test builds a tiny LMSetup of its own (synthetic documents, a 1-layer model) so it runs in seconds.
"""

from __future__ import annotations

import math
import random
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gradsketch as gs  # noqa: E402
from gradsketch.lm.config import GPTConfig, SizeConfig  # noqa: E402
from gradsketch.lm.corpus import Document  # noqa: E402
from gradsketch.lm.model import build_model, collect_sketches, encode, per_example_loss, put_model  # noqa: E402
from gradsketch.lm.pipeline import LMSetup  # noqa: E402
from gradsketch.lm.experiments import density, inrun, paser  # noqa: E402
from gradsketch.lm.experiments._support_b import epoch_batches  # noqa: E402
from gradsketch.projection import rademacher  # noqa: E402

TINY = GPTConfig(layers=1, width=8, heads=2, context=12)


def _docs(source: str, count: int, salt: int = 0) -> list[Document]:
    rng = random.Random(zlib.crc32(f"{source}/{salt}".encode()))   # not hash(): salted per process
    words = {"alpha": "the cat sat on a mat and ran".split(), "beta": "int main void return char".split(),
             "gamma": "Instruction: do x\nResponse: y".split(), "delta": "## -- ** ++ ## ::".split()}[source]
    return [Document(f"{source}/{salt}-{i}", source, " ".join(rng.choice(words) for _ in range(4 + i % 5)))
            for i in range(count)]


def _numpy_sketch(model: torch.nn.Module, gradients: dict[str, np.ndarray], seed: int, k: tuple[int, int]) -> np.ndarray:
    """Oracle: the LoGra row (P_out ⊗ P_in) vec(G) per Linear weight, numpy float64, named_modules order."""
    blocks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            n_out, n_in = module.weight.shape
            k_out, k_in = min(k[0], n_out), min(k[1], n_in)
            p_out = rademacher(seed, f"{name}.weight/out", k_out, n_out).astype(np.float64)
            p_in = rademacher(seed, f"{name}.weight/in", k_in, n_in).astype(np.float64)
            blocks.append((p_out @ gradients[f"{name}.weight"] @ p_in.T).reshape(-1))
    return np.concatenate(blocks)


def _gradient(model: torch.nn.Module, documents: list[Document], scale: float = 1.0) -> dict[str, np.ndarray]:
    """Oracle: autograd gradient of scale · Σ_z ℓ_z (summed per document), float64 numpy per parameter."""
    model.zero_grad(set_to_none=True)
    tokens, mask = encode(documents, TINY.context)
    (per_example_loss(model, tokens, mask, "sum").sum() * scale).backward()
    out = {n: p.grad.detach().double().numpy().copy() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out


def test_training_log_rows_match_a_hand_built_two_step_run() -> None:
    torch.manual_seed(0)
    train_docs = _docs("alpha", 4)
    validation = _docs("beta", 3)
    lr, seed, k = 0.1, 5, (4, 4)
    model = build_model(TINY, 1)
    initial = build_model(TINY, 1)
    log = inrun.logged_training(model, train_docs, validation, steps=2, batch=2, lr=lr, seed=seed,
                                context=TINY.context, sketch_seed=3, k=k, second_order=True, clip=None)
    # Hand-built expectation of the batches: a torch.Generator(seed) permutation of the 4 documents.
    order = torch.randperm(4, generator=torch.Generator().manual_seed(seed)).tolist()
    batches = [order[0:2], order[2:4]]
    assert log["ids"] == [f"{train_docs[i].id}@{t}" for t, b in enumerate(batches) for i in b]
    assert log["labels"] == ["alpha"] * 4
    assert log["step"].tolist() == [0.0, 0.0, 1.0, 1.0]
    target_bytes = [sum(min(len(train_docs[i].text.encode()), TINY.context + 1) - 1 for i in b) for b in batches]
    expected_rates = [lr / target_bytes[0]] * 2 + [lr / target_bytes[1]] * 2
    np.testing.assert_allclose(log["learning_rate"], expected_rates, rtol=1e-12)
    assert log["rows"].shape == (4, log["validation"].shape[1]) and log["validation"].shape[0] == 2
    assert log["hessian"].shape == log["validation"].shape

    # Step 0's rows and validation row against numpy projections of autograd gradients at w_0.
    for position, i in enumerate(batches[0]):
        expected = _numpy_sketch(initial, _gradient(initial, [train_docs[i]]), 3, k)
        np.testing.assert_allclose(log["rows"][position], expected, rtol=1e-4, atol=1e-5)
    val_bytes = float(encode(validation, TINY.context)[1].sum())
    expected_val = _numpy_sketch(initial, _gradient(initial, validation, 1.0 / val_bytes), 3, k)
    np.testing.assert_allclose(log["validation"][0], expected_val, rtol=1e-4, atol=1e-5)

    # The Hessian row of step 0 against a central finite difference of the validation gradient along G_0.
    g0 = _gradient(initial, [train_docs[i] for i in batches[0]])
    double = build_model(TINY, 1).double()
    # ||G_0|| is in the hundreds (summed-per-document losses): a shift of norm 1e-4 keeps the
    # central difference in its quadratic regime (a 1e-2 shift was off by 2x).
    eps = 1e-4 / math.sqrt(sum(float((v * v).sum()) for v in g0.values()))

    def val_grad_at(sign: float) -> dict[str, np.ndarray]:
        shifted = build_model(TINY, 1).double()
        with torch.no_grad():
            for n, p in shifted.named_parameters():
                p.add_(torch.from_numpy(g0[n]), alpha=sign * eps)
        return _gradient(shifted, validation, 1.0 / val_bytes)

    plus, minus = val_grad_at(1.0), val_grad_at(-1.0)
    hvp = {n: (plus[n] - minus[n]) / (2 * eps) for n in plus}
    expected_h = _numpy_sketch(double, hvp, 3, k)
    np.testing.assert_allclose(log["hessian"][0], expected_h, rtol=1e-2, atol=1e-3 * np.abs(expected_h).max())

    # The weights after two steps: a float64 replay of w ← w − lr · ∇(mean-per-byte batch loss).
    replay = build_model(TINY, 1).double()
    for b, nbytes in zip(batches, target_bytes):
        g = _gradient(replay, [train_docs[i] for i in b], 1.0 / nbytes)
        with torch.no_grad():
            for n, p in replay.named_parameters():
                p.sub_(torch.from_numpy(g[n]) * lr)
    for (n, p), (_, q) in zip(model.named_parameters(), replay.named_parameters()):
        np.testing.assert_allclose(p.detach().double().numpy(), q.detach().numpy(), rtol=1e-4, atol=1e-6, err_msg=n)


def test_epoch_batches_cover_every_document_once_per_epoch() -> None:
    batches = epoch_batches(6, 3, 4, seed=2)
    flat = [i for b in batches for i in b]
    assert sorted(flat[:6]) == list(range(6))       # the first epoch is a permutation
    assert all(len(b) == 4 for b in batches)


def test_epoch_batches_never_repeat_a_document_within_a_batch() -> None:
    # 7 documents, batches of 4: most batches straddle two epochs.
    for seed in range(20):
        batches = epoch_batches(7, 14, 4, seed=seed)
        assert all(len(set(b)) == 4 for b in batches), (seed, batches)
        flat = [i for b in batches for i in b]
        assert all(sorted(flat[e:e + 7]) == list(range(7)) for e in range(0, 56, 7)), seed


def test_pruning_keeps_exactly_the_largest_magnitudes_and_recovery_keeps_zeros() -> None:
    model = build_model(TINY, 4)
    masks = paser.magnitude_masks(model, 0.6)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            w = module.weight.detach().double().numpy().reshape(-1)
            keep = int(round(0.4 * w.size))
            expected = np.zeros(w.size, dtype=bool)
            expected[np.argsort(-np.abs(w), kind="stable")[:keep]] = True
            assert masks[f"{name}.weight"].reshape(-1).numpy().tolist() == expected.tolist()
    paser.apply_masks(model, masks)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    paser.recover(model, masks, _docs("alpha", 6), steps=3, batch=2, lr=1e-2, seed=0)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert bool((params[name].detach()[~mask] == 0).all()), name
        assert not torch.equal(params[name].detach()[mask], before[name][mask]), f"{name}: kept weights did not train"


def test_degradation_is_zero_for_identical_models() -> None:
    model = build_model(TINY, 2)
    values = paser.degradation(model, build_model(TINY, 2), _docs("beta", 3))
    assert values.shape == (3,) and np.all(values == 0.0)


def test_source_coverage_arithmetic() -> None:
    figures = density.coverage(["a", "a", "b", "c"], ["a"] * 6 + ["b"] * 3 + ["c"], ["a", "b", "c"])
    assert figures["shares"] == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert figures["pool_shares"] == {"a": 0.6, "b": 0.3, "c": 0.1}
    # Hand-computed: −(0.5 ln 0.5 + 2 · 0.25 ln 0.25) / ln 3 = 1.5 ln 2 / ln 3.
    assert figures["entropy"] == pytest.approx(1.5 * math.log(2) / math.log(3), rel=1e-12)
    assert figures["sources_present"] == 3
    assert figures["enrichment"]["c"] == pytest.approx(2.5)
    assert density.coverage(["a"], ["a", "b"], ["a", "b"])["entropy"] == 0.0


class _RecordingReport:
    """Records the calls the contract's Report receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self.calls.append((name, args))

    def text(self) -> str:
        return "\n".join(str(args) for _, args in self.calls)


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> LMSetup:
    """A tiny LMSetup built by hand (synthetic documents, 1-layer model), named "small" for SETTINGS."""
    path = tmp_path_factory.mktemp("lm") / "store"
    store = gs.Store.create(path)
    sources = ["alpha", "beta", "delta", "gamma"]
    train_docs = {s: _docs(s, 20) for s in sources}
    eval_docs = {s: _docs(s, 5, salt=1) for s in sources}
    pool = [d for s in ["alpha", "beta", "delta"] for d in train_docs[s][:12]] + train_docs["gamma"][:4]
    config = SizeConfig(name="small", model=TINY, per_source=20, held_out="gamma", pool_size=len(pool),
                        held_out_share=0.1, eval_docs=5, base_steps=5, expert_steps=3, retrain_steps=3, batch=4,
                        lr=3e-3, select_k=8, sketch_k=(2, 2), sketch_seed=7, seeds=(0, 1))
    base = build_model(TINY, 0)
    collect_sketches(base, store, "pool", pool, seed=7, k=(2, 2), batch=16)
    setup = LMSetup(config=config, store_path=str(path), store=store, corpus=[d for v in train_docs.values() for d in v],
                    train_docs=train_docs, eval_docs=eval_docs, held_out="gamma",
                    base_sources=["alpha", "beta", "delta"], pool=pool, base_checkpoints=["base"])
    put_model(store, "base", base)
    put_model(store, "expert", base)
    yield setup
    store.close()


@pytest.mark.parametrize("module, keys", [
    (inrun, {"negative_share", "test_ppl", "validation_ppl", "test_ppl_gain", "per_seed", "first_vs_second_spearman"}),
    (density, {"density", "random", "pool_shares", "ask_llm", "per_seed"}),
    (paser, {"reference", "recovered", "selected_degradation", "mask_kept", "per_seed"}),
])
def test_run_and_report_on_the_small_settings(tiny_setup: LMSetup, module, keys) -> None:
    outcome = module.run(tiny_setup, log=lambda *_: None)
    assert keys <= set(outcome)
    assert outcome["seeds"] == [0, 1] and len(outcome["per_seed"]) == 2
    import json
    json.dumps(outcome)          # JSON-serialisable (NaN allowed, as json writes it)
    rep = _RecordingReport()
    module.report(outcome, rep)
    assert rep.calls[0] == ("heading", (module.TITLE,))
    assert module.PAPER in rep.text()
    assert any(name == "bars" for name, _ in rep.calls)
    from gradsketch.lm.report import Report
    real = Report()
    module.report(outcome, real)         # the product's HTML report accepts every call
    import html as html_module
    assert html_module.escape(module.TITLE, quote=True) in real.fragment()
    if module is paser:
        assert outcome["mask_kept"] is True
    if module is inrun:
        valued = outcome["per_seed"][0]["values"]
        assert set(valued) <= {d.id for s in tiny_setup.base_sources for d in tiny_setup.train_docs[s]}


def test_append_with_columns_stores_the_columns_and_refuses_a_second_write(tmp_path: Path) -> None:
    from gradsketch.lm.experiments._support_b import append_with_columns, cli_json
    path = str(tmp_path / "store")
    gs.Store.create(path).close()
    rows = np.arange(6, dtype=np.float32).reshape(3, 2)
    append_with_columns(path, "log", rows, ["a@0", "b@0", "a@1"], columns={"rate": np.array([0.5, 0.25, 2.0])})
    top = cli_json(["select", path, "--set", "log", "--method", "column", "--column", "rate", "-k", "3"])
    assert [(r["id"], r["score"]) for r in top["rows"]] == [("a@1", 2.0), ("a@0", 0.5), ("b@0", 0.25)]
    with pytest.raises(ValueError, match="already exists"):
        append_with_columns(path, "log", rows, ["x", "y", "z"])
