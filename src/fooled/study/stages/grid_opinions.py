"""Second opinions on the study's detector-aware attacks on the grid: the penalty-method attacks of `second_opinions`, run
through the rounding (`attacks.through_grid`: BPDA, as the study's own grid attack), against what the one-threat-model
stage attacked on the grid (-log p(x) for every model, the combined defence for `attacks.aware_targets`).

As off the grid, each opinion runs only on the images the study's grid attack did not evade with, and the check fails
when an opinion evades on more of them than `audit.aware_tolerance` of the images.
"""

from __future__ import annotations

from ..context import SeedContext
from .second_opinions import OPINIONS, Defender, evades, opinion_check, run_opinion


def _opinion(sub: SeedContext, target: str, attacked: str, grid_set, opinion: str, standing: dict) -> dict:
    """{eps: images one opinion evades with on the grid}, run only where the study's grid attack did not (`standing`)."""
    key = sub.key(target, detector=sub.keys[sub.guards[target].name], attacked=attacked, opinion=opinion, on="grid", **grid_set.key)
    defender = Defender(grid_set.attack.score, grid_set.attack.threshold, grid_set.flags)
    return run_opinion(sub, target, opinion, standing, defender=defender, stage=(f"{target}-grid-{opinion.replace(' ', '-')}-{attacked}", key),
                       generator=sub.generator("grid-opinion", opinion, target, attacked), levels=sub.info.levels)


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
        mine = {eps: evades(sub, target, grid_set.flags, x) for eps, x in sorted(grid_set.by_eps.items())}
        found = {o: _opinion(sub, target, attacked, grid_set, o, {e: correct & ~m for e, m in mine.items()}) for o in OPINIONS}
        per_eps = [{"eps": e, "study": int(m.sum()), **{o: int(found[o][e].sum()) for o in OPINIONS}} for e, m in mine.items()]
        checks.append(opinion_check(ctx.seed, f"second opinions on the grid: no penalty-method attack through the rounding "
                                    f"evades {attacked} on more images than the study's grid attack by more than the tolerance",
                                    target, per_eps, len(sub.x), tol))
    return checks
