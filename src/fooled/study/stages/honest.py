"""The study's answers under one threat model: valid images on the grey-level grid, inside the budget, judged by an oracle.

Rows it adds (results.json "honest"), each with "kind":
  evasion          the detector-aware attacks on the grid (`attacks.grid_aware_attack`, through the rounding), against
                   -log p(x) (every model, started from the continuous attack's output) and against the combined defence
                   (`detection.combined`, every member known to the attack; the models of `attacks.aware_targets`); the
                   continuous -log p(x)-aware attack as it was, kept as the secondary "off_grid" row. Per detector: the
                   evasions, and the VALID evasions (misclassified, unflagged, and the independent oracle still gives the
                   original class). "attacked" names the attack each detector faced.
  matched_control  plain PGD rounded to the grid against -log p(x), and its controls on exactly the images it fooled.
  defence          the combined defence's thresholds and its total validation and test false-positive rates.
  fooling          density-aware fooling images that are confident and unflagged, and how many the oracle calls the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ... import attacks
from ...attacks import stacked
from ...attacks.grid import GRID_VERSION, grid_aware_attack
from ...attacks.matched import matched_counts
from ...detection import calibrate_threshold
from ...detection.combined import CombinedDefence, evaluate, member_scores
from ...models import predict
from ...rundir import Key
from ..context import Made, SeedContext
from .honest_oracle import oracle_labels
from .aware import aware_score
from .batching import batched_stages, images_and_seconds, per_image_budgets
from .fooling import fooling_targets

EXAMPLES = 10  # evading images kept per budget (first seed, -log p(x)-aware attack on the grid) for the oracle figure


def defence_of(ctx: SeedContext, target: str, val_x: torch.Tensor):
    """(combined defence, each member's threshold alone at the study's FPR, validation scores) of a target, or None when
    its guard's density has no log_joint."""
    guard = ctx.guards[target]
    if not hasattr(guard.model, "log_joint"):
        return None
    scores = member_scores(ctx.models[target], guard.model, reference_nll_mean=guard.context.reference_nll_mean, levels=ctx.info.levels)
    defence = CombinedDefence.fit(scores, val_x.to(ctx.device), ctx.cfg.detect.fpr)
    val = evaluate(scores, val_x.to(ctx.device))
    alone = {k: calibrate_threshold(v, ctx.cfg.detect.fpr) for k, v in val.items()}
    return defence, alone


@dataclass(frozen=True)
class GridSet:
    """One detector-aware attack's images on the grid, for the audit's second opinions: what it descended (`attack`),
    the stage key it was cached under, its images per budget, and the flags of the detector it attacked."""

    attack: "GridAttack"
    key: dict
    by_eps: dict
    flags: Callable


@dataclass(frozen=True)
class GridAttack:
    """What a detector-aware attack on the grid descends: the detector `attacked` as (score, threshold), its steps, and
    whether the nearest likely training image of another class is one of its starts."""

    attacked: str
    score: Callable
    threshold: float
    steps: int
    donors: bool


def _grid_stages(sub: SeedContext, target: str, starts: dict, attack: GridAttack, key: dict) -> dict:
    """{eps: on-grid adversarials} of `grid_aware_attack` at every linf budget in one batch, each budget a cached stage."""
    a, model, budgets = sub.cfg.attacks, sub.models[target], sorted(starts)
    attacked, score, threshold, donors = attack.attacked, attack.score, attack.threshold, attack.donors
    settings = a.aware.scaled(attack.steps)
    common = dict(settings=settings, detector=sub.keys[sub.guards[target].name], attacked=attacked, levels=sub.info.levels,
                  batch=budgets, **key)

    def batch() -> dict:
        x, y = sub.x.to(sub.device), sub.y.to(sub.device)
        k = len(budgets)
        start = [torch.cat([starts[e].to(sub.device) for e in budgets])]
        if donors and sub.donors:
            donor = attacks.donor_start(model, x, y, *(t.to(sub.device) for t in sub.donors), score=score, threshold=threshold)
            start.append(stacked(donor, k))
        x_adv = grid_aware_attack(model, stacked(x, k), stacked(y, k), score=score, threshold=threshold, levels=sub.info.levels,
                                  eps=per_image_budgets(budgets, x), starts=start, random_start=False,
                                  generator=sub.generator("grid", target, attacked, tuple(budgets)), **settings.kwargs())
        advs, _ = attacks.best_over_budgets(model, x, y, dict(zip(budgets, x_adv.split(len(x)))), score=score, threshold=threshold)
        return advs

    stages = batched_stages(sub, budgets, lambda eps: (f"{target}-grid-{attacked}-eps{eps:g}", sub.key(target, eps=eps, **common)), batch)
    return {eps: images_and_seconds(stage) for eps, stage in stages.items()}


