"""Attacks that need a density model: the latent attack, density-aware fooling images, and BPDA on the complexity
score, on a tiny FlowClassifier trained on the digits (tests/attacks/conftest.py)."""

import copy

import pytest
import torch

from attack_helpers import assert_in_budget, assert_unchanged, gen, make_mlp, snapshot
from fooled.attacks import (
    attack_success,
    bpda,
    detector_aware_pgd,
    fooling_evolution,
    fooling_evolution_unflagged,
    fooling_gradient,
    fooling_gradient_unflagged,
    latent_attack,
    latent_class_means,
)
from fooled.detection.detectors import complexity_score
from fooled.errors import ConfigError
from fooled.models import bpd_from_log_prob
from fooled.models.flow import FlowConfig
from fooled.models.hybrid import HybridFlow


def evaded(model, x_adv, y, score, threshold):
    with torch.no_grad():
        return attack_success(model, x_adv, y) & (score(x_adv) <= threshold)


def test_latent_attack_budget_and_evasion(tiny_flow, batch, flow_detector):
    score, threshold = flow_detector
    x, y = batch[0][:60], batch[1][:60]
    model = copy.deepcopy(tiny_flow).train()
    before = snapshot(model)
    x_adv = latent_attack(model, x, y, eps=0.2, score=score, threshold=threshold)
    assert_unchanged(model, before)
    assert_in_budget(x_adv, x, 0.2)
    clean = evaded(tiny_flow, x, y, score, threshold)
    found = evaded(tiny_flow, x_adv, y, score, threshold)
    assert (found >= clean).all() and found.float().mean() > 0.5  # the clean image is a candidate too
    assert torch.equal(latent_attack(tiny_flow, x, y, eps=0.0), x)
    assert_in_budget(latent_attack(tiny_flow, x, y, eps=1.5, norm="l2"), x, 1.5, "l2")


def test_latent_attack_hybrid_needs_class_means(batch, digits):
    hybrid = HybridFlow((1, 8, 8), 10, 17, FlowConfig(blocks=2, hidden=16), lam=1.0).eval()
    x, y = batch[0][:10], batch[1][:10]
    with pytest.raises(ConfigError, match=r"HybridFlow has no class means.*latent_class_means"):
        latent_attack(hybrid, x, y, eps=0.1)
    means = latent_class_means(hybrid, digits[0][:200], digits[1][:200], 10)
    assert means.shape == (10, 64)
    assert_in_budget(latent_attack(hybrid, x, y, eps=0.1, class_means=means), x, 0.1)
    with pytest.raises(ConfigError, match=r"needs a flow with encode"):
        latent_attack(make_mlp(), x, y, eps=0.1)


def test_unflagged_fooling_images_succeed_where_plain_ones_are_flagged(tiny_flow, flow_detector):
    score, threshold = flow_detector
    target = torch.arange(20) % 10
    plain, plain_conf = fooling_gradient(tiny_flow, target, 20, shape=(1, 8, 8), generator=gen())
    images, conf, s = fooling_gradient_unflagged(tiny_flow, target, 20, shape=(1, 8, 8), score=score,
                                                 threshold=threshold, generator=gen())
    with torch.no_grad():  # what is reported is what the returned images get
        assert torch.allclose(conf, torch.softmax(tiny_flow(images), 1)[torch.arange(20), target], atol=1e-5)
        assert torch.allclose(s, score(images), atol=1e-4)
        plain_ok = (plain_conf >= 0.99) & (score(plain) <= threshold)
    assert images.min() >= 0 and images.max() <= 1 and not images.requires_grad
    success = (conf >= 0.99) & (s <= threshold)
    assert success.float().mean() >= 0.5 and success.sum() > plain_ok.sum()


def test_unflagged_evolution_is_black_box_and_honest(tiny_flow, flow_detector):
    score, threshold = flow_detector
    target = torch.arange(10)
    images, conf, s = fooling_evolution_unflagged(tiny_flow, target, 10, shape=(1, 8, 8), score=score,
                                                  threshold=threshold, generations=60, generator=gen())
    with torch.no_grad():
        assert torch.allclose(s, score(images), atol=1e-4)
        plain, _ = fooling_evolution(tiny_flow, target, 10, shape=(1, 8, 8), generations=60, generator=gen())
        plain_unflagged = score(plain) <= threshold
    success = (conf >= 0.99) & (s <= threshold)
    assert success.sum() >= 5 and success.sum() > plain_unflagged.sum()
    again = fooling_evolution_unflagged(tiny_flow, target, 10, shape=(1, 8, 8), score=score, threshold=threshold,
                                        generations=60, generator=gen())
    assert torch.equal(again[0], images)


def test_bpda_attacks_the_complexity_score(tiny_flow, batch):
    """The complexity score's PNG length is piecewise constant; BPDA holds it fixed in the backward pass."""
    x, y = batch[0][:30], batch[1][:30]
    dim, levels = 64, 17

    def model_bits(images):
        return dim * bpd_from_log_prob(tiny_flow.log_prob(images), dim, levels)

    score = bpda(lambda images: complexity_score(tiny_flow, images, levels), model_bits)
    with torch.no_grad():
        threshold = complexity_score(tiny_flow, x, levels).quantile(0.5).item()
    x_adv = detector_aware_pgd(tiny_flow, x, y, score=score, threshold=threshold, eps=0.1, steps=10, lambdas=(1.0,),
                               generator=gen())
    with torch.no_grad():
        exact = complexity_score(tiny_flow, x_adv, levels)  # measured with the real compressor
    found = attack_success(tiny_flow, x_adv, y) & (exact <= threshold)
    assert found.float().mean() > 0.3
