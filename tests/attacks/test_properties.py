"""Budget, box and purity hold for random tiny models, inputs and budgets."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attack_helpers import assert_in_budget, assert_unchanged, snapshot
from fooled.attacks import fgsm, pgd

cases = st.fixed_dictionaries(
    dict(
        seed=st.integers(0, 2**16),
        width=st.integers(1, 16),
        classes=st.integers(2, 5),
        n=st.integers(1, 6),
        eps=st.one_of(st.just(0.0), st.floats(0.0, 0.5)),
        attack=st.sampled_from(["fgsm", "pgd_linf", "pgd_l2"]),
        training=st.booleans(),
        early_stop=st.booleans(),
    )
)


@settings(max_examples=20, deadline=None)
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
    eps, attack = case["eps"], case["attack"]
    if attack == "fgsm":
        x_adv = fgsm(model, x, y, eps=eps)
    else:
        norm = attack.removeprefix("pgd_")
        x_adv = pgd(model, x, y, eps=eps, steps=3, norm=norm, restarts=2, generator=g,
                    early_stop=case["early_stop"])
    assert_in_budget(x_adv, x, eps, "l2" if attack == "pgd_l2" else "linf", tol=1e-6)
    assert_unchanged(model, before)
    if eps == 0:
        assert torch.equal(x_adv, x)
