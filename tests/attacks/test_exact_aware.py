"""linear_gaussian_l2_evadable, the exact detector-aware answer, and the aware attacks measured against it."""

import math

import pytest
import torch
from torch import nn

from attack_helpers import gen
from fooled.attacks import attack_success, linear_gaussian_l2_evadable, strongest_aware_attack
from fooled.errors import ConfigError


def toy(seed=0, n=100, side=4, classes=3):
    """A linear classifier and a Gaussian detector on 4x4 images drawn from that Gaussian (clipped to [0, 1]), float64."""
    g = gen(seed)
    d = side * side
    mean = (0.5 + 0.1 * torch.randn(d, generator=g, dtype=torch.float64)).clamp(0.2, 0.8)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = 0.02 * a @ a.T / d + 0.005 * torch.eye(d, dtype=torch.float64)
    x = (mean + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T).clamp(0, 1)
    weight, bias = torch.randn(classes, d, generator=g, dtype=torch.float64), torch.randn(classes, generator=g, dtype=torch.float64)
    linear = nn.Linear(d, classes).double()
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    precision, logdet = torch.linalg.inv(cov), torch.linalg.slogdet(cov)[1]

    def score(images):  # -log N(x; mean, cov)
        u = images.flatten(1) - mean
        return 0.5 * ((u @ precision) * u).sum(1) + 0.5 * d * math.log(2 * math.pi) + 0.5 * logdet

    x = x.view(n, 1, side, side)
    y = (x.flatten(1) @ weight.T + bias).argmax(1)  # every image correctly classified
    return nn.Sequential(nn.Flatten(), linear), weight, bias, mean, cov, x, y, score, score(x).quantile(0.8).item()


def test_attack_reaches_the_exact_rate_and_never_exceeds_it():
    model, weight, bias, mean, cov, x, y, score, tau = toy()
    exact = linear_gaussian_l2_evadable(weight, bias, mean, cov, x, y, eps=0.8, tau=tau)
    x_adv = strongest_aware_attack(model, x, y, score=score, threshold=tau, eps=0.8, norm="l2", steps=100, generator=gen())
    found = attack_success(model, x_adv, y) & (score(x_adv) <= tau)
    assert 0.3 < exact.float().mean() < 0.9  # a budget where the answer is not trivial
    assert not (found & ~exact).any()  # nothing the solver calls impossible: a check on the solver
    assert exact.sum() - found.sum() <= 2


def test_eps_zero_is_clean_misclassified_and_unflagged():
    model, weight, bias, mean, cov, x, y, score, tau = toy(seed=1, n=30)
    wrong = (y + 1) % 3
    exact = linear_gaussian_l2_evadable(weight, bias, mean, cov, x, wrong, eps=0.0, tau=tau)
    assert torch.equal(exact, attack_success(model, x, wrong) & (score(x) <= tau))


def test_detector_that_flags_nothing_reduces_to_the_classifier():
    """With tau huge only the classifier matters: evadable iff the L2 distance to a wrong class's half-space,
    |z_j - z_y| / ||w_j - w_y||, is within eps (the box does not bind for these interior images and small eps)."""
    model, weight, bias, mean, cov, x, y, score, tau = toy(seed=2, n=30)
    x = x.clamp(0.3, 0.7)
    y = (x.flatten(1) @ weight.T + bias).argmax(1)
    z = x.flatten(1) @ weight.T + bias
    dist = torch.stack([(z.gather(1, y[:, None]).squeeze(1) - z[:, j]) / (weight[j] - weight[y]).norm(dim=1) for j in range(3)], 1)
    dist[torch.arange(30), y] = torch.inf
    eps = 0.25
    expected = dist.amin(1) <= eps
    assert 0 < expected.sum() < 30
    assert torch.equal(linear_gaussian_l2_evadable(weight, bias, mean, cov, x, y, eps=eps, tau=1e9), expected)


def test_shapes_are_named():
    with pytest.raises(ConfigError, match=r"weight must be \(K, 4\), bias \(K,\), mean \(4,\) and cov \(4, 4\)"):
        linear_gaussian_l2_evadable(torch.zeros(3, 4), torch.zeros(3), torch.zeros(5), torch.eye(4), torch.rand(2, 1, 2, 2),
                                    torch.zeros(2, dtype=torch.long), eps=0.1, tau=1.0)


def test_solver_is_not_beaten_by_the_attack_on_digits_with_a_fitted_gaussian():
    """Digits, a logistic regression and a Ledoit-Wolf Gaussian fitted on 96 images (ill-conditioned in 64 dimensions, as
    in the study's audit): SLSQP from x alone stopped short on 2 of 32 images of that kind; with its second start it must
    find every evasion the attack finds."""
    from sklearn.covariance import LedoitWolf
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    data = load_digits()
    x_all = torch.tensor(data.images / 16.0, dtype=torch.float64).unsqueeze(1)
    y_all = torch.tensor(data.target)
    clf = LogisticRegression(max_iter=2000).fit(data.data[:1000] / 16.0, data.target[:1000])
    weight, bias = torch.tensor(clf.coef_), torch.tensor(clf.intercept_)
    linear = nn.Linear(64, 10).double()
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    model = nn.Sequential(nn.Flatten(), linear)
    x, y = x_all[1000:1006], y_all[1000:1006]
    held = x_all[1032:1128].flatten(1).numpy()
    cov, mean = torch.tensor(LedoitWolf().fit(held).covariance_), torch.tensor(held.mean(0))
    gauss = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)

    def score(v):
        return -gauss.log_prob(v.flatten(1))

    tau = score(x_all[1032:1128]).quantile(0.95).item()
    exact = linear_gaussian_l2_evadable(weight, bias, mean, cov, x, y, eps=0.75, tau=tau)
    x_adv = strongest_aware_attack(model, x, y, score=score, threshold=tau, eps=0.75, norm="l2", steps=40, generator=gen())
    found = attack_success(model, x_adv, y) & (score(x_adv) <= tau)
    assert 0 < exact.sum() < len(x)  # a budget where the answer is not trivial
    assert not (found & ~exact).any()
    assert torch.equal(linear_gaussian_l2_evadable(weight, bias, mean, cov, x[:2], y[:2], eps=0.75, tau=tau, starts=x_adv[:2]),
                       exact[:2] | found[:2])
