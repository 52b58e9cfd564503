import copy

import pytest
import torch
from torch import nn

from attack_helpers import assert_unchanged, gen, snapshot
from fooled.attacks import fooling_evolution, fooling_gradient
from fooled.errors import ConfigError


def test_fooling_gradient_reaches_confidence(model):
    target = torch.arange(20) % 10
    images, conf = fooling_gradient(model, target, 20, shape=(1, 8, 8), generator=gen())
    assert images.shape == (20, 1, 8, 8) and conf.shape == (20,)
    assert images.min() >= 0 and images.max() <= 1 and not images.requires_grad
    assert (conf >= 0.99).float().mean() >= 0.9
    probs = torch.softmax(model(images), 1)[torch.arange(20), target]
    assert torch.allclose(probs, conf, atol=1e-5)


def test_fooling_gradient_is_deterministic_and_pure(trained):
    model = copy.deepcopy(trained).train()
    before = snapshot(model)
    a = fooling_gradient(model, 4, 5, shape=(1, 8, 8), generator=gen(7))[0]
    b = fooling_gradient(model, 4, 5, shape=(1, 8, 8), generator=gen(7))[0]
    assert torch.equal(a, b)
    assert_unchanged(model, before)


class NoGradOnly(nn.Module):
    """Wraps a model and fails if it is ever called with autograd enabled."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        assert not torch.is_grad_enabled(), "black-box attack must not build a graph"
        return self.model(x)


def test_fooling_evolution_raises_confidence_without_gradients(model):
    target = torch.arange(10)
    wrapped = NoGradOnly(model)
    start = torch.softmax(model(torch.rand(64, 1, 8, 8, generator=gen(1))), 1)[:, target].mean(0)
    images, conf = fooling_evolution(wrapped, target, 10, shape=(1, 8, 8), generations=60, generator=gen())
    assert images.shape == (10, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert conf.mean() > 0.9 and (conf > start + 0.3).all()
    assert all(p.grad is None for p in model.parameters())


def test_fooling_evolution_is_deterministic(model):
    a = fooling_evolution(model, 2, 3, shape=(1, 8, 8), generations=5, generator=gen(3))
    b = fooling_evolution(model, 2, 3, shape=(1, 8, 8), generations=5, generator=gen(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    "fn, kwargs, match",
    [
        (fooling_gradient, dict(init="zeros"), r"unknown init 'zeros'; valid inits: uniform, gray"),
        (fooling_gradient, dict(confidence=1.0), r"confidence must be a probability in \(0, 1\)"),
        (fooling_evolution, dict(population=1), r"population must be >= 2"),
        (fooling_evolution, dict(shape=(8, -1)), r"shape must be a tuple of positive ints"),
    ],
)
def test_bad_arguments(model, fn, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        fn(model, 0, 2, **(dict(shape=(1, 8, 8)) | kwargs))
