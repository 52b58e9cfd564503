import functools

import numpy as np
import pytest
import torch

from fooled.data import load
from fooled.models.density_baselines import GMM_GRID, KDE_BANDWIDTHS, fit_gmm, fit_kde, kde_log_density
from sklearn.neighbors import KernelDensity
from scipy.special import logsumexp


@functools.lru_cache(maxsize=None)
def _fitted(name):
    splits = load("digits", seed=0)
    fit = {"gmm": fit_gmm, "kde": fit_kde}[name]
    return fit(splits.train.x, splits.val.x, splits.info.levels, seed=0), splits


# measured on digits, seed 0: GMM 2.18 bits/dim (8 full components), KDE 2.43 (bandwidth 0.95, logit space; 2.29 at
# bandwidth 0.67 when it was scored by scikit-learn's score_samples, which overestimates points far from the data)
@pytest.mark.parametrize("name, low, high", [("gmm", 2.0, 2.4), ("kde", 2.1, 2.5)])
def test_fits_digits_to_the_measured_bits_per_dim(name, low, high):  # fit time: benchmarks/baselines.py
    model, splits = _fitted(name)
    bpd = model.test_bpd(splits.test.x, torch.Generator().manual_seed(0))
    assert np.isfinite(bpd) and low < bpd < high
    assert model.n_params > 0
    if name == "gmm":
        assert (model.params["covariance_type"], model.params["n_components"]) in GMM_GRID
    else:
        assert model.params["bandwidth"] in KDE_BANDWIDTHS


@pytest.mark.parametrize("name", ["gmm", "kde"])
def test_scores_are_deterministic_finite_and_low_on_odd_images(name):
    model, splits = _fitted(name)
    x = splits.test.x[:100]
    lp = model.log_prob(x)
    assert lp.shape == (len(x),) and np.isfinite(lp).all()
    assert np.array_equal(lp, model.log_prob(x))
    assert model.test_bpd(x, torch.Generator().manual_seed(1)) == model.test_bpd(x, torch.Generator().manual_seed(1))
    for odd in (1 - x, torch.rand(x.shape, generator=torch.Generator().manual_seed(0)), torch.ones_like(x)):
        assert np.median(model.log_prob(odd)) < np.median(lp) - 50


def test_density_of_x_integrates_to_about_one():
    # 2 pixels, 256 levels: checks the logit and dequantisation Jacobians of both estimators
    g = torch.Generator().manual_seed(0)
    x = (0.5 + 0.1 * torch.randn(400, 2, generator=g) @ torch.tensor([[1.0, 0.6], [0.0, 0.8]])).clamp(0, 1)
    x = ((x * 255).round() / 255).view(-1, 1, 1, 2)
    grid = torch.linspace(0, 1, 121)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([xx, yy], -1).view(-1, 1, 1, 2)
    for fit in (fit_gmm, fit_kde):
        model = fit(x[:300], x[300:], 256, seed=0)
        p = np.exp(model.log_prob(points)).reshape(121, 121)
        assert np.trapezoid(np.trapezoid(p, grid.numpy(), axis=1), grid.numpy()) == pytest.approx(1.0, abs=0.03)


def test_bad_input_raises_value_error():
    model, _ = _fitted("gmm")
    for bad in (np.full((2, 1, 8, 8), np.nan), np.full((2, 1, 8, 8), 1.5)):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            model.log_prob(bad)


@pytest.mark.parametrize("name", ["gmm", "kde"])
def test_torch_log_prob_is_log_prob_and_has_a_gradient(name):
    model, splits = _fitted(name)
    x = splits.test.x[:40].clone().requires_grad_(True)
    lp = model.torch_log_prob(x.double())
    assert np.allclose(lp.detach().numpy(), model.log_prob(x.detach()), rtol=0, atol=1e-8)
    lp.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    if name == "gmm":  # scikit-learn's GMM is exact: the closed form must agree with it
        from fooled.models.flow import to_logit
        z, _ = to_logit(x.detach().double().flatten(1), model.levels, 0.01, None)
        assert np.allclose(model.estimator.score_samples(z.numpy()), model._log_p_z(z).numpy(), atol=1e-8)


def test_kde_log_density_is_exact_where_score_samples_is_not():
    # far from every training point the kernels underflow; the exact log-mean-exp does not (scikit-learn's KD-tree did:
    # it overestimated or underestimated such points by hundreds of nats)
    rng = np.random.default_rng(0)
    data, far = rng.normal(size=(500, 32)), 4 * rng.normal(size=(10, 32))
    kde = KernelDensity(bandwidth=0.5).fit(data)
    sq = ((far[:, None, :] - data[None]) ** 2).sum(-1)
    naive = logsumexp(-sq / (2 * 0.25), axis=1) - np.log(500) - 16 * np.log(2 * np.pi * 0.25)
    assert np.allclose(kde_log_density(kde, torch.from_numpy(far)).numpy(), naive, rtol=1e-10)


def test_a_28x28_mixture_is_chosen_from_the_small_grid_and_the_sweep_fits_on_a_subset():
    from fooled.models.density_baselines import COPIES, GMM_GRID_LARGE
    from fooled.study.density_sweep import baseline_densities

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(48, 1, 28, 28, generator=g) * 255).round() / 255
    gmm = fit_gmm(x[:40], x[40:], 256, seed=0)
    assert (gmm.params["covariance_type"], gmm.params["n_components"]) in GMM_GRID_LARGE
    assert np.isfinite(gmm.log_prob(x[40:])).all()
    splits = load("digits", seed=0)
    kde, gmm = baseline_densities(splits, 0, limit=200)
    assert kde.name == "KDE" and np.isfinite(kde.test_bpd)
    assert kde.log_prob(splits.test.x[:5]).shape == (5,)  # the kernels are the 200 images' dequantised copies
    fitted_on = [c for c in kde.log_prob.__defaults__ if hasattr(c, "estimator")][0].estimator.tree_.data.shape[0]
    assert fitted_on == 200 * COPIES
