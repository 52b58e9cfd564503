"""A density model as a detector: every anomaly score of an input, with thresholds calibrated on clean validation images."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from .detectors import DetectorContext, fit_context, score_all
from .metrics import calibrate_threshold, neg_log_prob


class ScoreMemo:
    """The last few score arrays by (scorer, images): the same control images are scored for every attacked model, and a
    detector that does not depend on the attacked model (the flow's -log p(x), the baselines) need score them only once.
    Keys hold ids of models and detectors, so a memo must not outlive them: a study makes one per seed."""

    def __init__(self, size: int = 256):
        self.size, self.store = size, OrderedDict()

    def __call__(self, key, x: torch.Tensor, compute: Callable[[], np.ndarray]) -> np.ndarray:
        digest = (key, tuple(x.shape), hashlib.blake2b(x.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).digest())
        if digest not in self.store:
            self.store[digest] = compute()
            if len(self.store) > self.size:
                self.store.popitem(last=False)
        self.store.move_to_end(digest)
        return self.store[digest]


@dataclass(frozen=True)
class Guard:
    """A density model's anomaly scores (-log p(x) and the other detectors) with thresholds from clean validation images."""

    name: str  # the density model
    model: torch.nn.Module
    context: DetectorContext
    thresholds: dict  # detector name -> flag when score > threshold
    clean_test: dict  # detector name -> scores of the attacked clean test images
    extra: dict = field(default_factory=dict)  # baseline detectors beside the density's own: name -> images -> scores
    shared: frozenset = frozenset()  # the names in `extra` whose scores do not depend on the attacked model
    memo: ScoreMemo = field(default_factory=ScoreMemo, compare=False)  # scores by (scorer, images), shared by a seed's guards

    @classmethod
    def fit(cls, name, model, val_x, test_x, info, fpr: float, memo: ScoreMemo | None = None) -> tuple["Guard", dict]:
        """Typicality reference and thresholds from clean validation images; returns (guard, validation scores). Guards that
        share `memo` score an image set once for the detectors they share."""
        context = fit_context(model, val_x, info)
        val = score_all(model, val_x, context=context)
        thresholds = {k: calibrate_threshold(v, fpr) for k, v in val.items()}
        return cls(name, model, context, thresholds, score_all(model, test_x, context=context), memo=memo or ScoreMemo()), val

    def with_detectors(self, scorers: dict[str, Callable], val_x, test_x, fpr: float, shared=()) -> tuple["Guard", dict]:
        """This guard plus the detectors `scorers`, each calibrated on validation images; returns (guard, their validation scores).
        `shared` names the scorers that are the same for every attacked model (their scores are memoised)."""
        guard = replace(self, extra={**self.extra, **scorers}, shared=self.shared | frozenset(shared))
        val = {k: guard._extra(k, val_x) for k in scorers}
        thresholds = {**self.thresholds, **{k: calibrate_threshold(v, fpr) for k, v in val.items()}}
        clean = {**self.clean_test, **{k: guard._extra(k, test_x) for k in scorers}}
        return replace(guard, thresholds=thresholds, clean_test=clean), val

    def _extra(self, name: str, x: torch.Tensor) -> np.ndarray:
        fn = self.extra[name]
        return self.memo(("extra", name, id(fn)), x, lambda: fn(x)) if name in self.shared else fn(x)

    @property
    def threshold(self) -> float:
        return self.thresholds["nll"]

    def score(self, x: torch.Tensor) -> np.ndarray:
        """-log p(x) in nats."""
        return neg_log_prob(self.model, x)

    def score_all(self, x: torch.Tensor) -> dict:
        """Every detector's scores of images x: the density's own, then the baselines."""
        own = self.memo(("density", id(self.model), id(self.context)), x, lambda: score_all(self.model, x, context=self.context))
        return {**own, **{k: self._extra(k, x) for k in self.extra}}

    def flags(self, scores: dict) -> dict:
        """Per detector, which of the scored images it flags at its threshold."""
        return {k: np.asarray(v) > self.thresholds[k] for k, v in scores.items()}

    def first(self, m: int) -> "Guard":
        """The same guard with the clean test scores of the first m attacked images only."""
        return replace(self, clean_test={n: v[:m] for n, v in self.clean_test.items()})
