"""Likelihood detectors: anomaly scores, thresholds calibrated on clean validation data, AUROC and TPR.

Convention: a score is an anomaly score (higher = more suspicious), e.g. -log p(x) in nats. An input is
flagged when its score exceeds the threshold, the (1 - FPR) quantile of the clean validation scores.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from ..errors import ConfigError


@torch.no_grad()
def neg_log_prob(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """-log p(x) in nats for every image, from a density model with `log_prob`."""
    device = next(model.parameters()).device
    out = [-model.log_prob(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def calibrate_threshold(val_scores: np.ndarray, fpr: float) -> float:
    """Score above which a fraction `fpr` of clean validation inputs lies (flag if score > threshold)."""
    if not 0 < fpr < 1:
        raise ConfigError(f"fpr must lie in (0, 1), got {fpr}")
    val_scores = np.asarray(val_scores, dtype=float)
    if val_scores.size == 0 or not np.isfinite(val_scores).all():
        raise ConfigError("validation scores must be non-empty and finite")
    return float(np.quantile(val_scores, 1 - fpr, method="higher"))


def flagged(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask of the inputs the detector rejects."""
    return np.asarray(scores) > threshold


def auroc(clean_scores: np.ndarray, adv_scores: np.ndarray) -> float:
    """Area under the ROC of clean (negative) vs adversarial (positive) by score; 0.5 is chance."""
    labels = np.r_[np.zeros(len(clean_scores)), np.ones(len(adv_scores))]
    return float(roc_auc_score(labels, np.r_[clean_scores, adv_scores]))


def roc(clean_scores: np.ndarray, adv_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) of the full ROC curve."""
    labels = np.r_[np.zeros(len(clean_scores)), np.ones(len(adv_scores))]
    fpr, tpr, _ = roc_curve(labels, np.r_[clean_scores, adv_scores])
    return fpr, tpr


def tpr_at_threshold(adv_scores: np.ndarray, threshold: float) -> float:
    """Detection rate: fraction of adversarial inputs flagged."""
    return float(flagged(adv_scores, threshold).mean()) if len(adv_scores) else float("nan")


__all__ = ["neg_log_prob", "calibrate_threshold", "flagged", "auroc", "roc", "tpr_at_threshold"]
