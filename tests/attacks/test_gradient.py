import copy

import pytest
import torch
import torchattacks

from attack_helpers import accuracy, assert_in_budget, assert_unchanged, gen, snapshot
from fooled.attacks import attack_success, fgsm, pgd
from fooled.attacks._common import select
from fooled.errors import ConfigError

ATTACKS = {
    "fgsm": lambda m, x, y, eps: fgsm(m, x, y, eps=eps),
    "pgd_linf": lambda m, x, y, eps: pgd(m, x, y, eps=eps, steps=10, generator=gen()).x_adv,
    "pgd_l2": lambda m, x, y, eps: pgd(m, x, y, eps=eps, steps=10, norm="l2", generator=gen()).x_adv,
}


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("eps", [0.03, 0.3, 1.0])
def test_output_in_budget_and_in_unit_box(model, batch, name, eps):
    x, y = batch
    norm = "l2" if name.endswith("l2") else "linf"
    assert_in_budget(ATTACKS[name](model, x, y, eps), x, eps, norm)


@pytest.mark.parametrize("name", ATTACKS)
def test_eps_zero_returns_the_input(model, batch, name):
    x, y = batch
    x_adv = ATTACKS[name](model, x, y, 0.0)
    assert torch.equal(x_adv, x) and x_adv is not x


def test_fixture_model_is_accurate(model, digits):
    assert accuracy(model, digits[2], digits[3]) > 0.9


def test_accuracy_falls_as_eps_grows_and_reaches_zero(model, batch):
    x, y = batch
    clean = accuracy(model, x, y)
    assert clean > 0.9
    robust = [accuracy(model, pgd(model, x, y, eps=eps, generator=gen()).x_adv, y) for eps in (0.02, 0.05, 0.1, 0.3)]
    assert robust[0] <= clean
    assert all(a >= b for a, b in zip(robust, robust[1:]))
    assert robust[1] < clean - 0.1 and robust[2] < 0.5
    assert robust[3] <= 0.02


def test_l2_accuracy_falls_as_eps_grows(model, batch):
    x, y = batch
    robust = [accuracy(model, pgd(model, x, y, eps=eps, norm="l2", generator=gen()).x_adv, y) for eps in (0.25, 0.5, 2.0)]
    assert accuracy(model, x, y) > robust[0] >= robust[1] >= robust[2]
    assert robust[2] <= 0.02


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("training", [False, True])
def test_model_is_left_unchanged(trained, batch, name, training):
    model = copy.deepcopy(trained)
    model.train(training)
    if training:  # pre-existing gradients must survive too
        model(batch[0]).sum().backward()
    before = snapshot(model)
    x = batch[0].clone()
    ATTACKS[name](model, x, batch[1], 0.1)
    assert_unchanged(model, before)
    assert torch.equal(x, batch[0])


def test_mixed_submodule_modes_are_restored(trained, batch):
    model = copy.deepcopy(trained).train()
    model[1].eval()
    pgd(model, batch[0], batch[1], eps=0.1, steps=2, generator=gen())
    assert [m.training for m in model.modules()] == [True, True, False, True, True]


def test_works_inside_no_grad(model, batch):
    x, y = batch
    with torch.no_grad():
        x_adv = pgd(model, x, y, eps=0.3, steps=10, generator=gen()).x_adv
    assert accuracy(model, x_adv, y) < 0.05


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_same_seed_same_output_other_seed_other_output(model, batch, norm):
    x, y = batch
    a = pgd(model, x, y, eps=0.1, steps=5, norm=norm, generator=gen(1)).x_adv
    b = pgd(model, x, y, eps=0.1, steps=5, norm=norm, generator=gen(1)).x_adv
    c = pgd(model, x, y, eps=0.1, steps=5, norm=norm, generator=gen(2)).x_adv
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("norm, eps", [("linf", 0.08), ("l2", 0.4)])
def test_restarts_never_worse_than_one(model, batch, norm, eps):
    x, y = batch
    one = attack_success(model, pgd(model, x, y, eps=eps, steps=10, norm=norm, generator=gen(3)).x_adv, y)
    five = attack_success(model, pgd(model, x, y, eps=eps, steps=10, norm=norm, restarts=5, generator=gen(3)).x_adv, y)
    assert (five >= one).all()  # per example: the first restart replays the single run
    assert five.sum() >= one.sum()


def test_targeted_reaches_the_target(model, batch):
    x, y = batch
    target = (y + 1) % 10
    x_adv = pgd(model, x, y, eps=0.3, target=target, generator=gen()).x_adv
    assert attack_success(model, x_adv, y, target).float().mean() > 0.9
    x_adv = pgd(model, x, y, eps=0.3, target=target, loss="margin", generator=gen()).x_adv
    assert attack_success(model, x_adv, y, target).float().mean() > 0.9


def test_int_target_is_broadcast(model, batch):
    x, y = batch
    x_adv = pgd(model, x, y, eps=0.3, target=3, generator=gen()).x_adv
    assert (model(x_adv).argmax(1) == 3).float().mean() > 0.9


def test_margin_loss_about_as_strong_as_cross_entropy(model, batch):
    # On this ReLU MLP margin PGD is a few points weaker than CE at mid eps, equal at large eps.
    x, y = batch
    for eps in (0.05, 0.1, 0.2):
        ce = attack_success(model, pgd(model, x, y, eps=eps, generator=gen()).x_adv, y).float().mean()
        mg = attack_success(model, pgd(model, x, y, eps=eps, loss="margin", generator=gen()).x_adv, y).float().mean()
        assert mg >= ce - 0.05
    assert mg >= 0.99


