"""SELECT on the language model: recover the expert's finetuning data from its weights.

The expert is the base model finetuned on one source held out of the base mix. The pool (every
source, the held-out one a small share) is sketched at the expert checkpoint; the query is the
stored delta "finetune" (expert − base) projected with the pool set's projection and negated
(SELECT's base − finetuned direction: an SGD step moves against the gradient). Each strategy
(greedy, greedy-batched, top-k, random) picks K pool documents through ``Snapshot.select``; the
base model is retrained on each selection and evaluated on the held-out source's evaluation
documents. The headline figure is the share of the random → expert perplexity gap closed.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Sequence

NAME = "select"
TITLE = "SELECT: recovering the finetuning data from weights"
PAPER = "MSMARCO perplexity 3.3 (random) → 2.3 (SELECT) vs 2.0 (expert), Morris et al. 2025"

#: Per size: the strategies run, the greedy-batched reset interval (0 = the config's batch), and
#: max_retrain_steps, a cap on the config's retrain_steps that keeps the experiment in its time
#: budget (5 selections × seeds retrainings; default ≤ 4 min on 2 cores).
SETTINGS: dict[str, dict[str, Any]] = {
    "small": {"strategies": ("greedy", "greedy-batched", "top-k", "random"), "batch": 0, "oracle": True,
              "max_retrain_steps": 30},
    "default": {"strategies": ("greedy", "greedy-batched", "top-k", "random"), "batch": 0, "oracle": True,
                "max_retrain_steps": 40},
    "full": {"strategies": ("greedy", "greedy-batched", "top-k", "random"), "batch": 0, "oracle": True,
             "max_retrain_steps": 200},
}

#: The paper's MSMARCO figures (Llama-3.2-3B, K = 5000; algorithms.md §1(d)).
PAPER_PERPLEXITY = {"random": 3.31, "greedy": 2.30, "greedy-batched": 2.67, "top-k": 9.93, "expert": 2.0}


def gap_closed(random_value: float, selected_value: float, expert_value: float) -> float:
    """Share of the random → expert gap that a selection closes:
    ``(random − selected) / (random − expert)``; 1 = as good as the expert, 0 = no better than
    random, negative = worse than random. NaN when random and expert coincide (no gap to close)."""
    gap = random_value - expert_value
    if gap == 0 or not math.isfinite(gap):
        return float("nan")
    return (random_value - selected_value) / gap


def retrain(setup: Any, documents: Sequence[Any], *, seed: int, target: Sequence[Any],
            others: Mapping[str, Sequence[Any]], steps: int | None = None, checks: int = 10) -> dict[str, Any]:
    """Retrains a copy of the base on ``documents`` for ``retrain_steps`` steps (seeded batch order)
    (or ``steps``) and measures target perplexity ``checks`` times along the way. Like the paper's evaluation
    (early stopping, best eval loss), the headline figure is the best target perplexity seen;
    the final one is kept too. A retraining on K documents for a fixed number of steps can pass
    over them many times and overfit, which the final figure shows and the best one does not.
    ``others``: per source, documents evaluated at the best point (did the selection hurt them?)."""
    from ..model import perplexity, train

    config = setup.config
    model = setup.model(setup.base)
    steps = config.retrain_steps if steps is None else steps
    if steps < 1:
        raise ValueError(f"retrain: retrain_steps must be >= 1, found {steps}")
    every = max(1, steps // max(1, checks))
    # The base itself (step 0) is not a candidate: the figure is of a model retrained on the selection.
    best: dict[str, Any] = {"perplexity": math.inf, "step": 0, "state": None}
    history: list[tuple[int, float]] = []

    def on_step(step: int, batch: Sequence[Any], loss: float) -> None:
        if (step + 1) % every == 0 or step + 1 == steps:
            value = perplexity(model, target)
            model.train()
            history.append((step + 1, value))
            if value < best["perplexity"]:
                best.update(perplexity=value, step=step + 1,
                            state={k: v.detach().clone() for k, v in model.state_dict().items()})

    train(model, list(documents), steps=steps, batch=config.batch, lr=config.lr, seed=seed, on_step=on_step)
    final = history[-1][1]
    if best["state"] is not None:          # None only if every check was NaN
        model.load_state_dict(best["state"])
    other = {source: perplexity(model, docs) for source, docs in others.items()}
    return {"best": best["perplexity"], "best_step": best["step"], "final": final, "history": history,
            "other": float(sum(other.values()) / max(1, len(other)))}


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    from ..report import mean_se
    finite = [v for v in values if math.isfinite(v)]
    return mean_se(finite) if finite else (float("nan"), float("nan"))


def _summary(values: Sequence[float]) -> dict[str, Any]:
    mean, se = _mean_se(values)
    return {"per_seed": [float(v) for v in values], "mean": mean, "se": se}


def run(setup: Any, *, log: Callable[[str], None] = print) -> dict:
    """Selects K pool documents with each strategy, retrains the base on them once per seed and
    measures perplexities. Greedy, greedy-batched and top-k selections are deterministic given
    the store; the seeds vary the retraining batch order, and the random selection itself."""
    started = time.time()
    config = setup.config
    settings = SETTINGS.get(config.name, SETTINGS["default"])
    held_out = setup.held_out
    count = config.select_k
    batch_reset = settings["batch"] or config.batch
    retrain_steps = min(config.retrain_steps, settings["max_retrain_steps"])
    by_id = {document.id: document for document in setup.pool}
    pool_held_out = [document for document in setup.pool if document.source == held_out]
    snapshot = setup.store.snapshot()
    try:
        selections: dict[str, list[list[str]]] = {}
        for strategy in settings["strategies"]:
            if strategy == "random":
                selections[strategy] = [snapshot.select(setup.pool_set, delta=setup.delta, negate=True, count=count,
                                                        method="random", seed=seed).ids for seed in config.seeds]
            else:
                ids = snapshot.select(setup.pool_set, delta=setup.delta, negate=True, count=count, method=strategy,
                                      batch=batch_reset if strategy == "greedy-batched" else 0).ids
                selections[strategy] = [ids] * len(config.seeds)
    finally:
        snapshot.close()
    if settings["oracle"] and len(pool_held_out) >= count / 2:
        selections["oracle"] = [[document.id for document in pool_held_out]] * len(config.seeds)
    missing = {i for lists in selections.values() for ids in lists for i in ids if i not in by_id}
    if missing:
        raise ValueError(f"select: the pool set {setup.pool_set!r} holds ids that are not pool documents, "
                         f"e.g. {sorted(missing)[:3]}: expected the sketch rows' ids to be Document.id")
    log(f"select: K = {count} of {len(setup.pool)} pool documents "
        f"({len(pool_held_out)} from {held_out!r}); selections in {time.time() - started:.1f}s")

    base_model = setup.model(setup.base)
    base_ppl = setup.perplexities(base_model)
    expert_ppl = setup.perplexities(setup.model(setup.expert))
    del base_model
    other_sources = [source for source in setup.eval_docs if source != held_out]

    others = {source: setup.eval_docs[source] for source in other_sources}
    per_strategy: dict[str, dict[str, Any]] = {}
    for strategy, lists in selections.items():
        held_out_ppl, final_ppl, best_steps, other_ppl, shares = [], [], [], [], []
        for seed, ids in zip(config.seeds, lists):
            documents = [by_id[i] for i in ids]
            result = retrain(setup, documents, seed=seed, target=setup.eval_docs[held_out], others=others,
                             steps=retrain_steps)
            held_out_ppl.append(result["best"])
            final_ppl.append(result["final"])
            best_steps.append(result["best_step"])
            other_ppl.append(result["other"])
            shares.append(sum(document.source == held_out for document in documents) / len(documents))
        per_strategy[strategy] = {"held_out_perplexity": _summary(held_out_ppl),
                                  "final_perplexity": _summary(final_ppl), "best_step": best_steps,
                                  "other_perplexity": _summary(other_ppl),
                                  "held_out_share": _summary(shares),
                                  "selected": len(lists[0])}
        log(f"select: {strategy}: held-out perplexity {per_strategy[strategy]['held_out_perplexity']['mean']:.3f} "
            f"(best), {per_strategy[strategy]['final_perplexity']['mean']:.3f} (final); share from {held_out!r} "
            f"{per_strategy[strategy]['held_out_share']['mean']:.2f} ({time.time() - started:.1f}s)")

    random_ppl = per_strategy["random"]["held_out_perplexity"]["per_seed"]
    expert_value = expert_ppl[held_out]
    for strategy, figures in per_strategy.items():
        closed = [gap_closed(r, s, expert_value)
                  for r, s in zip(random_ppl, figures["held_out_perplexity"]["per_seed"])]
        figures["gap_closed"] = _summary(closed)
    outcome = {
        "name": NAME, "paper": PAPER, "size": config.name, "seeds": list(config.seeds), "k": count,
        "pool_size": len(setup.pool), "held_out": held_out,
        "pool_held_out_share": len(pool_held_out) / len(setup.pool),
        "retrain_steps": retrain_steps, "config_retrain_steps": config.retrain_steps, "batch_reset": batch_reset,
        "base_perplexity": {"held_out": base_ppl[held_out],
                            "other": sum(base_ppl[s] for s in other_sources) / max(1, len(other_sources))},
        "expert_perplexity": {"held_out": expert_value,
                              "other": sum(expert_ppl[s] for s in other_sources) / max(1, len(other_sources))},
        "strategies": per_strategy,
        "seconds": time.time() - started,
    }
    log(f"select: done in {outcome['seconds']:.1f}s")
    return outcome


def report(outcome: dict, rep: Any) -> None:
    """The SELECT section: setting, figures against the paper's, a bar chart, and what did not reproduce."""
    from ..report import format_mean_se

    strategies = outcome["strategies"]
    held_out = outcome["held_out"]
    rep.heading(TITLE)
    rep.paragraph(
        f"Paper: {PAPER}. Here: the expert is the base model finetuned on {held_out!r}, a source held out of the "
        f"base mix. The pool holds {outcome['pool_size']} documents of every source, "
        f"{100 * outcome['pool_held_out_share']:.1f}% from {held_out!r}; each pool document's loss-gradient "
        f"sketch is taken at the expert checkpoint, and the query is the projected delta negated (base − expert). "
        f"Each strategy picks K = {outcome['k']} documents; the base is retrained on them for "
        f"{outcome['retrain_steps']} steps and evaluated on {held_out!r} evaluation documents never trained on, every "
        f"{max(1, outcome['retrain_steps'] // 10)} step(s) during retraining; as in the paper (early stopping, best eval loss) the figure is the best "
        f"perplexity seen, and the perplexity at the end of retraining is given too (a fixed step budget on K "
        f"documents can overfit). "
        f"Seeds {outcome['seeds']} vary the retraining batch order and the random selection; greedy, "
        f"greedy-batched (sum reset every {outcome['batch_reset']} picks) and top-k selections are deterministic "
        f"given the store. 'oracle' retrains on the pool's own {held_out!r} documents. Figures: mean ± standard "
        f"error over seeds.")
    order = [s for s in ("random", "greedy", "greedy-batched", "top-k", "oracle") if s in strategies]
    rows = [["base (no retraining)", f"{outcome['base_perplexity']['held_out']:.3f}", "", "", "",
             f"{outcome['base_perplexity']['other']:.3f}", ""]]
    for strategy in order:
        figures = strategies[strategy]
        paper = PAPER_PERPLEXITY.get(strategy)
        rows.append([strategy,
                     format_mean_se(figures["held_out_perplexity"]["mean"], figures["held_out_perplexity"]["se"]),
                     format_mean_se(figures["final_perplexity"]["mean"], figures["final_perplexity"]["se"]),
                     format_mean_se(figures["gap_closed"]["mean"], figures["gap_closed"]["se"], 2),
                     format_mean_se(figures["held_out_share"]["mean"], figures["held_out_share"]["se"], 2),
                     format_mean_se(figures["other_perplexity"]["mean"], figures["other_perplexity"]["se"]),
                     f"{paper:.2f}" if paper is not None else ""])
    rows.append(["expert", f"{outcome['expert_perplexity']['held_out']:.3f}", "", "1", "",
                 f"{outcome['expert_perplexity']['other']:.3f}", f"{PAPER_PERPLEXITY['expert']:.2f}"])
    rep.table(["model", f"{held_out} perplexity (best during retraining)", "at the end of retraining",
               "random → expert gap closed (best)",
               f"share of selection from {held_out} (pool: {outcome['pool_held_out_share']:.2f})",
               "mean perplexity, other sources", "paper's perplexity (MSMARCO)"], rows)
    rep.bars(f"{held_out} evaluation perplexity after retraining on K = {outcome['k']} (mean ± SE over seeds)",
             [(s, strategies[s]["held_out_perplexity"]["mean"], strategies[s]["held_out_perplexity"]["se"])
              for s in order],
             reference=("expert", outcome["expert_perplexity"]["held_out"]))
    greedy = strategies.get("greedy", {}).get("gap_closed", {}).get("mean", float("nan"))
    paper_closed = gap_closed(PAPER_PERPLEXITY["random"], PAPER_PERPLEXITY["greedy"], PAPER_PERPLEXITY["expert"])
    verdict = []
    if not math.isfinite(greedy):
        verdict.append("The greedy gap share could not be computed (random and expert perplexities coincide).")
    elif greedy >= 0.5:
        verdict.append(f"SELECT (greedy) closes {100 * greedy:.0f}% of the random → expert gap (paper: "
                       f"{100 * paper_closed:.0f}%): the headline's direction reproduces.")
    elif greedy > 0:
        verdict.append(f"SELECT (greedy) closes only {100 * greedy:.0f}% of the random → expert gap, against the "
                       f"paper's {100 * paper_closed:.0f}%: better than random, but the size of the effect did not "
                       f"reproduce here.")
    else:
        verdict.append(f"SELECT (greedy) does not beat random here ({100 * greedy:.0f}% of the gap, paper "
                       f"{100 * paper_closed:.0f}%): the headline did not reproduce.")
    oracle = strategies.get("oracle", {}).get("gap_closed", {}).get("mean", float("nan"))
    if math.isfinite(oracle) and math.isfinite(greedy) and oracle > 0:
        verdict.append(f"The ceiling here is lower than the expert: retraining on the pool's own {held_out!r} "
                       f"documents (oracle) closes {100 * oracle:.0f}% of the gap with this budget, so greedy "
                       f"reaches {100 * greedy / oracle:.0f}% of what a perfect selection of the pool reaches.")
    random_mean = strategies["random"]["held_out_perplexity"]["mean"]
    gap = random_mean - outcome["expert_perplexity"]["held_out"]
    if math.isfinite(gap) and abs(gap) < 0.05 * random_mean:
        verdict.append(f"Caution: the random → expert gap is only {gap:.3f} perplexity ({100 * gap / random_mean:.1f}% "
                       "of random's), so the share of it closed is a ratio of small differences; the paper's gap is "
                       "39% of random's perplexity.")
    top = strategies.get("top-k", {}).get("gap_closed", {}).get("mean", float("nan"))
    if math.isfinite(top) and math.isfinite(greedy):
        verdict.append(f"The paper finds top-k far worse than random (9.93 vs 3.31); here top-k closes "
                       f"{100 * top:.0f}% of the gap" + (" — that finding did not reproduce." if top > 0 else "."))
    if outcome["batch_reset"] >= outcome["k"]:
        verdict.append(f"With K = {outcome['k']} ≤ the reset interval {outcome['batch_reset']}, greedy-batched is "
                       "the same selection as greedy here.")
    verdict.append("Scale differs by orders of magnitude (a byte-level model of a few million parameters, "
                   "a pool of hundreds of documents, every Linear sketched instead of the last layer only).")
    rep.paragraph(" ".join(verdict))
