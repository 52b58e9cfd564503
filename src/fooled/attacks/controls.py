"""Controls for the detectors: random perturbations of an attack's size, and adversarials rounded onto the data's grid.

A detector that flags adversarial examples should flag them more often than random perturbations of the same
budget (else it flags "perturbed", not "adversarial"); and since clean images lie on the grey-level grid while
gradient attacks leave it, every adversarial set is also scored rounded to the grid, where a detector cannot
win by noticing that pixels are off-grid.
"""

from __future__ import annotations

import torch

from fooled.attacks._common import (check_images, check_norm, check_positive, grid_steps, into_grid_ball, l2_norm, normal,
                                    per_example, snap, uniform)


def random_perturbation(x: torch.Tensor, *, eps: float, norm: str = "linf", generator: torch.Generator | None = None) -> torch.Tensor:
    """x plus random noise of the attack's budget, clipped to [0, 1]: uniform signs times eps (linf; a corner of the
    ball, as large as a linf attack can go), or a Gaussian direction scaled to L2 norm eps (l2)."""
    x = check_images(x)
    check_norm(norm)
    check_positive("eps", eps, allow_zero=True)
    if norm == "linf":
        noise = eps * torch.sign(uniform(x.shape, x, generator) - 0.5)
    else:
        direction = normal(x.shape, x, generator)
        noise = eps * direction / per_example(l2_norm(direction).clamp_min(1e-12), x)
    return (x + noise).clamp(0, 1)


def round_to_grid(x_adv: torch.Tensor, x: torch.Tensor, *, levels: int, eps: float, norm: str = "linf") -> torch.Tensor:
    """x_adv rounded to the grid of `levels` grey levels, staying in the budget around the clean x (itself on the grid).

    linf: nearest grid point, then clipped to [x - eps', x + eps'] with eps' the budget rounded down to the grid, so
    the result is on the grid and within eps. l2: nearest grid point where that stays within eps; for an image where
    it does not, each pixel's change is rounded toward zero instead, which can only shrink it. Either way the result is
    exactly on the grid (computed in grey-level units, as `into_grid_ball`)."""
    x_adv, x = check_images(x_adv), check_images(x)
    check_norm(norm)
    k = levels - 1
    if norm == "linf":
        return into_grid_ball(x_adv, x, grid_steps(eps, levels), levels)
    nearest = snap(x_adv, levels)
    toward = (torch.round(x * k) + torch.sign(x_adv - x) * torch.floor((x_adv - x).abs() * k + 1e-6)).clamp(0, k) / k
    inside = l2_norm(nearest - x) <= eps + 1e-6
    return torch.where(per_example(inside, x), nearest, toward)
