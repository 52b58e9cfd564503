"""Out-of-distribution inputs made without any download, and images grown to maximise log p(x).

The question: does a density model trained on the data give *lower* log p(x) to inputs that are
plainly not data? Likelihood models are known to fail this (Nalisnick et al. 2019), and p_theta
is unconstrained where the data has no mass, so its maximum may lie far from every real image.

Five sets are made for every dataset (OOD_SETS); a model of the 8x8 digits also meets near-data sets
(`ood_digits`), and a model of Fashion-MNIST MNIST-like digits and the all-black image (`ood_fashion`),
whose published counterpart is `PAPER_REFERENCE`.

Every OOD set is quantised to the dataset's grey-level grid (values k / (levels - 1)), so it is
scored exactly like real data and a low -log p(x) cannot come from being off the grid.
"""

from __future__ import annotations

import functools
import math
import numbers
import os

import numpy as np
import torch
import torch.nn.functional as F

from ..data import DatasetInfo
from ..errors import ConfigError
from ..models import bpd_from_log_prob
from .metrics import auroc, flagged
from .ood_digits import DIGITS_SETS, digits_sets, skipped_digits_sets
from .ood_fashion import FASHION_SETS, PAPER_REFERENCE, fashion_sets

OOD_SETS = ("natural patches", "uniform noise", "constant", "inverted", "blurred")
PATCH_SCALES = (4, 16)  # a patch averages s x s pixels of the photo into one, s drawn in this range
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B in grey


