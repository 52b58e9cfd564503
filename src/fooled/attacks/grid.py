"""Detector-aware attacks under the study's one threat model: valid images, on the data's grey-level grid, inside the budget.

A continuous attack's output is not a valid image of data stored as `levels` grey levels, and rounding it afterwards
undoes much of what the attack found. `grid_aware_attack` runs `strongest_aware_attack` through the rounding instead
(BPDA, Athalye et al. 2018): the model and the detector see every iterate rounded to the grid, gradients pass the
rounding as the identity, and the budget is rounded down to the grid, so that every rounded point of the ball is a grid
point inside the budget. The attack ranks the points it keeps by what they are after rounding, so rounding its result
changes nothing it saw; every start (e.g. a continuous attack's output) is a candidate after rounding, so the result is
never ranked below the plain rounding of a start.
"""

from __future__ import annotations

import torch
from torch import nn

from fooled.attacks._common import check_budget, check_images, grid_steps, into_grid_ball, module_of, snap
from fooled.attacks.aware import strongest_aware_attack
from fooled.errors import ConfigError

GRID_TOLERANCE = 1e-5  # a pixel this close to a grey level is on it (float32 images of integer levels)
GRID_VERSION = 2  # part of the key of every cached stage of images made through the rounding. 2: rounded in grey-level units,
# exactly on the grid (`into_grid_ball`); before, on 256 levels a pixel clipped to the ball's edge missed the grid by a
# rounding error, which the combined defence's off-grid member (threshold 0) flagged


def check_levels(levels) -> int:
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 2:
        raise ConfigError(f"levels must be an integer >= 2 (grey levels of the data), got {levels!r}")
    return levels


def on_grid(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Per image (N,), whether every pixel lies on the grid of `levels` grey levels."""
    return ((x - snap(x, levels)).abs() <= GRID_TOLERANCE).flatten(1).all(1)


def grid_budget(eps, levels: int):
    """The linf budget rounded down to whole grey-level steps (a number, or a tensor of one per image): the ball of this
    radius around a grid image has grid points as its bounds, so rounding any point of it stays inside it."""
    return grid_steps(eps, levels) / (levels - 1)


class _Snapped(nn.Module):
    """fn(snap(x)) with the gradient of fn at snap(x) passed straight through the rounding (BPDA with the identity)."""

    def __init__(self, fn, levels: int):
        super().__init__()
        self.fn, self.levels = fn, levels
        owner = module_of(fn)
        if owner is not None:  # registered, so the attack's `frozen` puts it in eval mode and restores it
            self.owner = owner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x + (snap(x, self.levels) - x).detach())


def grid_aware_attack(model, x, y, *, score, threshold, eps, levels: int, starts=(), **kwargs) -> torch.Tensor:
    """`strongest_aware_attack` (linf) whose model and score see the grid: misclassified and score <= threshold after
    rounding to `levels` grey levels. x must lie on the grid; eps is a number or one per image (N,). kwargs go to
    `strongest_aware_attack` (steps, lambdas, restarts, generator, ...). Returns images on the grid within eps of x."""
    if kwargs.get("norm", "linf") != "linf":
        raise ConfigError("grid_aware_attack attacks in linf only (its rounding keeps the linf ball)")
    return through_grid(strongest_aware_attack, model, x, y, score=score, threshold=threshold, eps=eps, levels=levels,
                        starts=list(starts), **kwargs)


def through_grid(attack, model, x, y, *, score, threshold, eps, levels: int, **kwargs) -> torch.Tensor:
    """Any linf detector-aware attack `attack(model, x, y, *, score, threshold, eps, **kwargs)` run through the rounding:
    its model and score see `snap(x)` (BPDA, the identity gradient), its budget is rounded down to whole grey levels, and
    its result is rounded into the ball. x must lie on the grid. Returns images on the grid within eps of x."""
    x = check_images(x)
    check_levels(levels)
    check_budget(eps, x)
    if not bool(on_grid(x, levels).all()):
        raise ConfigError(f"an attack on the grid needs x on the grid of {levels} grey levels (clean images of the data)")
    inner = grid_budget(eps.to(x) if isinstance(eps, torch.Tensor) else eps, levels)
    x_adv = attack(_Snapped(model, levels), x, y, score=_Snapped(score, levels), threshold=threshold, eps=inner, **kwargs)
    return round_into_ball(x_adv, x, inner, levels)


def round_into_ball(x_adv: torch.Tensor, x: torch.Tensor, budget, levels: int) -> torch.Tensor:
    """`round_to_grid` (linf) with a budget of whole grey-level steps, a number or one per image: the nearest grid point,
    clipped to the ball (a no-op on what the attack returns; it makes the guarantee independent of the attack), exactly
    on the grid (`into_grid_ball`)."""
    return into_grid_ball(x_adv, x, grid_steps(budget.to(x) if isinstance(budget, torch.Tensor) else budget, levels), levels)
