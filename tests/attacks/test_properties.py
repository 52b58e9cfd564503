"""Budget, box and purity hold for every attack on random tiny models, inputs and budgets."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attack_helpers import assert_in_budget, assert_unchanged, snapshot
from fooled.attacks import (
    cw_l2,
    fgsm,
    fooling_evolution,
    fooling_gradient,
    multitarget_pgd,
    pgd,
)
from fooled.attacks.penalty import multitarget_penalty_pgd, penalty_aware_pgd

BUDGETED = ["fgsm", "pgd_linf", "pgd_l2", "multitarget_linf", "multitarget_l2", "penalty_linf", "penalty_l2",
            "penalty-multitarget_linf", "penalty-multitarget_l2"]
UNBUDGETED = ["cw_l2", "fooling_gradient", "fooling_evolution"]  # no eps: only the [0, 1] box and the model's purity

cases = st.fixed_dictionaries(
    dict(
        seed=st.integers(0, 2**16),
        width=st.integers(1, 16),
        classes=st.integers(2, 5),
        n=st.integers(1, 6),
        eps=st.one_of(st.just(0.0), st.floats(0.0, 0.5)),
        attack=st.sampled_from(BUDGETED + UNBUDGETED),
        training=st.booleans(),
        early_stop=st.booleans(),
    )
)


def score(x):
    """A differentiable stand-in anomaly score: -log of a standard normal on the pixels around 0.5 (up to a constant)."""
    return 0.5 * ((x.flatten(1) - 0.5) ** 2).sum(1)


def run(case, model, x, y, g):
    attack, eps = case["attack"], case["eps"]
    norm = attack.rsplit("_", 1)[-1]
    if attack == "fgsm":
        return fgsm(model, x, y, eps=eps)
    if attack.startswith("pgd"):
        return pgd(model, x, y, eps=eps, steps=3, norm=norm, restarts=2, generator=g, early_stop=case["early_stop"]).x_adv
    if attack.startswith("multitarget"):
        return multitarget_pgd(model, x, y, eps=eps, steps=3, norm=norm, targets=2, generator=g, early_stop=case["early_stop"]).x_adv
    if attack.startswith("penalty-multitarget"):
        return multitarget_penalty_pgd(model, x, y, score=score, threshold=0.5, eps=eps, steps=3, norm=norm, targets=2, generator=g)
    if attack.startswith("penalty"):
        return penalty_aware_pgd(model, x, y, score=score, threshold=0.5, eps=eps, steps=3, norm=norm, restarts=2, generator=g)
    if attack == "cw_l2":
        return cw_l2(model, x, y, binary_steps=2, steps=5)
    if attack == "fooling_gradient":  # (images, confidence)
        return fooling_gradient(model, 0, len(x), shape=x.shape[1:], steps=5, generator=g)[0]
    return fooling_evolution(model, 0, len(x), shape=x.shape[1:], generations=3, population=4, generator=g)[0]


@settings(max_examples=40, deadline=None)
@given(case=cases)
def test_attacks_stay_in_budget_and_leave_model_alone(case):
    g = torch.Generator().manual_seed(case["seed"])
    torch.manual_seed(case["seed"])
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, case["width"]), nn.Tanh(), nn.Linear(case["width"], case["classes"]))
    model.train(case["training"])
    x = torch.rand(case["n"], 3, 2, 2, generator=g)
    x[0, 0, 0, 0] = 0.0  # exercise the bounds of [0, 1]
    x[-1, -1, -1, -1] = 1.0
    y = torch.randint(case["classes"], (case["n"],), generator=g)
    before = snapshot(model)
    x_adv = run(case, model, x, y, g)
    assert_unchanged(model, before)
    if case["attack"] in BUDGETED:
        assert_in_budget(x_adv, x, case["eps"], "l2" if case["attack"].endswith("l2") else "linf", tol=1e-6)
        if case["eps"] == 0:
            assert torch.equal(x_adv, x)
    else:
        assert x_adv.shape == x.shape and not x_adv.requires_grad and x_adv.min() >= 0 and x_adv.max() <= 1
