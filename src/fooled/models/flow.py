"""Normalizing flow with a class-conditional Gaussian base: one model for log p(x), log p(x, y) and p(y|x).

The flow owns its preprocessing. An image x in [0, 1]^D with L grey levels is mapped to
y = (x (L-1) + u) / L with u ~ U[0, 1) when training (uniform dequantisation) and u = 1/2 when
evaluating (mid-bin, so scores are deterministic functions of x and gradient attacks see no noise),
then to logit space. `log_prob(x)` includes every Jacobian, so it is the density of x itself, in nats.
Coupling layers are normflows' `AffineCouplingBlock`; their log-scales are bounded by `scale_bound`
through a tanh, which keeps log p(x) and its gradient finite on any input in [0, 1]^D.
`FlowBody` (preprocessing + couplings) is shared with `hybrid.HybridFlow`, which puts another base and
a classifier on the same latent; `to_logit`/`from_logit` are shared with the Gaussian baselines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import normflows as nf
import torch
from torch import nn
from ..errors import ModelError
from .gaussian_base import FullGaussianBase


@dataclass(frozen=True)
class FlowConfig:
    blocks: int = 8  # affine coupling blocks, each with ActNorm and a random permutation
    hidden: int = 256  # width of the MLP that predicts shift and scale in each coupling
    mean_norm: float = 12.0  # norm of the class means in latent space: trades bits/dim for accuracy
    scale_bound: float = 2.0  # |log-scale| <= this in every coupling (finite scores everywhere)
    alpha: float = 1e-3  # logit transform squeezes y into [alpha, 1 - alpha]
    learn_scale: bool = True  # per-class diagonal latent scale learned; else unit variance
    permutation: str = "shuffle"  # between couplings: "shuffle" (fixed random) or "lu" (learned LU-factorised linear map)
    kind: str = "realnvp"  # "realnvp": MLP couplings on flattened images; "glow": the multiscale conv flow of [models.glow]
    base: str = "diagonal"  # "diagonal": class means of norm mean_norm, diagonal scales; "gaussian": starts at the fitted Gaussian classifier


class BoundedScale(nn.Module):
    """Wraps a coupling's parameter net so that its log-scales (odd outputs or channels) lie in [-b, b]."""

    def __init__(self, net: nn.Module, bound: float):
        super().__init__()
        self.net, self.bound = net, bound

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        shift, log_scale = out[:, 0::2], out[:, 1::2]
        log_scale = self.bound * torch.tanh(log_scale / self.bound)
        return torch.stack([shift, log_scale], dim=2).flatten(1, 2)  # interleave again: (N, D) or (N, C, H, W)


