"""Statistics of the analysis: intervals that stay in range, over seeds and images.

Rates (detection, evasion, accuracy) are counts of images pooled over seeds. Their 95% interval is the wider of
(a) the Wilson score interval of the pooled counts, its sample size divided by the seeds' overdispersion (the
quasi-binomial Pearson dispersion over seeds, at least 1), and (b) a two-level percentile bootstrap: resample the
seeds, then the images within each resampled seed. So both the variation between trained models and the finite
number of images count, and neither collapses with 2-3 seeds. Both lie in [0, 1]. Other numbers (AUROC, bits/dim,
accuracy stored as a rate) are averaged over seeds with a Student t interval over seeds (n - 1 degrees of freedom),
which widens honestly when there are few seeds. Accuracy gaps of two models on the same images are paired
(`paired_diff_ci`).
"""

from __future__ import annotations

import functools
import hashlib
import math

import numpy as np
from scipy import stats as _scipy_stats

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


def dispersion(counts: list[tuple[int, int]]) -> float:
    """Quasi-binomial dispersion of per-seed counts about their pooled rate (Pearson chi-square / (seeds - 1)), at least 1:
    how much more the seeds disagree than images drawn at one rate would."""
    counts = [c for c in _clean(counts) if c[1] > 0]
    k, n = sum(c[0] for c in counts), sum(c[1] for c in counts)
    if len(counts) < 2 or k in (0, n):
        return 1.0
    p = k / n
    chi2 = sum((ks - ns * p) ** 2 / (ns * p * (1 - p)) for ks, ns in counts)
    return max(1.0, chi2 / (len(counts) - 1))


def rate_ci(counts: list[tuple[int, int]]) -> dict:
    """Pooled rate of per-seed (successes, trials) with its 95% interval; `n` is the number of seeds, `trials` of images."""
    return dict(_rate_ci(tuple(_clean(counts))))


@functools.lru_cache(maxsize=8192)  # a pure function of the counts: the verdict asks for the same ones under each cut-off
def _rate_ci(counts: tuple[tuple[int, int], ...]) -> dict:
    counts = list(counts)
    k, n = sum(c[0] for c in counts), sum(c[1] for c in counts)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": len(counts), "k": k, "trials": n}
    phi = dispersion(counts)  # seeds that disagree more than binomial noise shrink the effective number of images
    lo, hi = wilson(k / phi, n / phi) if phi > 1 else wilson(k, n)
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


def mean_ci(values, bounds: tuple[float, float] | None = None) -> dict:
    """Mean over seeds with a 95% Student t interval (n - 1 degrees of freedom), clipped to `bounds` if given; one seed
    gives no spread (lo = hi = mean, n = 1)."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    m = float(v.mean())
    if v.size < 2:
        return {"mean": m, "lo": m, "hi": m, "n": 1}
    half = float(_scipy_stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    lo, hi = m - half, m + half
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return {"mean": m, "lo": lo, "hi": hi, "n": int(v.size)}


def paired_diff_ci(pairs: list[tuple[int, int, int]]) -> dict:
    """Difference of two rates measured on the same images: per seed (a_only, b_only, n), the images only model a got
    right, only b, and all. Agresti-Min's adjusted Wald interval for paired proportions (half an image added to each of
    the four cells), its variance scaled by the seeds' dispersion about the pooled difference; in [-1, 1]."""
    pairs = [(int(a), int(b), int(n)) for a, b, n in pairs if n]
    if not pairs:
        return {"mean": None, "lo": None, "hi": None, "n": 0, "paired": True}
    a, b, n = (sum(p[i] for p in pairs) for i in range(3))
    d = (a - b) / n
    a2, b2, n2 = a + 0.5, b + 0.5, n + 2
    d2 = (a2 - b2) / n2
    unit = max((a2 + b2) / n2 - d2 * d2, 1e-12)  # variance of one image's difference (in {-1, 0, 1})
    phi = 1.0
    if len(pairs) > 1:
        chi2 = sum(ns * ((x - y) / ns - d) ** 2 for x, y, ns in pairs) / unit
        phi = max(1.0, chi2 / (len(pairs) - 1))
    half = Z95 * math.sqrt(phi * unit / n2)
    return {"mean": d, "lo": max(-1.0, min(d, d2 - half)), "hi": min(1.0, max(d, d2 + half)), "n": len(pairs), "paired": True}