def quantise(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Round images in [0, 1] to the nearest of `levels` evenly spaced grey levels."""
    return torch.round(x.clamp(0, 1) * (levels - 1)) / (levels - 1)


def ood_set_names(info: DatasetInfo, fashion_root: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The names of the sets `ood_sets` makes for dataset `info`, in order."""
    if info.name == "digits":
        skipped = skipped_digits_sets(fashion_root)
        return OOD_SETS + tuple(s for s in DIGITS_SETS if s not in skipped)
    return OOD_SETS + (FASHION_SETS if info.name == "fashion-mnist" else ())


def skipped_sets(info: DatasetInfo, fashion_root: str | os.PathLike | None = None) -> dict[str, str]:
    """The sets of this dataset that `ood_sets` leaves out, each with why ({} when none)."""
    return skipped_digits_sets(fashion_root) if info.name == "digits" else {}


def ood_sets(test_x: torch.Tensor, info: DatasetInfo, n: int, generator: torch.Generator, *,
             test_y: torch.Tensor | None = None, blur_sigma: float | None = None,
             fashion_root: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """OOD sets of `n` images shaped like `info.shape`, on the grid, deterministic given `generator`, named
    by `ood_set_names(info, fashion_root)`: the five below for every dataset, then those of the dataset.

    natural patches: photo patches (scikit-learn's china.jpg and flower.jpg) area-averaged from
        s x s pixels per output pixel, s in PATCH_SCALES, at random positions; grey when C = 1.
    uniform noise: every value an independent uniform grey level.
    constant: each image one uniform random grey level.
    inverted, blurred: 1 - x and Gaussian-blurred x for x = test_x[i % len(test_x)], i = 0..n-1;
        blur_sigma defaults to max(H, W) / 8 pixels (1 pixel for 8x8 digits).
    digits: the near-data sets of `ood_digits` (need `test_y`; 'Fashion-MNIST 8x8' only with `fashion_root`).
    fashion-mnist: MNIST-like digits and the all-black image (`ood_fashion`).
    """
    _check_args(test_x, info, n)
    if info.name == "digits" and (not isinstance(test_y, torch.Tensor) or tuple(test_y.shape) != (len(test_x),)):
        raise ConfigError(f"test_y must be the labels of test_x, shape ({len(test_x)},), for the digits' interpolations")
    c, h, w = info.shape
    levels, device = info.levels, test_x.device
    draw = lambda *shape: torch.rand(shape, generator=generator, device=generator.device)  # noqa: E731
    wrap = torch.arange(n) % len(test_x)
    source = test_x[wrap].detach().float().cpu()
    sigma = max(h, w) / 8 if blur_sigma is None else blur_sigma
    if not (isinstance(sigma, numbers.Real) and sigma > 0):
        raise ConfigError(f"blur_sigma must be a number > 0 or None, got {blur_sigma!r}")
    sets = {
        "natural patches": natural_patches(n, info.shape, generator),
        "uniform noise": draw(n, c, h, w),
        "constant": torch.floor(draw(n, 1, 1, 1) * levels).clamp(max=levels - 1).expand(n, c, h, w) / (levels - 1),
        "inverted": 1 - source,
        "blurred": _blur(source, sigma),
    }
    if info.name == "digits":
        sets |= digits_sets(source, test_y.cpu()[wrap], test_x.detach().float().cpu(), test_y, n, generator, fashion_root)
    elif info.name == "fashion-mnist":
        sets |= fashion_sets(n, generator)
    return {name: quantise(x.to(device), levels).float().contiguous() for name, x in sets.items()}


def natural_patches(n: int, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """`n` photo patches of `shape` (C = 1 grey or C = 3 RGB) in [0, 1], not quantised, on the CPU."""
    c, h, w = shape
    photos = _sample_photos()  # (2, 3, 427, 640)
    if c == 1:
        photos = torch.einsum("k,nkhw->nhw", torch.tensor(_LUMA), photos)[:, None]
    largest = min(photos.shape[2] // h, photos.shape[3] // w)
    if largest < 1:
        raise ConfigError(f"images of {h}x{w} are larger than the sample photos {tuple(photos.shape[2:])}")
    hi = min(PATCH_SCALES[1], largest)
    lo = min(PATCH_SCALES[0], hi)
    cpu = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator, device=generator.device)))
    out = torch.empty(n, c, h, w)
    for i in range(n):
        k = int(torch.randint(len(photos), (1,), generator=cpu))
        s = int(torch.randint(lo, hi + 1, (1,), generator=cpu))
        top = int(torch.randint(photos.shape[2] - s * h + 1, (1,), generator=cpu))
        left = int(torch.randint(photos.shape[3] - s * w + 1, (1,), generator=cpu))
        region = photos[k, :, top : top + s * h, left : left + s * w]
        out[i] = F.avg_pool2d(region[None], s)[0]
    return out


@functools.lru_cache(maxsize=1)
def _sample_photos() -> torch.Tensor:
    """scikit-learn's two bundled photos as float32 (2, 3, 427, 640) in [0, 1]."""
    from sklearn.datasets import load_sample_images

    images = np.stack(load_sample_images().images).astype(np.float32) / 255
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    h, w = x.shape[-2:]
    # a kernel of +-3 sigma, shrunk when needed so reflect padding stays inside the image
    size = min(2 * math.ceil(3 * sigma) + 1, 2 * min(h, w) - 1)
    return gaussian_blur(x, kernel_size=[size, size], sigma=[float(sigma), float(sigma)])


def _check_args(test_x: torch.Tensor, info: DatasetInfo, n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if info.shape[0] not in (1, 3):
        raise ConfigError(f"OOD sets need 1 (grey) or 3 (RGB) channels, got shape {info.shape}")
    if not isinstance(test_x, torch.Tensor) or tuple(test_x.shape[1:]) != tuple(info.shape) or len(test_x) == 0:
        got = tuple(test_x.shape) if isinstance(test_x, torch.Tensor) else type(test_x).__name__
        raise ConfigError(f"test_x must be non-empty images of shape (N, {', '.join(map(str, info.shape))}), got {got}")


def max_likelihood_images(model: torch.nn.Module, n: int, shape: tuple[int, ...], *, steps: int = 300,
                          step_size: float = 0.02, generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, np.ndarray]:
    """Grow `n` images from uniform noise by projected signed-gradient ascent on model.log_prob(x) in [0, 1].

    The step size decays linearly from `step_size` to a tenth of it, and each example keeps its
    best iterate. Returns (images (n, *shape) detached, trace (steps + 1, n) float64), where trace[t]
    is the best log p (nats) reached after t steps, so trace[-1] == log_prob(images). The model's
    parameters, gradients and train/eval modes are left as they were.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ConfigError(f"steps must be an integer >= 0, got {steps!r}")
    if not (isinstance(step_size, numbers.Real) and 0 < step_size <= 1):
        raise ConfigError(f"step_size must be a number in (0, 1], got {step_size!r}")
    device = next(model.parameters()).device
    gen_device = generator.device if generator is not None else device
    x = torch.rand((n, *shape), generator=generator, device=gen_device).to(device)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            best_x, best = x.clone(), torch.full((n,), -math.inf, device=device)
            trace = []
            for t in range(steps + 1):
                x.requires_grad_(True)
                log_p = model.log_prob(x)
                better = log_p.detach() > best
                best = torch.where(better, log_p.detach(), best)
                best_x[better] = x.detach()[better]
                trace.append(best.cpu())
                if t == steps:
                    break
                (grad,) = torch.autograd.grad(log_p.sum(), x)
                size = step_size * (1 - 0.9 * t / max(steps - 1, 1))
                x = (x.detach() + size * grad.sign()).clamp(0, 1)
    finally:
        for m, training in modes:
            m.training = training
    return best_x.detach(), torch.stack(trace).double().numpy()


def ood_summary(clean_scores_test: np.ndarray, ood_scores: dict[str, np.ndarray], threshold: float,
                dim: int, levels: int) -> list[dict]:
    """One row per OOD set: bits/dim against clean test data, fraction not flagged, AUROC, and the
    fraction with a higher log p than the median clean test image. Scores are -log p(x) in nats."""
    clean = np.asarray(clean_scores_test, dtype=np.float64)
    if clean.size == 0 or not np.isfinite(clean).all():
        raise ConfigError("clean test scores must be non-empty and finite")
    if not np.isfinite(threshold):
        raise ConfigError(f"threshold must be finite, got {threshold!r}")
    bpd = lambda s: float(bpd_from_log_prob(-torch.from_numpy(s), dim, levels).mean())  # noqa: E731
    median_clean = float(np.median(clean))
    rows = []
    for name, scores in ood_scores.items():
        scores = np.asarray(scores, dtype=np.float64)
        if scores.size == 0:
            raise ConfigError(f"OOD set '{name}' has no scores")
        rows.append({
            "set": name,
            "n": int(scores.size),
            "mean_bpd": bpd(scores),
            "test_mean_bpd": bpd(clean),
            "frac_in_distribution": float(1 - flagged(scores, threshold).mean()),
            "auroc": auroc(clean, scores),
            # higher log p = lower score than the median clean test score
            "higher_likelihood_than_test": float((scores < median_clean).mean()),
        })
    return rows


__all__ = ["OOD_SETS", "PAPER_REFERENCE", "quantise", "ood_set_names", "skipped_sets", "ood_sets", "natural_patches", "max_likelihood_images", "ood_summary"]
