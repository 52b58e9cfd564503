"""A small multilayer perceptron classifier for low-dimensional inputs (the 2-D toy world): p(y|x) only."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class MLPConfig:
    hidden: int = 64  # width of each hidden layer
    layers: int = 2  # hidden layers, each Linear + ReLU


class MLPClassifier(nn.Module):
    """x (N, C, H, W) in [0, 1] -> logits (N, K) through `layers` ReLU layers on the flattened input."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, cfg: MLPConfig = MLPConfig()):
        super().__init__()
        dim = int(torch.tensor(shape).prod())
        widths = [dim] + [cfg.hidden] * cfg.layers
        hidden = [m for a, b in pairwise(widths) for m in (nn.Linear(a, b), nn.ReLU())]
        self.net = nn.Sequential(nn.Flatten(), *hidden, nn.Linear(widths[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy."""
        return F.cross_entropy(self(x), y)
