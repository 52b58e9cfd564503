"""A density model as a detector: every anomaly score of an input, with thresholds calibrated on clean validation images."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

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
    extra: dict = field(default_factory=dict)  # baseline detectors beside the density's own: name -> images -> scores

    @classmethod
    def fit(cls, name, model, val_x, test_x, info, fpr: float) -> tuple["Guard", dict]:
        """Typicality reference and thresholds from clean validation images; returns (guard, validation scores)."""
        context = fit_context(model, val_x, info)
        val = score_all(model, val_x, context=context)
        thresholds = {k: calibrate_threshold(v, fpr) for k, v in val.items()}
        return cls(name, model, context, thresholds, score_all(model, test_x, context=context)), val

    def with_detectors(self, scorers: dict[str, Callable], val_x, test_x, fpr: float) -> tuple["Guard", dict]:
        """This guard plus the detectors `scorers`, each calibrated on validation images; returns (guard, their validation scores)."""
        val = {k: f(val_x) for k, f in scorers.items()}
        thresholds = {**self.thresholds, **{k: calibrate_threshold(v, fpr) for k, v in val.items()}}
        clean = {**self.clean_test, **{k: f(test_x) for k, f in scorers.items()}}
        return replace(self, thresholds=thresholds, clean_test=clean, extra={**self.extra, **scorers}), val

    @property
    def threshold(self) -> float:
        return self.thresholds["nll"]

    def score(self, x: torch.Tensor) -> np.ndarray:
        """-log p(x) in nats."""
        return neg_log_prob(self.model, x)

    def score_all(self, x: torch.Tensor) -> dict:
        """Every detector's scores of images x: the density's own, then the baselines."""
        return {**score_all(self.model, x, context=self.context), **{k: f(x) for k, f in self.extra.items()}}

    def flags(self, scores: dict) -> dict:
        """Per detector, which of the scored images it flags at its threshold."""
        return {k: np.asarray(v) > self.thresholds[k] for k, v in scores.items()}

    def first(self, m: int) -> "Guard":
        """The same guard with the clean test scores of the first m attacked images only."""
        return replace(self, clean_test={n: v[:m] for n, v in self.clean_test.items()})
