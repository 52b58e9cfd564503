"""Second opinions on the study's detector-aware attack: independent penalty-method attacks (`attacks.penalty`) on the
audit's images, for every model and attacked detector the study attacks and every linf budget.

Each opinion runs on the images the study's attack did not evade with (elsewhere it cannot find more), and its evasions
there are put beside the study's; the check fails when an opinion evades on more of them than `audit.aware_tolerance`
of the images. The opinions are yardsticks: nothing of the study's attack is
tuned on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ...audit_prose import check_row
from ...attacks import through_grid
from ...attacks.penalty import multitarget_penalty_pgd, penalty_aware_pgd
from ...models import predict
from ..context import SeedContext
from .aware import aware_score
from .batching import images_and_seconds

# Each opinion: (its attack, its settings, its steps as a share of audit.second_opinion_steps). Their own settings, not the
# study's: more steps than its attack, their own starts (the clean image, a random point of the ball) instead of its
# plain-PGD and donor starts, and the multi-targeted run's three targets cost it half the steps.
OPINIONS = {
    "penalty": (penalty_aware_pgd, {"restarts": 2}, 1.0),
    "multitarget penalty": (multitarget_penalty_pgd, {"targets": 3}, 0.5),
}


def flags_of(ctx: SeedContext, target: str, name: str):
    """images -> which of them detector `name` of `target`'s guard flags (N,)."""
    guard = ctx.guards[target]
    return lambda x: ~(np.asarray(guard.score_all(x)[name]) <= guard.thresholds[name])


def evades(ctx: SeedContext, target: str, flags, x_adv: torch.Tensor) -> np.ndarray:
    """Images the model got right, x_adv makes wrong, and `flags` (images -> flagged (N,)) passes."""
    wrong = predict(ctx.models[target], x_adv).numpy() != ctx.y.numpy()
    return (ctx.clean_pred[target] == ctx.y.numpy()) & wrong & ~np.asarray(flags(x_adv), dtype=bool)


def evaded(ctx: SeedContext, target: str, name: str, x_adv: torch.Tensor) -> np.ndarray:
    """Images the model got right, x_adv makes wrong, and detector `name` does not flag."""
    return evades(ctx, target, flags_of(ctx, target, name), x_adv)


def opinion_evasions(ctx: SeedContext, target: str, name: str, opinion: str, standing: dict) -> dict:
    """{eps: images (bool, over ctx's images) that one second opinion evades detector `name` of `target` with}, run only
    where the study's attack did not evade (`standing`: {eps: bool mask}): elsewhere an opinion cannot find more than the study."""
    guard = ctx.guards[target]
    key = ctx.key(target, detector=ctx.keys[guard.name], attacked=name, threshold=guard.thresholds[name], opinion=opinion)
    defender = Defender(aware_score(guard, name), guard.thresholds[name], flags_of(ctx, target, name))
    return run_opinion(ctx, target, opinion, standing, defender=defender, stage=(f"{target}-{opinion.replace(' ', '-')}-{name}", key),
                       generator=ctx.generator("second-opinion", opinion, target, name))


@dataclass(frozen=True)
class Defender:
    """What a second opinion attacks: a differentiable score and its threshold, and `flags` (images -> flagged (N,)),
    the defence that judges the result (the score at its threshold, or more detectors than the attack descends)."""

    score: Callable
    threshold: float
    flags: Callable


