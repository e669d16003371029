"""LESS-style targeted selection on the language model (Xia et al. 2024).

A few validation documents of the held-out source stand for the target task. As LESS does, the
base model is warmed up on a random 5 % of the pool (AdamW, one pass over that subset per
checkpoint) and at each checkpoint c two sketch sets are stored with the same projection:
``less-ckpt{c}``, every pool document's Adam-preconditioned loss gradient (LESS's "adam" feature,
``LoGraCollector(precondition=optimizer)``), and ``less-val{c}``, the validation documents' plain
(SGD) loss gradients. The validation documents are grouped into subtasks by k-means on their
normalised sketches. A pool document's score is

    score(z) = Σ_c lr_c · max_subtask mean_{v ∈ subtask} cos(s_c(z), s_c(v)),

computed with the engine's exact cosine search (see :func:`less_scores`). The top-K pool documents
are the selection; the base model retrained on it is compared with random K and with the whole
pool, on the held-out source's evaluation documents that were not used for validation.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

NAME = "less"
TITLE = "LESS: targeted selection from a few validation documents"
PAPER = "LESS: training on 5% of the data selected by gradient similarity beats the full set on target tasks, Xia et al. 2024"

#: validation: validation documents taken from the held-out source's evaluation documents;
#: subtasks: k-means groups of them; checkpoints: warmup checkpoints (one pass over the warmup
#: subset each); warmup_fraction: share of the pool used for the warmup (LESS: 5 %);
#: max_retrain_steps caps the config's retrain_steps (time budget: 3 retrainings × seeds).
SETTINGS: dict[str, dict[str, Any]] = {
    "small": {"max_retrain_steps": 30, "validation": 8, "subtasks": 2, "checkpoints": 2, "warmup_fraction": 0.05, "sketch_batch": 16},
    "default": {"max_retrain_steps": 40, "validation": 12, "subtasks": 3, "checkpoints": 3, "warmup_fraction": 0.05, "sketch_batch": 16},
    "full": {"max_retrain_steps": 200, "validation": 16, "subtasks": 4, "checkpoints": 4, "warmup_fraction": 0.05, "sketch_batch": 16},
}


def kmeans_groups(rows: np.ndarray, groups: int, iterations: int = 25) -> np.ndarray:
    """Deterministic k-means on the L2-normalised ``rows`` (float64): farthest-point
    initialisation from row 0, then Lloyd iterations. Returns a group index per row; every group
    is non-empty (``groups`` is clamped to the number of rows)."""
    data = np.asarray(rows, dtype=np.float64)
    data = data / np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-30)
    groups = max(1, min(groups, len(data)))
    centres = [0]
    for _ in range(1, groups):
        distance = np.min(((data[:, None, :] - data[centres][None, :, :]) ** 2).sum(-1), axis=1)
        centres.append(int(np.argmax(distance)))
    centre = data[centres].copy()
    assignment = np.zeros(len(data), dtype=np.int64)
    for _ in range(iterations):
        distance = ((data[:, None, :] - centre[None, :, :]) ** 2).sum(-1)
        assignment = np.argmin(distance, axis=1)
        # The initial centres are data rows, so each keeps at least itself unless another row
        # is equally close; refill an emptied group with the row farthest from its centre.
        for g in range(groups):
            if not np.any(assignment == g):
                far = int(np.argmax(distance[np.arange(len(data)), assignment]))
                assignment[far] = g
        new = np.stack([data[assignment == g].mean(axis=0) for g in range(groups)])
        if np.allclose(new, centre):
            break
        centre = new
    return assignment


def less_scores(snapshot: Any, train_sets: Sequence[str], validation_sets: Sequence[str],
                subtasks: Mapping[str, int], weights: Sequence[float]) -> tuple[list[str], np.ndarray]:
    """LESS scores of every row of ``train_sets[0]``'s ids: ``Σ_c w_c max_s mean_{v∈s} cos(t_c, v_c)``.

    ``subtasks`` maps each validation row id to its subtask. The engine's cosine search gives
    ``cos(t, m_s)`` for a query vector ``m_s``; with ``m_s`` the mean of the subtask's
    *unit-normalised* validation rows, ``mean_{v∈s} cos(t, v) = ⟨t̂, m_s⟩ = cos(t, m_s) · ‖m_s‖``,
    so one exact query per (checkpoint, subtask) yields the mean cosine exactly (no equal-size
    subtasks needed, unlike LESS's reshape). ``Snapshot.query(query_set=..., aggregate="max")``
    would give the max over single validation rows instead, which is not LESS's score."""
    if not (len(train_sets) == len(validation_sets) == len(weights)) or not train_sets:
        raise ValueError(f"less_scores: expected as many train sets, validation sets and weights (≥ 1), found "
                         f"{len(train_sets)}, {len(validation_sets)}, {len(weights)}")
    groups = sorted(set(subtasks.values()))
    ids: list[str] | None = None
    total: np.ndarray | None = None
    for train_set, validation_set, weight in zip(train_sets, validation_sets, weights):
        validation_ids = snapshot.ids(validation_set)
        unknown = [i for i in validation_ids if i not in subtasks]
        if unknown:
            raise ValueError(f"less_scores: validation rows {unknown[:3]} of {validation_set!r} have no subtask")
        rows = np.asarray(snapshot.rows(validation_set), dtype=np.float64)
        unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-30)
        membership = np.array([subtasks[i] for i in validation_ids])
        means = np.stack([unit[membership == g].mean(axis=0) for g in groups])
        norms = np.linalg.norm(means, axis=1)
        count = snapshot.info(train_set).rows
        result = snapshot.query(train_set, vectors=means.astype(np.float32), metric="cosine", k=count,
                                index="exact", annotations=False)
        order = snapshot.ids(train_set)
        position = {row_id: p for p, row_id in enumerate(order)}
        per_group = np.full((len(groups), len(order)), np.nan)
        for g, hits in enumerate(result.lists):
            for hit in hits:
                per_group[g, position[hit.id]] = hit.score * norms[g]
        if np.isnan(per_group).any():
            raise RuntimeError(f"less_scores: the cosine search over {train_set!r} did not return every row")
        if ids is None:
            ids, total = order, np.zeros(len(order))
        elif order != ids:
            raise ValueError(f"less_scores: {train_set!r} holds other ids (or another order) than {train_sets[0]!r}")
        total = total + weight * per_group.max(axis=0)
    assert ids is not None and total is not None
    return ids, total


