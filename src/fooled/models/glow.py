"""Multiscale Glow with a class-conditional Gaussian base, for MNIST-class and CIFAR-10 images.

Same interface and conventions as `flow.FlowClassifier`: x in [0, 1]^D is dequantised (uniform noise in
training, mid-bin in eval), mapped to logit space, then through `scales` levels of
[squeeze, `blocks_per_scale` x GlowBlock (ActNorm, invertible 1x1 conv, affine coupling with a conv net)],
half of the channels being factored out after every level but the last (Dinh et al. 2017, Kingma and
Dhariwal 2018). Every Jacobian is included, so `log_prob(x)` is the density of x itself, in nats.

The layers are normflows' (`GlowBlock`, `Squeeze`); the multiscale pass follows `nf.MultiscaleFlow`, except
that each scale's factored-out latent is computed once and the class-conditional head scores it for all K
classes at once: only the base densities differ by class, so log p(x, k) for every k costs one pass.
The couplings use `scale_map="exp"` with log-scales bounded by `scale_bound` through a tanh, which keeps
log p(x) and its gradient finite for every x in [0, 1]^D (Glow's sigmoid scale is bounded only on one side).

Each squeeze halves height and width, so both must be divisible by 2**scales: 28x28 images (MNIST,
Fashion-MNIST) take at most 2 scales (28 -> 14 -> 7). We do not pad 28x28 to 32x32 because constant padded
pixels have no density, and log p(x) would no longer be the density of x.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import normflows as nf
import torch
from torch import nn

from .chunks import in_chunks
from .flow import BoundedScale, ClassConditionalGaussian, DequantisedDensity, GenerativeClassifier, from_logit, to_logit
from .hybrid import SoftmaxHead
from ..errors import ModelError

HEADS = ("gaussians", "linear", "mlp")


@dataclass(frozen=True)
class GlowConfig:
    scales: int = 3  # levels of the multiscale architecture; H and W must be divisible by 2**scales
    blocks_per_scale: int = 8  # GlowBlocks per level: depth, the main lever on bits/dim
    hidden_channels: int = 256  # width of the conv net that predicts shift and log-scale in each coupling
    mean_norm: float = 12.0  # norm of the class means (on the coarsest latent): trades bits/dim for accuracy
    scale_bound: float = 2.0  # |log-scale| <= this in every coupling (finite scores and gradients everywhere)
    alpha: float = 1e-3  # logit transform squeezes y into [alpha, 1 - alpha]
    learn_scale: bool = True  # per-class diagonal latent scale learned; else unit variance
    head: str = "gaussians"  # "gaussians": class-conditional Gaussian base (FlowGMM); "linear": DIGLM (one Gaussian base,
                             # linear softmax on z); "mlp": the same with one hidden layer of `head_hidden` units
    lam: float = 64.0  # heads "linear" and "mlp": weight of log p(y|x) against log p(x) (mean_norm is then unused)
    head_hidden: int = 256  # head "mlp": hidden units
    head_dropout: float = 0.0  # head "mlp": dropout on its hidden units while training (the class term overfits first)


def _glow_block(channels: int, hidden: int, bound: float) -> nf.flows.GlowBlock:
    block = nf.flows.GlowBlock(channels, hidden, scale=True, scale_map="exp", split_mode="channel", init_zeros=True, use_lu=True)
    coupling = block.flows[0].flows[1]  # GlowBlock = [AffineCouplingBlock = [Split, AffineCoupling, Merge], 1x1 conv, ActNorm]
    assert isinstance(coupling, nf.flows.AffineCoupling), "normflows changed GlowBlock's layout"
    coupling.param_map = BoundedScale(coupling.param_map, bound)
    return block


def _multiscale(shape: tuple[int, int, int], cfg: GlowConfig) -> tuple[nn.ModuleList, list[tuple[int, int, int]]]:
    """Each scale's layers, [Squeeze, GlowBlock...], in the data -> latent order (`encode` calls their `inverse`,
    normflows' convention), and the (C, H, W) of each scale's factored-out latent, the last one the flow's output."""
    c, h, w = shape
    scale_layers, latent_shapes = nn.ModuleList(), []
    for s in range(cfg.scales):
        c, h, w = 4 * c, h // 2, w // 2
        blocks = [_glow_block(c, cfg.hidden_channels, cfg.scale_bound) for _ in range(cfg.blocks_per_scale)]
        scale_layers.append(nn.ModuleList([nf.flows.Squeeze(), *blocks]))
        if s < cfg.scales - 1:
            c //= 2  # half of the channels leave the flow here
        latent_shapes.append((c, h, w))
    return scale_layers, latent_shapes


class _CoarseMeanGaussian(ClassConditionalGaussian):
    """`ClassConditionalGaussian` on the concatenated latents, with the class means on the coarsest latent only.

    The latents factored out early have passed through few layers and carry local detail; putting the class
    separation on the last `coarse_dim` coordinates (the output of the whole flow) is where it can be learned.
    """

    def __init__(self, dim: int, coarse_dim: int, num_classes: int, mean_norm: float, learn_scale: bool, seed: int = 0):
        super().__init__(dim, num_classes, mean_norm, learn_scale, seed)
        coarse = ClassConditionalGaussian(coarse_dim, num_classes, mean_norm, False, seed).means
        self.means = torch.cat([torch.zeros(num_classes, dim - coarse_dim), coarse], dim=1)