class LUPermute(nf.flows.LULinearPermute):
    """normflows' LULinearPermute; in eval mode W = LU and log|det W| are built once per parameter version, not per call.

    Attacks call the flow thousands of times with fixed weights: rebuilding L and U each call was a quarter of
    their time. The cache is keyed by the parameters' storage and version counters (torch bumps `_version` on every
    in-place change; tests/models/test_flow.py fails loudly if it stops), so an optimiser step, `load_state_dict` or
    `.to(device)` invalidates it; gradients flow to the input (and the bias), not to L and U.
    """

    def __init__(self, dim: int):
        super().__init__(dim)
        self._key, self._weight = None, None

    def _cached(self) -> tuple[torch.Tensor, torch.Tensor]:
        lin = self.linear
        key = tuple((id(p), p.data_ptr(), p._version) for p in (lin.lower_entries, lin.upper_entries, lin.unconstrained_upper_diag))
        if key != self._key:
            with torch.no_grad():
                self._weight = (lin.weight(), lin.logabsdet())
            self._key = key
        return self._weight

    def inverse(self, z: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            return super().inverse(z, context)
        weight, logabsdet = self._cached()
        z, _ = self.permutation(z)
        return torch.nn.functional.linear(z, weight, self.linear.bias), logabsdet.expand(len(z))


class ClassConditionalGaussian(nn.Module):
    """Base density: one diagonal Gaussian per class with fixed, well-separated means.

    With `mean_norm` 0 every class has the same Gaussian (one learned scale for all): an unconditional flow."""

    def __init__(self, dim: int, num_classes: int, mean_norm: float, learn_scale: bool, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        directions = torch.randn(num_classes, dim, generator=g)
        means = mean_norm * directions / directions.norm(dim=1, keepdim=True)
        self.register_buffer("means", means)
        self.log_scale = nn.Parameter(torch.zeros(1 if mean_norm == 0 else num_classes, dim), requires_grad=learn_scale)
        self.register_buffer("log_prior", torch.full((num_classes,), -math.log(num_classes)))

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mu_k, sigma_k) + log p(k) for every class k at once: (N, D) -> (N, K)."""
        diff = (z[:, None, :] - self.means) * torch.exp(-self.log_scale)
        log_norm = -0.5 * z.shape[1] * math.log(2 * math.pi) - self.log_scale.sum(dim=1)
        return -0.5 * diff.pow(2).sum(dim=2) + log_norm + self.log_prior

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(len(y), self.means.shape[1], generator=generator, device="cpu").to(self.means.device)
        y = y.to(self.means.device)
        return self.means[y] + torch.exp(self.log_scale.expand_as(self.means)[y]) * eps


class DequantisedDensity(nn.Module):
    """What every density model of images shares: input checks, the x -> y Jacobian, log_prob and bits/dim.

    A subclass sets `shape`, `dim` and `levels` and defines `_log_prob_y(x, noise)`, the log-density of
    the dequantised y = (x (L-1) + u) / L with u = noise, or u = 1/2 when noise is None.
    """

    shape: tuple[int, int, int]
    dim: int
    levels: int

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is a finite batch of images in [0, 1] of the model's shape."""
        check_images(x, self.shape)

    @property
    def log_dy_dx(self) -> float:
        """log|dy/dx| = D log((L-1)/L): turns the density of the dequantised y into that of x."""
        return self.dim * math.log((self.levels - 1) / self.levels)

    def _train_noise(self, x: torch.Tensor) -> torch.Tensor | None:
        """Uniform dequantisation noise from the global generator in train mode; mid-bin (None) in eval mode."""
        return torch.rand(x.shape[0], self.dim, device=x.device) if self.training else None

    def _log_prob_y(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of x in [0, 1]^D: (N, C, H, W) -> (N,), nats, deterministic (mid-bin)."""
        self.check_input(x)
        return self._log_prob_y(x, None) + self.log_dy_dx

    @torch.no_grad()
    def dequantised_bpd(self, x: torch.Tensor, generator: torch.Generator | None = None, draws: int = 4) -> torch.Tensor:
        """Bits/dim of the discrete images under uniform dequantisation (the usual upper bound), per example."""
        total = torch.zeros(len(x), device=x.device)
        for _ in range(draws):
            noise = torch.rand(x.shape[0], self.dim, generator=generator, device="cpu").to(x.device)
            total += self._log_prob_y(x, noise)
        return bits_per_dim(total / draws, self.dim, self.levels)


class FlowBody(DequantisedDensity):
    """The invertible part shared by the flow models: dequantisation, logit transform and coupling stack.

    `encode(x, noise)` maps images to the latent z with log|dz/dy| (y the dequantised image) and
    `decode(z)` maps back; a subclass adds a base density by defining `_log_prob_y(x, noise)`.
    """

    def __init__(self, shape: tuple[int, int, int], levels: int, cfg: FlowConfig, seed: int = 0):
        super().__init__()
        self.shape, self.levels, self.cfg = tuple(shape), levels, cfg
        self.dim = math.prod(shape)
        if self.dim % 2:
            raise ModelError(f"the flow needs an even number of dimensions, got {self.dim}")
        if levels < 2:
            raise ModelError(f"levels must be >= 2, got {levels}")
        g_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # normflows draws permutations and inits from the global generator
        try:
            flows = []
            for _ in range(cfg.blocks):
                net = nf.nets.MLP([self.dim // 2, cfg.hidden, cfg.hidden, self.dim], init_zeros=True)
                flows += [
                    nf.flows.AffineCouplingBlock(BoundedScale(net, cfg.scale_bound)),
                    LUPermute(self.dim) if cfg.permutation == "lu" else nf.flows.Permute(self.dim, mode="shuffle"),
                    nf.flows.ActNorm(self.dim),
                ]
            self.flows = nn.ModuleList(flows)
        finally:
            torch.random.set_rng_state(g_state)

    def _to_logit(self, x: torch.Tensor, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x in [0, 1] -> logit-space z and log|dz/dy| per example, y the dequantised image."""
        return to_logit(x, self.levels, self.cfg.alpha, noise)

    def _latent(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(len(z), dtype=z.dtype, device=z.device)
        for flow in reversed(self.flows):
            z, ld = flow.inverse(z)
            log_det = log_det + ld
        return z, log_det

    def encode(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images -> latent z (N, D) and log|dz/dy| (N,) of y = (x (L-1) + u) / L, u = noise or 1/2."""
        z, ld_pre = self._to_logit(x, noise)
        z, ld_flow = self._latent(z)
        return z, ld_pre + ld_flow

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent z (N, D) -> images in [0, 1] (the grey level whose bin holds y), inverse of `encode`."""
        for flow in self.flows:
            z, _ = flow(z)
        return from_logit(z, self.levels, self.cfg.alpha).view(-1, *self.shape)



class GenerativeClassifier(DequantisedDensity):
    """A density of (x, y) that is also a classifier, all classes from one pass.

    The defaults serve flows with `encode(x, noise) -> (z, log_det)`, `decode(z)` and a class-conditional `base`;
    other models override `_log_joint_y` (and `sample`).
    """

    def _log_joint_y(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """log p(y, k) of the dequantised y = (x (L-1) + u) / L, u = noise or 1/2, for every class k: (N, K)."""
        z, log_det = self.encode(x, noise)
        return self.base.log_joint(z) + log_det[:, None]

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images of the given classes, in [0, 1]."""
        return self.decode(self.base.sample(y, generator))

    def _log_prob_y(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return torch.logsumexp(self._log_joint_y(x, noise), dim=1)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x, y=k) for every class: (N, C, H, W) -> (N, K), nats, deterministic (mid-bin)."""
        self.check_input(x)
        return self._log_joint_y(x, None) + self.log_dy_dx

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = logsumexp_k log p(x, k): (N, C, H, W) -> (N,), nats, deterministic."""
        return torch.logsumexp(self.log_joint(x), dim=1)

    def log_prob_and_joint(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log_prob(x), log_joint(x)) from one pass through the flow, equal to the two calls."""
        joint = self.log_joint(x)
        return torch.logsumexp(joint, dim=1), joint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits log p(y|x) by Bayes' rule."""
        return torch.log_softmax(self.log_joint(x), dim=1)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean -log p(x, y) per dimension; uniform dequantisation when training, mid-bin in eval mode."""
        return -self._log_joint_y(x, self._train_noise(x)).gather(1, y[:, None]).mean() / self.dim


class FlowClassifier(GenerativeClassifier, FlowBody):
    """RealNVP-style flow on flattened images with a class-conditional Gaussian base (FlowGMM); one flow pass for all classes."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, levels: int, cfg: FlowConfig = FlowConfig(), seed: int = 0):
        super().__init__(shape, levels, cfg, seed)
        self.num_classes, self.seed = num_classes, seed
        if cfg.base == "gaussian":  # fitted before training by gaussian_start.fit_base
            self.base = FullGaussianBase(self.dim, num_classes)
        elif cfg.base == "diagonal":
            self.base = ClassConditionalGaussian(self.dim, num_classes, cfg.mean_norm, cfg.learn_scale, seed)
        else:
            raise ModelError(f"flow base must be 'diagonal' or 'gaussian', got {cfg.base!r}")


def check_images(x: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Raise ValueError unless x is a NaN-free batch (N, *shape) of values in [0, 1]."""
    if x.dim() != 1 + len(shape) or tuple(x.shape[1:]) != tuple(shape):
        raise ModelError(f"expected images of shape (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
    if torch.isnan(x).any():
        raise ModelError("input contains NaN; expected values in [0, 1]")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ModelError(f"input values must lie in [0, 1], got range [{x.min().item():.4g}, {x.max().item():.4g}]")


def to_logit(x: torch.Tensor, levels: int, alpha: float, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] -> (z, log|dz/dy|): y = (x (L-1) + u) / L with u = noise (N, D) or 1/2, then
    z = logit(alpha + (1 - 2 alpha) y). Returns z (N, D) and the log-Jacobian per example (N,)."""
    u = 0.5 if noise is None else noise
    y = (x.flatten(1) * (levels - 1) + u) / levels
    s = alpha + (1 - 2 * alpha) * y
    log_s, log_1ms = torch.log(s), torch.log1p(-s)
    log_det = -(log_s + log_1ms).sum(1) + y.shape[1] * math.log(1 - 2 * alpha)
    return log_s - log_1ms, log_det


def from_logit(z: torch.Tensor, levels: int, alpha: float) -> torch.Tensor:
    """Inverse of `to_logit` up to the grey level: z (N, D) -> x (N, D) in [0, 1], the level whose bin holds y."""
    s = torch.sigmoid(z)
    return (((s - alpha) / (1 - 2 * alpha) * levels - 0.5) / (levels - 1)).clamp(0, 1)


def bits_per_dim(log_prob: torch.Tensor, dim: int, levels: int) -> torch.Tensor:
    """Bits/dim of discrete images from log p(x) of the dequantised y = (x (L-1) + u) / L in nats.

    The bin of a grey level has width 1/L in y, so -log2 P(x) = -log2 p(y) + D log2 L.
    """
    return (-log_prob + dim * math.log(levels)) / (dim * math.log(2))


def bpd_from_log_prob(log_prob_x, dim: int, levels: int):
    """Bits/dim from `log_prob(x)` (the density of x in [0, 1], whose bins have width 1/(L-1)); a tensor or a numpy array.

    The one conversion of the package for scores of x itself (`bits_per_dim` is that of the dequantised y)."""
    return (-log_prob_x + dim * math.log(levels - 1)) / (dim * math.log(2))
