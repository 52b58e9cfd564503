"""Detectors a reviewer would name, beside -log p(x): each maps images to an anomaly score (higher = more suspicious).

  max_softmax   -max_k p(k | x) of the attacked classifier (Hendrycks & Gimpel 2017).
  mahalanobis   min_k Mahalanobis distance of the CNN's penultimate features to class k's mean, one covariance
                shared by the classes, fitted on training images (Lee et al. 2018, without their input
                preprocessing and layer ensemble).
  kernel_density  -log of a Gaussian kernel density of the CNN's penultimate features of the predicted class,
                fitted on training images, bandwidth chosen on validation (Feinman et al. 2017).
  mc_dropout    variance of the CNN's softmax over dropout samples, summed over classes (Feinman et al. 2017;
                they combine it with kernel density in a logistic regression fitted on attacks, which would
                tune the detector to the attacks: here each is a detector alone, calibrated on clean data).
  off_grid      the largest distance of a pixel to the data's grey-level grid: a trivial detector of any
                continuous perturbation of images that lie on the grid.
  gmm, kde, gaussian  -log p(x) of the pixel-space density baselines (scikit-learn's GaussianMixture and
                KernelDensity, and the Gaussian generative classifier), as likelihood detectors.

Every detector is fitted on training images and calibrated on validation images only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import KernelDensity

from ..models import is_density_model
from ..models.density_baselines import kde_log_density
from .guard import ScoreMemo

Score = Callable[[torch.Tensor], np.ndarray]  # images (N, C, H, W) on CPU -> float64 scores (N,)
KD_BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)  # in feature units, scaled by the features' mean standard deviation
MC_SAMPLES = 10


@torch.no_grad()
def _kde_score(kde: KernelDensity, feats: np.ndarray) -> np.ndarray:
    """The exact log-density of a fitted KernelDensity (its `score_samples` overestimates features far from every
    training point, the adversarial ones among them)."""
    return kde_log_density(kde, torch.as_tensor(feats, dtype=torch.float64)).numpy()


@torch.no_grad()
def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device, batch_size: int = 512) -> np.ndarray:
    out = [fn(x[i : i + batch_size].to(device)).double().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0)


def _device(model: torch.nn.Module):
    return next(model.parameters()).device


def max_softmax(model: torch.nn.Module) -> Score:
    """-max_k p(k | x) of `model`."""
    return lambda x: _batched(lambda xb: -model(xb).softmax(1).amax(1), x, _device(model))


def off_grid(levels: int) -> Score:
    """max over pixels of |x - round(x (L-1)) / (L-1)|: zero on the grid."""
    return lambda x: (x - torch.round(x * (levels - 1)) / (levels - 1)).abs().flatten(1).amax(1).double().numpy()


def density(model) -> Score:
    """-log p(x) of a density model: a torch module with log_prob, or a scikit-learn baseline with log_prob(x) -> numpy."""
    if isinstance(model, torch.nn.Module):
        return lambda x: _batched(lambda xb: -model.log_prob(xb), x, _device(model))
    return lambda x: -np.asarray(model.log_prob(x), dtype=np.float64)


@dataclass
class FeatureDetectors:
    """Mahalanobis, kernel density and MC-dropout scores from a CNN with `embed` (its penultimate features)."""

    cnn: torch.nn.Module
    means: np.ndarray  # (K, F) class means of the training features
    precision: np.ndarray  # (F, F) shared by the classes
    kdes: list  # one fitted KernelDensity per class
    scale: float  # features are divided by this before the kernel density
    memo: ScoreMemo  # the features of an image set, computed once for the detectors that share them

    @classmethod
    def fit(cls, cnn: torch.nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
            memo: ScoreMemo | None = None) -> "FeatureDetectors":
        feats = _batched(cnn.embed, train_x, _device(cnn))
        y = train_y.numpy()
        classes = np.unique(y)
        means = np.stack([feats[y == k].mean(0) for k in classes])
        precision = LedoitWolf().fit(feats - means[np.searchsorted(classes, y)]).precision_
        scale = float(feats.std(0).mean()) or 1.0
        val_feats, val_pred = _batched(cnn.embed, val_x, _device(cnn)) / scale, _predict(cnn, val_x)
        best = None
        for bandwidth in KD_BANDWIDTHS:  # the bandwidth with the highest validation log-likelihood of the predicted class
            kdes = [KernelDensity(bandwidth=bandwidth).fit(feats[y == k] / scale) for k in classes]
            ll = sum(_kde_score(kdes[k], val_feats[val_pred == k]).sum() for k in range(len(classes)) if (val_pred == k).any())
            if best is None or ll > best[0]:
                best = (ll, kdes)
        return cls(cnn, means, precision, best[1], scale, memo or ScoreMemo())

    def _embed(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(penultimate features, predictions) of x, computed once for the detectors that share them."""
        def compute():
            feats = _batched(self.cnn.embed, x, _device(self.cnn))
            return feats, _predict(self.cnn, x)

        return self.memo(("embed", id(self)), x, compute)

    def mahalanobis(self, x: torch.Tensor) -> np.ndarray:
        d = self._embed(x)[0][:, None, :] - self.means[None]
        return np.einsum("nkf,fg,nkg->nk", d, self.precision, d).min(1)

    def kernel_density(self, x: torch.Tensor) -> np.ndarray:
        feats, pred = self._embed(x)
        feats = feats / self.scale
        out = np.empty(len(x))
        for k, kde in enumerate(self.kdes):
            if (pred == k).any():
                out[pred == k] = -_kde_score(kde, feats[pred == k])
        return out

    def mc_dropout(self, x: torch.Tensor, samples: int = MC_SAMPLES) -> np.ndarray:
        """Summed variance of p(y | x) over dropout masks; the masks are drawn from a fixed seed, so scores are deterministic."""
        dropouts = [m for m in self.cnn.modules() if isinstance(m, torch.nn.Dropout)]
        state = torch.random.get_rng_state()
        torch.manual_seed(0)
        try:
            for m in dropouts:
                m.train()
            probs = np.stack([_batched(lambda xb: self.cnn(xb).softmax(1), x, _device(self.cnn)) for _ in range(samples)])
        finally:
            for m in dropouts:
                m.eval()
            torch.random.set_rng_state(state)
        return probs.var(0).sum(1)


def _predict(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    return _batched(lambda xb: model(xb).argmax(1), x, _device(model)).astype(np.int64)


def baseline_scores(models: dict, train_x, train_y, val_x, levels: int, densities: dict,
                    memo: ScoreMemo | None = None) -> tuple[dict[str, Score], dict[str, Callable]]:
    """(target-independent detectors, per-target detectors as name -> (classifier -> Score)) for the models of a seed.

    `densities` adds pixel-space density baselines by name (fitted scikit-learn baselines). The feature detectors need
    a model named "cnn" with `embed`; without one they are left out."""
    shared: dict[str, Score] = {"off_grid": off_grid(levels)}
    cnn = models.get("cnn")
    if cnn is not None and hasattr(cnn, "embed"):
        feats = FeatureDetectors.fit(cnn, train_x, train_y, val_x, memo)
        shared.update(mahalanobis=feats.mahalanobis, kernel_density=feats.kernel_density)
        if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in cnn.modules()):
            shared["mc_dropout"] = feats.mc_dropout
    for name, model in densities.items():
        shared[name] = density(model)
    if "gaussian" in models and is_density_model(models["gaussian"]):
        shared["gaussian"] = density(models["gaussian"])
    return shared, {"max_softmax": max_softmax}


__all__ = ["FeatureDetectors", "baseline_scores", "density", "max_softmax", "off_grid"]
