"""Statistics of the analysis: means and intervals over seeds."""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_ci(values) -> dict:
    """Mean and 95% t-interval across seeds (interval collapses to the mean for one seed)."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    m = float(v.mean())
    if v.size < 2:
        return {"mean": m, "lo": m, "hi": m, "n": 1}
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return {"mean": m, "lo": m - half, "hi": m + half, "n": int(v.size)}
