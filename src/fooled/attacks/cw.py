"""Carlini-Wagner L2 attack (Carlini & Wagner, 2017) and the median-L2 summary of a minimal attack."""

import torch

from fooled.attacks._common import (
    check_attack_inputs,
    check_positive,
    frozen,
    is_success,
    l2_norm,
    select,
)
from fooled.attacks.losses import objective


def cw_l2(
    model,
    x,
    y,
    *,
    c_init=1e-2,
    binary_steps=6,
    steps=100,
    lr=5e-2,
    kappa=0.0,
    target=None,
    generator=None,
):
    """Carlini-Wagner L2: smallest successful perturbation per example; failures are returned as x.

    Success means misclassified (or classified as `target`) with margin >= kappa. lr defaults to
    5e-2 rather than the paper's 1e-2: with only `steps` Adam steps it finds ~30% smaller L2.

    Optimises w with Adam where x_adv = (tanh(w) + 1) / 2, minimising
    ||x_adv - x||^2 + c * max(-margin, -kappa), with a per-example binary search over c; w starts at
    `tanh_space_start(x)`, so pixels at 0 or 1 can move as freely as the others.
    The attack is deterministic; `generator` is accepted for a uniform attack signature.
    """
    x, y, target = check_attack_inputs(model, x, y, target)
    check_positive("c_init", c_init)
    check_positive("binary_steps", binary_steps, integer=True)
    check_positive("steps", steps, integer=True)
    check_positive("lr", lr)
    check_positive("kappa", kappa, allow_zero=True)
    # signed margin toward success: max_{j!=y} z_j - z_y, or z_t - max_{j!=t} z_j when targeted
    margin = objective("margin", y, target)

    n = len(x)
    w0 = tanh_space_start(x)
    c = torch.full((n,), float(c_init), dtype=x.dtype, device=x.device)
    lower = torch.zeros_like(c)
    upper = torch.full_like(c, torch.inf)
    best_l2 = torch.full_like(c, torch.inf)
    best_adv = x.clone()

    with frozen(model), torch.enable_grad():
        for _ in range(binary_steps):
            w = w0.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=lr)
            found = torch.zeros(n, dtype=torch.bool, device=x.device)
            for _ in range(steps):
                x_adv = (torch.tanh(w) + 1) / 2
                logits = model(x_adv)
                dist = (x_adv - x).pow(2).flatten(1).sum(1)
                m = margin(logits, x_adv)
                loss = dist + c * (-m).clamp(min=-kappa)
                (w.grad,) = torch.autograd.grad(loss.sum(), w)
                with torch.no_grad():
                    succ = is_success(logits, y, target) & (m >= kappa)
                    l2 = dist.sqrt()
                    improved = succ & (l2 < best_l2)
                    best_l2 = torch.where(improved, l2, best_l2)
                    best_adv = select(improved, x_adv, best_adv)
                    found |= succ
                optimizer.step()
            # binary search on c: shrink after a success, grow (x10 until bracketed) after a failure
            upper = torch.where(found, torch.minimum(upper, c), upper)
            lower = torch.where(found, lower, torch.maximum(lower, c))
            c = torch.where(upper < torch.inf, (lower + upper) / 2, c * 10)
    return best_adv.clamp(0, 1).detach()


# How far inside the box a saturated pixel starts. A pixel at exactly 0 or 1 maps to w = -inf / +inf; clipped at 1e-6
# (|w| = 7.25) Adam at lr 0.05 moves it by at most 0.011 in 100 steps, so over half of a digit's pixels could not move.
# At 0.01 (|w| = 2.3, and the start moves such a pixel by 0.01: a sixth of a digits grey level, under 3 of 255) the
# same steps can take it anywhere in [0, 1].
SATURATION_MARGIN = 0.01


def tanh_space_start(x):
    """w with (tanh(w) + 1) / 2 = x, each pixel first clipped to [SATURATION_MARGIN, 1 - SATURATION_MARGIN] so that
    saturated pixels start where the optimiser can move them."""
    return torch.atanh(2 * x.clamp(SATURATION_MARGIN, 1 - SATURATION_MARGIN) - 1)


def median_l2(x, x_adv, success):
    """Median L2 distance ||x_adv - x|| over successful examples (nan if none succeeded)."""
    dist = l2_norm((x_adv - x).detach())[success.to(x.device)]
    return float(dist.median()) if dist.numel() else float("nan")
