"""AutoAttack (torchattacks) as a pure function, and the study's worst case held against it."""

import copy

import pytest
import torch

from attack_helpers import assert_in_budget, assert_unchanged, gen, snapshot
from fooled.attacks import PGDSettings, attack_success, pgd_worst_case
from fooled.attacks.reference import autoattack
from fooled.errors import ConfigError


def test_autoattack_stays_in_budget_leaves_model_and_global_rng_alone_and_repeats_itself(trained, batch):
    model = copy.deepcopy(trained).train()
    before = snapshot(model)
    x, y = batch[0][:24], batch[1][:24]
    rng = torch.random.get_rng_state()
    x_adv = autoattack(model, x, y, eps=0.1, parts=("apgd-ce", "apgd-t"), steps=20, targets=2, seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert_unchanged(model, before)  # mode (train), parameters, their .grad and requires_grad
    assert_in_budget(x_adv, x, 0.1)
    assert attack_success(model, x_adv, y).float().mean() > 0.5
    again = autoattack(model, x, y, eps=0.1, parts=("apgd-ce", "apgd-t"), steps=20, targets=2, seed=3)
    assert torch.equal(again, x_adv)


def test_autoattack_fab_leaves_parameter_grads_alone(model, batch):
    before = snapshot(model)
    x_adv = autoattack(model, batch[0][:8], batch[1][:8], eps=0.1, parts=("fab-t",), steps=5, targets=1)
    assert_unchanged(model, before)  # FAB calls .backward(): parameters must not collect a .grad
    assert_in_budget(x_adv, batch[0][:8], 0.1)


def test_autoattack_with_no_budget_returns_the_input_and_names_a_bad_part(model, batch):
    x, y = batch[0][:4], batch[1][:4]
    assert torch.equal(autoattack(model, x, y, eps=0.0), x)
    with pytest.raises(ConfigError, match="apgd-x"):
        autoattack(model, x, y, eps=0.1, parts=("apgd-x",))


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.15])
def test_the_worst_case_is_never_weaker_than_apgd_ce(model, batch, eps):
    x, y = batch[0][:96], batch[1][:96]
    ours = pgd_worst_case(model, x, y, eps=eps, settings=PGDSettings(steps=40, losses=("ce", "margin", "multitarget")),
                          generator=gen()).success
    theirs = attack_success(model, autoattack(model, x, y, eps=eps, parts=("apgd-ce",), steps=100), y)
    assert 0 < int(theirs.sum()) < len(y)  # a budget where the comparison can go either way
    assert int(ours.sum()) >= int(theirs.sum())
