"""Second opinions on the study's detector-aware attacks on the grid: the penalty-method attacks of `second_opinions`, run
through the rounding (`attacks.through_grid`: BPDA, as the study's own grid attack), against what the one-threat-model
stage attacked on the grid (-log p(x) for every model, the combined defence for `attacks.aware_targets`).

As off the grid, each opinion runs only on the images the study's grid attack did not evade with, and the check fails
when an opinion evades on more of them than `audit.aware_tolerance` of the images.
"""

from __future__ import annotations

import numpy as np
import torch

from ...attacks import through_grid
from ...audit_prose import check_row
from ...models import predict
from ..context import SeedContext
from .second_opinions import OPINIONS


def _evaded(model, y: np.ndarray, clean_pred: np.ndarray, flags, x_adv: torch.Tensor) -> np.ndarray:
    """Images the model got right (`clean_pred` == y), x_adv makes wrong, and the attacked detector (`flags`: images ->
    bool (N,)) passes."""
    wrong = predict(model, x_adv).numpy() != y
    return (clean_pred == y) & wrong & ~np.asarray(flags(x_adv), dtype=bool)


def _opinion(sub: SeedContext, target: str, attacked: str, grid_set, opinion: str, standing: dict) -> dict:
    """{eps: images one opinion evades with on the grid}, run only where the study's grid attack did not (`standing`);
    every budget's images in one batch, cached as one stage."""
    attack, settings, factor = OPINIONS[opinion]
    settings = {"steps": max(1, round(factor * sub.cfg.audit.second_opinion_steps)), **settings}
    budgets = sorted(standing)
    pairs = [(e, int(i)) for e in budgets for i in np.flatnonzero(standing[e])]
    out = {e: np.zeros(len(sub.x), dtype=bool) for e in budgets}
    if not pairs:
        return out
    idx = torch.tensor([i for _, i in pairs])
    key = {"model": sub.keys[target], "detector": sub.keys[sub.guards[target].name], "attacked": attacked, "opinion": opinion,
           "on": "grid", **settings, "pairs": pairs, **grid_set.key}

    def compute() -> dict:
        x, y = sub.x[idx].to(sub.device), sub.y[idx].to(sub.device)
        eps = torch.tensor([e for e, _ in pairs], dtype=x.dtype, device=x.device)
        x_adv = through_grid(attack, sub.models[target], x, y, score=grid_set.attack.score, threshold=grid_set.attack.threshold,
                             eps=eps, levels=sub.info.levels, generator=sub.generator("grid-opinion", opinion, target, attacked),
                             **settings)
        return {"x_adv": x_adv.cpu().numpy()}

    stage = sub.stage(f"{target}-grid-{opinion.replace(' ', '-')}-{attacked}", key, compute)
    x_adv = torch.from_numpy(stage["x_adv"])
    rows = idx.numpy()
    found = _evaded(sub.models[target], sub.y.numpy()[rows], sub.clean_pred[target][rows], grid_set.flags, x_adv)
    for (e, i), hit in zip(pairs, found.tolist()):
        out[e][i] = hit
    return out


def grid_opinion_checks(ctx: SeedContext, grid_sets: dict) -> list[dict]:
    """One check per model and attacked detector on the grid (`grid_sets`: {(target, attacked): honest.GridSet}): at no
    budget does a second opinion through the rounding evade on more images than the study's grid attack by more than
    `audit.aware_tolerance` of the audit's images."""
    if not ctx.cfg.audit.second_opinion_steps or not grid_sets:
        return []
    sub = ctx.subset(ctx.cfg.attacks.expensive_examples)
    tol, checks = ctx.cfg.audit.aware_tolerance, []
    for (target, attacked), grid_set in grid_sets.items():
        correct = sub.clean_pred[target] == sub.y.numpy()
        mine = {eps: _evaded(sub.models[target], sub.y.numpy(), sub.clean_pred[target], grid_set.flags, x)
                for eps, x in sorted(grid_set.by_eps.items())}
        found = {o: _opinion(sub, target, attacked, grid_set, o, {e: correct & ~m for e, m in mine.items()}) for o in OPINIONS}
        per_eps = [{"eps": e, "study": int(m.sum()), **{o: int(found[o][e].sum()) for o in OPINIONS}} for e, m in mine.items()]
        worst = max(r[o] for r in per_eps for o in OPINIONS)
        checks.append(check_row(ctx.seed, f"second opinions on the grid: no penalty-method attack through the rounding evades "
                                f"{attacked} on more images than the study's grid attack by more than the tolerance", target,
                                worst <= tol * len(sub.x), "second_opinions", n=len(sub.x), opinions=list(OPINIONS),
                                tolerance=tol, per_eps=per_eps))
    return checks
