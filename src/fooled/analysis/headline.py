"""The headline figure: the answer at a glance, for the first attacked model without a density of its own (the CNN).

(a) a test image, its PGD version and its detector-aware version, with prediction, bits/dim and whether -log p(x) flags it;
(b) bits/dim of clean, adversarial, random-control, fooling and OOD images against the detector's threshold;
(c) the share flagged against the budget: plain PGD, PGD on the grid, detector-aware PGD, random sign noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
import numpy as np
import pandas as pd
import seaborn as sns

from ..config import run_config
from ..models import bpd_from_log_prob
from ..records import AttackRow, budgets, middle_budget, rows
from ..rundir import Key, lookup
from .stats import rate_ci
from .style import save_figure

SETS = {  # label: (attack set, grid, counted images) of panels (b) and (c)
    "PGD": ("pgd", "continuous"),
    "PGD, on the grid": ("pgd", "rounded"),
    "detector-aware PGD": ("adaptive_pgd", "continuous"),
    "random sign noise": ("noise_linf", "continuous"),
}
COLORS = {"clean test": "#1f77b4", "PGD": "#d62728", "PGD, on the grid": "#ff9896", "detector-aware PGD": "#9467bd",
          "random sign noise": "#7f7f7f", "fooling images": "#8c564b", "uniform noise (OOD)": "#e377c2"}


def _rows(results: dict, target: str, attack: str, grid: str, **match) -> list[AttackRow]:
    return rows(results, target=target, attack=attack, grid=grid, attacked_detector=(None, "nll"), **match)


def _flag_rate(selected: list[AttackRow]) -> dict:
    """Share flagged: of the successful adversarials, or of every perturbed image for the random control."""
    if selected and selected[0].is_control:
        return rate_ci([(round(r.tpr_all * r.n), r.n) for r in selected])
    return rate_ci([(r.n_detected, r.n_success) for r in selected])


@dataclass(frozen=True)
class _Shown:
    """What the three panels share: the target, its first seed's PGD row at the middle budget, the budgets, the arrays."""

    results: dict
    scores: dict
    target: str
    seed: int
    eps: float
    eps_all: list[float]
    row: AttackRow  # the first seed's PGD row at `eps`: its detector and threshold

    def bpd(self, s) -> np.ndarray:
        info = self.results["dataset"]
        return bpd_from_log_prob(-np.asarray(s), int(np.prod(info["shape"])), info["levels"])


def headline(results: dict, scores: dict, examples: dict, target: str, out: Path) -> Path:
    """Draw figures/headline.png (and .pdf) for `target`; returns the PNG's path."""
    seed = run_config(results).seeds[0]
    eps_all = budgets(_rows(results, target, "pgd", "continuous"))
    eps = middle_budget(eps_all)
    shown = _Shown(results, scores, target, seed, eps, eps_all, _rows(results, target, "pgd", "continuous", seed=seed, eps=eps)[0])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.1, 1.3, 1.1]})
    _image_panel(axes[0], shown, examples)
    _likelihood_panel(axes[1], shown)
    _flagged_panel(axes[2], shown)
    fig.tight_layout()
    return save_figure(fig, out, "headline")[0]


