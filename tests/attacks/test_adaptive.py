import copy

import torch
from torch import nn

from attack_helpers import assert_in_budget, assert_unchanged, gen, snapshot
from fooled.attacks import adaptive_pgd, attack_success, pgd


def test_adaptive_keeps_misclassification_and_raises_log_prob(model, batch, gaussian_log_prob):
    x, y = batch[0][:100], batch[1][:100]
    threshold = gaussian_log_prob(x).quantile(0.05).item()  # flags 5% of clean digits
    kwargs = dict(eps=0.3, steps=20, generator=gen())
    phase1 = pgd(model, x, y, loss="margin", **kwargs)
    x_adv = adaptive_pgd(model, x, y, log_prob=gaussian_log_prob, threshold=threshold, **kwargs)
    assert_in_budget(x_adv, x, 0.3)

    plain_mis, mis = attack_success(model, phase1, y), attack_success(model, x_adv, y)
    assert (mis >= plain_mis).all() and mis.float().mean() > 0.9
    lp1, lp = gaussian_log_prob(phase1), gaussian_log_prob(x_adv)
    assert (lp[plain_mis] >= lp1[plain_mis]).all()
    assert lp.mean() > lp1.mean() + 10
    unflagged1 = plain_mis & (lp1 >= threshold)
    unflagged = mis & (lp >= threshold)
    assert unflagged1.float().mean() < 0.2 and unflagged.float().mean() > 0.8


def test_adaptive_l2_and_eps_zero(model, batch, gaussian_log_prob):
    x, y = batch[0][:50], batch[1][:50]
    x_adv = adaptive_pgd(model, x, y, log_prob=gaussian_log_prob, threshold=0.0, eps=1.0, norm="l2",
                         steps=10, generator=gen())
    assert_in_budget(x_adv, x, 1.0, "l2")
    same = adaptive_pgd(model, x, y, log_prob=gaussian_log_prob, threshold=0.0, eps=0.0, generator=gen())
    assert torch.equal(same, x)


class GaussianDensity(nn.Module):
    """A density module with a mode flag, to check that the attack restores it."""

    def __init__(self, log_prob):
        super().__init__()
        self.log_prob_fn = log_prob
        self.dropout = nn.Dropout(0.5)

    def log_prob(self, x):
        return self.log_prob_fn(self.dropout(x))


def test_adaptive_leaves_model_and_density_alone(trained, batch, gaussian_log_prob):
    model = copy.deepcopy(trained).train()
    density = GaussianDensity(gaussian_log_prob).train()
    before = snapshot(model)
    x, y = batch[0][:20], batch[1][:20]
    a = adaptive_pgd(model, x, y, log_prob=density.log_prob, threshold=-50.0, eps=0.1, steps=5, generator=gen(4))
    b = adaptive_pgd(model, x, y, log_prob=density.log_prob, threshold=-50.0, eps=0.1, steps=5, generator=gen(4))
    assert torch.equal(a, b)  # dropout was off during the attack
    assert_unchanged(model, before)
    assert density.training and density.dropout.training
