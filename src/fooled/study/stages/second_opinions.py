"""Second opinions on the study's detector-aware attack: independent penalty-method attacks (`attacks.penalty`) on the
audit's images, for every model and attacked detector the study attacks and every linf budget.

Each opinion's evasion is put beside the study's; the check fails when an opinion evades on more images than the study's
attack by more than `audit.aware_tolerance` of the images. The opinions are yardsticks: nothing of the study's attack is
tuned on them.
"""

from __future__ import annotations

import numpy as np
import torch

from ...attacks import stacked
from ...attacks.penalty import multitarget_penalty_pgd, penalty_aware_pgd
from ...models import predict
from ..context import SeedContext
from .aware import aware_score
from .batching import batched_stages, images_and_seconds, per_image_budgets

# Each opinion: (its attack, its settings, its steps as a share of audit.second_opinion_steps). Their own settings, not the
# study's: more steps than its attack, their own starts (the clean image, a random point of the ball) instead of its
# plain-PGD and donor starts, and the multi-targeted run's three targets cost it half the steps.
OPINIONS = {
    "penalty": (penalty_aware_pgd, {"restarts": 2}, 1.0),
    "multitarget penalty": (multitarget_penalty_pgd, {"targets": 3}, 0.5),
}


def evaded(ctx: SeedContext, target: str, name: str, x_adv: torch.Tensor) -> np.ndarray:
    """Images the model got right, x_adv makes wrong, and detector `name` does not flag."""
    guard = ctx.guards[target]
    wrong = predict(ctx.models[target], x_adv).numpy() != ctx.y.numpy()
    unflagged = np.asarray(guard.score_all(x_adv)[name]) <= guard.thresholds[name]
    return (ctx.clean_pred[target] == ctx.y.numpy()) & wrong & unflagged


def opinion_stages(ctx: SeedContext, target: str, name: str, opinion: str) -> dict:
    """{eps: stage} of one second opinion at every linf budget of the study, all budgets in one batch, cached."""
    attack, settings, factor = OPINIONS[opinion]
    settings = {"steps": max(1, round(factor * ctx.cfg.audit.second_opinion_steps)), **settings}
    model, guard, budgets = ctx.models[target], ctx.guards[target], sorted(ctx.cfg.attacks.eps)
    key = {"model": ctx.keys[target], "detector": ctx.keys[guard.name], "attacked": name, "threshold": guard.thresholds[name],
           "opinion": opinion, **settings, "batch": budgets}

    def batch() -> dict:
        x, y, k = ctx.x.to(ctx.device), ctx.y.to(ctx.device), len(budgets)
        x_adv = attack(model, stacked(x, k), stacked(y, k), score=aware_score(guard, name), threshold=guard.thresholds[name],
                       eps=per_image_budgets(budgets, x), generator=ctx.generator("second-opinion", opinion, target, name), **settings)
        return dict(zip(budgets, x_adv.cpu().split(len(x))))

    slug = opinion.replace(" ", "-")
    return batched_stages(ctx, budgets, lambda eps: (f"{target}-{slug}-{name}-eps{eps:g}", {**key, "eps": eps}), batch)


def opinion_counts(sub: SeedContext, aware: dict) -> list[dict]:
    """Per model, attacked detector and budget: images the study's attack (`aware`: {(target, detector): {eps: stage}}, as
    `adaptive_attacks` returns them) evades with, and each opinion's (and seconds)."""
    rows = []
    for (target, name), study in aware.items():
        opinions = {o: opinion_stages(sub, target, name, o) for o in OPINIONS}
        for eps, stage in study.items():
            x_adv, seconds = images_and_seconds(stage)
            row = {"seed": sub.seed, "target": target, "attacked_detector": name, "eps": eps, "n": len(sub.x),
                   "study": int(evaded(sub, target, name, x_adv).sum()), "study_seconds": seconds}
            for o, stages in opinions.items():
                x_o, s_o = images_and_seconds(stages[eps])
                row[o], row[f"{o}_seconds"] = int(evaded(sub, target, name, x_o).sum()), s_o
            rows.append(row)
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
        n = mine[0]["n"]
        worst = max(r[o] - r["study"] for r in mine for o in OPINIONS)
        detail = f"{n} images, evading: " + "; ".join(
            f"eps {r['eps']:g}: study {r['study']}, " + ", ".join(f"{o} {r[o]}" for o in OPINIONS) for r in mine)
        checks.append({"seed": ctx.seed, "check": f"second opinions: no penalty-method attack evades {name} on more images than "
                       "the study's attack by more than the tolerance", "target": target,
                       "passed": bool(worst <= tol * n), "detail": f"{detail} (tolerance {tol:g} of the images)"})
    return checks
