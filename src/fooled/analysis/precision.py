"""How precise the plain answer's numbers are: each headline number with the larger side of its 95% interval, and, for
rates, what the images alone would give (Wilson, the pooled counts), so a reader sees whether more images or more seeds
would narrow it. Written from results.json, never typed.
"""

from __future__ import annotations

from ..records import verdict_cells
from .answer import cw_flagged, main_target
from .stats import wilson
from .summary import _get


def headline_intervals(results: dict) -> list[tuple[str, dict]]:
    """(what, interval) of every number the plain answer quotes for its main model, in the answer's order; a number the
    run lacks is left out. Intervals are {mean, lo, hi, ...} as the verdict gives them (rates in [0, 1], gaps in [-1, 1])."""
    t, answers = main_target(results), verdict_cells(results)  # looked up as the plain answer looks them up (summary._get)
    support = _get(answers, "support")
    cells = [
        ("PGD flagged", _get(answers, "flagged", t)),
        ("-log p(x)-aware valid evasion", _get(answers, "evasion", t)),
        ("combined defence's valid evasion", _get(answers, "combined", t)),
        ("fooling images flagged", _get(answers, "flagged", t, fooling=True)),
        ("Carlini-Wagner flagged", cw_flagged(results, t)),
        (f"flow - {t} PGD accuracy", _get(answers, "robust", "flow")),
        (f"logreg - {t} PGD accuracy", _get(answers, "shallow", "logreg")),
        (f"off the support: {support.measure}" if support else "", support),
    ]
    out = []
    for what, cell in cells:
        value = cell if isinstance(cell, dict) or cell is None else cell.value
        if value and value.get("mean") is not None and value.get("lo") is not None:
            out.append((what, dict(value, per_seed_yes_or_no=cell is support and _yes_or_no(results, support))))
    return out


def _yes_or_no(results: dict, support) -> bool:
    """Whether the set the support answer quotes is, on every seed, likelier than the median test image for all of its
    images or for none (a blank image repeated): then its share is a yes or no per seed, whatever the number of images."""
    name = next((n for n, v in (support.shares or {}).items() if v == support.value), None)
    shares = [r["higher_likelihood_than_test"] for r in results.get("ood", []) if r.get("model") == "flow" and r.get("set") == name]
    return bool(shares) and all(v in (0.0, 1.0) for v in shares)


def half_width(ci: dict) -> int:
    """The larger side of an interval in whole points, as the report shows it (each end rounded to a point)."""
    mean, lo, hi = (round(100 * ci[k]) for k in ("mean", "lo", "hi"))
    return max(mean - lo, hi - mean)


def images_alone(ci: dict) -> int | None:
    """The half-width in points the pooled images alone would give a rate (Wilson), or None where the interval is no
    pooled rate."""
    k, n = ci.get("k"), ci.get("trials")
    if k is None or not n or ci.get("n", 1) < 2:
        return None
    lo, hi = wilson(k, n)
    return half_width({"mean": k / n, "lo": lo, "hi": hi})


def precision_sentence(results: dict, within: int = 5) -> str:
    """Every headline number's half-width in points, how many are within `within` points, and, for those that are not,
    whether the images or the seeds make them wide."""
    numbers = headline_intervals(results)
    if not numbers:
        return ""
    listed = ", ".join(f"{what} +-{half_width(ci)}" for what, ci in numbers)
    wide = [(what, ci) for what, ci in numbers if half_width(ci) > within]
    s = (f"Precision of the headline numbers (the larger side of each 95% interval, in points): {listed}; "
         f"{len(numbers) - len(wide)} of {len(numbers)} are within +-{within}.")
    reasons = []
    for what, ci in wide:
        alone = images_alone(ci)
        if ci["per_seed_yes_or_no"]:
            reasons.append(f"{what} (every seed finds all of the set's images likelier or none: a yes or no per seed, which "
                           "only many more seeds narrow)")
        elif alone is not None and alone <= within:
            reasons.append(f"{what} (its images alone would give +-{alone}: the rest is how much the seeds disagree, "
                           "which only more seeds narrow)")
        elif alone is not None:
            reasons.append(f"{what} (its images alone give +-{alone}: it needs more images, and seeds)")
    if reasons:
        s += " Wider: " + "; ".join(reasons) + "."
    return s
