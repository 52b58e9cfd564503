"""The penalty-method reference attacks (attacks.penalty): the exact answer, the budget, purity, and bad input."""

import pytest
import torch

from attack_helpers import assert_in_budget, assert_unchanged, gen, snapshot
from fooled.attacks import attack_success, linear_gaussian_l2_evadable
from fooled.attacks.penalty import multitarget_penalty_pgd, penalty_aware_pgd
from fooled.errors import ConfigError
from test_exact_aware import toy

REFERENCES = (penalty_aware_pgd, multitarget_penalty_pgd)


@pytest.fixture(scope="module")
def detector(batch, gaussian_log_prob):
    """(score, threshold): -log N(x) flagging 5% of clean test digits."""
    return (lambda x: -gaussian_log_prob(x)), -gaussian_log_prob(batch[0]).quantile(0.05).item()


def evaded(model, x_adv, y, score, threshold):
    return attack_success(model, x_adv, y) & (score(x_adv) <= threshold)


@pytest.mark.parametrize("attack", REFERENCES)
def test_reaches_the_exact_answer_and_never_exceeds_it(attack):
    model, weight, bias, mean, cov, x, y, score, tau = toy()
    exact = linear_gaussian_l2_evadable(weight, bias, mean, cov, x, y, eps=0.8, tau=tau)
    x_adv = attack(model, x, y, score=score, threshold=tau, eps=0.8, norm="l2", steps=100, generator=gen())
    assert_in_budget(x_adv, x, 0.8, "l2")
    found = evaded(model, x_adv, y, score, tau)
    assert 0.3 < exact.float().mean() < 0.9
    assert not (found & ~exact).any()
    assert exact.sum() - found.sum() <= 1


@pytest.mark.parametrize("attack", REFERENCES)
@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_budget_box_purity_and_the_detector_matters(model, batch, detector, attack, norm, eps):
    x, y = batch[0][:60], batch[1][:60]
    score, threshold = detector
    model.train()
    before = snapshot(model)
    x_adv = attack(model, x, y, score=score, threshold=threshold, eps=eps, norm=norm, steps=30, generator=gen())
    assert_unchanged(model, before)
    model.eval()
    assert_in_budget(x_adv, x, eps, norm)
    mis = attack_success(model, x_adv, y)
    ok = evaded(model, x_adv, y, score, threshold)
    assert ok.float().mean() > 0.6  # misclassified and unflagged on most digits
    assert (score(x_adv)[mis] <= threshold).float().mean() > 0.9  # the penalty kept the misclassified points unflagged


def test_per_image_budgets_match_separate_calls(model, batch, detector):
    """Two budgets stacked in one batch give each copy its own budget (as the study attacks every eps at once)."""
    x, y = batch[0][:20], batch[1][:20]
    score, threshold = detector
    eps = torch.tensor([0.05] * 20 + [0.2] * 20)
    x_adv = penalty_aware_pgd(model, x.repeat(2, 1, 1, 1), y.repeat(2), score=score, threshold=threshold, eps=eps, steps=10)
    assert_in_budget(x_adv[:20], x, 0.05)
    assert_in_budget(x_adv[20:], x, 0.2)
    assert torch.equal(x_adv[:20], penalty_aware_pgd(model, x, y, score=score, threshold=threshold, eps=0.05, steps=10))


def test_eps_zero_is_the_input_and_a_start_is_a_candidate(model, batch, detector):
    x, y = batch[0][:30], batch[1][:30]
    score, threshold = detector
    assert torch.equal(penalty_aware_pgd(model, x, y, score=score, threshold=threshold, eps=0.0), x)
    good = penalty_aware_pgd(model, x, y, score=score, threshold=threshold, eps=0.15, steps=40, generator=gen())
    with_start = penalty_aware_pgd(model, x, y, score=score, threshold=threshold, eps=0.15, steps=1, starts=[good])
    assert (evaded(model, with_start, y, score, threshold) >= evaded(model, good, y, score, threshold)).all()


def test_same_generator_same_result(model, batch, detector):
    x, y = batch[0][:10], batch[1][:10]
    score, threshold = detector
    a, b = (penalty_aware_pgd(model, x, y, score=score, threshold=threshold, eps=0.1, steps=5, restarts=3, generator=gen(7))
            for _ in range(2))
    assert torch.equal(a, b)


def test_bad_input_is_named(model, batch, detector):
    x, y = batch[0][:4], batch[1][:4]
    score, threshold = detector
    with pytest.raises(ConfigError, match="score must be a callable"):
        penalty_aware_pgd(model, x, y, score=None, threshold=threshold, eps=0.1)
    with pytest.raises(ConfigError, match="threshold must be a float"):
        penalty_aware_pgd(model, x, y, score=score, threshold="high", eps=0.1)
    with pytest.raises(ConfigError, match=r"score must return a tensor of shape \(4,\)"):
        penalty_aware_pgd(model, x, y, score=lambda v: v.sum(), threshold=threshold, eps=0.1)
    with pytest.raises(ConfigError, match=r"starts\[0\] must be a tensor of the shape of x"):
        penalty_aware_pgd(model, x, y, score=score, threshold=threshold, eps=0.1, starts=[x[:2]])
    with pytest.raises(ConfigError, match="targets must be a finite integer > 0"):
        multitarget_penalty_pgd(model, x, y, score=score, threshold=threshold, eps=0.1, targets=0)
