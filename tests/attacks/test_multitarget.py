"""MultiTargeted PGD: exact on a linear model, never weaker than untargeted PGD, and its argument checks."""

import pytest
import torch
from torch import nn

from attack_helpers import assert_in_budget, gen, train
from fooled.attacks import attack_success, linear_linf_robust, multitarget_pgd, pgd
from fooled.errors import ConfigError


@pytest.fixture(scope="module")
def linear(digits):
    torch.manual_seed(0)
    return train(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), digits[0], digits[1], epochs=100)


def exactly_robust(linear, x, y, eps):
    return linear_linf_robust(linear[1].weight, linear[1].bias, x, y, eps)


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.2])
def test_exact_on_a_linear_model(linear, batch, eps):
    x, y = batch
    robust = exactly_robust(linear, x, y, eps)
    assert 0 < robust.float().mean() < 1
    x_adv = multitarget_pgd(linear, x, y, eps=eps, steps=20, generator=gen())
    assert_in_budget(x_adv, x, eps)
    assert torch.equal(~attack_success(linear, x_adv, y), robust)


def test_untargeted_losses_miss_some_that_multitarget_finds(linear, batch):
    # why the study runs it: on this linear model CE and margin PGD leave images correct that the budget can flip
    x, y = batch
    eps = 0.15  # 5 of 200 missed here
    untargeted = [attack_success(linear, pgd(linear, x, y, eps=eps, steps=20, loss=loss, generator=gen()), y)
                  for loss in ("ce", "margin")]
    missed = ~(untargeted[0] | untargeted[1]) & ~exactly_robust(linear, x, y, eps)
    assert missed.any()
    found = attack_success(linear, multitarget_pgd(linear, x, y, eps=eps, steps=20, generator=gen()), y)
    assert found[missed].all()


def test_fewer_targets_try_the_most_likely_classes_first(model, batch):
    x, y = batch
    rates = [attack_success(model, multitarget_pgd(model, x, y, eps=0.05, steps=10, targets=k, generator=gen()), y)
             .float().mean().item() for k in (1, 3, None)]
    assert rates[0] <= rates[1] <= rates[2]
    # one target: the wrong class the model ranks highest, a targeted margin run toward it
    top = model(x).detach().scatter(1, y[:, None], -torch.inf).argmax(1)
    one = pgd(model, x, y, eps=0.05, steps=10, loss="margin", target=top, generator=gen())
    assert rates[0] == attack_success(model, one, y).float().mean().item()


@pytest.mark.parametrize("kwargs, match", [
    (dict(loss="ce"), "multitarget_pgd sets loss itself"),
    (dict(target=3), "multitarget_pgd sets target itself"),
    (dict(targets=0), r"targets must be a finite integer > 0, got 0"),
])
def test_bad_arguments(model, batch, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        multitarget_pgd(model, *batch, eps=0.1, **kwargs)
