"""A flow whose base is the Gaussian classifier: full-covariance class Gaussians, fitted in closed form, then trained.

With `FlowConfig(base="gaussian")` the flow's base density is one full-covariance Gaussian per class.
`start_at_gaussian` fits `baselines.GaussianClassifier` (same logit space: the flow's `alpha`) on the
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

from ..data import Split
from .baselines import GaussianClassifier, _gaussian_log_joint


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
        return _gaussian_log_joint(z, self.means, self.scale_tril, self.log_prior)

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


@torch.no_grad()
def start_at_gaussian(flow, train: Split, val: Split) -> dict:
    """Fit the Gaussian classifier in the flow's logit space and make it the base of the (untrained) flow.

    Returns what `GaussianClassifier.fit_data` chose (covariance, shrinkage, validation bits/dim and accuracy).
    The flow must be as built: couplings at the identity and ActNorms not yet initialised on data.
    """
    device = flow.base.means.device
    gaussian = GaussianClassifier(flow.shape, flow.num_classes, flow.levels, alpha=flow.cfg.alpha, seed=flow.seed).to(device)
    chosen = gaussian.fit_data(train, val)
    for layer in flow.flows:
        if hasattr(layer, "data_dep_init_done"):  # ActNorm: identity, not standardised on the first batch
            layer.data_dep_init_done.fill_(1.0)
    # the untrained flow is affine in logit space, z = A u + b: read A and b off the basis vectors
    was_training = flow.training
    flow.eval()
    basis = torch.cat([torch.zeros(1, flow.dim), torch.eye(flow.dim)]).to(device)
    images, _ = flow._latent(basis)
    flow.train(was_training)
    shift, linear = images[0], (images[1:] - images[0]).T  # z = linear @ u + shift
    means = gaussian.means @ linear.T + shift
    cov = linear @ (gaussian.scale_tril @ gaussian.scale_tril.transpose(1, 2)) @ linear.T
    flow.base.set_gaussians(means, torch.linalg.cholesky(cov.double()).float(), gaussian.log_prior)
    return dict(chosen)
