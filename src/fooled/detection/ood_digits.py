"""Near-data OOD sets for the 8x8 digits: inputs a step away from the data, where a density model should fall off.

blank: the empty image (all background, 0).
shifted 1 px, shifted 2 px: test digits moved up, down, left or right (direction drawn), background filling in.
interpolated: (x_a + x_b) / 2 of two test digits of different classes (Fetaya et al. 2020, who found such
    mixtures as likely under a flow as real digits).
thinned, thickened: grey-level erosion and dilation of test digits with the 4-neighbour cross (thinner and
    thicker strokes; a 3x3 square erases most 8x8 strokes).
Fashion-MNIST 8x8: Fashion-MNIST test images area-averaged from 28x28 to 8x8, when its files are given.

Sets are returned in [0, 1] and not yet quantised; `ood.ood_sets` rounds them to the data's grid.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError

DIGITS_SETS = ("blank", "shifted 1 px", "shifted 2 px", "interpolated", "thinned", "thickened", "Fashion-MNIST 8x8")
_DIRECTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # (rows, columns): up, down, left, right


def digits_sets(source: torch.Tensor, source_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, n: int,
                generator: torch.Generator, fashion_root: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    """The near-data sets of `n` images each from `source` = test_x[i % N] (labels `source_y`); 'Fashion-MNIST 8x8'
    only when `fashion_root` is given (see `skipped_digits_sets`)."""
    draw = lambda high: torch.randint(high, (n,), generator=generator, device=generator.device).cpu()  # noqa: E731
    sets = {"blank": torch.zeros_like(source)}
    for k in (1, 2):
        sets[f"shifted {k} px"] = shift(source, draw(len(_DIRECTIONS)), k)
    sets["interpolated"] = (source + test_x[_other_class(source_y, test_y.cpu(), draw(len(test_y)))]) / 2
    sets["thinned"], sets["thickened"] = erode(source), dilate(source)
    if fashion_root is not None:
        fashion = _fashion_8x8(str(Path(fashion_root).expanduser()))
        sets["Fashion-MNIST 8x8"] = fashion[draw(len(fashion))]
    return sets


def skipped_digits_sets(fashion_root: str | os.PathLike | None) -> dict[str, str]:
    """The digits sets left out, with why: {} when every set is made."""
    if fashion_root is None:
        return {"Fashion-MNIST 8x8": "skipped: no Fashion-MNIST files given (set ood.fashion_root=DIR)"}
    return {}


def shift(x: torch.Tensor, direction: torch.Tensor, k: int) -> torch.Tensor:
    """Each image x[i] moved by `k` pixels toward _DIRECTIONS[direction[i]], the vacated border set to 0."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (k, k, k, k))
    out = torch.empty_like(x)
    for d, (dr, dc) in enumerate(_DIRECTIONS):
        rows = direction == d
        top, left = k - k * dr, k - k * dc  # output (r, c) reads input (r - k dr, c - k dc)
        out[rows] = padded[rows, :, top : top + h, left : left + w]
    return out


def _cross_neighbours(x: torch.Tensor, fill: float) -> torch.Tensor:
    """(5, N, C, H, W): each pixel and its four neighbours, `fill` beyond the border."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), value=fill)
    return torch.stack([p[..., 1 : h + 1, 1 : w + 1], p[..., : h, 1 : w + 1], p[..., 2:, 1 : w + 1],
                        p[..., 1 : h + 1, : w], p[..., 1 : h + 1, 2:]])


def erode(x: torch.Tensor) -> torch.Tensor:
    """Grey-level erosion with the 4-neighbour cross: each pixel the minimum of itself and its neighbours."""
    return _cross_neighbours(x, 0.0).amin(0)


def dilate(x: torch.Tensor) -> torch.Tensor:
    """Grey-level dilation with the 4-neighbour cross: each pixel the maximum of itself and its neighbours."""
    return _cross_neighbours(x, 0.0).amax(0)


def _other_class(labels: torch.Tensor, test_y: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """For each label, the index of the first test image at or after `start` (cyclically) of another class."""
    if len(torch.unique(test_y)) < 2:
        raise ConfigError("interpolations between classes need test images of at least two classes")
    n_test = len(test_y)
    out = torch.empty(len(labels), dtype=torch.long)
    for i, (label, s) in enumerate(zip(labels.tolist(), start.tolist())):
        order = (torch.arange(n_test) + s) % n_test
        out[i] = order[test_y[order] != label][0]
    return out


@functools.lru_cache(maxsize=2)
def _fashion_8x8(root: str) -> torch.Tensor:
    """The 10k Fashion-MNIST test images (either layout of data.root) area-averaged to 8x8, in [0, 1]."""
    from ..data import load

    try:
        test = load("fashion-mnist", root=root).test.x
    except DataError as err:
        raise ConfigError(f"ood.fashion_root: {err}") from err
    return F.adaptive_avg_pool2d(test, 8)


__all__ = ["DIGITS_SETS", "digits_sets", "skipped_digits_sets", "shift", "erode", "dilate"]
