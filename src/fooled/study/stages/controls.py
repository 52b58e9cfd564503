"""The random-perturbation controls: the flag rate an adversarial detection rate must beat."""

from __future__ import annotations

from ... import attacks
from ...config import NORM_OF
from ..context import Made, SeedContext
from .scoring import AttackedSet, scored_rows


def controls(ctx: SeedContext) -> Made:
    """Random perturbations of every budget (sign noise in linf, Gaussian directions in L2) on the attacked images, scored by
    every detector of every target: the flag rate an adversarial detection rate must beat."""
    a, made = ctx.cfg.attacks, Made()
    for norm, budgets in (("linf", a.eps), ("l2", a.l2_eps if any(NORM_OF[n] == "l2" for n in a.names) else ())):
        for eps in budgets:
            x_noise = attacks.random_perturbation(ctx.x.to(ctx.device), eps=eps, norm=norm, generator=ctx.generator("control", norm, eps)).cpu()
            for target in ctx.models:
                made += scored_rows(ctx, AttackedSet(target, f"noise_{norm}", eps, x_noise, norm=norm))
    return made
