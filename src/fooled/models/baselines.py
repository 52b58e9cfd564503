"""Baselines: logistic regression (discriminative) and a Gaussian generative classifier (density + classifier).

The Gaussian classifier models the logit-transformed, dequantised pixels z = logit(alpha + (1 - 2 alpha) y),
y = (x (L-1) + u) / L, as one Gaussian per class: the same preprocessing as the flow, with an identity flow.
Logit space rather than raw pixels because a Gaussian on raw pixels puts mass outside [0, 1]^D (so it
is not a density on the box) and fits the many saturated pixels badly: on digits, 2.56 bits/dim and 96.1%
accuracy on raw pixels against 2.09 and 98.3% in logit space. `log_prob(x)` includes every Jacobian, so it is the density of x in [0, 1]^D itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..data import Split, batches
from .flow import GenerativeClassifier, bits_per_dim, from_logit, to_logit
from .gaussian_base import gaussian_log_joint
from ..errors import ModelError

COVARIANCES = ("shared", "per_class")
SHRINKAGES = (0.0, 0.01, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)  # grid searched by fit_data when shrinkage is None


@dataclass(frozen=True)
class LogisticRegressionConfig:
    l2: float = 1e-4  # penalty on the weights, against huge weights on pixels that are constant in training


@dataclass(frozen=True)
class GaussianConfig:
    covariance: str = "auto"  # "shared" (LDA), "per_class" (QDA) or "auto": chosen on validation
    shrinkage: float | None = None  # weight of the diagonal in each covariance; None: chosen on validation
    alpha: float = 0.01  # logit squeeze; on digits 0.01 beat 1e-3 (2.13 bits/dim) and 0.05 (2.19)


class LogisticRegression(nn.Module):
    """One linear layer on the flattened pixels; softmax cross-entropy plus a small L2 penalty."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, l2: float = 1e-4):
        super().__init__()
        self.shape, self.num_classes, self.l2 = tuple(shape), num_classes, l2
        self.linear = nn.Linear(math.prod(shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K)."""
        return self.linear(x.flatten(1))

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy + l2 * ||W||^2 (the bias is not penalised)."""
        return F.cross_entropy(self(x), y) + self.l2 * self.linear.weight.pow(2).sum()


class GaussianClassifier(GenerativeClassifier):
    """Gaussian class-conditional densities in logit space, fitted in closed form by `fit_data`.

    `covariance`: "shared" (LDA), "per_class" (QDA), or "auto" to choose on validation; `shrinkage` s in
    [0, 1] mixes each covariance with its diagonal, (1 - s) S + s diag(S); None chooses it on validation.
    The fitted statistics are frozen `nn.Parameter`s (requires_grad=False), not buffers, so that code which
    finds the device with `next(model.parameters())` works; they are not meant to be trained by Adam.
    """

    def __init__(self, shape: tuple[int, int, int], num_classes: int, levels: int, covariance: str = "auto",
                 shrinkage: float | None = None, alpha: float = 0.01, seed: int = 0):
        super().__init__()
        if covariance not in COVARIANCES + ("auto",):
            raise ModelError(f"covariance must be one of {', '.join(COVARIANCES)} or 'auto', got {covariance!r}")
        if shrinkage is not None and not 0 <= shrinkage <= 1:
            raise ModelError(f"shrinkage must lie in [0, 1] or be None (choose on validation), got {shrinkage!r}")
        if not 0 < alpha < 0.5:
            raise ModelError(f"alpha must lie in (0, 0.5), got {alpha!r}")
        if levels < 2:
            raise ModelError(f"levels must be >= 2, got {levels}")
        self.shape, self.num_classes, self.levels, self.alpha, self.seed = tuple(shape), num_classes, levels, alpha, seed
        self.dim = math.prod(shape)
        self.covariance, self.shrinkage = covariance, shrinkage  # what fit_data may choose from
        self.fitted: dict = {}  # the hyper-parameters fit_data chose
        frozen = lambda t: nn.Parameter(t, requires_grad=False)  # noqa: E731
        # until fitted: N(0, I) for every class in logit space, uniform prior
        self.means = frozen(torch.zeros(num_classes, self.dim))
        self.scale_tril = frozen(torch.eye(self.dim).repeat(num_classes, 1, 1))  # covariance_k = L_k L_k^T
        self.log_prior = frozen(torch.full((num_classes,), -math.log(num_classes)))

    # the chosen hyper-parameters travel with the state dict (and so with checkpoints)
    def get_extra_state(self) -> dict:
        return dict(self.fitted)

    def set_extra_state(self, state: dict) -> None:
        self.fitted = dict(state)

    def _log_joint_y(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """log p(y, k) of the dequantised y = (x (L-1) + u) / L, u = noise or 1/2: (N, K)."""
        z, log_det = to_logit(x, self.levels, self.alpha, noise)
        return gaussian_log_joint(z, self.means, self.scale_tril, self.log_prior) + log_det[:, None]


    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images of the given classes, in [0, 1]."""
        eps = torch.randn(len(y), self.dim, 1, generator=generator, device="cpu").to(self.means.device)
        y = y.to(self.means.device)
        z = self.means[y] + (self.scale_tril[y] @ eps).squeeze(2)
        return from_logit(z, self.levels, self.alpha).view(-1, *self.shape)

    @torch.no_grad()
    def fit_data(self, train: Split, val: Split, copies: int | None = None, max_val: int = 2000) -> dict:
        """Closed-form fit: class means, covariances and priors from `copies` dequantised copies of `train`.

        Covariance type and shrinkage (those not fixed in the constructor) are chosen to maximise the mean
        log p(x, y) of (at most `max_val`) dequantised validation images, i.e. the held-out value of
        `training_loss`; accuracy plays no part. `copies=None` uses enough copies for ~20k samples (8 at
        most: averaging over noise draws matters on small data only). Returns the chosen
        {"covariance", "shrinkage"} plus "val_bpd" and "val_acc" at that choice.
        """
        device, K, D = self.means.device, self.num_classes, self.dim
        copies = copies if copies is not None else max(1, min(8, 20000 // len(train)))
        val = Split(val.x[:max_val], val.y[:max_val])
        g = torch.Generator().manual_seed(self.seed)
        counts = torch.bincount(train.y, minlength=K).to(device) * copies
        if (counts < 2 * copies).any():
            raise ModelError(f"every class needs at least 2 training examples, got counts {(counts // copies).tolist()}")
        # first and second moments per class, accumulated in float64 batch by batch (MNIST-sized data fits)
        sums, squares = torch.zeros(K, D, dtype=torch.float64, device=device), torch.zeros(K, D, D, dtype=torch.float64, device=device)
        for _ in range(copies):
            for x, y in batches(train, 4096, shuffle=False):
                x, y = x.to(device), y.to(device)
                z = to_logit(x, self.levels, self.alpha, torch.rand(len(x), D, generator=g).to(device))[0].double()
                sums.index_add_(0, y, z)
                for k in range(K):
                    squares[k] += z[y == k].T @ z[y == k]
        n = counts.double()
        means = sums / n[:, None]
        scatter = squares - n[:, None, None] * means[:, :, None] * means[:, None, :]
        per_class = (scatter / (n - 1)[:, None, None]).float()
        shared = (scatter.sum(0) / (n.sum() - K)).float().expand_as(per_class)
        self.means.copy_(means.float())
        self.log_prior.copy_(torch.log(n / n.sum()).float())

        val_noise = torch.rand(len(val), D, generator=g).split(1024)
        vy = val.y.to(device)
        best = None
        for covariance in COVARIANCES if self.covariance == "auto" else (self.covariance,):
            cov = shared if covariance == "shared" else per_class
            for s in SHRINKAGES if self.shrinkage is None else (self.shrinkage,):
                shrunk = (1 - s) * cov + s * torch.diag_embed(torch.diagonal(cov, dim1=1, dim2=2))
                tril, info = torch.linalg.cholesky_ex(shrunk)
                if info.any():  # not positive definite at this shrinkage: skip it
                    continue
                self.scale_tril.copy_(tril)
                log_joint = torch.cat([self._log_joint_y(x.to(device), u.to(device)) for x, u in zip(val.x.split(1024), val_noise)])
                score = log_joint.gather(1, vy[:, None]).mean().item()
                if best is None or score > best[0]:
                    acc = (log_joint.argmax(1) == vy).float().mean().item()
                    bpd = bits_per_dim(torch.logsumexp(log_joint, 1), self.dim, self.levels).mean().item()
                    best = (score, covariance, s, tril.clone(), bpd, acc)
        if best is None:
            raise ModelError("no covariance in the grid is positive definite; use more training data or shrinkage=1")
        _, covariance, shrinkage, tril, val_bpd, val_acc = best
        self.scale_tril.copy_(tril)
        self.fitted = {"covariance": covariance, "shrinkage": shrinkage}
        return {**self.fitted, "val_bpd": val_bpd, "val_acc": val_acc}
