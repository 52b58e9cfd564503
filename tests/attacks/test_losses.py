import pytest
import torch

from fooled.attacks import cross_entropy, get_loss, margin, pgd
from fooled.attacks.losses import objective
from fooled.errors import ConfigError

LOGITS = torch.tensor([[2.0, 1.0, -1.0], [0.0, 3.0, 1.0]])
Y = torch.tensor([0, 2])


def test_margin_is_best_other_minus_true():
    assert torch.allclose(margin(LOGITS, Y), torch.tensor([1.0 - 2.0, 3.0 - 1.0]))


def test_cross_entropy_is_per_example():
    expected = -torch.log_softmax(LOGITS, 1)[torch.arange(2), Y]
    assert torch.allclose(cross_entropy(LOGITS, Y), expected)


def test_targeted_objective_is_negated_loss():
    target = torch.tensor([1, 1])
    targeted_margin = objective("margin", Y, target)(LOGITS, None)
    assert torch.allclose(targeted_margin, torch.tensor([1.0 - 2.0, 3.0 - 1.0]))
    targeted_ce = objective("ce", Y, target)(LOGITS, None)
    assert torch.allclose(targeted_ce, -cross_entropy(LOGITS, target))


def test_get_loss_resolves_names_and_callables():
    assert get_loss("ce") is cross_entropy and get_loss("cross_entropy") is cross_entropy
    assert get_loss("margin") is margin
    fn = lambda logits, y, x_adv: logits.sum(1)  # noqa: E731
    assert get_loss(fn) is fn


@pytest.mark.parametrize("bad", ["hinge", "CE ", 3, None])
def test_unknown_loss_names_the_value_and_the_choices(bad):
    with pytest.raises(ConfigError, match=r"unknown loss .*valid losses: ce, cross_entropy, margin") as info:
        get_loss(bad)
    assert repr(bad) in str(info.value)


def test_callable_loss_receives_x_adv(model, batch):
    x, y = batch[0][:8], batch[1][:8]
    seen = []

    def pixel_loss(logits, y, x_adv):  # a detector-aware loss reads the candidate input
        seen.append(x_adv.shape)
        return margin(logits, y) - (x_adv - 0.5).pow(2).flatten(1).sum(1)

    x_adv = pgd(model, x, y, eps=0.1, steps=3, loss=pixel_loss, generator=torch.Generator().manual_seed(0)).x_adv
    # every step sees the whole batch; the final iterate is scored only on the examples not yet misclassified
    assert seen[:3] == [x.shape] * 3 and len(seen) <= 4 and all(s[1:] == x.shape[1:] for s in seen)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6


def test_targeted_dlr_is_the_target_against_the_true_class_over_the_spread_of_the_sorted_logits():
    from fooled.attacks.losses import dlr_targeted
    logits = torch.tensor([[4.0, 1.0, 3.0, 0.0, 2.0]])  # sorted: 4, 3, 2, 1, 0
    value = dlr_targeted(logits, torch.tensor([0]), torch.tensor([2]))
    assert value.item() == pytest.approx((3.0 - 4.0) / (4.0 - (2.0 + 1.0) / 2))
    assert dlr_targeted(10 * logits, torch.tensor([0]), torch.tensor([2])).item() == pytest.approx(value.item())  # scale-free
    fn = objective("dlr", torch.tensor([0, 1]), torch.tensor([2, 3]))
    assert fn(logits, None, idx=torch.tensor([1])).item() == pytest.approx((0.0 - 1.0) / 2.5)  # y and target of example 1
    with pytest.raises(ConfigError, match="'dlr' is targeted only"):
        objective("dlr", torch.tensor([0]))
