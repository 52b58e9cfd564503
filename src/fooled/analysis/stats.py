"""Statistics of the analysis: intervals that stay in range, over seeds and images.

Rates (detection, evasion, accuracy) are counts of images pooled over seeds. Their 95% interval is the wider of
(a) the Wilson score interval of the pooled counts and (b) a two-level percentile bootstrap: resample the seeds,
then the images within each resampled seed (a binomial draw at that seed's rate), so that both the variation
between trained models and the finite number of images count. Both lie in [0, 1]. Other numbers (AUROC,
bits/dim) are averaged over seeds with a percentile bootstrap over seeds, which stays within the seeds' range.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

Z95 = 1.959963984540054
DRAWS = 4000


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials (n = 0: the whole [0, 1])."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def _rng(*parts) -> np.random.Generator:
    """A generator seeded by what is being resampled, so every interval is reproducible."""
    digest = hashlib.blake2b(repr((parts, DRAWS)).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _bootstrap_rates(counts: list[tuple[int, int]], pick: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pooled rates of the resampled seeds `pick` (DRAWS, S), the images of each drawn seed drawn again (binomial)."""
    k = np.array([c[0] for c in counts], dtype=float)
    n = np.array([c[1] for c in counts], dtype=int)
    p = np.divide(k, n, out=np.zeros_like(k), where=n > 0)
    drawn = rng.binomial(n[pick], p[pick])
    total = n[pick].sum(1)
    return np.divide(drawn.sum(1), total, out=np.full(len(pick), np.nan), where=total > 0)


def _widen(lo: float, hi: float, boot: np.ndarray) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    if not boot.size:
        return lo, hi
    return min(lo, float(np.quantile(boot, 0.025))), max(hi, float(np.quantile(boot, 0.975)))


def _clean(counts) -> list[tuple[int, int]]:
    return [(int(k), int(n)) for k, n in counts if n is not None]


def rate_ci(counts: list[tuple[int, int]]) -> dict:
    """Pooled rate of per-seed (successes, trials) with its 95% interval; `n` is the number of seeds, `trials` of images."""
    counts = _clean(counts)
    k, n = sum(c[0] for c in counts), sum(c[1] for c in counts)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": len(counts), "k": k, "trials": n}
    lo, hi = wilson(k, n)
    if len(counts) > 1:
        rng = _rng(*[c for pair in counts for c in pair])
        lo, hi = _widen(lo, hi, _bootstrap_rates(counts, rng.integers(0, len(counts), size=(DRAWS, len(counts))), rng))
    return {"mean": k / n, "lo": lo, "hi": hi, "n": len(counts), "k": k, "trials": n}


def diff_ci(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> dict:
    """Pooled rate of a minus that of b (per-seed counts of the same seeds), with a 95% interval in [-1, 1]: the wider of
    Newcombe's hybrid score interval and the two-level bootstrap with the same seeds drawn for both."""
    a, b = _clean(a), _clean(b)
    ka, na, kb, nb = sum(c[0] for c in a), sum(c[1] for c in a), sum(c[0] for c in b), sum(c[1] for c in b)
    if not na or not nb:
        return {"mean": None, "lo": None, "hi": None, "n": len(a)}
    pa, pb = ka / na, kb / nb
    (la, ua), (lb, ub) = wilson(ka, na), wilson(kb, nb)
    d = pa - pb
    lo, hi = d - math.hypot(pa - la, ub - pb), d + math.hypot(ua - pa, pb - lb)
    if len(a) > 1 and len(a) == len(b):
        rng = _rng(*[c for pair in a + b for c in pair])
        pick = rng.integers(0, len(a), size=(DRAWS, len(a)))
        lo, hi = _widen(lo, hi, _bootstrap_rates(a, pick, rng) - _bootstrap_rates(b, pick, rng))
    return {"mean": d, "lo": max(-1.0, lo), "hi": min(1.0, hi), "n": len(a)}


def mean_ci(values) -> dict:
    """Mean over seeds with a 95% percentile-bootstrap interval over seeds (collapses to the mean for one seed)."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    m = float(v.mean())
    if v.size < 2:
        return {"mean": m, "lo": m, "hi": m, "n": 1}
    means = v[_rng(*v.tolist()).integers(0, v.size, size=(DRAWS, v.size))].mean(1)
    return {"mean": m, "lo": float(np.quantile(means, 0.025)), "hi": float(np.quantile(means, 0.975)), "n": int(v.size)}
