import functools

import numpy as np
import pytest
import torch

from fooled.config import TrainConfig
from fooled.data import Split, load
from fooled.models.baselines import GaussianClassifier, LogisticRegression
from fooled.train import fit, load_checkpoint, save_checkpoint


@functools.lru_cache(maxsize=1)
def _digits():
    return load("digits", seed=0)


@functools.lru_cache(maxsize=1)
def _fitted_gaussian():
    splits = _digits()
    model = GaussianClassifier(splits.info.shape, 10, splits.info.levels)
    chosen = model.fit_data(splits.train, splits.val)
    return model, chosen


def _accuracy(model, split):
    with torch.no_grad():
        return (model(split.x).argmax(1) == split.y).float().mean().item()


def test_logistic_regression_trains_to_over_90_percent():  # fit time: benchmarks/baselines.py
    splits = _digits()
    model = LogisticRegression(splits.info.shape, 10)
    fit(model, splits.train, splits.val, TrainConfig(epochs=40, lr=1e-2, patience=5), seed=0)
    assert _accuracy(model, splits.test) > 0.9
    x = splits.test.x[:4].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    assert grad.abs().sum() > 0


def test_gaussian_classifier_fit_data_classifies_and_models_digits():
    splits = _digits()
    model, chosen = _fitted_gaussian()
    assert chosen["covariance"] in ("shared", "per_class") and 0 <= chosen["shrinkage"] <= 1
    assert model.fitted == {"covariance": chosen["covariance"], "shrinkage": chosen["shrinkage"]}
    assert _accuracy(model, splits.test) > 0.85  # measured: 0.983, per_class covariance, shrinkage 0.1
    bpd = model.dequantised_bpd(splits.test.x, torch.Generator().manual_seed(0))
    assert torch.isfinite(bpd).all() and 1.8 < bpd.mean().item() < 2.4  # measured: 2.09
    # the closed-form fit is a maximum of the held-out likelihood: the training loss is lower there than at N(0, I)
    assert model.training_loss(splits.test.x, splits.test.y) < GaussianClassifier((1, 8, 8), 10, 17).training_loss(splits.test.x, splits.test.y)


def test_fixed_hyper_parameters_are_respected_and_fits_are_reproducible():
    splits = _digits()
    fixed = GaussianClassifier((1, 8, 8), 10, 17, covariance="shared", shrinkage=0.3)
    assert fixed.fit_data(splits.train, splits.val)["covariance"] == "shared"
    assert fixed.fitted["shrinkage"] == 0.3
    again = GaussianClassifier((1, 8, 8), 10, 17, covariance="shared", shrinkage=0.3)
    again.fit_data(splits.train, splits.val)
    assert torch.equal(fixed.log_joint(splits.test.x[:5]), again.log_joint(splits.test.x[:5]))


def test_checkpoint_round_trip_keeps_the_fit_and_its_hyper_parameters(tmp_path):
    model, _ = _fitted_gaussian()
    save_checkpoint(tmp_path / "g.pt", model, "hash", {})
    fresh = GaussianClassifier((1, 8, 8), 10, 17)
    load_checkpoint(tmp_path / "g.pt", fresh, "hash")
    x = _digits().test.x[:8]
    assert torch.equal(fresh.log_joint(x), model.log_joint(x))
    assert fresh.fitted == model.fitted


def test_gaussian_density_of_x_integrates_to_about_one():
    # 2 pixels, 256 levels, data well inside the box: checks the dequantisation and logit Jacobians
    g = torch.Generator().manual_seed(0)
    x = (0.5 + 0.1 * torch.randn(400, 2, generator=g) @ torch.tensor([[1.0, 0.6], [0.0, 0.8]])).clamp(0, 1)
    x = (x * 255).round() / 255
    y = (x[:, 0] > 0.5).long()
    model = GaussianClassifier((1, 1, 2), 2, 256)
    model.fit_data(Split(x[:300].view(-1, 1, 1, 2), y[:300]), Split(x[300:].view(-1, 1, 1, 2), y[300:]))
    grid = torch.linspace(0, 1, 401)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    with torch.no_grad():
        p = model.log_prob(torch.stack([xx, yy], -1).view(-1, 1, 1, 2)).exp().view(401, 401).numpy()
    assert np.trapezoid(np.trapezoid(p, grid.numpy(), axis=1), grid.numpy()) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("name", ["zeros", "ones", "noise", "inverted"])
def test_scores_and_gradients_are_finite_on_odd_inputs(name):
    model, _ = _fitted_gaussian()
    digits = _digits().test.x[:8]
    x = {"zeros": torch.zeros_like(digits), "ones": torch.ones_like(digits),
         "noise": torch.rand(digits.shape, generator=torch.Generator().manual_seed(0)), "inverted": 1 - digits}[name]
    x = x.clone().requires_grad_(True)
    lp = model.log_prob(x)
    (grad,) = torch.autograd.grad(lp.sum() + model(x)[:, 0].sum(), x)
    assert torch.isfinite(lp).all() and torch.isfinite(grad).all()
    if name != "zeros":  # blank images are not far from the 1s; the rest are less likely than any real digit
        assert (lp < model.log_prob(digits).min()).all()


def test_samples_are_images_of_their_class():
    model, _ = _fitted_gaussian()
    y = torch.arange(10).repeat(20)
    s = model.sample(y, torch.Generator().manual_seed(0))
    assert s.shape == (200, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    assert _accuracy(model, Split(s, y)) > 0.9


def test_model_has_parameters_for_the_device_but_adam_has_nothing_to_train():
    model = GaussianClassifier((1, 8, 8), 10, 17)
    assert next(model.parameters()).device.type == "cpu"
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("kw, match", [({"covariance": "full"}, "covariance"), ({"shrinkage": 2.0}, "shrinkage"), ({"alpha": 0.5}, "alpha")])
def test_bad_arguments_raise_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        GaussianClassifier((1, 8, 8), 10, 17, **kw)


def test_bad_input_raises_value_error():
    model = GaussianClassifier((1, 8, 8), 10, 17)
    for bad in (torch.full((2, 1, 8, 8), float("nan")), torch.full((2, 1, 8, 8), -0.5), torch.rand(2, 64)):
        with pytest.raises(ValueError):
            model.log_prob(bad)
