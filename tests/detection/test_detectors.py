import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fooled.detection import calibrate_threshold, neg_log_prob
from fooled.detection.detectors import (
    DETECTORS,
    DetectorContext,
    class_conditional,
    complexity_corrected,
    compressed_bits,
    differentiable_score,
    fit_context,
    score_all,
    typicality,
)
from fooled.errors import ConfigError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def context(flow, digits):
    return fit_context(flow, digits.val.x, digits.info)


def odd_inputs():
    g = torch.Generator().manual_seed(0)
    return torch.cat([torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8), torch.rand(4, 1, 8, 8, generator=g)])


def test_every_detector_gives_finite_float64_scores(flow, digits, context):
    x = torch.cat([digits.test.x[:50], odd_inputs()])
    scores = score_all(flow, x, context=context, batch_size=16)  # several batches
    assert tuple(scores) == tuple(DETECTORS) == ("nll", "class_conditional", "typicality", "complexity")
    for s in scores.values():
        assert s.shape == (len(x),) and s.dtype == np.float64 and np.isfinite(s).all()
    assert scores["nll"] == pytest.approx(neg_log_prob(flow, x), rel=1e-6)
    assert calibrate_threshold(score_all(flow, digits.val.x, context=context)["complexity"], 0.05) > -np.inf


def test_class_conditional_is_bayes_rule(flow, digits):
    """-log p(x|y) = -log p(x) - log p(y|x) + log p(y), so with a uniform prior nll - log K <= it <= nll."""
    x = torch.cat([digits.test.x[:100], odd_inputs()])
    cc, nll = class_conditional(flow, x), neg_log_prob(flow, x)
    with torch.no_grad():
        log_posterior = flow(x).max(1).values.double().numpy()
    assert cc == pytest.approx(nll - log_posterior - math.log(10), abs=1e-3)
    assert (cc <= nll + 1e-3).all() and (cc >= nll - math.log(10) - 1e-3).all()


class GaussianClasses(nn.Module):
    """Toy density on 4x4 images: unit Gaussians at all-0 and all-1 with a 0.9 / 0.1 class prior."""

    def __init__(self):
        super().__init__()
        self.means = nn.Parameter(torch.stack([torch.zeros(16), torch.ones(16)]))
        self.register_buffer("log_prior", torch.tensor([0.9, 0.1]).log())

    def log_joint(self, x):
        d = x.flatten(1)[:, None, :] - self.means
        return -0.5 * d.pow(2).sum(2) - 8 * math.log(2 * math.pi) + self.log_prior

    def log_prob(self, x):
        return self.log_joint(x).logsumexp(1)


def test_class_conditional_uses_the_models_class_prior():
    model = GaussianClasses()
    x = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])  # each on its class mean, so y_hat = its class
    # -log N(mean; mean, I) whatever the prior; a uniform prior would give 8 log 2pi + log(0.9 or 0.1) - log 2
    assert class_conditional(model, x) == pytest.approx([8 * math.log(2 * math.pi)] * 2, abs=1e-5)


def test_typicality_is_the_distance_to_the_reference(flow, digits, context):
    nll = neg_log_prob(flow, digits.test.x[:20])
    assert context.reference_nll_mean == pytest.approx(neg_log_prob(flow, digits.val.x).mean())
    t = typicality(flow, digits.test.x[:20], reference_nll_mean=context.reference_nll_mean)
    assert t == pytest.approx(np.abs(nll - context.reference_nll_mean), abs=1e-4)
    at_reference = typicality(flow, digits.test.x[:1], reference_nll_mean=float(nll[0]))
    assert at_reference[0] == pytest.approx(0, abs=1e-4)


def test_compressed_length_grows_with_complexity(digits):
    g = torch.Generator().manual_seed(0)
    zeros, grey = torch.zeros(3, 1, 8, 8), torch.full((3, 1, 8, 8), 0.5)
    noise = torch.rand(100, 1, 8, 8, generator=g)
    stripes = torch.zeros(1, 1, 8, 8)
    stripes[..., ::2] = 1
    L = lambda x: compressed_bits(x, 17)  # noqa: E731
    assert (L(zeros) == 0).all()
    assert L(grey).max() <= 32  # a flat image costs a few bytes over an empty one
    assert L(grey).max() < L(stripes)[0] < L(digits.test.x).mean() < L(noise).mean()
    assert L(digits.test.x).mean() + 8 * 8 < L(noise).mean()  # at least a byte per row apart
    rgb = compressed_bits(torch.rand(2, 3, 8, 8, generator=g), 256)
    assert (rgb > 8 * 3 * 64 * 0.8).all()  # 8-bit RGB noise hardly compresses


def test_complexity_is_model_bits_minus_compressed_bits(flow, digits):
    x = digits.test.x[:30]
    bits = (neg_log_prob(flow, x) + 64 * math.log(16)) / math.log(2)
    assert complexity_corrected(flow, x, 17) == pytest.approx(bits - compressed_bits(x, 17), abs=1e-2)


@settings(max_examples=5, deadline=None, derandomize=True)
@given(st.integers(0, 2**31), st.integers(1, 6))
def test_torch_forms_match_the_scores_and_have_gradients(flow, context, seed, n):
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    grads = [None if p.grad is None else p.grad.clone() for p in flow.parameters()]
    expected = score_all(flow, x, context=context)
    for name in ("nll", "class_conditional", "typicality"):
        xr = x.clone().requires_grad_(True)
        s = differentiable_score(name, flow, context)(xr)
        assert s.detach().double().numpy() == pytest.approx(expected[name], rel=1e-5, abs=1e-4)
        (grad,) = torch.autograd.grad(s.sum(), xr)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(g is None and p.grad is None or torch.equal(g, p.grad) for g, p in zip(grads, flow.parameters()))


def test_complexity_has_no_differentiable_form(flow, context):
    with pytest.raises(ConfigError, match="no useful gradient"):
        differentiable_score("complexity", flow, context)


class Unconditional(nn.Module):
    """A density with log_prob only: a standard normal on the pixels."""

    def __init__(self):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(()))

    def log_prob(self, x):
        return -0.5 * (x.flatten(1) - self.shift).pow(2).sum(1) - 0.5 * x[0].numel() * math.log(2 * math.pi)


def test_a_density_without_classes_gets_the_other_detectors():
    model, x = Unconditional(), odd_inputs()
    scores = score_all(model, x, context=DetectorContext(50.0, 17))
    assert tuple(scores) == ("nll", "typicality", "complexity")
    assert scores["typicality"] == pytest.approx(np.abs(scores["nll"] - 50.0))
    with pytest.raises(ConfigError, match="needs a model with log_joint"):
        score_all(model, x, context=DetectorContext(50.0, 17), names=("class_conditional",))


def test_bad_names_and_contexts_are_refused(flow):
    with pytest.raises(ConfigError, match="unknown detector 'nl'"):
        score_all(flow, odd_inputs(), context=DetectorContext(1.0, 17), names=("nl",))
    with pytest.raises(ConfigError, match="levels"):
        DetectorContext(1.0, 1)
    with pytest.raises(ConfigError, match="finite"):
        DetectorContext(math.nan, 17)
