"""A combined defence: the defender flags an input if any of its detectors does, at one TOTAL validation false-positive rate.

Members (each a torch score, higher = more suspicious, so an attack can descend all of them at once):
  nll             -log p(x) of the density model
  label_density   -log p_flow(x | y_clf): the density of the class the guarded classifier gives (a joint model's own check)
  label_agreement max_k log p_flow(x, k) - log p_flow(x, y_clf): > 0 iff the flow's label differs from the classifier's
  typicality      | -log p(x) - mean clean -log p(x) |
  max_softmax     -max_k p(k | x) of the guarded classifier
  off_grid        the largest distance of a pixel to the grey-level grid (0 on valid images)
The members are calibrated jointly (`calibrate_jointly`): every member flags the same share q of clean validation
images, q the largest for which the union flags at most `fpr` of them. An attack that knows every member descends
`CombinedDefence.score`, the largest member score in units of its own validation spread above its threshold, which is
> 0 iff some member flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import ConfigError
from .detectors import log_class_prior
from .metrics import calibrate_threshold

MEMBERS = ("nll", "label_density", "label_agreement", "typicality", "max_softmax", "off_grid")
SEARCH_STEPS = 40  # bisection steps over the per-member rate q (a 2^-40 fraction of fpr: exact for any validation set)


class Members(dict):
    """member name -> torch score x -> (N,), and `together(x)`: every member's score of x from one pass through the
    density and one through the classifier (what an attack on the whole defence descends), equal to the calls one by one."""

    def __init__(self, scores: dict[str, Callable], together: Callable):
        super().__init__(scores)
        self._together = together

    def together(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._together(x)


def member_scores(classifier: torch.nn.Module, density: torch.nn.Module, *, reference_nll_mean: float, levels: int) -> Members:
    """The members' torch scores x -> (N,) for `classifier` guarded by the flow `density` (a model with log_prob,
    log_joint and log_prob_and_joint)."""
    for need in ("log_prob", "log_joint", "log_prob_and_joint"):
        if not hasattr(density, need):
            raise ConfigError(f"the combined defence needs a density model with {need}(x); {type(density).__name__} has none")

    def off_grid(x):
        return (x - torch.round(x * (levels - 1)) / (levels - 1)).abs().flatten(1).amax(1)

    def label_scores(joint, logits):
        """(label_density, label_agreement) of the log joint given the classifier's logits."""
        y = logits.argmax(1)
        prior = log_class_prior(density, joint.shape[1]).to(joint)
        at_label = joint.gather(1, y[:, None]).squeeze(1)
        return -(at_label - prior[y]), joint.amax(1) - at_label

    def together(x):
        log_p, joint = density.log_prob_and_joint(x)
        logits = classifier(x)
        label_density, label_agreement = label_scores(joint, logits)
        return {"nll": -log_p, "label_density": label_density, "label_agreement": label_agreement,
                "typicality": (-log_p - reference_nll_mean).abs(), "max_softmax": -logits.softmax(1).amax(1), "off_grid": off_grid(x)}

    return Members({
        "nll": lambda x: -density.log_prob(x),
        "label_density": lambda x: label_scores(density.log_joint(x), classifier(x))[0],
        "label_agreement": lambda x: label_scores(density.log_joint(x), classifier(x))[1],
        "typicality": lambda x: (-density.log_prob(x) - reference_nll_mean).abs(),
        "max_softmax": lambda x: -classifier(x).softmax(1).amax(1),
        "off_grid": off_grid,
    }, together)


