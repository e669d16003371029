"""Tests of the LM suite's experiments A (SELECT, LESS, GradEx): the arithmetic each one reports,
checked against hand-computed values or an independent float64 numpy computation, and a run of
every experiment plus its report section on a tiny synthetic setup (seconds)."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gradsketch.lm.config import GPTConfig, SizeConfig  # noqa: E402
from gradsketch.lm.corpus import Document  # noqa: E402
from gradsketch.lm.experiments import gradex, less, select  # noqa: E402
from gradsketch.lm.report import Report  # noqa: E402


# ----- SELECT ------------------------------------------------------------------------------------

def test_gap_closed_matches_hand_computed_cases() -> None:
    # The paper's MSMARCO figures: (3.3 − 2.3) / (3.3 − 2.0) = 1.0 / 1.3 = 10/13.
    assert select.gap_closed(3.3, 2.3, 2.0) == pytest.approx(10 / 13, rel=1e-12)
    assert select.gap_closed(10.0, 10.0, 4.0) == 0.0          # no better than random
    assert select.gap_closed(10.0, 4.0, 4.0) == 1.0           # as good as the expert
    assert select.gap_closed(10.0, 13.0, 4.0) == pytest.approx(-0.5)   # worse than random
    assert math.isnan(select.gap_closed(5.0, 4.0, 5.0))       # no gap to close


# ----- LESS --------------------------------------------------------------------------------------

def _append(store: Any, name: str, rows: np.ndarray, ids: list[str]) -> None:
    with store.append_session(name, dtype="float32") as session:
        session.append(rows.astype(np.float32), ids=ids)


def test_less_scores_match_float64_numpy(tmp_store: Any) -> None:
    rng = np.random.default_rng(3)
    n, width, n_val = 23, 7, 6
    train_ids = [f"t{i}" for i in range(n)]
    val_ids = [f"v{i}" for i in range(n_val)]
    train_rows = [rng.normal(size=(n, width)) for _ in range(2)]
    val_rows = [rng.normal(size=(n_val, width)) for _ in range(2)]
    for c in range(2):
        _append(tmp_store, f"less-ckpt{c}", train_rows[c], train_ids)
        _append(tmp_store, f"less-val{c}", val_rows[c], val_ids)
    # Unequal subtasks (LESS's reshape could not do this): sizes 1, 2 and 3.
    subtasks = {"v0": 0, "v1": 1, "v2": 1, "v3": 2, "v4": 2, "v5": 2}
    weights = [2e-3, 5e-4]
    with tmp_store.snapshot() as snapshot:
        ids, scores = less.less_scores(snapshot, ["less-ckpt0", "less-ckpt1"], ["less-val0", "less-val1"],
                                       subtasks, weights)
    # Oracle: explicit loops over the float32-rounded rows, float64 arithmetic.
    expected = np.zeros(n)
    for c in range(2):
        t = train_rows[c].astype(np.float32).astype(np.float64)
        v = val_rows[c].astype(np.float32).astype(np.float64)
        for i in range(n):
            best = -np.inf
            for group in (0, 1, 2):
                members = [j for j in range(n_val) if subtasks[f"v{j}"] == group]
                cosines = [t[i] @ v[j] / (np.linalg.norm(t[i]) * np.linalg.norm(v[j])) for j in members]
                best = max(best, sum(cosines) / len(cosines))
            expected[i] += weights[c] * best
    order = [ids.index(i) for i in train_ids]
    # Engine cosines are float32: relative error ~1e-7 measured; allow 1e-5 of the score scale.
    np.testing.assert_allclose(scores[order], expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_kmeans_groups_separates_obvious_clusters() -> None:
    rows = np.array([[1, 0.01], [1, -0.02], [0.98, 0], [0, 1], [0.01, 1.0], [-0.01, 0.99]])
    groups = less.kmeans_groups(rows, 2)
    assert len(set(groups[:3])) == 1 and len(set(groups[3:])) == 1 and groups[0] != groups[3]


# ----- GradEx ------------------------------------------------------------------------------------

def test_first_order_estimates_match_direct_numpy() -> None:
    rng = np.random.default_rng(5)
    sources, docs, width, targets = 4, 5, 9, 3
    gradients = rng.normal(size=(sources, docs, width))          # per-document summed-loss gradients
    tokens = rng.integers(10, 60, size=(sources, docs)).astype(np.float64)
    vectors = rng.normal(size=(targets, width))
    base = np.array([2.0, 2.5, 3.0])
    subsets = [(0,), (1, 3), (0, 1, 2, 3)]
    got = gradex.first_order_estimates(base, vectors, gradients.sum(axis=1), tokens.sum(axis=1), subsets, 0.7)
    for row, subset in enumerate(subsets):
        # Direct: the gradient of S's mean per-token loss is the token-weighted average of the
        # documents' per-token gradients g_i / n_i.
        g = np.concatenate([gradients[s] for s in subset])
        n = np.concatenate([tokens[s] for s in subset])
        mean_gradient = np.average(g / n[:, None], axis=0, weights=n)
        for t in range(targets):
            assert got[row, t] == pytest.approx(base[t] - 0.7 * float(vectors[t] @ mean_gradient), rel=1e-12)


def test_first_order_estimate_predicts_a_small_sgd_step_on_quadratics() -> None:
    # Losses ½‖θ − a‖²: one SGD step of size η on the subset's loss changes a target's loss by
    # −η⟨∇L_t, ∇L_S⟩ + O(η²); the estimate must agree to O(η²).
    rng = np.random.default_rng(11)
    theta = rng.normal(size=5)
    anchors = rng.normal(size=(3, 5))                       # three one-document, one-token sources
    target_anchor = rng.normal(size=5)
    eta = 1e-3
    loss = lambda th: 0.5 * float(np.sum((th - target_anchor) ** 2))  # noqa: E731
    subset = (0, 2)
    gradient_s = np.mean([theta - anchors[s] for s in subset], axis=0)
    after = loss(theta - eta * gradient_s)
    estimate = gradex.first_order_estimates(np.array([loss(theta)]), (theta - target_anchor)[None, :],
                                            theta - anchors, np.ones(3), [subset], eta)[0, 0]
    assert abs(estimate - after) <= eta ** 2 * float(gradient_s @ gradient_s)
    assert abs(loss(theta) - after) > 100 * abs(estimate - after)   # the first-order term matters


def test_rank_correlation_hand_computed() -> None:
    # Spearman: 1 − 6Σd²/(n(n²−1)) = 1 − 6·2/(4·15) = 0.8.
    assert gradex.rank_correlation([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert gradex.rank_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_checked_subsets_mix_sizes_without_repeats() -> None:
    chosen = gradex.checked_subsets(4, 9, seed=1)
    assert len(chosen) == len(set(chosen)) == 9
    assert {len(s) for s in chosen} == {1, 2, 3}
    assert all(set(s) <= set(range(4)) for s in chosen)


# ----- run() + report() on a tiny synthetic setup ------------------------------------------------

TINY = SizeConfig(name="tiny-exp-a", model=GPTConfig(layers=1, width=16, heads=2, context=32),
                  per_source=40, held_out="c", pool_size=24, held_out_share=0.25, eval_docs=8,
                  base_steps=8, expert_steps=6, retrain_steps=4, batch=4, lr=3e-3,
                  select_k=6, sketch_k=(2, 2), sketch_seed=7, seeds=(0, 1))

ALPHABETS = {"a": "aeiou ", "b": "0123456789 ", "c": "xyzXYZ-. "}


def _tiny_corpus() -> list[Document]:
    rng = random.Random(0)
    return [Document(id=f"{source}/{i:03d}", source=source,
                     text="".join(rng.choice(alphabet) for _ in range(rng.randint(20, 40))))
            for source, alphabet in ALPHABETS.items() for i in range(TINY.per_source)]


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from gradsketch.lm.pipeline import prepare

    torch.set_num_threads(1)
    path = Path(tmp_path_factory.mktemp("lm-exp-a")) / "store"
    setup = prepare(str(path), TINY, log=lambda message: None, corpus=_tiny_corpus())
    yield setup
    setup.close()


@pytest.fixture(autouse=True)
def tiny_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(select.SETTINGS, TINY.name, dict(select.SETTINGS["small"]))
    monkeypatch.setitem(less.SETTINGS, TINY.name, {"max_retrain_steps": 4, "validation": 4, "subtasks": 2, "checkpoints": 2,
                                                   "warmup_fraction": 0.05, "sketch_batch": 8})
    monkeypatch.setitem(gradex.SETTINGS, TINY.name, {"per_source": 4, "steps": 3, "sgd_lr": 0.1, "checked": 5,
                                                     "calibration": 2, "sketch_batch": 8})


def _section(module: Any, outcome: dict) -> str:
    rep = Report()
    module.report(outcome, rep)
    return rep.fragment()


def _assert_summary(summary: dict, seeds: int) -> None:
    assert set(summary) == {"per_seed", "mean", "se"}
    assert len(summary["per_seed"]) == seeds
    assert summary["mean"] == pytest.approx(float(np.mean(summary["per_seed"])))


def test_select_run_and_report(tiny_setup: Any) -> None:
    outcome = select.run(tiny_setup, log=lambda message: None)
    assert set(outcome["strategies"]) >= {"greedy", "greedy-batched", "top-k", "random", "oracle"}
    for figures in outcome["strategies"].values():
        for key in ("held_out_perplexity", "final_perplexity", "gap_closed", "held_out_share", "other_perplexity"):
            _assert_summary(figures[key], len(TINY.seeds))
        assert figures["selected"] == TINY.select_k or figures is outcome["strategies"]["oracle"]
    assert outcome["strategies"]["oracle"]["held_out_share"]["mean"] == 1.0
    assert outcome["strategies"]["random"]["gap_closed"]["mean"] == 0.0
    assert outcome["pool_held_out_share"] == pytest.approx(0.25)
    section = _section(select, outcome)
    assert select.TITLE in section and select.PAPER in section


def test_less_run_and_report(tiny_setup: Any) -> None:
    outcome = less.run(tiny_setup, log=lambda message: None)
    assert set(outcome["methods"]) == {"less", "random", "full pool"}
    for figures in outcome["methods"].values():
        _assert_summary(figures["held_out_perplexity"], len(TINY.seeds))
    assert outcome["engine_vs_numpy_relative_error"] < 1e-5
    assert outcome["validation_docs"] + outcome["evaluation_docs"] == TINY.eval_docs
    with tiny_setup.store.snapshot() as snapshot:
        assert {"less-ckpt0", "less-val0", "less-ckpt1", "less-val1"} <= set(snapshot.sets)
        assert snapshot.info("less-ckpt0").rows == TINY.pool_size
    section = _section(less, outcome)
    assert less.TITLE in section and less.PAPER in section


def test_gradex_run_and_report(tiny_setup: Any) -> None:
    outcome = gradex.run(tiny_setup, log=lambda message: None)
    sources = len(outcome["sources"])
    assert outcome["subsets_estimated"] == 2 ** sources - 1
    assert np.asarray(outcome["actual_mean"]).shape == (5, sources)
    for name in ("no change", "sketch", "exact", "calibrated"):
        _assert_summary(outcome["metrics"][name]["relative_error"], len(TINY.seeds))
    # The sketch and exact first-order changes point the same way (JL inner products).
    assert outcome["sketch_vs_exact_change_correlation"] > 0
    assert "error" not in outcome["cli"], outcome["cli"]
    assert len(outcome["cli"]["scores"]) == sources
    section = _section(gradex, outcome)
    assert gradex.TITLE in section and gradex.PAPER in section
