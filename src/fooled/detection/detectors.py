"""Anomaly scores beyond raw -log p(x) (higher = more suspicious), for any model with log_prob and log_joint.

  nll                -log p(x), nats.
  class_conditional  -log p(x | y_hat), y_hat = argmax_k log p(x, k), nats. By Bayes,
                     = -log p(x) - log p(y_hat | x) + log p(y_hat); with a uniform prior it lies in
                     [-log p(x) - log K, -log p(x)].
  typicality         | -log p(x) - mean NLL of clean held-out data |, nats (Nalisnick et al. 2019,
                     single-sample version: atypically *likely* inputs are suspicious too).
  complexity         -log2 P(x) - L(x), bits (Serra et al. 2020): the model's code length of the
                     discrete image minus a generic compressor's, L(x) from PNG (see compressed_bits).

Each detector is a torch function (model, x, context) -> (N,) in `DETECTORS`; the numpy functions
below batch it under torch.no_grad. nll is differentiable; class_conditional and typicality are
differentiable almost everywhere (argmax and |.| are piecewise smooth), so a detector-aware attack
can use `differentiable_score`. complexity is not: L(x) is piecewise constant in x, so its torch
form's gradient is that of -log2 p(x) alone and says nothing about the compressor.
Thresholds are calibrated on clean validation scores with `fooled.detection.calibrate_threshold`.
"""

from __future__ import annotations

import io
import math
import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..data import DatasetInfo
from ..errors import ConfigError
from ..models import bpd_from_log_prob
from .metrics import neg_log_prob

Tensor = torch.Tensor


@dataclass(frozen=True)
class DetectorContext:
    """What the detectors need beyond the model, fitted on clean held-out data only."""

    reference_nll_mean: float  # mean -log p(x) in nats of clean data: the typical set's centre
    levels: int  # grey levels per channel: L(x) compresses the image on this grid

    def __post_init__(self) -> None:
        if not math.isfinite(self.reference_nll_mean):
            raise ConfigError(f"reference_nll_mean must be finite, got {self.reference_nll_mean!r}")
        _check_levels(self.levels)


def fit_typicality(model: torch.nn.Module, val_x: Tensor, batch_size: int = 512) -> float:
    """Mean -log p(x) in nats of clean held-out images: the reference of the typicality score."""
    if len(val_x) == 0:
        raise ConfigError("the typicality reference needs at least one clean image")
    return float(neg_log_prob(model, val_x, batch_size).mean())


def fit_context(model: torch.nn.Module, val_x: Tensor, info: DatasetInfo) -> DetectorContext:
    """The DetectorContext of a trained model, from clean held-out images (never the test set)."""
    return DetectorContext(reference_nll_mean=fit_typicality(model, val_x), levels=info.levels)


# --- differentiable torch forms ---------------------------------------------------------------
def log_class_prior(model: torch.nn.Module, num_classes: int) -> Tensor:
    """log p(k) of the model's classes: `model.log_prior` or `model.base.log_prior` if present, else uniform."""
    prior = getattr(model, "log_prior", None)
    if prior is None:
        prior = getattr(getattr(model, "base", None), "log_prior", None)
    if prior is None:
        return torch.full((num_classes,), -math.log(num_classes))
    return torch.as_tensor(prior).detach()


def class_conditional_nll(model: torch.nn.Module, x: Tensor) -> Tensor:
    """-log p(x | y_hat) = -(log p(x, y_hat) - log p(y_hat)), y_hat = argmax_k log p(x, k); (N,) nats."""
    log_joint = model.log_joint(x)
    y_hat = log_joint.argmax(1)
    prior = log_class_prior(model, log_joint.shape[1]).to(log_joint)
    return -(log_joint.gather(1, y_hat[:, None]).squeeze(1) - prior[y_hat])


def typicality_gap(model: torch.nn.Module, x: Tensor, reference_nll_mean: float) -> Tensor:
    """| -log p(x) - reference_nll_mean |; (N,) nats."""
    return (-model.log_prob(x) - reference_nll_mean).abs()


