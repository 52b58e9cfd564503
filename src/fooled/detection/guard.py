"""A density model as a detector: every anomaly score of an input, with thresholds calibrated on clean validation images."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .detectors import DetectorContext, fit_context, score_all
from .metrics import calibrate_threshold, neg_log_prob


@dataclass(frozen=True)
class Guard:
    """A density model's anomaly scores (-log p(x) and the other detectors) with thresholds from clean validation images."""

    name: str  # the density model
    model: torch.nn.Module
    context: DetectorContext
    thresholds: dict  # detector name -> flag when score > threshold
    clean_test: dict  # detector name -> scores of the attacked clean test images

    @classmethod
    def fit(cls, name, model, train_x, val_x, test_x, info, fpr: float) -> tuple["Guard", dict]:
        """Typicality reference from training images, thresholds from validation images; returns (guard, val scores)."""
        context = fit_context(model, train_x, info)
        val = score_all(model, val_x, context=context)
        thresholds = {k: calibrate_threshold(v, fpr) for k, v in val.items()}
        return cls(name, model, context, thresholds, score_all(model, test_x, context=context)), val

    @property
    def threshold(self) -> float:
        return self.thresholds["nll"]

    def score(self, x: torch.Tensor) -> np.ndarray:
        """-log p(x) in nats."""
        return neg_log_prob(self.model, x)

    def score_all(self, x: torch.Tensor) -> dict:
        return score_all(self.model, x, context=self.context)

    def first(self, m: int) -> "Guard":
        """The same guard with the clean test scores of the first m attacked images only."""
        return replace(self, clean_test={n: v[:m] for n, v in self.clean_test.items()})
