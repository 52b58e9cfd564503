"""The flow that starts at the Gaussian classifier, and the unconditional flow of mean_norm = 0."""

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.config import ModelsConfig, TrainConfig, load_config
from fooled.errors import ConfigError, ModelError
from fooled.models import GaussianClassifier, fit_base
from fooled.models.flow import FlowClassifier, FlowConfig
from fooled.train import evaluate_loss, fit


def _gaussian_flow(info, permutation="lu", blocks=2):
    cfg = FlowConfig(blocks=blocks, hidden=16, alpha=0.01, permutation=permutation, base="gaussian")
    return FlowClassifier(info.shape, info.num_classes, info.levels, cfg, seed=3)


@pytest.mark.parametrize("permutation", ["lu", "shuffle"])
def test_gaussian_base_flow_starts_at_the_gaussian_classifiers_log_likelihood(digits, permutation):
    flow = _gaussian_flow(digits.info, permutation)
    chosen = fit_base(flow, digits.train, digits.val)
    gaussian = GaussianClassifier(digits.info.shape, digits.info.num_classes, digits.info.levels, alpha=0.01, seed=3)
    assert gaussian.fit_data(digits.train, digits.val) == chosen  # same fit, same choice of covariance and shrinkage
    flow.eval()
    x = digits.test.x[:50]
    with torch.no_grad():
        assert torch.allclose(flow.log_joint(x), gaussian.log_joint(x), rtol=1e-4, atol=1e-2)
        assert torch.equal(flow(x).argmax(1), gaussian(x).argmax(1))
    # the couplings are really at the identity, not merely cancelling: a training step moves the flow off the Gaussian
    flow.train()
    flow.training_loss(digits.train.x[:64], digits.train.y[:64]).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for f in flow.flows for p in f.parameters())


def test_fit_keeps_the_starting_weights_when_no_epoch_beats_them_on_validation(digits):
    flow = _gaussian_flow(digits.info)
    fit_base(flow, digits.train, digits.val)
    start = evaluate_loss(flow, digits.val)
    # a learning rate this large only makes the flow worse, so the Gaussian it started at must be kept
    result = fit(flow, digits.train, digits.val, TrainConfig(epochs=3, patience=2, lr=0.5), seed=0, keep_initial=True)
    assert result.best_epoch == -1 and min(result.val_losses) > start
    assert evaluate_loss(flow, digits.val) == pytest.approx(start, abs=1e-6)


def test_gaussian_base_flow_samples_images_and_the_diagonal_flow_has_no_base_to_fit(digits):
    flow = _gaussian_flow(digits.info)
    fit_base(flow, digits.train, digits.val)
    s = flow.sample(torch.tensor([0, 5, 9]), torch.Generator().manual_seed(0))
    assert s.shape == (3, *digits.info.shape) and 0 <= s.min() and s.max() <= 1
    plain = FlowClassifier(digits.info.shape, 10, digits.info.levels, FlowConfig(blocks=1, hidden=8))
    assert fit_base(plain, digits.train, digits.val) is None


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), learn_scale=st.booleans())
def test_mean_norm_zero_is_an_unconditional_flow_same_log_joint_for_every_class(seed, learn_scale):
    cfg = FlowConfig(blocks=2, hidden=8, mean_norm=0.0, learn_scale=learn_scale)
    flow = FlowClassifier((1, 4, 4), 3, 17, cfg, seed=seed)
    with torch.no_grad():  # move every parameter (the one base scale included) off its initial value
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + p.numel())))
    flow.eval()
    x = torch.rand(7, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    lj = flow.log_joint(x)
    assert flow.base.log_scale.shape == (1, 16)
    assert torch.allclose(lj, lj[:, :1].expand_as(lj), atol=1e-5)


def test_an_unknown_flow_base_is_named(tmp_path):
    with pytest.raises(ConfigError, match="models.flow.base: unknown base 'gauss'"):
        load_config(None, ["models.flow.base='gauss'"])
    with pytest.raises(ModelError, match="flow base must be 'diagonal' or 'gaussian', got 'gauss'"):
        FlowClassifier((1, 4, 4), 3, 17, FlowConfig(base="gauss"))
    assert FlowConfig().base == "diagonal"  # the class default; the digits study's flow starts at the Gaussian
    assert ModelsConfig().flow.base == "gaussian" and load_config(Path(__file__).parents[2] / "experiments" / "digits.toml").models.flow.base == "gaussian"