def _image_panel(ax, shown: _Shown, examples: dict) -> None:
    """(a) one image that PGD fools, and the detector-aware attack too where one exists."""
    results, scores, seed, eps, target, threshold = shown.results, shown.scores, shown.seed, shown.eps, shown.target, shown.row.threshold
    clean = lookup(examples, Key(seed, "data", "clean_test", column="images"), "examples.npz")
    labels = lookup(examples, Key(seed, "data", "clean_test", column="labels"), "examples.npz")
    panels = [("clean", clean, labels, lookup(scores, Key(seed, target, "clean_test"))[: len(clean)])]
    for label, attack in (("PGD", "pgd"), ("detector-aware PGD", "adaptive_pgd")):
        found = _rows(results, target, attack, "continuous", seed=seed, eps=eps)
        if found:
            panels.append((label, lookup(examples, Key(seed, target, attack, eps, "images"), "examples.npz"),
                           lookup(examples, Key(seed, target, attack, eps, "pred"), "examples.npz"), lookup(scores, found[0].key())))
    n_shown = min(len(p[1]) for p in panels)  # the detector-aware attack may have run on fewer images
    fooled = [i for i in range(n_shown) if all(p[2][i] != labels[i] for p in panels[1:])]
    hidden = [i for i in fooled if panels[-1][3][i] <= threshold]  # the aware version fooled the model and was not flagged
    i = (hidden or fooled or [0])[0]
    strip = np.concatenate([np.pad(p[1][i].transpose(1, 2, 0).squeeze(-1), 1, constant_values=0) for p in panels], axis=1)
    ax.imshow(1 - strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    w = strip.shape[1] / len(panels)
    names = results.get("dataset", {}).get("class_names") or []
    for k, (label, _, pred, s) in enumerate(panels):
        b = float(shown.bpd(s[i:i + 1])[0])
        flag = "FLAGGED" if s[i] > threshold else "accepted"
        name = names[int(pred[i])] if int(pred[i]) < len(names) else str(int(pred[i]))
        what = f"label {name}" if k == 0 else f"predicted {name}"
        ax.text((k + 0.5) * w, -1.5, label, ha="center", va="bottom", fontsize=9, weight="bold")
        ax.text((k + 0.5) * w, strip.shape[0] + 0.8, f"{what}\n{b:.2f} bits/dim\n{flag}", ha="center", va="top", fontsize=8.5,
                color="#b2182b" if flag == "FLAGGED" else "#1a9850")
    ax.set_axis_off()
    ax.set_title(f"(a) a test image attacked at linf eps {eps:g}", fontsize=10, pad=22)


def _likelihood_panel(ax, shown: _Shown) -> None:
    """(b) bits/dim of each set against the threshold (first seed; successful adversarials only)."""
    scores, seed, eps, target, detector = shown.scores, shown.seed, shown.eps, shown.target, shown.row.detector
    frames = [pd.DataFrame({"bits/dim": shown.bpd(lookup(scores, Key(seed, target, "clean_test"))), "set": "clean test"})]
    for label, (attack, grid) in SETS.items():
        found = _rows(shown.results, target, attack, grid, seed=seed, eps=eps)
        if found:
            s = lookup(scores, found[0].key())
            keep = slice(None) if found[0].is_control else lookup(scores, found[0].key("success")).astype(bool)
            frames.append(pd.DataFrame({"bits/dim": shown.bpd(s[keep]), "set": label}))
    for label, key in (("fooling images", Key(seed, target, "fooling_gradient")), ("uniform noise (OOD)", Key(seed, detector, "ood:uniform noise"))):
        if str(key) in scores:
            frames.append(pd.DataFrame({"bits/dim": shown.bpd(scores[str(key)]), "set": label}))
    df = pd.concat(frames, ignore_index=True)
    sns.ecdfplot(df, x="bits/dim", hue="set", palette=COLORS, ax=ax, log_scale=True)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(float(shown.bpd(np.array([shown.row.threshold]))[0]), color="black", ls=":", lw=1.2)
    ax.set(xlabel=f"bits/dim under the {detector} (log scale; right of the dotted threshold: flagged)", ylabel="share of the set",
           title=f"(b) how likely each set is (seed {seed}, eps {eps:g})")
    ax.title.set_fontsize(10)
    sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, frameon=False, fontsize=7.5, title=None)


def _flagged_panel(ax, shown: _Shown) -> None:
    """(c) share flagged against the budget, 95% intervals over seeds and images."""
    results, target = shown.results, shown.target
    for label, (attack, grid) in SETS.items():
        pts = [(e, _flag_rate(_rows(results, target, attack, grid, eps=e))) for e in shown.eps_all if _rows(results, target, attack, grid, eps=e)]
        pts = [(e, ci) for e, ci in pts if ci["mean"] is not None]
        if pts:
            e, m = [p[0] for p in pts], [p[1]["mean"] for p in pts]
            ax.errorbar(e, m, yerr=[[p[1]["mean"] - p[1]["lo"] for p in pts], [p[1]["hi"] - p[1]["mean"] for p in pts]],
                        marker="o", ms=4, capsize=3, color=COLORS[label], label=label)
    ax.axhline(run_config(results).detect.fpr, color="grey", lw=0.8, ls=":")
    ax.set(ylim=(-0.02, 1.02), xlabel="linf budget eps (pixel scale [0, 1])", ylabel="share flagged by low p(x)",
           title=f"(c) attacks on the {target}: flagged, of the successful adversarials")
    ax.title.set_fontsize(10)
    # legends below the axes: inside, every corner holds some set's curve or interval on one dataset or another
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
