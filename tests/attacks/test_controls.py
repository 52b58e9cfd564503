"""Controls: random perturbations of an attack's budget, and adversarials rounded onto the grid inside the budget."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.attacks import random_perturbation, round_to_grid
from fooled.errors import ConfigError

LEVELS = 17


def on_grid(x, levels=LEVELS):
    return torch.allclose(x * (levels - 1), torch.round(x * (levels - 1)), atol=1e-5)


def grid_images(seed, n=16, levels=LEVELS):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (n, 1, 8, 8), generator=g).float() / (levels - 1)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 6))
def test_sign_noise_is_a_corner_of_the_linf_ball_clipped_to_the_box(seed, steps):
    x, eps = grid_images(seed), steps / 16
    noisy = random_perturbation(x, eps=eps, norm="linf", generator=torch.Generator().manual_seed(seed))
    assert noisy.min() >= 0 and noisy.max() <= 1 and (noisy - x).abs().max() <= eps + 1e-6
    inside = (x > eps) & (x < 1 - eps)  # where the box does not clip, every pixel moves by exactly eps
    assert torch.allclose((noisy - x).abs()[inside], torch.full_like(x[inside], eps))
    assert on_grid(noisy)  # an eps on the grid keeps grid images on it


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.1, 3.0))
def test_gaussian_noise_has_the_l2_budget_before_clipping(seed, eps):
    x = torch.full((8, 1, 8, 8), 0.5)
    noisy = random_perturbation(x, eps=eps, norm="l2", generator=torch.Generator().manual_seed(seed))
    norms = (noisy - x).flatten(1).norm(dim=1)
    assert torch.all(norms <= eps + 1e-5)
    unclipped = ((noisy > 0) & (noisy < 1)).flatten(1).all(1)  # images the box did not cut have exactly the budget
    assert torch.allclose(norms[unclipped], torch.full_like(norms[unclipped], eps), atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.sampled_from(["linf", "l2"]))
def test_rounded_adversarials_lie_on_the_grid_inside_the_budget(seed, steps, norm):
    x = grid_images(seed)
    eps = steps / 16 if norm == "linf" else steps * 0.3
    g = torch.Generator().manual_seed(seed + 1)
    delta = torch.rand(x.shape, generator=g) * 2 - 1
    if norm == "linf":
        x_adv = (x + eps * delta).clamp(0, 1)
    else:
        x_adv = (x + eps * delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1)
    rounded = round_to_grid(x_adv, x, levels=LEVELS, eps=eps, norm=norm)
    assert on_grid(rounded) and rounded.min() >= 0 and rounded.max() <= 1
    d = (rounded - x).flatten(1)
    assert torch.all((d.abs().amax(1) if norm == "linf" else d.norm(dim=1)) <= eps + 1e-5)


def test_rounding_keeps_points_already_on_the_grid_and_moves_off_grid_ones_to_the_nearest_level():
    x = grid_images(0)
    assert torch.equal(round_to_grid(x, x, levels=LEVELS, eps=0.125), x)
    x_adv = (x + 0.6 / 16).clamp(0, 1)  # 0.6 of a grey level up: rounds to one level up where there is room
    rounded = round_to_grid(x_adv, x, levels=LEVELS, eps=0.125)
    room = x <= 1 - 1 / 16
    assert torch.allclose(rounded[room], x[room] + 1 / 16)


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ConfigError, match="norm"):
        random_perturbation(torch.zeros(1, 1, 2, 2), eps=0.1, norm="l3")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        round_to_grid(torch.full((1, 1, 2, 2), 2.0), torch.zeros(1, 1, 2, 2), levels=LEVELS, eps=0.1)
