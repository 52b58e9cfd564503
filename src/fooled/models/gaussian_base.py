"""Full-covariance class Gaussians: the Gaussian classifier's density, and the base of a flow that starts at it.

With `FlowConfig(base="gaussian")` the flow's base density is `FullGaussianBase`, one full-covariance Gaussian
per class. `gaussian_start.start_at_gaussian` fits `baselines.GaussianClassifier` (same logit space: the flow's `alpha`) on the
training images, makes every ActNorm the identity instead of its data-dependent init, and maps the fitted
Gaussians through the flow as it is at initialisation (couplings start at the identity: zero last layer;
the permutations are linear), so the untrained flow's `log_joint` is the Gaussian classifier's. Training
then starts at the closed-form maximum-likelihood Gaussian, and early stopping on validation that counts
the starting point (`train.fit(..., keep_initial=True)`) can keep it or improve it, never lose it.
"""

from __future__ import annotations

import math

import torch
from torch import nn



class FullGaussianBase(nn.Module):
    """log N(z; mu_k, L_k L_k^T) + log p(k) per class; L_k lower triangular with a positive (exp) diagonal, all learned."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.means = nn.Parameter(torch.zeros(num_classes, dim))
        self.lower = nn.Parameter(torch.zeros(num_classes, dim, dim))  # strictly lower part of L_k (the rest is unused)
        self.log_diag = nn.Parameter(torch.zeros(num_classes, dim))  # log of L_k's diagonal
        self.register_buffer("log_prior", torch.full((num_classes,), -math.log(num_classes)))

    @property
    def scale_tril(self) -> torch.Tensor:
        return torch.tril(self.lower, -1) + torch.diag_embed(torch.exp(self.log_diag))

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, K)."""
        return gaussian_log_joint(z, self.means, self.scale_tril, self.log_prior)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(len(y), self.means.shape[1], 1, generator=generator, device="cpu").to(self.means.device)
        y = y.to(self.means.device)
        return self.means[y] + (self.scale_tril[y] @ eps).squeeze(2)

    @torch.no_grad()
    def set_gaussians(self, means: torch.Tensor, scale_tril: torch.Tensor, log_prior: torch.Tensor) -> None:
        """Take fitted class Gaussians N(means_k, L_k L_k^T) and class log-priors."""
        self.means.copy_(means)
        self.lower.copy_(torch.tril(scale_tril, -1))
        self.log_diag.copy_(torch.log(torch.diagonal(scale_tril, dim1=1, dim2=2)))
        self.log_prior.copy_(log_prior)


def gaussian_log_joint(z: torch.Tensor, means: torch.Tensor, scale_tril: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """log N(z; mu_k, L_k L_k^T) + log p(k) for every class: z (N, D) -> (N, K)."""
    diff = (z[None] - means[:, None]).transpose(1, 2)  # (K, D, N)
    white = torch.linalg.solve_triangular(scale_tril, diff, upper=False)  # L_k^-1 (z - mu_k)
    log_det = torch.log(torch.diagonal(scale_tril, dim1=1, dim2=2)).sum(1)  # log |L_k|
    log_norm = -0.5 * z.shape[1] * math.log(2 * math.pi) - log_det + log_prior
    return (-0.5 * white.pow(2).sum(1) + log_norm[:, None]).T
