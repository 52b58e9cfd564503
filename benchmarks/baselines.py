"""Fit time of the shallow baselines on digits, against scikit-learn's own fit of the same model family.

    python benchmarks/baselines.py

Our logistic regression (torch, Adam with early stopping, as the study trains it) against scikit-learn's
LogisticRegression (lbfgs) on the same training images; our GMM and KDE density baselines (a grid of
hyperparameters chosen on validation) against one scikit-learn fit at the chosen hyperparameters. Each line
ends with `ratio: R`, R = peer time / our time (R > 1: ours is faster; below 1 is the price of the grid search
or of gradient training, which the study needs for attacks).
"""

import time

import torch
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KernelDensity

from fooled.config import TrainConfig
from fooled.data import load
from fooled.models.baselines import LogisticRegression
from fooled.models.density_baselines import _features, fit_gmm, fit_kde
from fooled.train import fit


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    splits = load("digits", seed=0)
    x, y = splits.train.x.flatten(1).numpy(), splits.train.y.numpy()

    model = LogisticRegression(splits.info.shape, 10)
    _, ours = timed(lambda: fit(model, splits.train, splits.val, TrainConfig(epochs=40, lr=1e-2, patience=5), seed=0))
    _, peer = timed(lambda: SkLogisticRegression(max_iter=1000).fit(x, y))
    print(f"logistic regression: ours {ours:.2f} s, scikit-learn {peer:.2f} s, ratio: {peer / ours:.3f}")

    gmm, ours = timed(lambda: fit_gmm(splits.train.x, splits.val.x, splits.info.levels, 0))
    train, val = _features(splits.train.x, splits.val.x, splits.info.levels, 0)  # the features both fits see
    p = gmm.params
    _, peer = timed(lambda: GaussianMixture(p["n_components"], covariance_type=p["covariance_type"], random_state=0).fit(train))
    print(f"GMM grid ({gmm.fit_seconds:.2f} s inside): ours {ours:.2f} s, one scikit-learn fit {peer:.2f} s, ratio: {peer / ours:.3f}")

    kde, ours = timed(lambda: fit_kde(splits.train.x, splits.val.x, splits.info.levels, 0))
    _, peer = timed(lambda: KernelDensity(bandwidth=kde.params["bandwidth"]).fit(train).score_samples(val))
    print(f"KDE grid ({kde.fit_seconds:.2f} s inside): ours {ours:.2f} s, one scikit-learn fit and score {peer:.2f} s, "
          f"ratio: {peer / ours:.3f}")


if __name__ == "__main__":
    main()
