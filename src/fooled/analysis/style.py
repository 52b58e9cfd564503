"""What every figure shares: one colour and one order per model, saving, error bars, and which budgets and models to show."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from ..config import run_config
from ..models import bpd_from_log_prob  # noqa: E402
from ..records import ANY, model_names, rows, shown_budgets  # noqa: E402
from .stats import mean_ci  # noqa: E402

MODEL_ORDER = ("cnn", "cnn_adv", "logreg", "flow", "hybrid", "gaussian")
MODEL_COLORS = dict(zip(MODEL_ORDER, sns.color_palette("colorblind", len(MODEL_ORDER))))
# a marker and a dash per model besides its colour, so that two models whose curves coincide (on digits the flow starts
# at the Gaussian classifier and early stopping keeps that start) both stay visible
MODEL_MARKERS = dict(zip(MODEL_ORDER, ("o", "s", "^", "X", "D", ".")))  # the gaussian, drawn last, a dot: the flow's X stays visible under it
MODEL_DASHES = dict(zip(MODEL_ORDER, ("", (4, 1.5), (1, 1), (5, 2), (3, 1, 1, 1), (1.5, 1.5))))


def model_lines(names) -> dict:
    """seaborn line-plot keywords giving every model of `names` its colour, marker and dash (known models their own,
    others the defaults in turn)."""
    order = model_order(names)
    extra = [m for m in order if m not in MODEL_ORDER]
    spare = dict(zip(extra, sns.color_palette("colorblind", len(MODEL_ORDER) + len(extra))[len(MODEL_ORDER):]))
    return {"hue": "target", "hue_order": order, "palette": {m: MODEL_COLORS.get(m, spare.get(m)) for m in order},
            "style": "target", "style_order": order, "markers": {m: MODEL_MARKERS.get(m, "o") for m in order},
            "dashes": {m: MODEL_DASHES.get(m, "") for m in order}}


def model_order(names) -> list[str]:
    """Models in the one order of every figure (known ones first, then the rest alphabetically)."""
    names = set(names)
    return [m for m in MODEL_ORDER if m in names] + sorted(names - set(MODEL_ORDER))


def save_figure(fig, out: Path, name: str) -> list[Path]:
    """Save as PNG (150 dpi) and PDF in `out`, and close the figure."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def t_interval(values) -> tuple[float, float]:
    """Error bars of every figure: the report's 95% t-interval over seeds (seaborn's bootstrap took most of the drawing time),
    clipped to [0, 1] as the report's intervals are: every figure that draws them plots shares (accuracy, flag and evasion
    rates), and with 2-3 seeds an unclipped t-interval reaches far below 0 and above 1."""
    ci = mean_ci(values, bounds=(0.0, 1.0))
    return ci["lo"], ci["hi"]


def _bpd(neg_log_prob: np.ndarray, dim: int, levels: int) -> np.ndarray:
    return bpd_from_log_prob(-np.asarray(neg_log_prob), dim, levels)


def shown_eps(results: dict) -> list[float]:
    """The linf budgets the example and histogram figures show: the middle one of the run and the largest."""
    return shown_budgets(run_config(results).attacks.eps)


def shown_targets(results: dict) -> list[str]:
    """The attacked models the example figures show: the first one without a density of its own, and the detector that guards it."""
    detector_of = {r.target: r.detector for r in rows(results, grid=ANY)}
    plain = [t for t in model_names(results) if t in detector_of and detector_of[t] != t]
    first = plain[0] if plain else next(iter(detector_of))
    return list(dict.fromkeys([first, detector_of[first]]))


