"""Every image the study calls on the grid is exactly on it: the off-grid detector (and the combined defence's off-grid
member, threshold 0) scores it 0. On 256 grey levels 1/255 is not a power of two, and clipping to x +- k/255 in pixel
units missed the grid by a rounding error: the combined defence flagged the Fashion-MNIST grid attack's images for it."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attack_helpers import gen
from fooled.attacks import random_perturbation, round_to_grid, through_grid
from fooled.attacks.grid import grid_budget, round_into_ball, snap
from fooled.attacks.matched import grid_sign_noise, shuffled_perturbation
from fooled.attacks.penalty import penalty_aware_pgd
from fooled.detection.baselines import off_grid

LEVELS = 256  # Fashion-MNIST, MNIST, CIFAR-10


def grid_images(n, seed, levels=LEVELS):
    return torch.randint(0, levels, (n, 1, 8, 8), generator=gen(seed)).float() / (levels - 1)


def exactly_on_grid(x, levels=LEVELS):
    return bool((off_grid(levels)(x) == 0).all()) and torch.equal(snap(x, levels), x)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), eps=st.sampled_from([0.03, 0.05, 0.1, 0.2, 0.3]), norm=st.sampled_from(["linf", "l2"]))
def test_rounded_attacks_and_controls_are_exactly_on_the_grid_inside_the_budget(seed, eps, norm):
    x = grid_images(8, seed)
    x_adv = (x + (2 * eps) * (torch.rand(x.shape, generator=gen(seed + 1)) - 0.5)).clamp(0, 1)
    l2_eps = eps * 8
    rounded = round_to_grid(x_adv if norm == "linf" else random_perturbation(x, eps=l2_eps, norm="l2", generator=gen(seed)), x, levels=LEVELS,
                            eps=eps if norm == "linf" else l2_eps, norm=norm)
    assert exactly_on_grid(rounded)
    if norm == "linf":
        assert float((rounded - x).abs().max()) <= eps + 1e-6
    else:
        assert float((rounded - x).flatten(1).norm(dim=1).max()) <= l2_eps + 1e-5
    into = round_into_ball(x_adv, x, grid_budget(eps, LEVELS), LEVELS)
    assert exactly_on_grid(into) and float((into - x).abs().max()) <= eps + 1e-6
    noise = grid_sign_noise(x, eps=eps, levels=LEVELS, generator=gen(seed + 2))
    assert exactly_on_grid(noise) and float((noise - x).abs().max()) <= eps + 1e-6
    assert float((noise - x).abs().max()) >= grid_budget(eps, LEVELS) - 1e-6  # still a corner of the rounded ball
    shuffled = shuffled_perturbation(rounded if norm == "linf" else noise, x, levels=LEVELS, generator=gen(seed + 3))
    assert exactly_on_grid(shuffled)


def test_rounding_in_pixel_units_would_have_missed_the_grid():
    """The regression itself: x + k/255 is not a grey level in float32 for some x, so a threshold-0 detector flags it."""
    x = grid_images(64, 0)
    naive = (x + 12 / 255).clamp(0, 1)
    assert float(off_grid(LEVELS)(naive).max()) > 0
    assert exactly_on_grid(round_into_ball(naive, x, 12 / 255, LEVELS))


def test_an_attack_through_the_rounding_returns_images_exactly_on_the_grid(model, batch):
    """On 256 levels (digits snapped onto them): what `through_grid` returns goes through `round_into_ball`."""
    x = snap(batch[0][:16], LEVELS)
    y = batch[1][:16]
    score = lambda z: (z - 0.5).pow(2).flatten(1).sum(1)  # noqa: E731: any differentiable score
    threshold = float(score(x).max()) + 1.0
    x_adv = through_grid(penalty_aware_pgd, model, x, y, score=score, threshold=threshold, eps=torch.full((16,), 0.1),
                         levels=LEVELS, steps=10, generator=gen())
    assert exactly_on_grid(x_adv) and float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float((x_adv - x).abs().max()) > 0
