"""Controls matched to an attack: perturbations of the images the attack fooled, of its size, that are not adversarial.

A detector that flags adversarial examples because they are adversarial must flag them more often than
  - random sign noise of the same budget, on the grid, on the same images (`grid_sign_noise`);
  - the attack's own perturbation with its pixel positions shuffled (`shuffled_perturbation`): the same values, the
    same size in every norm, without the attack's spatial structure;
and a reader should see how much of what it flags a trivial rule already flags: `background_changes` counts the changed
pixels that were 0 in the clean image (digits lie on a black background that a density model finds very likely).
"""

from __future__ import annotations

import torch

from fooled.attacks._common import check_images, snap, uniform
from fooled.attacks.controls import random_perturbation
from fooled.attacks.grid import grid_budget
from fooled.errors import ConfigError


def _same_shape(x_adv, x):
    x_adv, x = check_images(x_adv), check_images(x)
    if x_adv.shape != x.shape:
        raise ConfigError(f"x_adv must have the shape of x {tuple(x.shape)}, got {tuple(x_adv.shape)}")
    return x_adv, x


def shuffled_perturbation(x_adv: torch.Tensor, x: torch.Tensor, *, levels: int | None = None,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """x plus the perturbation x_adv - x with its pixel positions permuted at random (one permutation per image), clipped
    to [0, 1]: inside every ball that holds x_adv (linf; clipping only shrinks). With `levels` (x and x_adv on that grid)
    the sum is snapped exactly onto the grid, where in pixel units it misses it by a rounding error."""
    x_adv, x = _same_shape(x_adv, x)
    delta = (x_adv - x).flatten(1)
    order = uniform(delta.shape, delta, generator).argsort(1)  # a uniform random permutation per row
    out = (x + delta.gather(1, order).view_as(x)).clamp(0, 1)
    return out if levels is None else snap(out, levels)


def grid_sign_noise(x: torch.Tensor, *, eps: float, levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random signs times the linf budget rounded down to whole grey levels, clipped to [0, 1]: exactly on the grid when x is."""
    return snap(random_perturbation(x, eps=grid_budget(eps, levels), norm="linf", generator=generator), levels)


def background_changes(x_adv: torch.Tensor, x: torch.Tensor, *, tolerance: float = 1e-6) -> torch.Tensor:
    """Per image (N,), how many pixels that were 0 in x changed in x_adv: the score of a detector that needs the clean image."""
    x_adv, x = _same_shape(x_adv, x)
    changed = (x_adv - x).abs() > tolerance
    return (changed & (x <= tolerance)).flatten(1).sum(1)


def matched_counts(flags, x: torch.Tensor, x_adv: torch.Tensor, fooled: torch.Tensor, *, eps: float, levels: int,
                   generator: torch.Generator | None = None) -> dict:
    """How often `flags` (images -> bool (N,)) flags the attack's images and each control, all counted on exactly the
    images the attack fooled (`fooled`, a bool mask (N,)): {"n", "flagged_attack", "flagged_sign_noise", "flagged_shuffled",
    "flagged_background"}, the last the images with a changed background pixel (the trivial rule's flags)."""
    x_adv, x = _same_shape(x_adv, x)
    fooled = torch.as_tensor(fooled, dtype=torch.bool).cpu()
    if fooled.shape != (len(x),):
        raise ConfigError(f"fooled must be a bool mask of shape ({len(x)},), one per image")
    xs, advs = x[fooled.to(x.device)], x_adv[fooled.to(x.device)]
    if not len(xs):
        return {"n": 0, "flagged_attack": 0, "flagged_sign_noise": 0, "flagged_shuffled": 0, "flagged_background": 0}
    count = lambda images: int(torch.as_tensor(flags(images)).bool().sum())  # noqa: E731
    return {"n": len(xs), "flagged_attack": count(advs),
            "flagged_sign_noise": count(grid_sign_noise(xs, eps=eps, levels=levels, generator=generator)),
            "flagged_shuffled": count(shuffled_perturbation(advs, xs, levels=levels, generator=generator)),
            "flagged_background": int((background_changes(advs, xs) > 0).sum())}
