"""grid_aware_attack: valid images on the grey-level grid, inside the budget, and stronger than rounding afterwards."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attack_helpers import assert_unchanged, gen, snapshot
from fooled.attacks import attack_success, round_to_grid, strongest_aware_attack
from fooled.attacks.grid import grid_aware_attack, grid_budget, on_grid, round_into_ball
from fooled.errors import ConfigError

LEVELS = 17  # the digits' grey levels 0..16


@pytest.fixture(scope="module")
def detector(batch, gaussian_log_prob):
    """(score, threshold): -log N(x) flagging 5% of the clean test digits."""
    threshold = -gaussian_log_prob(batch[0]).quantile(0.05).item()
    return (lambda x: -gaussian_log_prob(x)), threshold


def evasion(model, x_adv, y, score, threshold):
    with torch.no_grad():
        return float((attack_success(model, x_adv, y) & (score(x_adv) <= threshold)).float().mean())


@settings(max_examples=12, deadline=None)
@given(eps=st.floats(0.0, 0.4), seed=st.integers(0, 2**16))
def test_outputs_lie_on_the_grid_and_in_the_budget(trained, batch, detector, eps, seed):
    x, y = batch[0][:12], batch[1][:12]
    score, threshold = detector
    x_adv = grid_aware_attack(trained, x, y, score=score, threshold=threshold, eps=eps, levels=LEVELS, steps=3, generator=gen(seed))
    assert bool(on_grid(x_adv, LEVELS).all())
    assert float((x_adv - x).abs().max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1


def test_one_budget_per_image_and_starts_off_the_grid(model, batch, detector):
    x, y = batch[0][:10], batch[1][:10]
    score, threshold = detector
    eps = torch.tensor([0.0, 0.05, 0.0625, 0.2, 0.3125] * 2)  # 0.05 is less than one grey level: no change allowed
    start = (x + 0.03 * torch.randn(x.shape, generator=gen(1))).clamp(0, 1)
    x_adv = grid_aware_attack(model, x, y, score=score, threshold=threshold, eps=eps, levels=LEVELS, steps=4, starts=[start],
                              generator=gen())
    assert bool(on_grid(x_adv, LEVELS).all())
    assert bool(((x_adv - x).abs().flatten(1).amax(1) <= eps + 1e-6).all())
    assert torch.equal(x_adv[eps < 1 / 16], x[eps < 1 / 16])


def test_bpda_through_the_rounding_beats_rounding_afterwards(model, batch, detector):
    """On the grid, the attack through the rounding keeps what the continuous attack found; rounding its result loses much."""
    x, y = batch[0][:100], batch[1][:100]
    score, threshold = detector
    eps = 0.125
    continuous = strongest_aware_attack(model, x, y, score=score, threshold=threshold, eps=eps, steps=20, generator=gen())
    rounded = round_to_grid(continuous, x, levels=LEVELS, eps=eps)
    grid = grid_aware_attack(model, x, y, score=score, threshold=threshold, eps=eps, levels=LEVELS, steps=20, generator=gen())
    assert evasion(model, grid, y, score, threshold) >= evasion(model, rounded, y, score, threshold) + 0.2
    assert evasion(model, grid, y, score, threshold) >= evasion(model, continuous, y, score, threshold) - 0.05


def test_a_start_is_never_ranked_above_the_result(model, batch, detector):
    x, y = batch[0][:60], batch[1][:60]
    score, threshold = detector
    continuous = strongest_aware_attack(model, x, y, score=score, threshold=threshold, eps=0.0625, steps=10, generator=gen())
    grid = grid_aware_attack(model, x, y, score=score, threshold=threshold, eps=0.0625, levels=LEVELS, steps=2,
                             starts=[continuous], generator=gen())
    rounded = round_to_grid(continuous, x, levels=LEVELS, eps=0.0625)
    assert evasion(model, grid, y, score, threshold) >= evasion(model, rounded, y, score, threshold)


def test_leaves_the_model_alone_and_checks_its_inputs(model, batch, detector):
    x, y = batch[0][:8], batch[1][:8]
    score, threshold = detector
    before = snapshot(model)
    model.train()
    grid_aware_attack(model, x, y, score=score, threshold=threshold, eps=0.125, levels=LEVELS, steps=2, generator=gen())
    assert model.training
    model.eval()
    assert_unchanged(model, before)
    with pytest.raises(ConfigError, match="grid of 17 grey levels"):
        grid_aware_attack(model, (x + 0.01).clamp(0, 1), y, score=score, threshold=threshold, eps=0.1, levels=LEVELS)
    with pytest.raises(ConfigError, match="levels"):
        grid_aware_attack(model, x, y, score=score, threshold=threshold, eps=0.1, levels=1)
    with pytest.raises(ConfigError, match="linf"):
        grid_aware_attack(model, x, y, score=score, threshold=threshold, eps=0.1, levels=LEVELS, norm="l2")


def test_grid_budget_and_rounding_into_the_ball():
    assert grid_budget(0.05, 17) == 0.0 and grid_budget(0.125, 17) == 0.125 and grid_budget(0.2, 17) == 0.1875
    assert torch.allclose(grid_budget(torch.tensor([0.0625, 0.1]), 17), torch.tensor([0.0625, 0.0625]))
    x = torch.full((1, 1, 2, 2), 0.5)
    out = round_into_ball(torch.tensor([[[[0.9, 0.1], [0.53, 0.47]]]]), x, 0.125, 17)
    assert torch.allclose(out, torch.tensor([[[[0.625, 0.375], [0.5, 0.5]]]]))
