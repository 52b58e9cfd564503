"""Detector-aware attacks (Carlini & Wagner 2017): misclassified and not flagged, at every linf budget."""

from __future__ import annotations

import torch

from ... import attacks
from ...attacks import stacked
from ...detection import differentiable_score
from ...detection.detectors import complexity_score
from ..context import Made, SeedContext
from .batching import batched_stages, images_and_seconds, per_image_budgets
from .plain import plain_key
from .scoring import AttackedSet, scored_rows

VERSION = 2  # the detector-aware stages; 2: each budget takes a smaller budget's point where it ranks higher (best_over_budgets)


def aware_score(guard, name: str):
    """The differentiable score a detector-aware attack descends for detector `name` of a guard. The complexity score is
    attacked through BPDA with the compressed length held fixed: its torch form already takes L(x) as a constant, so its
    gradient is that of -log2 p(x) alone, the same as `attacks.bpda` around it (tested) at one flow pass per step."""
    if name != "complexity":
        return differentiable_score(name, guard.model, guard.context)
    levels = guard.context.levels
    return lambda x: complexity_score(guard.model, x, levels)


def aware_attack(ctx: SeedContext, target: str, name: str, eps: float, x_start: torch.Tensor, *, steps=None, restarts=None,
                 label: str = "aware") -> tuple[torch.Tensor, float]:
    """The strongest detector-aware attack on `target` against its guard's detector `name` at linf `eps` (see `aware_stages`),
    cached as a stage. Returns (adversarials, seconds)."""
    return images_and_seconds(aware_stages(ctx, target, name, {eps: x_start}, steps=steps, restarts=restarts, label=label)[eps])


def aware_stages(ctx: SeedContext, target: str, name: str, starts_by_eps: dict, *, steps=None, restarts=None,
                 label: str = "aware") -> dict:
    """The strongest detector-aware attack on `target` against its guard's detector `name` at every linf budget of
    `starts_by_eps` (eps -> plain PGD's output there), all budgets in one batch (one pass through the models per step
    for all of them: on 8x8 images a pass costs about as much for 4 x 48 images as for 48); each budget cached as a stage.
    Per image the best of the detector-as-extra-class PGD and the Lagrangian PGD from plain PGD's output, the nearest
    likely training image of another class (`attacks.donor_start`; a random start when the context has no donors) and, for
    a flow classifier, the latent-space attack; then each budget takes a smaller budget's point where that ranks higher
    (`attacks.best_over_budgets`). Returns {eps: stage}: "x_adv", "rescued" (the images that evade only through a smaller
    budget's point) and "share_seconds", the batch's time shared evenly."""
    a, model, guard = ctx.cfg.attacks, ctx.models[target], ctx.guards[target]
    settings = a.aware.scaled(steps, restarts)
    budgets = sorted(starts_by_eps)
    common = dict(settings=settings, detector=ctx.keys[guard.name], attacked=name, threshold=guard.thresholds[name], batch=budgets,
                  donors=len(ctx.donors[0]) if ctx.donors else 0, version=VERSION)

    def batch() -> dict:
        x, y = ctx.x.to(ctx.device), ctx.y.to(ctx.device)
        n, k = len(x), len(budgets)
        score, threshold = aware_score(guard, name), guard.thresholds[name]
        starts = [torch.cat([starts_by_eps[e].to(ctx.device) for e in budgets])]
        if ctx.donors:  # the nearest likely image of another class, instead of a random start; the same for every eps and the
            # audit's reruns on these images, so scored once per seed (the seed's score memo)
            donor = guard.memo(("donors", target, name, threshold), x, lambda: attacks.donor_start(
                model, x, y, *(t.to(ctx.device) for t in ctx.donors), score=score, threshold=threshold))
            starts.append(stacked(donor, k))
        if target == guard.name and hasattr(model, "encode"):  # a flow classifier guarded by its own density
            starts.append(torch.cat([attacks.latent_attack(model, x, y, eps=e, class_means=ctx.latent_means.get(target), score=score,
                                                           threshold=threshold) for e in budgets]))
        x_adv = attacks.strongest_aware_attack(model, stacked(x, k), stacked(y, k), score=score, threshold=threshold,
                                               eps=per_image_budgets(budgets, x), starts=starts, random_start=not ctx.donors,
                                               generator=ctx.generator(label, target, name, tuple(budgets)), **settings.kwargs())
        advs, rescued = attacks.best_over_budgets(model, x, y, dict(zip(budgets, x_adv.split(n))), score=score, threshold=threshold)
        return {eps: {"x_adv": advs[eps], "rescued": rescued[eps]} for eps in budgets}

    return batched_stages(ctx, budgets, lambda eps: (f"{target}-{label}-{name}-eps{eps:g}",
                                                      ctx.key(target, eps=eps, start=plain_key(ctx, target, "pgd", eps), **common)), batch)


def study_aware_stages(sub: SeedContext, target: str, name: str, advs: dict) -> dict:
    """`aware_stages` as the study runs it on the images of `sub` (the first `expensive_examples`): every linf budget,
    started from plain PGD's output there. {eps: stage} ("x_adv", "rescued", "share_seconds")."""
    return aware_stages(sub, target, name, {eps: advs[(target, "pgd", eps)][: len(sub.x)] for eps in sub.cfg.attacks.eps})


def adaptive_attacks(ctx: SeedContext, advs: dict) -> tuple[Made, dict]:
    """Detector-aware attacks at every linf budget, on the first `expensive_examples` images: -log p(x) against every model, and
    each detector of `attacks.aware_detectors` by its own strongest detector-aware attack against the `attacks.aware_targets`.
    Returns what it made and the stages, {(target, attacked detector): {eps: stage}}, which the label oracle and the audit read."""
    a, made, stages = ctx.cfg.attacks, Made(), {}
    sub = ctx.subset(a.expensive_examples)
    for target in ctx.models:
        # -log p(x) always: the label oracle and the audit read its stages
        names = tuple(dict.fromkeys(("nll",) + a.aware_detectors)) if target in a.aware_targets else ("nll",)
        for name in [d for d in names if d in ctx.guards[target].thresholds]:
            stages[(target, name)] = study_aware_stages(sub, target, name, advs)
            for eps, stage in stages[(target, name)].items():
                x_adv, seconds = images_and_seconds(stage)
                made += scored_rows(sub, AttackedSet(target, "adaptive_pgd", eps, x_adv, seconds, attacked=name))
    return made, stages