def _each(scores: dict[str, Callable], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every member's torch score of x: in one pass per model for `Members`, else member by member."""
    return scores.together(x) if isinstance(scores, Members) else {name: fn(x) for name, fn in scores.items()}


def evaluate(scores: dict[str, Callable], x: torch.Tensor, batch_size: int = 512) -> dict[str, np.ndarray]:
    """Every member's scores of images x, as float64 numpy arrays (no gradients)."""
    device = x.device
    with torch.no_grad():
        parts = [_each(scores, x[i:i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
    return {name: torch.cat([p[name].double().cpu() for p in parts]).numpy() if parts else np.zeros(0) for name in scores}


def union_flags(scores: dict[str, np.ndarray], thresholds: dict[str, float]) -> np.ndarray:
    """Per image, whether any member flags it (score > its threshold)."""
    missing = sorted(set(thresholds) - set(scores))
    if missing:
        raise ConfigError(f"scores lack the member(s) {', '.join(missing)} of the defence")
    return np.any([np.asarray(scores[k]) > t for k, t in thresholds.items()], axis=0)


def calibrate_jointly(val_scores: dict[str, np.ndarray], fpr: float) -> tuple[dict[str, float], float]:
    """(thresholds, q): each member's threshold at the same validation flag rate q, q the largest (by bisection) at which the
    union flags at most `fpr` of the validation images."""
    if not val_scores:
        raise ConfigError("calibrate_jointly needs at least one member's validation scores")
    sizes = {len(np.asarray(v)) for v in val_scores.values()}
    if len(sizes) != 1:
        raise ConfigError(f"every member must score the same validation images, got sizes {sorted(sizes)}")

    def at(q):
        return {k: calibrate_threshold(v, q) for k, v in val_scores.items()}

    lo, hi = fpr / len(val_scores) / 2, fpr  # the union flags >= each member's rate, and (Bonferroni) <= their sum
    lo_t = at(lo)
    if union_flags(val_scores, lo_t).mean() > fpr:
        raise ConfigError(f"no per-member rate keeps the union's validation FPR at or below {fpr}")
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi) / 2
        if union_flags(val_scores, at(mid)).mean() <= fpr:
            lo = mid
        else:
            hi = mid
    return at(lo), lo


@dataclass(frozen=True)
class CombinedDefence:
    """Members' scores and jointly calibrated thresholds; `score(x)` > 0 iff some member flags x."""

    scores: dict  # member name -> torch score x -> (N,)
    thresholds: dict  # member name -> flag when score > threshold
    scales: dict  # member name -> spread of its clean validation scores (the attack's units)
    member_rate: float  # each member's validation flag rate
    val_fpr: float  # the union's validation flag rate (<= the asked fpr)

    @classmethod
    def fit(cls, scores: dict[str, Callable], val_x: torch.Tensor, fpr: float) -> "CombinedDefence":
        val = evaluate(scores, val_x)
        thresholds, q = calibrate_jointly(val, fpr)
        scales = {k: float(max(np.std(v), 1e-3)) for k, v in val.items()}
        return cls(scores, thresholds, scales, q, float(union_flags(val, thresholds).mean()))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """max over members of (score - threshold) / scale: differentiable almost everywhere, > 0 iff flagged."""
        return self._score(x, self.scores)

    def score_on_grid(self, x: torch.Tensor) -> torch.Tensor:
        """`score` of images on the data's grid, without the off-grid member: there it is 0, at its threshold, and never
        flags, but as a member it would floor the maximum at 0, so that every unflagged image scored the same and an
        attack could not prefer one inside the other members' thresholds to one on their edge. > 0 iff flagged (on the grid)."""
        return self._score(x, [k for k in self.scores if k != "off_grid"])

    def _score(self, x: torch.Tensor, members) -> torch.Tensor:
        each = _each(self.scores, x)
        return torch.stack([(each[k] - self.thresholds[k]) / self.scales[k] for k in members]).amax(0)

    def member_flags(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Per member, which images it flags at its joint threshold."""
        s = evaluate(self.scores, x)
        return {k: s[k] > t for k, t in self.thresholds.items()}

    def flags(self, x: torch.Tensor) -> np.ndarray:
        return union_flags(evaluate(self.scores, x), self.thresholds)
