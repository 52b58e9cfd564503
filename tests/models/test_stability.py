"""log p(x) and its gradient stay finite anywhere in [0, 1]^D for every density model: gradient attacks go anywhere."""

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.data import Split
from fooled.models.baselines import GaussianClassifier
from fooled.models.flow import FlowClassifier, FlowConfig
from fooled.models.hybrid import HybridFlow

SHAPE, D = (1, 4, 4), 16


def _perturbed(model):
    with torch.no_grad():
        model.train().training_loss(torch.rand(64, *SHAPE, generator=torch.Generator().manual_seed(0)), torch.zeros(64, dtype=torch.long))
        for p in model.parameters():  # large weights: the couplings' bounded scales are what keeps things finite
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return model.eval()


@functools.lru_cache(maxsize=None)
def _model(name):
    cfg = FlowConfig(blocks=3, hidden=16)
    if name == "flow":
        return _perturbed(FlowClassifier(SHAPE, 3, 17, cfg, seed=0))
    if name == "hybrid":
        return _perturbed(HybridFlow(SHAPE, 3, 17, cfg, lam=10.0, seed=0))
    # a near-singular fit: few, nearly constant training images and no shrinkage
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(30, *SHAPE, generator=g) < 0.1).float()
    model = GaussianClassifier(SHAPE, 3, 17, covariance="per_class", shrinkage=0.0)
    model.fit_data(Split(x, torch.arange(30) % 3), Split(x[:9], torch.arange(9) % 3))
    return model


pixels = st.lists(st.one_of(st.sampled_from([0.0, 1.0, 1e-7, 1 - 1e-7, 0.5]), st.floats(0, 1)), min_size=D, max_size=D)


@pytest.mark.parametrize("name", ["flow", "hybrid", "gaussian"])
@settings(max_examples=15, deadline=None)
@given(values=pixels)
def test_log_prob_log_joint_and_their_gradients_are_finite_everywhere_in_the_box(name, values):
    model = _model(name)
    x = torch.tensor(values, dtype=torch.float32).view(1, *SHAPE).requires_grad_(True)
    lp, lj, logits = model.log_prob(x), model.log_joint(x), model(x)
    (grad,) = torch.autograd.grad(lp.sum() + lj.sum() + logits[:, 0].sum(), x)
    assert torch.isfinite(lp).all() and torch.isfinite(lj).all() and torch.isfinite(logits).all()
    assert torch.isfinite(grad).all()
    assert torch.allclose(torch.logsumexp(lj, 1), lp, rtol=1e-4, atol=1e-3)
