"""Models that map images (N, C, H, W) in [0, 1] to logits (N, K); density models add log_prob and log_joint."""

from __future__ import annotations

import torch

from ..data import DatasetInfo
from .cnn import CNN, AdversarialCNN, AdversarialCNNConfig, CNNConfig
from .baselines import GaussianClassifier, GaussianConfig, LogisticRegression, LogisticRegressionConfig
from .flow import FlowClassifier, FlowConfig, bits_per_dim, bpd_from_log_prob
from .glow import GlowClassifier, GlowConfig, GlowHybrid, build_glow
from .gaussian_start import fit_base
from .hybrid import HybridConfig, HybridFlow
from ..errors import ModelError, suggest

MODEL_NAMES = ("cnn", "flow", "hybrid", "logreg", "gaussian", "cnn_adv")  # every classifier trained, attacked and scored


def build_model(name: str, info: DatasetInfo, models_cfg, seed: int) -> torch.nn.Module:
    """A fresh, untrained model of the given name, its initialisation fixed by `seed`."""
    torch.manual_seed(seed)
    if name == "cnn":
        return CNN(info.shape, info.num_classes, models_cfg.cnn)
    if name == "cnn_adv":
        return AdversarialCNN(info.shape, info.num_classes, models_cfg.cnn_adv)
    if name == "flow":
        if models_cfg.flow.kind == "glow":
            return build_glow(info.shape, info.num_classes, info.levels, models_cfg.glow, seed=seed)
        return FlowClassifier(info.shape, info.num_classes, info.levels, models_cfg.flow, seed=seed)
    if name == "hybrid":
        c = models_cfg.hybrid
        return HybridFlow(info.shape, info.num_classes, info.levels, c.flow, c.lam, seed=seed)
    if name == "logreg":
        return LogisticRegression(info.shape, info.num_classes, models_cfg.logreg.l2)
    if name == "gaussian":
        c = models_cfg.gaussian
        return GaussianClassifier(info.shape, info.num_classes, info.levels, c.covariance, c.shrinkage, c.alpha, seed=seed)
    raise ModelError(f"unknown model '{name}'{suggest(name, MODEL_NAMES)}")


def is_density_model(model: torch.nn.Module) -> bool:
    """True for models with log_prob(x) and log_joint(x)."""
    return hasattr(model, "log_prob") and hasattr(model, "log_joint")


def needs_latent_means(model: torch.nn.Module) -> bool:
    """True for a flow whose latent attack needs class means measured on data: it can encode, and its base has none
    (HybridFlow; FlowClassifier and GlowClassifier carry theirs)."""
    return hasattr(model, "encode") and getattr(getattr(model, "base", None), "means", None) is None


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted classes on CPU, in batches on the model's device."""
    device = next(model.parameters()).device
    return torch.cat([model(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of images classified as their label."""
    return float((predict(model, x) == y.cpu()).float().mean())


@torch.no_grad()
def mean_bpd(model: torch.nn.Module, x: torch.Tensor, seed: int, batch_size: int = 512) -> float:
    """Mean bits/dim of images x under a density model, uniform dequantisation noise drawn from `seed`."""
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    return float(torch.cat([model.dequantised_bpd(xb.to(device), g).cpu() for xb in x.split(batch_size)]).mean())


__all__ = ["CNN", "CNNConfig", "AdversarialCNN", "AdversarialCNNConfig", "FlowClassifier", "FlowConfig", "GlowClassifier", "GlowConfig", "GlowHybrid", "HybridFlow", "HybridConfig",
           "LogisticRegression", "LogisticRegressionConfig", "GaussianClassifier", "GaussianConfig", "MODEL_NAMES", "build_model", "fit_base", "is_density_model", "needs_latent_means", "predict", "accuracy", "mean_bpd", "bits_per_dim", "bpd_from_log_prob"]