def _numpy_scores(snapshot: Any, train_sets: Sequence[str], validation_sets: Sequence[str],
                  subtasks: Mapping[str, int], weights: Sequence[float]) -> np.ndarray:
    """The same score from the stored rows in float64 numpy: a cross-check of the engine path."""
    total = 0.0
    for train_set, validation_set, weight in zip(train_sets, validation_sets, weights):
        t = np.asarray(snapshot.rows(train_set), dtype=np.float64)
        v = np.asarray(snapshot.rows(validation_set), dtype=np.float64)
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        membership = np.array([subtasks[i] for i in snapshot.ids(validation_set)])
        cosines = t @ v.T
        total = total + weight * np.stack([cosines[:, membership == g].mean(axis=1)
                                           for g in sorted(set(membership.tolist()))]).max(axis=0)
    return np.asarray(total)


def _summary(values: Sequence[float]) -> dict[str, Any]:
    from ..report import mean_se
    mean, se = mean_se(values)
    return {"per_seed": [float(v) for v in values], "mean": mean, "se": se}


def run(setup: Any, *, log: Callable[[str], None] = print) -> dict:
    """Warmup, per-checkpoint sketches, LESS scores, top-K selection, and retraining of the base
    on LESS / random / the whole pool once per seed (seeds vary the retraining batch order and
    the random selection; the warmup and the LESS selection are fixed by the store's seed)."""
    import torch

    from ..model import collect_sketches, perplexity, train
    from .select import retrain

    started = time.time()
    config = setup.config
    settings = SETTINGS.get(config.name, SETTINGS["default"])
    held_out = setup.held_out
    target = list(setup.eval_docs[held_out])
    n_validation = min(settings["validation"], len(target) // 2)
    if n_validation < 2:
        raise ValueError(f"less: the held-out source {held_out!r} has {len(target)} evaluation documents; "
                         "expected at least 4 (half for validation, half for evaluation)")
    validation, evaluation = target[:n_validation], target[n_validation:]
    snapshot = setup.store.snapshot()
    existing = set(snapshot.sets)
    snapshot.close()
    names = [(f"less-ckpt{c}", f"less-val{c}") for c in range(settings["checkpoints"])]
    clash = [n for pair in names for n in pair if n in existing]
    if clash:
        raise ValueError(f"less: the store already holds sets {clash}: run LESS once per prepared store")

    # LESS warmup: a random share of the pool, one pass per checkpoint, AdamW kept across checkpoints
    # so its state (exp_avg, exp_avg_sq) preconditions the train gradients.
    generator = np.random.default_rng(config.sketch_seed)
    warm_count = max(config.batch, int(round(settings["warmup_fraction"] * len(setup.pool))))
    warm_docs = [setup.pool[i] for i in sorted(generator.choice(len(setup.pool), size=min(warm_count, len(setup.pool)),
                                                                 replace=False))]
    model = setup.model(setup.base)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    steps_per_pass = max(1, math.ceil(len(warm_docs) / config.batch))
    weights: list[float] = []
    for checkpoint, (train_set, validation_set) in enumerate(names):
        train(model, warm_docs, steps=steps_per_pass, batch=config.batch, lr=config.lr,
              seed=config.sketch_seed + 1 + checkpoint, optimizer=optimizer)
        weights.append(float(optimizer.param_groups[0]["lr"]))
        collect_sketches(model, setup.store, train_set, setup.pool, seed=config.sketch_seed, k=config.sketch_k,
                         batch=settings["sketch_batch"], precondition=optimizer)
        collect_sketches(model, setup.store, validation_set, validation, seed=config.sketch_seed, k=config.sketch_k,
                         batch=settings["sketch_batch"])
        log(f"less: checkpoint {checkpoint}: {steps_per_pass} warmup steps on {len(warm_docs)} documents, "
            f"sketches stored ({time.time() - started:.1f}s)")
    del model, optimizer

    snapshot = setup.store.snapshot()
    try:
        last_validation = np.asarray(snapshot.rows(names[-1][1]), dtype=np.float64)
        validation_ids = snapshot.ids(names[-1][1])
        groups = kmeans_groups(last_validation, settings["subtasks"])
        subtasks = {row_id: int(g) for row_id, g in zip(validation_ids, groups)}
        train_sets = [n for n, _ in names]
        validation_sets = [n for _, n in names]
        ids, scores = less_scores(snapshot, train_sets, validation_sets, subtasks, weights)
        check = _numpy_scores(snapshot, train_sets, validation_sets, subtasks, weights)
    finally:
        snapshot.close()
    engine_error = float(np.max(np.abs(scores - check)) / max(1e-30, float(np.max(np.abs(check)))))
    log(f"less: scores of {len(ids)} pool documents; engine vs numpy float64 max relative error {engine_error:.2e}")

    by_id = {document.id: document for document in setup.pool}
    count = config.select_k
    retrain_steps = min(config.retrain_steps, settings["max_retrain_steps"])
    ranked = np.argsort(-scores, kind="stable")
    chosen_ids = [ids[i] for i in ranked[:count]]
    less_docs = [by_id[i] for i in chosen_ids]
    share = sum(d.source == held_out for d in less_docs) / len(less_docs)
    other_sources = [s for s in setup.eval_docs if s != held_out]

    others = {source: setup.eval_docs[source] for source in other_sources}
    figures: dict[str, dict[str, list[float]]] = {name: {"held_out": [], "final": [], "other": [], "share": []}
                                                   for name in ("less", "random", "full pool")}
    for seed in config.seeds:
        random_docs = [setup.pool[i] for i in np.random.default_rng(seed).choice(len(setup.pool), size=count,
                                                                                  replace=False)]
        for name, documents in (("less", less_docs), ("random", random_docs), ("full pool", list(setup.pool))):
            result = retrain(setup, documents, seed=seed, target=evaluation, others=others, steps=retrain_steps)
            figures[name]["held_out"].append(result["best"])
            figures[name]["final"].append(result["final"])
            figures[name]["other"].append(result["other"])
            figures[name]["share"].append(sum(d.source == held_out for d in documents) / len(documents))
        log(f"less: seed {seed}: held-out perplexity (best) less {figures['less']['held_out'][-1]:.3f}, random "
            f"{figures['random']['held_out'][-1]:.3f}, full pool {figures['full pool']['held_out'][-1]:.3f} "
            f"({time.time() - started:.1f}s)")
    base_model = setup.model(setup.base)
    outcome = {
        "name": NAME, "paper": PAPER, "size": config.name, "seeds": list(config.seeds), "k": count,
        "pool_size": len(setup.pool), "held_out": held_out,
        "pool_held_out_share": sum(d.source == held_out for d in setup.pool) / len(setup.pool),
        "validation_docs": n_validation, "evaluation_docs": len(evaluation),
        "subtasks": int(groups.max()) + 1, "subtask_sizes": np.bincount(groups).tolist(),
        "checkpoints": len(names), "checkpoint_weights": weights, "warmup_docs": len(warm_docs),
        "warmup_steps_per_checkpoint": steps_per_pass, "sets": [n for pair in names for n in pair],
        "engine_vs_numpy_relative_error": engine_error, "retrain_steps": retrain_steps,
        "config_retrain_steps": config.retrain_steps,
        "selected_share": share,
        "base_perplexity": {"held_out": perplexity(base_model, evaluation)},
        "expert_perplexity": {"held_out": perplexity(setup.model(setup.expert), evaluation)},
        "methods": {name: {"held_out_perplexity": _summary(f["held_out"]), "final_perplexity": _summary(f["final"]),
                           "other_perplexity": _summary(f["other"]),
                           "held_out_share": _summary(f["share"])} for name, f in figures.items()},
        "seconds": 0.0,
    }
    outcome["seconds"] = time.time() - started
    log(f"less: done in {outcome['seconds']:.1f}s")
    return outcome


def report(outcome: dict, rep: Any) -> None:
    """The LESS section: setting, figures, a bar chart, and what was and was not reproduced."""
    from ..report import format_mean_se

    held_out = outcome["held_out"]
    methods = outcome["methods"]
    rep.heading(TITLE)
    rep.paragraph(
        f"Paper: {PAPER}. Here: {outcome['validation_docs']} evaluation documents of {held_out!r} are the "
        f"validation set, grouped into {outcome['subtasks']} subtasks by k-means on their normalised sketches "
        f"(sizes {outcome['subtask_sizes']}); the other {outcome['evaluation_docs']} are the evaluation set. "
        f"Warmup as in LESS: the base model trained with AdamW on a random {outcome['warmup_docs']} pool documents "
        f"(~5%), {outcome['warmup_steps_per_checkpoint']} step(s) (one pass) per checkpoint, "
        f"{outcome['checkpoints']} checkpoints, constant learning rate (so the checkpoint weights lr_c are equal). "
        f"Pool gradients are Adam-preconditioned (LESS's feature m'/√(v'+ε)), validation gradients plain; both "
        f"with the same LoGra projection, stored as sets {', '.join(outcome['sets'])}. Score = Σ_c lr_c · max over "
        f"subtasks of the mean cosine, from the engine's exact cosine search (max relative difference from a "
        f"float64 numpy computation {outcome['engine_vs_numpy_relative_error']:.1e}). Top K = {outcome['k']} of "
        f"{outcome['pool_size']} ({100 * outcome['k'] / outcome['pool_size']:.0f}%) vs random K vs the whole "
        f"pool, each retrained from the base for {outcome['retrain_steps']} steps (figure: best target perplexity, checked "
        f"every {max(1, outcome['retrain_steps'] // 10)} step(s) during retraining, as the paper's early stopping; the end-of-retraining one beside it); "
        f"seeds {outcome['seeds']} vary "
        f"the retraining order and the random selection.")
    rows = [["base (no retraining)", f"{outcome['base_perplexity']['held_out']:.3f}", "", "", ""]]
    for name in ("random", "less", "full pool"):
        f = methods[name]
        rows.append([name, format_mean_se(f["held_out_perplexity"]["mean"], f["held_out_perplexity"]["se"]),
                     format_mean_se(f["final_perplexity"]["mean"], f["final_perplexity"]["se"]),
                     format_mean_se(f["held_out_share"]["mean"], f["held_out_share"]["se"], 2),
                     format_mean_se(f["other_perplexity"]["mean"], f["other_perplexity"]["se"])])
    rows.append(["expert", f"{outcome['expert_perplexity']['held_out']:.3f}", "", "", ""])
    rep.table(["training data", f"{held_out} perplexity (evaluation documents, best)", "at the end of retraining",
               f"share from {held_out} (pool {outcome['pool_held_out_share']:.2f})", "mean perplexity, other sources"],
              rows)
    rep.bars(f"{held_out} perplexity after retraining (mean ± SE over seeds)",
             [(name, methods[name]["held_out_perplexity"]["mean"], methods[name]["held_out_perplexity"]["se"])
              for name in ("random", "less", "full pool")],
             reference=("expert", outcome["expert_perplexity"]["held_out"]))
    less = methods["less"]["held_out_perplexity"]
    full = methods["full pool"]["held_out_perplexity"]
    rand = methods["random"]["held_out_perplexity"]
    verdict = []
    if less["mean"] < full["mean"]:
        verdict.append(f"LESS's top {100 * outcome['k'] / outcome['pool_size']:.0f}% beats the whole pool on the "
                       f"target ({less['mean']:.3f} vs {full['mean']:.3f}): the headline's direction reproduces.")
    else:
        verdict.append(f"LESS's selection does not beat the whole pool on the target ({less['mean']:.3f} vs "
                       f"{full['mean']:.3f}): the headline did not reproduce here.")
    verdict.append(f"Against random K: {less['mean']:.3f} vs {rand['mean']:.3f}.")
    verdict.append("Not reproduced: LoRA warmup of a 7B model, instruction-tuning data and benchmark accuracies "
                   "(MMLU, TydiQA, BBH). Every retraining here has the same step budget, so the whole pool is seen for fewer "
                   "passes than the selection; the paper trains both for the same number of epochs (the full set "
                   "for ~20× more steps).")
    rep.paragraph(" ".join(verdict))