def _counts(sub: SeedContext, target: str, x_adv: torch.Tensor, committee, detectors: dict) -> tuple[dict, dict]:
    """(counts of the set, per detector its evasions and valid evasions); detectors: name -> images -> flags (N,)."""
    y = sub.y
    pred = predict(sub.models[target], x_adv)
    correct = torch.from_numpy(sub.clean_pred[target] == y.numpy())
    success = correct & (pred != y)
    kept = success & (oracle_labels(committee, x_adv) == y)
    out = {"n": len(y), "n_correct": int(correct.sum()), "n_success": int(success.sum()), "n_oracle_kept": int(kept.sum())}
    per = {}
    for name, flags in detectors.items():
        unflagged = ~torch.as_tensor(np.asarray(flags(x_adv)), dtype=torch.bool)
        per[name] = {"n_evaded": int((success & unflagged).sum()), "n_valid": int((kept & unflagged).sum())}
    return out, per


def _detectors(ctx: SeedContext, target: str, found) -> dict:
    """name -> images -> flags: -log p(x) at its own threshold; with a combined defence, each member alone (its own 5%
    threshold) and the combined defence."""
    guard = ctx.guards[target]
    out = {"nll": lambda x: guard.score(x) > guard.threshold}
    if found is not None:
        defence, alone = found
        for name, t in alone.items():
            if name != "nll":
                out[name] = lambda x, name=name, t=t: evaluate({name: defence.scores[name]}, x.to(ctx.device))[name] > t
        out["combined"] = lambda x: defence.flags(x.to(ctx.device))
    return out


def evasion_rows(ctx: SeedContext, target: str, aware: dict, committee, val_x: torch.Tensor) -> tuple[Made, dict]:
    """The detector-aware attacks of `target` on the grid, and the continuous one off it, as evasion rows (see module doc);
    and the on-grid sets, {(target, attacked): GridSet}, for the audit."""
    a, made, grid_sets = ctx.cfg.attacks, Made(), {}
    sub = ctx.subset(a.expensive_examples)
    found = defence_of(ctx, target, val_x)
    detectors = _detectors(sub, target, found)
    guard = sub.guards[target]
    continuous = {eps: images_and_seconds(stage) for eps, stage in aware[(target, "nll")].items()}  # the detector-aware stage's
    sets = {("nll", "off_grid"): continuous}
    key = {"threshold": guard.threshold, "start_steps": a.adaptive_steps, "donors": len(ctx.donors[0]) if ctx.donors else 0,
           "grid_version": GRID_VERSION}
    nll = GridAttack("nll", aware_score(guard, "nll"), guard.threshold, a.adaptive_steps, donors=False)
    sets[("nll", "on_grid")] = _grid_stages(sub, target, {e: x for e, (x, _) in continuous.items()}, nll, key)
    grid_sets[(target, "nll")] = GridSet(nll, key, {e: x for e, (x, _) in sets[("nll", "on_grid")].items()}, detectors["nll"])
    if found is not None and target in a.aware_targets:
        defence = found[0]
        key = {**key, "members": defence.thresholds, "scales": defence.scales, "grid_start_steps": nll.steps}  # starts: the nll grid set
        combined = GridAttack("combined", defence.score_on_grid, 0.0, a.adaptive_steps, donors=True)
        sets[("combined", "on_grid")] = _grid_stages(sub, target, {e: x for e, (x, _) in sets[("nll", "on_grid")].items()}, combined, key)
        grid_sets[(target, "combined")] = GridSet(combined, key, {e: x for e, (x, _) in sets[("combined", "on_grid")].items()},
                                                  detectors["combined"])
        made.rows.append({"seed": ctx.seed, "target": target, "kind": "defence", "members": list(defence.thresholds),
                          "thresholds": defence.thresholds, "member_rate": defence.member_rate, "val_fpr": defence.val_fpr,
                          "test_fpr": float(defence.flags(ctx.x.to(ctx.device)).mean())})
    for (attacked, grid), by_eps in sets.items():
        for eps, (x_adv, seconds) in by_eps.items():
            counts, per = _counts(sub, target, x_adv, committee, detectors)
            made.rows.append({"seed": ctx.seed, "target": target, "kind": "evasion", "attacked": attacked, "grid": grid, "eps": eps,
                              "seconds": seconds, **counts, "detectors": per})
            if ctx.first_seed and attacked == "nll" and grid == "on_grid":
                made.examples.update(_examples(sub, target, eps, x_adv, committee, detectors["nll"]))
    return made, grid_sets


