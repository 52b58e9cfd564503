"""Hybrid flow (DIGLM, Nalisnick et al. 2019): an unconditional flow for p(x) and a linear classifier on its latent.

The flow body (dequantisation, logit transform, couplings) is `FlowBody`, the same as `FlowClassifier`'s;
here the base density is one diagonal Gaussian for all classes, and p(y|x) = softmax(W z + b) with z
the latent of x. Training minimises (-log p(x) - lam * log p(y|x)) / D: lam trades bits/dim for accuracy
the way `mean_norm` does for the FlowGMM. `log_joint(x) = log p(x) + log p(y|x)`, so its logsumexp is
`log_prob(x)` and the whole interface (log_prob, log_joint, logits) matches `FlowClassifier`.
`SoftmaxHead` is that head alone: `glow.GlowHybrid` puts it on the multiscale Glow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .flow import FlowBody, FlowConfig
from ..errors import ModelError


@dataclass(frozen=True)
class HybridConfig:
    flow: FlowConfig = FlowConfig(blocks=6, hidden=128, alpha=0.01, permutation="lu")  # the flow body; mean_norm is unused (one base for all classes)
    lam: float = 64.0  # weight of log p(y|x) against log p(x); on digits 1 -> 89% accuracy, 8 -> 96%, 64 -> 98%


class DiagonalGaussian(nn.Module):
    """Base density N(loc, diag(exp(2 log_scale))), starting at N(0, I); the scale is learned only if asked."""

    def __init__(self, dim: int, learn_scale: bool):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim), requires_grad=learn_scale)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,), nats."""
        diff = (z - self.loc) * torch.exp(-self.log_scale)
        return -0.5 * diff.pow(2).sum(1) - self.log_scale.sum() - 0.5 * z.shape[1] * math.log(2 * math.pi)


class SoftmaxHead:
    """The DIGLM head for a flow body (`encode`, `decode`, `dim`): one diagonal Gaussian base for p(z) and a softmax
    classifier on z, linear (DIGLM) or with one hidden ReLU layer, trained on (-log p(x) - lam * log p(y|x)) / D.
    A body subclass calls `init_head`."""

    def init_head(self, num_classes: int, lam: float, learn_scale: bool, seed: int, hidden: int = 0, dropout: float = 0.0) -> None:
        if not lam >= 0:
            raise ModelError(f"lam (weight of log p(y|x) in the loss) must be >= 0, got {lam!r}")
        self.num_classes, self.lam = num_classes, float(lam)
        self.base = DiagonalGaussian(self.dim, learn_scale)
        g = torch.Generator().manual_seed(seed)
        widths = [self.dim, hidden, num_classes] if hidden else [self.dim, num_classes]
        layers = [nn.Linear(a, b) for a, b in zip(widths, widths[1:])]
        with torch.no_grad():  # seeded here so the head does not depend on the caller's global RNG
            for layer in layers:
                bound = 1 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=g)
                layer.bias.zero_()
        if not 0 <= dropout < 1:
            raise ModelError(f"head dropout must lie in [0, 1), got {dropout!r}")
        hidden_layers = [nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])  # no Dropout module at 0: checkpoints keep their keys
        self.head = layers[0] if len(layers) == 1 else nn.Sequential(layers[0], *hidden_layers, layers[1])

    def _density_and_logits(self, x: torch.Tensor, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(y) of the dequantised y, class logits), both from one pass through the flow."""
        z, log_det = self.encode(x, noise)
        return self.base.log_prob(z) + log_det, self.head(z)

    def _log_prob_y(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return self._density_and_logits(x, noise)[0]

    # --- public interface ----------------------------------------------------------------------
    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) + log p(y=k|x) for all classes: (N, C, H, W) -> (N, K), nats."""
        return self.log_prob_and_joint(x)[1]

    def log_prob_and_joint(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log_prob(x), log_joint(x)) from one pass through the flow, equal to the two calls."""
        self.check_input(x)
        log_p, logits = self._density_and_logits(x, None)
        log_p = log_p + self.log_dy_dx
        return log_p, log_p[:, None] + torch.log_softmax(logits, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits log p(y|x) (normalised) from the linear head on the latent."""
        self.check_input(x)
        z, _ = self.encode(x, None)
        return torch.log_softmax(self.head(z), dim=1)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None, max_rounds: int = 1000) -> torch.Tensor:
        """Images of the given classes, in [0, 1], drawn exactly from p(x|y) by rejection in the latent:
        z ~ p(z) is kept for class y with probability p(y|z) <= 1, so kept draws follow p(z|y)."""
        y = y.to(self.base.loc.device)
        z = torch.empty(len(y), self.dim, device=y.device)
        todo = torch.ones(len(y), dtype=torch.bool, device=y.device)
        for _ in range(max_rounds):
            idx = todo.nonzero().squeeze(1)
            if not len(idx):
                return self.decode(z)
            eps = torch.randn(len(idx), self.dim, generator=generator, device="cpu").to(z.device)
            cand = self.base.loc + torch.exp(self.base.log_scale) * eps
            p_y = torch.softmax(self.head(cand), dim=1).gather(1, y[idx, None]).squeeze(1)
            keep = torch.rand(len(idx), generator=generator, device="cpu").to(z.device) < p_y
            z[idx[keep]] = cand[keep]
            todo[idx[keep]] = False
        raise ModelError(f"rejection sampling kept no draw for {int(todo.sum())} of {len(y)} images in {max_rounds} rounds")

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(-log p(x) - lam * log p(y|x)) / D, averaged over the batch; uniform dequantisation in train mode."""
        log_p, logits = self._density_and_logits(x, self._train_noise(x))
        return (-log_p.mean() + self.lam * F.cross_entropy(logits, y)) / self.dim


class HybridFlow(SoftmaxHead, FlowBody):
    """Flow density p(x) (the RealNVP body of `FlowClassifier`) with a linear softmax classifier on the latent z (DIGLM)."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, levels: int, cfg: FlowConfig, lam: float, seed: int = 0):
        super().__init__(shape, levels, cfg, seed)
        self.init_head(num_classes, lam, cfg.learn_scale, seed)