def test_early_stop_keeps_the_successes(model, batch):
    x, y = batch
    x_adv = pgd(model, x, y, eps=0.3, restarts=3, early_stop=True, generator=gen()).x_adv
    assert attack_success(model, x_adv, y).all()


@pytest.mark.parametrize("kwargs", [dict(eps=0.05), dict(eps=0.1, restarts=3), dict(eps=0.1, loss="margin"),
                                    dict(eps=1.0, norm="l2"), dict(eps=0.1, target=3)])
def test_early_stop_fools_exactly_the_examples_the_full_run_fools(model, batch, kwargs):
    # the examples still attacked follow the same trajectory as in the full run, so success is the same
    x, y = batch
    full = pgd(model, x, y, steps=10, generator=gen(), **kwargs).x_adv
    early = pgd(model, x, y, steps=10, generator=gen(), early_stop=True, **kwargs).x_adv
    target = kwargs.get("target")
    ok_full, ok_early = attack_success(model, full, y, target), attack_success(model, early, y, target)
    assert 0.1 < ok_full.float().mean() < 1  # some fooled, some not: both parts are exercised
    assert torch.equal(ok_full, ok_early)
    # the unfooled ones: the same best iterate (up to float rounding: a smaller batch may sum in another order)
    assert torch.allclose(early[~ok_early], full[~ok_full], atol=1e-5)
    assert_in_budget(early, x, kwargs["eps"], kwargs.get("norm", "linf"))


def first_pixel_model():
    class FirstPixel(torch.nn.Module):  # class 1 iff the first pixel exceeds the threshold
        def __init__(self):
            super().__init__()
            self.threshold = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x):
            p = x.flatten(1)[:, :1]
            return torch.cat([self.threshold - p, p - self.threshold], dim=1)

    return FirstPixel()


def test_early_stop_returns_the_first_successful_iterate():
    x = torch.full((2, 1, 2, 2), 0.3)
    x[0, 0, 0, 0] = 0.45  # fooled by the first step of 0.1; the full run goes on to raise the loss
    y = torch.zeros(2, dtype=torch.long)
    kwargs = dict(eps=0.3, steps=3, step_size=0.1, random_start=False)
    full = pgd(first_pixel_model(), x, y, **kwargs).x_adv
    early = pgd(first_pixel_model(), x, y, early_stop=True, **kwargs).x_adv
    assert torch.allclose(full[:, 0, 0, 0], torch.tensor([0.65, 0.6]))  # the final iterate is ranked only where none succeeded
    assert torch.allclose(early[:, 0, 0, 0], torch.tensor([0.55, 0.6]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(norm="l1"), r"unknown norm 'l1'; valid norms: linf, l2"),
        (dict(norm="Linf"), r"unknown norm 'Linf'"),
        (dict(loss="hinge"), r"unknown loss 'hinge'; valid losses"),
        (dict(eps=-0.1), r"eps must be .*>= 0, got -0.1"),
        (dict(steps=0), r"steps must be .*> 0, got 0"),
        (dict(restarts=1.5), r"restarts must be a finite integer"),
        (dict(target=torch.zeros(3, dtype=torch.long)), r"target must be an int or an integer tensor of shape"),
    ],
)
def test_bad_arguments_raise_clear_errors(model, batch, kwargs, match):
    x, y = batch
    args = dict(eps=0.1) | kwargs
    with pytest.raises(ConfigError, match=match):
        pgd(model, x, y, **args)


def test_inputs_outside_unit_box_are_rejected(model, batch):
    with pytest.raises(ConfigError, match=r"x must lie in \[0, 1\]"):
        fgsm(model, batch[0] * 2, batch[1], eps=0.1)


def test_fgsm_agrees_with_torchattacks(model, batch):
    x, y = batch
    for eps in (0.05, 0.1):
        theirs = torchattacks.FGSM(model, eps=eps)(x, y)
        ours = fgsm(model, x, y, eps=eps)
        assert torch.allclose(ours, theirs, atol=1e-6)
        assert accuracy(model, ours, y) <= accuracy(model, theirs, y) + 0.01


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_pgd_at_least_as_strong_as_torchattacks(model, batch, eps):
    x, y = batch
    alpha, steps = 2.5 * eps / 10, 10
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    ours = pgd(model, x, y, eps=eps, step_size=alpha, steps=steps, random_start=False).x_adv
    assert accuracy(model, ours, y) <= accuracy(model, theirs, y) + 0.01
    torch.manual_seed(0)
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    ours = pgd(model, x, y, eps=eps, step_size=alpha, steps=steps, generator=gen()).x_adv
    assert accuracy(model, ours, y) <= accuracy(model, theirs, y) + 0.01


def test_select_is_exact():
    a, b = torch.rand(50, 3, 4, 4), torch.rand(50, 3, 4, 4)
    mask = torch.rand(50) > 0.5
    assert torch.equal(select(mask, a, b), torch.where(mask[:, None, None, None], a, b))


def test_final_iterate_counts_where_no_earlier_iterate_succeeded():
    x = torch.full((4, 1, 2, 2), 0.3)
    x[:2, 0, 0, 0] = 0.45  # one step of 0.1 crosses the threshold: only the final iterate succeeds
    y = torch.zeros(4, dtype=torch.long)
    x_adv = pgd(first_pixel_model(), x, y, eps=0.1, steps=1, step_size=0.1, random_start=False).x_adv
    assert torch.allclose(x_adv[:, 0, 0, 0], torch.tensor([0.55, 0.55, 0.4, 0.4]))  # robust ones keep their best (final) iterate too
