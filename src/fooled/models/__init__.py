"""Models that map images (N, C, H, W) in [0, 1] to logits (N, K); density models add log_prob and log_joint."""

from __future__ import annotations

import torch

from ..data import DatasetInfo
from .cnn import CNN, CNNConfig
from .baselines import GaussianClassifier, GaussianConfig, LogisticRegression, LogisticRegressionConfig
from .flow import FlowClassifier, FlowConfig, bits_per_dim, bpd_from_log_prob
from .glow import GlowClassifier, GlowConfig
from .hybrid import HybridConfig, HybridFlow

MODEL_NAMES = ("cnn", "flow", "hybrid", "logreg", "gaussian")  # every classifier trained, attacked and scored


def build_model(name: str, info: DatasetInfo, models_cfg, seed: int) -> torch.nn.Module:
    """A fresh, untrained model of the given name, its initialisation fixed by `seed`."""
    torch.manual_seed(seed)
    if name == "cnn":
        return CNN(info.shape, info.num_classes, models_cfg.cnn)
    if name == "flow":
        if models_cfg.flow.kind == "glow":
            return GlowClassifier(info.shape, info.num_classes, info.levels, models_cfg.glow, seed=seed)
        return FlowClassifier(info.shape, info.num_classes, info.levels, models_cfg.flow, seed=seed)
    if name == "hybrid":
        c = models_cfg.hybrid
        return HybridFlow(info.shape, info.num_classes, info.levels, c.flow, c.lam, seed=seed)
    if name == "logreg":
        return LogisticRegression(info.shape, info.num_classes, models_cfg.logreg.l2)
    if name == "gaussian":
        c = models_cfg.gaussian
        return GaussianClassifier(info.shape, info.num_classes, info.levels, c.covariance, c.shrinkage, c.alpha, seed=seed)
    raise ValueError(f"unknown model '{name}'; expected one of {', '.join(MODEL_NAMES)}")


def is_density_model(model: torch.nn.Module) -> bool:
    """True for models with log_prob(x) and log_joint(x)."""
    return hasattr(model, "log_prob") and hasattr(model, "log_joint")


__all__ = ["CNN", "CNNConfig", "FlowClassifier", "FlowConfig", "GlowClassifier", "GlowConfig", "HybridFlow", "HybridConfig",
           "LogisticRegression", "LogisticRegressionConfig", "GaussianClassifier", "GaussianConfig", "MODEL_NAMES", "build_model", "is_density_model", "bits_per_dim", "bpd_from_log_prob"]
