"""The 2-D toy world: three classes of points in [0, 1]^2, each a mixture of Gaussian blobs with empty space between
them, so that p_data is known in closed form everywhere (figure (a), the "off the data" mask, the OOD points).

Points are stored as the package's images: (N, 2, 1, 1) float tensors in [0, 1], so every model, attack and detector
of the package applies unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..data import DatasetInfo, Split, Splits

SHAPE = (2, 1, 1)
LEVELS = 256  # the flows' dequantisation grid: bins of 1/255, far below the blobs' width, so the data is ~continuous
# (class, centre, standard deviations): class 0 is two blobs on the left with an empty gap between them; classes 1 and 2
# sit on the right; the middle of the square is empty.
BLOBS = (
    (0, (0.25, 0.25), (0.05, 0.07)),
    (0, (0.25, 0.75), (0.05, 0.07)),
    (1, (0.72, 0.28), (0.07, 0.05)),
    (2, (0.72, 0.72), (0.07, 0.05)),
)
NUM_CLASSES = 3
INFO = DatasetInfo("toy2d", NUM_CLASSES, SHAPE, LEVELS, ("left", "bottom right", "top right"))


@dataclass(frozen=True)
class ToySizes:
    train: int = 1500
    val: int = 500
    test: int = 500


def sample(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n points (n, 2, 1, 1) of the mixture (blobs equally likely; redrawn until inside [0, 1]^2) and their classes (n,)."""
    centres = torch.tensor([b[1] for b in BLOBS])
    stds = torch.tensor([b[2] for b in BLOBS])
    labels = torch.tensor([b[0] for b in BLOBS])
    out = torch.empty(0, 2)
    comp_out = torch.empty(0, dtype=torch.long)
    while len(out) < n:
        comp = torch.randint(len(BLOBS), (n,), generator=generator)
        pts = centres[comp] + stds[comp] * torch.randn(n, 2, generator=generator)
        inside = ((pts >= 0) & (pts <= 1)).all(1)
        out, comp_out = torch.cat([out, pts[inside]]), torch.cat([comp_out, comp[inside]])
    return out[:n].view(n, *SHAPE), labels[comp_out[:n]]


def splits(sizes: ToySizes = ToySizes(), seed: int = 0) -> Splits:
    """Train, validation and test points drawn independently from the mixture (the data's seed, not a model's)."""
    g = torch.Generator().manual_seed(seed)
    parts = [Split(*sample(n, g)) for n in (sizes.train, sizes.val, sizes.test)]
    return Splits(*parts, info=INFO)


def log_density(points: np.ndarray) -> np.ndarray:
    """log p_data(x) of points (M, 2), the mixture's density (truncation to the square ignored: < 1e-4 of the mass)."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    comps = []
    for _, centre, std in BLOBS:
        z = (points - np.array(centre)) / np.array(std)
        comps.append(-0.5 * (z**2).sum(1) - np.log(2 * math.pi * std[0] * std[1]))
    return np.logaddexp.reduce(np.stack(comps), axis=0) - math.log(len(BLOBS))


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n x n grid of [0, 1]^2 that the maps are drawn on: (axis (n,), points (n * n, 2), x varying fastest)."""
    axis = np.linspace(0.0, 1.0, n)
    xx, yy = np.meshgrid(axis, axis)
    return axis, np.stack([xx.ravel(), yy.ravel()], 1)


def as_images(points: np.ndarray) -> torch.Tensor:
    """Points (M, 2) -> the package's image layout (M, 2, 1, 1), float32."""
    return torch.as_tensor(np.asarray(points), dtype=torch.float32).reshape(-1, *SHAPE)
