"""The discriminative classifier: a small CNN that models p(y|x) only, and its adversarially trained twin."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .chunks import in_chunks


@dataclass(frozen=True)
class CNNConfig:
    channels: tuple[int, int] = (16, 32)  # filters of the two 3x3 conv layers (digits; MNIST-class configs set more)
    hidden: int = 128  # width of the dense layer before the logits
    pool: int = 4  # the feature map is average-pooled to pool x pool before the dense layer (28x28 data: 7 keeps more detail)
    dropout: float = 0.25  # dropout before the logits, against overfitting on small data


@dataclass(frozen=True)
class AdversarialCNNConfig(CNNConfig):
    eps: float = 0.125  # linf training budget; 2/16 is two of the 17 grey levels of digits
    steps: int = 1  # PGD steps per batch from a random start: 1 ("fast" adversarial training, Wong et al. 2020) keeps the
    # default study in budget; on digits seed 0, 3 and 7 steps gave the same robust accuracy to 40-step PGD (0.786 at 2/16)
    step_size: float | None = 0.15625  # 1.25 eps, as Wong et al.; None: 2.5 * eps / steps


class PoolTo4(nn.AdaptiveAvgPool2d):
    """AdaptiveAvgPool2d(size) (4 by default) that passes a map of that size through: averaging one-pixel windows is the
    identity, but its backward pass cost about 8 % of the digits CNN's forward and backward pass under attack (timed A/B)."""

    def __init__(self, size: int = 4):
        super().__init__(size)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.shape[-2:] == (self.size, self.size) else super().forward(x)


class CNN(nn.Module):
    """conv-relu-conv-relu-maxpool-dense-relu-dense; works on any image size (adaptive pooling to 4x4)."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, cfg: CNNConfig = CNNConfig()):
        super().__init__()
        c1, c2 = cfg.channels
        self.shape, self.num_classes, self.cfg = tuple(shape), num_classes, cfg
        self.features = nn.Sequential(
            nn.Conv2d(shape[0], c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2) if shape[1] <= 8 else nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU()),
            PoolTo4(cfg.pool),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * cfg.pool**2, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, num_classes)
        )
        self.features.to(memory_format=torch.channels_last)  # oneDNN convolutions: about 1.5x faster on CPU than NCHW

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K)."""
        return self.head(in_chunks(self.features, x.contiguous(memory_format=torch.channels_last)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, hidden): the dense layer's activations before dropout and the logits."""
        return self.head[:3](in_chunks(self.features, x.contiguous(memory_format=torch.channels_last)))

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy."""
        return F.cross_entropy(self(x), y)


class AdversarialCNN(CNN):
    """The CNN trained on PGD adversarials of itself (Madry et al. 2018): a robust reference classifier.

    The network is the CNN's; `adversarial_budget` tells `fooled.train.fit` to replace every training (and
    validation) batch by linf PGD adversarials of the current model, crafted from a random start in eval mode.
    """

    def __init__(self, shape: tuple[int, int, int], num_classes: int, cfg: AdversarialCNNConfig = AdversarialCNNConfig()):
        super().__init__(shape, num_classes, cfg)

    @property
    def adversarial_budget(self) -> dict:
        """Keyword arguments of the training attack, `fooled.attacks.pgd` with the cross-entropy loss."""
        return {"eps": self.cfg.eps, "steps": self.cfg.steps, "step_size": self.cfg.step_size, "norm": "linf"}
