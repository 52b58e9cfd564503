"""Detector-aware attack: misclassify AND keep log p(x_adv) at or above the detector's threshold.

A fixed-weight sum of a classification loss and log p(x) trades one goal against the other
and usually reaches neither. Instead:
  phase 1: margin-loss PGD (exactly `pgd(..., loss="margin")`) to misclassify;
  phase 2: from that point, inside the same eps-ball, ascend log p(x) while a hinge with a
           per-example Lagrange weight keeps the margin above `kappa` (examples not yet
           misclassified ascend the margin instead).
Per example the best iterate is kept: misclassified and unflagged (highest log p), else
misclassified (highest log p), else highest margin. The phase-1 result is the first candidate
and is only replaced by a better-ranked iterate, so every example misclassified by phase 1
stays misclassified: the attack is never weaker than margin PGD with the same arguments.
"""

import numbers

import torch

from fooled.attacks._common import (
    ascent_step,
    box,
    check_labels,
    check_norm,
    check_positive,
    frozen,
    l2_norm,
    lexi_better,
    module_of,
    per_example,
    project,
    select,
)
from fooled.attacks.gradient import pgd
from fooled.attacks.losses import margin
from fooled.errors import ConfigError


def adaptive_pgd(
    model,
    x,
    y,
    *,
    log_prob,
    threshold,
    eps,
    steps=100,
    step_size=None,
    norm="linf",
    restarts=1,
    generator=None,
    lambdas=(1.0,),
    kappa=0.1,
    x_start=None,
):
    """Two-phase PGD that misclassifies x while keeping log_prob(x_adv) >= threshold (unflagged).

    log_prob: differentiable callable x -> (N,); inputs with log_prob < threshold are flagged.
    lambdas: initial Lagrange weights of the margin hinge; phase 2 runs once per value from the
    phase-1 point and the best iterate over all runs is kept. If log_prob is an nn.Module or a
    bound method of one, that module is put in eval mode too and restored afterwards.
    x_start: phase 1's result given by the caller (e.g. a stronger PGD's adversarials); phase 2 then
    starts there, so the attack is never weaker than that one.
    """
    if not callable(log_prob):
        raise ConfigError("log_prob must be a callable mapping x (N, C, H, W) to log densities (N,)")
    if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool):
        raise ConfigError(f"threshold must be a float log density, got {threshold!r}")
    lambdas = tuple(lambdas)
    if not lambdas:
        raise ConfigError("lambdas must contain at least one initial Lagrange weight")
    for lam in lambdas:
        check_positive("each of lambdas", lam)
    check_positive("kappa", kappa, allow_zero=True)
    check_norm(norm)
    x1 = pgd(model, x, y, eps=eps, steps=steps if x_start is None else 1, step_size=step_size, norm=norm,
             restarts=restarts, loss="margin", generator=generator)  # validates the rest
    if x_start is not None:
        if x_start.shape != x.shape:
            raise ConfigError(f"x_start must have the shape of x {tuple(x.shape)}, got {tuple(x_start.shape)}")
        x1 = project(x_start.detach().to(x), x.detach(), eps, norm, box(x.detach(), eps) if norm == "linf" else None)
    if eps == 0:
        return x1
    x = x.detach()
    y = check_labels(y, len(x), x.device)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    bounds = box(x, eps) if norm == "linf" else None
    density = module_of(log_prob)
    modules = [model] if density is None or density is model else [model, density]

    def evaluate(x_adv):
        logits = model(x_adv)
        lp = log_prob(x_adv)
        if lp.shape != (len(x),):
            raise ConfigError(f"log_prob must return shape ({len(x)},), got {tuple(lp.shape)}")
        m = margin(logits, y)
        mis = logits.argmax(1) != y
        tier = mis.long() + (mis & (lp >= threshold)).long()
        return lp, m, tier, torch.where(mis, lp, m).detach()

    with frozen(*modules), torch.enable_grad():
        # tier -1 ranks below everything, so the first iterate evaluated (x1) becomes the best
        best_x = x1
        best_tier = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
        best_score = torch.full((len(x),), -torch.inf, dtype=x.dtype, device=x.device)
        for lam0 in lambdas:
            x_adv = x1
            lam = torch.full((len(x),), float(lam0), dtype=x.dtype, device=x.device)
            for i in range(steps + 1):
                x_adv = x_adv.detach().requires_grad_(i < steps)
                lp, m, tier, score = evaluate(x_adv)
                better = lexi_better(tier, score, best_tier, best_score)
                best_x = select(better, x_adv.detach(), best_x)
                best_tier = torch.where(better, tier, best_tier)
                best_score = torch.where(better, score, best_score)
                if i == steps:
                    break
                (g_lp,) = torch.autograd.grad(lp.sum(), x_adv, retain_graph=True)
                (g_m,) = torch.autograd.grad(m.sum(), x_adv)
                # unit directions make the Lagrange weight independent of the two gradient scales
                u_lp = g_lp / per_example(l2_norm(g_lp).clamp_min(1e-12), x)
                u_m = g_m / per_example(l2_norm(g_m).clamp_min(1e-12), x)
                mis = tier > 0
                unsafe = m.detach() <= kappa
                hinge = per_example(lam * unsafe, x) * u_m
                direction = torch.where(per_example(mis, x), u_lp + hinge, u_m)
                lam = torch.where(unsafe, lam * 2, lam * 0.75)
                x_adv = project(ascent_step(x_adv.detach(), direction, step_size, norm), x, eps, norm, bounds)
    return project(best_x, x, eps, norm, bounds).detach()