class GlowBody(DequantisedDensity):
    """The multiscale Glow's invertible part: `encode(x, noise)` to the concatenated latents and `decode(z)` back;
    a subclass adds the base density and the classifier head."""

    def __init__(self, shape: tuple[int, int, int], levels: int, cfg: GlowConfig, seed: int = 0):
        super().__init__()
        self.shape, self.levels, self.cfg = tuple(shape), levels, cfg
        self.dim = math.prod(self.shape)
        c, h, w = self.shape
        if levels < 2:
            raise ModelError(f"levels must be >= 2, got {levels}")
        if min(cfg.scales, cfg.blocks_per_scale, cfg.hidden_channels) < 1:
            raise ModelError(f"scales, blocks_per_scale and hidden_channels must be >= 1, got {cfg}")
        if h % 2**cfg.scales or w % 2**cfg.scales:
            most = min((h & -h).bit_length(), (w & -w).bit_length()) - 1  # largest s with 2**s dividing both
            raise ModelError(f"with scales={cfg.scales}, height and width must be divisible by {2**cfg.scales}; "
                             f"images of {h}x{w} allow scales <= {most}")
        g_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # normflows draws the 1x1 convs and conv inits from the global generator
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="torch.lu is deprecated")  # inside normflows' Invertible1x1Conv
                self.scale_layers, self.latent_shapes = _multiscale(self.shape, cfg)
        finally:
            torch.random.set_rng_state(g_state)

    def encode(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images -> latent z (N, D), all scales concatenated, and log|dz/dy| (N,) of y = (x (L-1) + u) / L, u = noise or 1/2.
        In eval mode, in chunks of images on a CPU (`chunks.in_chunks`: same numbers, faster); training batches run whole,
        so ActNorm's data-dependent initialisation sees the first batch."""
        return self._encode(x, noise) if self.training else in_chunks(self._encode, x, noise)

    def _encode(self, x: torch.Tensor, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        z, log_det = to_logit(x, self.levels, self.cfg.alpha, noise)
        z = z.view(-1, *self.shape)
        latents = []
        for s, layers in enumerate(self.scale_layers):
            for layer in layers:
                z, ld = layer.inverse(z)
                log_det = log_det + ld
            if s < len(self.scale_layers) - 1:
                z, factored = z.chunk(2, dim=1)
                latents.append(factored.flatten(1))
        latents.append(z.flatten(1))
        return torch.cat(latents, dim=1), log_det

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent z (N, D) -> images in [0, 1] (the grey level whose bin holds y), inverse of `encode`."""
        parts = list(z.split([math.prod(s) for s in self.latent_shapes], dim=1))
        out = None
        for s in reversed(range(len(self.scale_layers))):
            part = parts[s].view(-1, *self.latent_shapes[s])
            out = part if out is None else torch.cat([out, part], dim=1)
            for layer in reversed(self.scale_layers[s]):
                out, _ = layer(out)
        return from_logit(out.flatten(1), self.levels, self.cfg.alpha).view(-1, *self.shape)


class GlowClassifier(GenerativeClassifier, GlowBody):
    """Multiscale Glow on images with a class-conditional Gaussian base (FlowGMM): log p(x), log p(x, y), p(y|x)."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, levels: int, cfg: GlowConfig = GlowConfig(), seed: int = 0):
        super().__init__(shape, levels, cfg, seed)
        self.num_classes = num_classes
        self.base = _CoarseMeanGaussian(self.dim, math.prod(self.latent_shapes[-1]), num_classes, cfg.mean_norm, cfg.learn_scale, seed)


class GlowHybrid(SoftmaxHead, GlowBody):
    """Multiscale Glow for p(x) with a softmax classifier on its latent (DIGLM, Nalisnick et al. 2019; `cfg.head`)."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, levels: int, cfg: GlowConfig = GlowConfig(), seed: int = 0):
        super().__init__(shape, levels, cfg, seed)
        self.init_head(num_classes, cfg.lam, cfg.learn_scale, seed, hidden=cfg.head_hidden if cfg.head == "mlp" else 0,
                       dropout=cfg.head_dropout if cfg.head == "mlp" else 0.0)


def build_glow(shape: tuple[int, int, int], num_classes: int, levels: int, cfg: GlowConfig, seed: int = 0) -> GlowBody:
    """The Glow of `cfg.head`: a FlowGMM (`GlowClassifier`) or a DIGLM (`GlowHybrid`)."""
    if cfg.head not in HEADS:
        raise ModelError(f"glow head must be one of {HEADS}, got {cfg.head!r}")
    return (GlowClassifier if cfg.head == "gaussians" else GlowHybrid)(shape, num_classes, levels, cfg, seed=seed)


__all__ = ["GlowConfig", "GlowBody", "GlowClassifier", "GlowHybrid", "build_glow", "HEADS"]
