"""Matched controls: the attack's perturbation shuffled, grid sign noise and the background-pixel rule, on the same images."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attack_helpers import gen
from fooled.attacks.grid import on_grid
from fooled.attacks.matched import background_changes, grid_sign_noise, matched_counts, shuffled_perturbation

LEVELS = 17


def grid_images(n, seed):
    return torch.randint(0, LEVELS, (n, 1, 8, 8), generator=gen(seed)).float() / (LEVELS - 1)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), steps=st.integers(0, 5))
def test_shuffled_perturbation_keeps_the_grid_the_budget_and_the_values(seed, steps):
    x = grid_images(6, seed)
    eps = steps / (LEVELS - 1)
    x_adv = grid_sign_noise(x, eps=eps + 0.01, levels=LEVELS, generator=gen(seed + 1))  # + 0.01: still `steps` grey levels
    assert bool(on_grid(x_adv, LEVELS).all()) and float((x_adv - x).abs().max()) <= eps + 1e-6
    shuffled = shuffled_perturbation(x_adv, x, generator=gen(seed + 2))
    assert bool(on_grid(shuffled, LEVELS).all()) and float((shuffled - x).abs().max()) <= eps + 1e-6
    assert float(shuffled.min()) >= 0 and float(shuffled.max()) <= 1


def test_shuffling_moves_pixels_but_keeps_the_multiset_of_changes():
    x = torch.full((2, 1, 8, 8), 0.5)
    x_adv = x.clone()
    x_adv[:, :, 0, :4] += 0.125  # a structured perturbation: one stripe
    shuffled = shuffled_perturbation(x_adv, x, generator=gen())
    d0, d1 = (x_adv - x).flatten(1).sort(1).values, (shuffled - x).flatten(1).sort(1).values
    assert torch.allclose(d0, d1)
    assert not torch.equal(shuffled, x_adv)


def test_background_changes_counts_changed_black_pixels_only():
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, 0, 0] = 0.5
    x_adv = x + torch.tensor([[[[0.25, 0.0], [0.125, 0.0625]]]])
    assert background_changes(x_adv, x).tolist() == [2]


def test_controls_count_exactly_the_images_the_attack_fooled():
    x = grid_images(20, 0)
    x_adv = grid_sign_noise(x, eps=0.125, levels=LEVELS, generator=gen(3))
    fooled = torch.arange(20) % 3 == 0
    seen = []

    def flags(images):
        seen.append(images)
        return torch.ones(len(images), dtype=torch.bool)

    counts = matched_counts(flags, x, x_adv, fooled, eps=0.125, levels=LEVELS, generator=gen())
    assert counts["n"] == int(fooled.sum()) == counts["flagged_attack"] == counts["flagged_sign_noise"] == counts["flagged_shuffled"]
    assert [len(s) for s in seen] == [int(fooled.sum())] * 3
    assert torch.equal(seen[0], x_adv[fooled])  # the attack's own images, then controls of the same clean images
    assert torch.allclose((seen[1] - x[fooled]).abs().amax((1, 2, 3)), torch.full((7,), 0.125))
    assert matched_counts(flags, x, x_adv, torch.zeros(20, dtype=torch.bool), eps=0.125, levels=LEVELS)["n"] == 0
