"""What the per-image arrays of scores.npz add to the verdict: paired accuracy gaps and the threshold's own variance.

Both are optional: results.json alone gives the verdict (unpaired gaps, the threshold taken as fixed); a run directory's
scores.npz, where it holds the arrays, gives the sharper and the more honest interval respectively.
"""

from __future__ import annotations

import numpy as np

from ..records import AttackRow
from ..rundir import Key
from .stats import _rng

THRESHOLD_DRAWS = 1000


def _get(scores: dict | None, row: AttackRow, column: str) -> np.ndarray | None:
    return None if scores is None else scores.get(str(row.key(column)))


def paired_counts(scores: dict | None, rows_a: list[AttackRow], rows_b: list[AttackRow]) -> list[tuple[int, int, int]] | None:
    """Per seed (images only a got right, only b, all) under the same attack and budget, from the per-image `correct`
    arrays; None where a seed lacks them or the two models did not see the same number of images."""
    by_seed = {r.seed: r for r in rows_b}
    out = []
    for ra in sorted(rows_a, key=lambda r: r.seed):
        rb = by_seed.get(ra.seed)
        a, b = _get(scores, ra, "correct"), None if rb is None else _get(scores, rb, "correct")
        if a is None or b is None or len(a) != len(b):
            return None
        a, b = a.astype(bool), b.astype(bool)
        out.append((int((a & ~b).sum()), int((b & ~a).sum()), len(a)))
    return out or None


def _thresholds(val: np.ndarray, fpr: float, rng: np.random.Generator) -> np.ndarray:
    """Thresholds calibrated as the study does (the 1 - fpr quantile, method 'higher') on bootstrap resamples of `val`."""
    idx = rng.integers(0, len(val), size=(THRESHOLD_DRAWS, len(val)))
    return np.quantile(val[idx], 1 - fpr, axis=1, method="higher")


def threshold_spread(scores: dict | None, rows: list[AttackRow], fpr: float, rate: str) -> tuple[float, float, float] | None:
    """(2.5%, 50%, 97.5%) quantiles of a pooled rate over seeds when each seed's threshold is recalibrated on a bootstrap
    resample of its clean validation scores: how much the rate moves with the threshold alone. `rate`: 'tpr_at_fpr'
    (flagged among the successful adversarials) or 'evasion_rate' (successful and unflagged among the clean-correct images)."""
    if scores is None or not rows:
        return None
    hits, totals = np.zeros(THRESHOLD_DRAWS), 0
    for r in sorted(rows, key=lambda r: r.seed):
        val = scores.get(str(Key(r.seed, r.target, "clean_val", column="nll")))
        adv, success = _get(scores, r, "nll"), _get(scores, r, "success")
        if val is None or adv is None or success is None or len(adv) != len(success):
            return None
        thr = _thresholds(np.asarray(val, dtype=float), fpr, _rng("threshold", r.seed, r.target, r.eps, len(val)))
        flagged = adv[success.astype(bool)][None, :] > thr[:, None]
        hits += flagged.sum(1) if rate == "tpr_at_fpr" else (~flagged).sum(1)
        totals += int(success.sum()) if rate == "tpr_at_fpr" else r.n_correct
    if not totals:
        return None
    q = np.quantile(hits / totals, [0.025, 0.5, 0.975])
    return float(q[0]), float(q[1]), float(q[2])


def with_threshold(ci: dict, spread: tuple[float, float, float] | None) -> dict:
    """The rate's interval widened by the threshold's own spread (the two half-widths added in quadrature, independent
    sources); unchanged without a spread."""
    if spread is None or ci["mean"] is None:
        return ci
    lo_t, mid, hi_t = spread
    m = ci["mean"]
    lo = m - float(np.hypot(m - ci["lo"], mid - lo_t))
    hi = m + float(np.hypot(ci["hi"] - m, hi_t - mid))
    return {**ci, "lo": max(0.0, lo), "hi": min(1.0, hi), "threshold": {"lo": lo_t, "median": mid, "hi": hi_t}}