def _examples(sub: SeedContext, target: str, eps: float, x_adv: torch.Tensor, committee, flags) -> dict:
    """The first EXAMPLES misclassified, unflagged images of a set, with their label, prediction and oracle label."""
    pred = predict(sub.models[target], x_adv)
    evading = torch.from_numpy(sub.clean_pred[target] == sub.y.numpy()) & (pred != sub.y) & ~torch.as_tensor(np.asarray(flags(x_adv)))
    idx = torch.nonzero(evading).flatten()[:EXAMPLES]
    name = "grid_aware_nll"
    return {str(Key(sub.seed, target, name, eps, "images")): x_adv[idx].numpy(), str(Key(sub.seed, target, name, eps, "labels")): sub.y[idx].numpy(),
            str(Key(sub.seed, target, name, eps, "pred")): pred[idx].numpy(),
            str(Key(sub.seed, target, name, eps, "oracle")): oracle_labels(committee, x_adv[idx]).numpy()}


def matched_control_rows(ctx: SeedContext, advs: dict) -> Made:
    """Plain PGD rounded to the grid, flagged by -log p(x), beside its controls on exactly the images it fooled."""
    made = Made()
    for target, model in ctx.models.items():
        guard = ctx.guards[target]
        for eps in sorted(ctx.cfg.attacks.eps):
            x_adv = attacks.round_to_grid(advs[(target, "pgd", eps)], ctx.x, levels=ctx.info.levels, eps=eps)
            fooled = torch.from_numpy(ctx.clean_pred[target] == ctx.y.numpy()) & (predict(model, x_adv) != ctx.y)
            counts = matched_counts(lambda x: torch.from_numpy(guard.score(x) > guard.threshold), ctx.x, x_adv, fooled, eps=eps,
                                    levels=ctx.info.levels, generator=torch.Generator().manual_seed(ctx.seed * 7919 + int(eps * 1e4)))
            made.rows.append({"seed": ctx.seed, "target": target, "kind": "matched_control", "attack": "pgd", "grid": "on_grid",
                              "eps": eps, "detector": "nll", **counts})
    return made


def fooling_rows(ctx: SeedContext, fooling: dict, committee) -> Made:
    """Density-aware fooling images: confident and unflagged ones, and those the oracle does not call the target class."""
    f, made = ctx.cfg.fooling, Made()
    targets = fooling_targets(ctx)
    for target in ctx.models:
        guard = ctx.guards[target]
        for method in ("gradient_unflagged", "evolution_unflagged"):
            stage = fooling[(target, method)]  # the fooling stage's
            imgs, conf = torch.from_numpy(stage["images"]), torch.from_numpy(stage["confidence"])
            ok = (conf >= f.confidence) & torch.from_numpy(guard.score(imgs) <= guard.threshold)
            said = oracle_labels(committee, imgs[ok]) == targets[ok]
            made.rows.append({"seed": ctx.seed, "target": target, "kind": "fooling", "method": method, "n": len(targets),
                              "n_unflagged": int(ok.sum()), "n_oracle_target": int(said.sum()), "n_valid": int((~said).sum())})
    return made


def honest_study(ctx: SeedContext, advs: dict, aware: dict, fooling: dict, committee, val_x: torch.Tensor) -> tuple[Made, dict]:
    """Every row of this module for one seed, from plain PGD's adversarials (`advs`), the detector-aware stages (`aware`) and
    the fooling searches (`fooling`); and the on-grid detector-aware sets, {(target, attacked): GridSet}, for the audit."""
    made, grid_sets = matched_control_rows(ctx, advs), {}
    for target in ctx.models:
        rows, sets = evasion_rows(ctx, target, aware, committee, val_x)
        made += rows
        grid_sets.update(sets)
    if fooling:
        made += fooling_rows(ctx, fooling, committee)
    return made, grid_sets