def run_opinion(ctx: SeedContext, target: str, opinion: str, standing: dict, *, defender: Defender, stage: tuple[str, dict],
                generator, levels: int | None = None) -> dict:
    """{eps: images one opinion (`OPINIONS`) makes wrong and `defender.flags` passes}, run against the defender's score
    and threshold only on the (image, budget) pairs of `standing`, all in one batch, cached as one stage (label, key) keyed
    also by those pairs. With `levels`, through the rounding to that grid (`attacks.through_grid`)."""
    label, key = stage
    attack, settings, factor = OPINIONS[opinion]
    settings = {"steps": max(1, round(factor * ctx.cfg.audit.second_opinion_steps)), **settings}
    model, budgets = ctx.models[target], sorted(standing)
    pairs = [(e, int(i)) for e in budgets for i in np.flatnonzero(standing[e])]
    out = {e: np.zeros(len(ctx.x), dtype=bool) for e in budgets}
    if not pairs:
        return out
    idx = torch.tensor([i for _, i in pairs])

    def compute() -> dict:
        x, y = ctx.x[idx].to(ctx.device), ctx.y[idx].to(ctx.device)
        eps = torch.tensor([e for e, _ in pairs], dtype=x.dtype, device=x.device)
        kwargs = {"score": defender.score, "threshold": defender.threshold, "eps": eps, "generator": generator, **settings}
        x_adv = attack(model, x, y, **kwargs) if levels is None else through_grid(attack, model, x, y, levels=levels, **kwargs)
        return {"x_adv": x_adv.cpu().numpy()}

    x_adv = torch.from_numpy(ctx.stage(label, {**key, **settings, "pairs": pairs}, compute)["x_adv"])
    hits = (predict(model, x_adv) != ctx.y[idx]).numpy() & ~np.asarray(defender.flags(x_adv), dtype=bool)
    for (e, i), hit in zip(pairs, hits.tolist()):
        out[e][i] = hit
    return out


def opinion_check(seed: int, check: str, target: str, per_eps: list[dict], n: int, tolerance: float) -> dict:
    """The audit row of one model's second opinions: `per_eps` [{eps, study, <opinion>: evasions only it found}]; it fails
    when an opinion finds more than `tolerance` of the n images at some budget."""
    worst = max(r[o] for r in per_eps for o in OPINIONS)
    return check_row(seed, check, target, worst <= tolerance * n, "second_opinions", n=n, opinions=list(OPINIONS),
                     tolerance=tolerance, per_eps=per_eps)


def opinion_counts(sub: SeedContext, aware: dict) -> list[dict]:
    """Per model, attacked detector and budget: images the study's attack (`aware`: {(target, detector): {eps: stage}}, as
    `adaptive_attacks` returns them) evades with, and the images each opinion evades with that the study's did not."""
    rows = []
    for (target, name), study in aware.items():
        correct = sub.clean_pred[target] == sub.y.numpy()
        mine = {eps: evaded(sub, target, name, images_and_seconds(stage)[0]) for eps, stage in study.items()}
        opinions = {o: opinion_evasions(sub, target, name, o, {e: correct & ~m for e, m in mine.items()}) for o in OPINIONS}
        for eps in study:
            rows.append({"seed": sub.seed, "target": target, "attacked_detector": name, "eps": eps, "n": len(sub.x),
                         "study": int(mine[eps].sum()), **{o: int(found[eps].sum()) for o, found in opinions.items()}})
    return rows


def second_opinion_checks(ctx: SeedContext, aware: dict) -> list[dict]:
    """One check per model and attacked detector: at no budget does a second opinion evade on more images than the study's
    attack by more than `audit.aware_tolerance` of the audit's images; the detail gives every number."""
    if not ctx.cfg.audit.second_opinion_steps:
        return []
    sub = ctx.subset(ctx.cfg.attacks.expensive_examples)
    tol, checks, rows = ctx.cfg.audit.aware_tolerance, [], opinion_counts(sub, aware)
    for target, name in aware:
        mine = [r for r in rows if r["target"] == target and r["attacked_detector"] == name]
        checks.append(opinion_check(ctx.seed, f"second opinions: no penalty-method attack evades {name} on more images than the "
                                    "study's attack by more than the tolerance", target,
                                    [{"eps": r["eps"], "study": r["study"], **{o: r[o] for o in OPINIONS}} for r in mine],
                                    mine[0]["n"], tol))
    return checks