def compressed_bits(x: Tensor, levels: int) -> np.ndarray:
    """L(x): bits of the PNG (8 bits per channel, zlib level 9) of each image rounded to the grid, minus
    the bits of an all-zero image of the same shape, so that headers do not swamp tiny images.

    Grey images are PNG mode "L", 3-channel ones "RGB"; PNG's per-row filters let the compressor
    exploit smoothness, as in Serra et al. 2020. Resolution is 8 bits (one byte).
    """
    _check_levels(levels)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ConfigError(f"compressed_bits needs images of shape (N, 1 or 3, H, W), got {tuple(x.shape)}")
    grid = torch.round(x.detach().clamp(0, 1) * (levels - 1)) / (levels - 1)
    pixels = torch.round(grid * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    empty = _png_bytes(np.zeros_like(pixels[0])) if len(pixels) else 0
    return np.array([8.0 * (_png_bytes(p) - empty) for p in pixels], dtype=np.float64)


def _check_levels(levels: int) -> None:
    if isinstance(levels, bool) or not isinstance(levels, numbers.Integral) or levels < 2:
        raise ConfigError(f"levels must be an integer >= 2 (grey levels per channel), got {levels!r}")


def _png_bytes(image: np.ndarray) -> int:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG", compress_level=9)
    return len(buffer.getvalue())


def complexity_score(model: torch.nn.Module, x: Tensor, levels: int) -> Tensor:
    """S(x) = -log2 P(x) - L(x) in bits, P(x) = p(x) (L - 1)^-D the probability of x's grid cell.

    L(x) enters as a constant: the gradient is that of -log2 p(x) alone.
    """
    dim = x[0].numel()
    model_bits = dim * bpd_from_log_prob(model.log_prob(x), dim, levels)
    return model_bits - torch.from_numpy(compressed_bits(x, levels)).to(model_bits)


@dataclass(frozen=True)
class Detector:
    """An anomaly score as a torch function, and whether its gradient is meaningful for attacks."""

    name: str
    score: Callable[[torch.nn.Module, Tensor, DetectorContext], Tensor]  # (model, x, context) -> (N,)
    differentiable: bool  # False: gradient attacks only see part of the score
    unit: str
    needs: str = "log_prob"  # the model method it calls


DETECTORS: dict[str, Detector] = {
    "nll": Detector("nll", lambda m, x, c: -m.log_prob(x), True, "nats"),
    "class_conditional": Detector("class_conditional", lambda m, x, c: class_conditional_nll(m, x), True, "nats", "log_joint"),
    "typicality": Detector("typicality", lambda m, x, c: typicality_gap(m, x, c.reference_nll_mean), True, "nats"),
    "complexity": Detector("complexity", lambda m, x, c: complexity_score(m, x, c.levels), False, "bits"),
}


def available_detectors(model: torch.nn.Module) -> tuple[str, ...]:
    """Names of the detectors this model supports (class_conditional needs `log_joint`)."""
    return tuple(name for name, d in DETECTORS.items() if hasattr(model, d.needs))


def _detector(name: str, model: torch.nn.Module) -> Detector:
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector '{name}'; expected one of {', '.join(DETECTORS)}")
    if not hasattr(model, DETECTORS[name].needs):
        raise ConfigError(f"detector '{name}' needs a model with {DETECTORS[name].needs}(x); "
                          f"{type(model).__name__} supports {', '.join(available_detectors(model))}")
    return DETECTORS[name]


def differentiable_score(name: str, model: torch.nn.Module, context: DetectorContext) -> Callable[[Tensor], Tensor]:
    """x -> (N,) anomaly score with gradients, for detector-aware attacks (minimise it to evade)."""
    detector = _detector(name, model)
    if not detector.differentiable:
        raise ConfigError(f"detector '{name}' has no useful gradient; attack it through 'nll' or a non-gradient attack")
    return lambda x: detector.score(model, x, context)


@torch.no_grad()
def _batched(fn: Callable[[torch.nn.Module, Tensor], Tensor], model: torch.nn.Module, x: Tensor, batch_size: int) -> np.ndarray:
    device = next(model.parameters()).device
    out = [fn(model, x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def score(name: str, model: torch.nn.Module, x: Tensor, context: DetectorContext, batch_size: int = 512) -> np.ndarray:
    """Scores of detector `name` for every image, float64, in batches under no_grad on the model's device."""
    detector = _detector(name, model)
    return _batched(lambda m, xb: detector.score(m, xb, context), model, x, batch_size)


def score_all(model: torch.nn.Module, x: Tensor, *, context: DetectorContext,
              names: tuple[str, ...] | None = None, batch_size: int = 512) -> dict[str, np.ndarray]:
    """{detector name: float64 scores (N,)} for every detector in `names` (default: all the model supports).

    For a model with log_joint, one pass gives every detector: log p(x) = logsumexp_k log p(x, k) (as `log_prob` computes
    it), so the four scores cost one density evaluation instead of four."""
    names = tuple(names or available_detectors(model))
    if not hasattr(model, "log_joint") or not set(names) <= set(DETECTORS):
        return {name: score(name, model, x, context, batch_size) for name in names}
    for name in names:
        _detector(name, model)
    prior = None
    parts = {name: [] for name in names}
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device)
            log_joint = model.log_joint(xb)
            log_p = torch.logsumexp(log_joint, dim=1)
            if prior is None:
                prior = log_class_prior(model, log_joint.shape[1]).to(log_joint)
            y_hat = log_joint.argmax(1)
            found = {"nll": lambda: -log_p,
                     "class_conditional": lambda: -(log_joint.gather(1, y_hat[:, None]).squeeze(1) - prior[y_hat]),
                     "typicality": lambda: (-log_p - context.reference_nll_mean).abs(),
                     "complexity": lambda: xb[0].numel() * bpd_from_log_prob(log_p, xb[0].numel(), context.levels)
                     - torch.from_numpy(compressed_bits(xb, context.levels)).to(log_p)}
            for name in names:
                parts[name].append(found[name]().double().cpu())
    return {name: torch.cat(v).numpy() if v else np.zeros(0) for name, v in parts.items()}


def class_conditional(model: torch.nn.Module, x: Tensor, batch_size: int = 512) -> np.ndarray:
    """-log p(x | predicted class) in nats, float64."""
    return _batched(class_conditional_nll, model, x, batch_size)


def typicality(model: torch.nn.Module, x: Tensor, *, reference_nll_mean: float, batch_size: int = 512) -> np.ndarray:
    """| -log p(x) - reference_nll_mean | in nats, float64."""
    return _batched(lambda m, xb: typicality_gap(m, xb, float(reference_nll_mean)), model, x, batch_size)


def complexity_corrected(model: torch.nn.Module, x: Tensor, levels: int, batch_size: int = 512) -> np.ndarray:
    """-log2 P(x) - L(x) in bits, float64 (Serra et al. 2020)."""
    return _batched(lambda m, xb: complexity_score(m, xb, levels), model, x, batch_size)


__all__ = [
    "DETECTORS", "Detector", "available_detectors", "DetectorContext", "fit_context", "fit_typicality", "neg_log_prob", "class_conditional",
    "typicality", "complexity_corrected", "compressed_bits", "class_conditional_nll", "typicality_gap",
    "complexity_score", "log_class_prior", "differentiable_score", "score", "score_all",
]
