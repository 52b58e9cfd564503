"""The headline figure: the answer at a glance, for the first attacked model without a density of its own (the CNN).

(a) a test image, its PGD version and its detector-aware version, with prediction, bits/dim and whether -log p(x) flags it;
(b) bits/dim of clean, adversarial, random-control, fooling and OOD images against the detector's threshold;
(c) the share flagged against the budget: plain PGD, PGD on the grid, detector-aware PGD, random sign noise.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
import numpy as np
import pandas as pd
import seaborn as sns

from ..models import bpd_from_log_prob
from ..rundir import Key, lookup, row_key
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


def _rows(results: dict, target: str, attack: str, grid: str, **match) -> list[dict]:
    return [r for r in results["attacks"] if r["target"] == target and r["attack"] == attack and r.get("grid") == grid
            and r.get("attacked_detector") in (None, "nll") and all(r.get(k) == v for k, v in match.items())]


def _flag_rate(rows: list[dict]) -> dict:
    """Share flagged: of the successful adversarials, or of every perturbed image for the random control."""
    if rows and rows[0]["attack"].startswith("noise_"):
        return rate_ci([(round(r["tpr_all"] * r["n"]), r["n"]) for r in rows])
    return rate_ci([(r["n_detected"], r["n_success"]) for r in rows])


def headline(results: dict, scores: dict, examples: dict, target: str, out: Path) -> Path:
    """Draw figures/headline.png (and .pdf) for `target`; returns the PNG's path."""
    info, seed = results["dataset"], results["config"]["seeds"][0]
    dim, levels = int(np.prod(info["shape"])), info["levels"]
    eps_all = sorted({r["eps"] for r in _rows(results, target, "pgd", "continuous")})
    eps = eps_all[(len(eps_all) - 1) // 2]
    pgd_row = _rows(results, target, "pgd", "continuous", seed=seed, eps=eps)[0]
    threshold, detector = pgd_row["threshold"], pgd_row["detector"]
    bpd = lambda s: bpd_from_log_prob(-np.asarray(s), dim, levels)  # noqa: E731
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.1, 1.3, 1.1]})

    # (a) one image that PGD fools, and the detector-aware attack too where one exists
    clean = lookup(examples, Key(seed, "data", "clean_test", column="images"), "examples.npz")
    labels = lookup(examples, Key(seed, "data", "clean_test", column="labels"), "examples.npz")
    panels = [("clean", clean, labels, lookup(scores, Key(seed, target, "clean_test"))[: len(clean)])]
    for label, attack in (("PGD", "pgd"), ("detector-aware PGD", "adaptive_pgd")):
        rows = _rows(results, target, attack, "continuous", seed=seed, eps=eps)
        if rows:
            panels.append((label, lookup(examples, Key(seed, target, attack, eps, "images"), "examples.npz"),
                           lookup(examples, Key(seed, target, attack, eps, "pred"), "examples.npz"), lookup(scores, row_key(rows[0]))))
    shown = min(len(p[1]) for p in panels)  # the detector-aware attack may have run on fewer images
    fooled = [i for i in range(shown) if all(p[2][i] != labels[i] for p in panels[1:])]
    hidden = [i for i in fooled if panels[-1][3][i] <= threshold]  # the aware version fooled the model and was not flagged
    i = (hidden or fooled or [0])[0]
    strip = np.concatenate([np.pad(p[1][i].transpose(1, 2, 0).squeeze(-1), 1, constant_values=0) for p in panels], axis=1)
    axes[0].imshow(1 - strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    w = strip.shape[1] / len(panels)
    names = results.get("dataset", {}).get("class_names") or []
    for k, (label, _, pred, s) in enumerate(panels):
        b = float(bpd(s[i:i + 1])[0])
        flag = "FLAGGED" if s[i] > threshold else "accepted"
        name = names[int(pred[i])] if int(pred[i]) < len(names) else str(int(pred[i]))
        what = f"label {name}" if k == 0 else f"predicted {name}"
        axes[0].text((k + 0.5) * w, -1.5, label, ha="center", va="bottom", fontsize=9, weight="bold")
        axes[0].text((k + 0.5) * w, strip.shape[0] + 0.8, f"{what}\n{b:.2f} bits/dim\n{flag}", ha="center", va="top", fontsize=8.5,
                     color="#b2182b" if flag == "FLAGGED" else "#1a9850")
    axes[0].set_axis_off()
    axes[0].set_title(f"(a) a test image attacked at linf eps {eps:g}", fontsize=10, pad=22)

    # (b) bits/dim of each set against the threshold (first seed; successful adversarials only)
    frames = [pd.DataFrame({"bits/dim": bpd(lookup(scores, Key(seed, target, "clean_test"))), "set": "clean test"})]
    for label, (attack, grid) in SETS.items():
        rows = _rows(results, target, attack, grid, seed=seed, eps=eps)
        if rows:
            s = lookup(scores, row_key(rows[0]))
            keep = slice(None) if attack.startswith("noise_") else lookup(scores, row_key(rows[0], "success")).astype(bool)
            frames.append(pd.DataFrame({"bits/dim": bpd(s[keep]), "set": label}))
    for label, key in (("fooling images", Key(seed, target, "fooling_gradient")), ("uniform noise (OOD)", Key(seed, detector, "ood:uniform noise"))):
        if str(key) in scores:
            frames.append(pd.DataFrame({"bits/dim": bpd(scores[str(key)]), "set": label}))
    df = pd.concat(frames, ignore_index=True)
    sns.ecdfplot(df, x="bits/dim", hue="set", palette=COLORS, ax=axes[1], log_scale=True)
    axes[1].xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    axes[1].xaxis.set_major_formatter(ScalarFormatter())
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    axes[1].axvline(float(bpd(np.array([threshold]))[0]), color="black", ls=":", lw=1.2)
    axes[1].set(xlabel=f"bits/dim under the {detector} (log scale; right of the dotted threshold: flagged)", ylabel="share of the set",
                title=f"(b) how likely each set is (seed {seed}, eps {eps:g})")
    axes[1].title.set_fontsize(10)
    sns.move_legend(axes[1], "upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, frameon=False, fontsize=7.5, title=None)

    # (c) share flagged against the budget, 95% intervals over seeds and images
    for label, (attack, grid) in SETS.items():
        pts = [(e, _flag_rate(_rows(results, target, attack, grid, eps=e))) for e in eps_all if _rows(results, target, attack, grid, eps=e)]
        pts = [(e, ci) for e, ci in pts if ci["mean"] is not None]
        if pts:
            e, m = [p[0] for p in pts], [p[1]["mean"] for p in pts]
            axes[2].errorbar(e, m, yerr=[[p[1]["mean"] - p[1]["lo"] for p in pts], [p[1]["hi"] - p[1]["mean"] for p in pts]],
                             marker="o", ms=4, capsize=3, color=COLORS[label], label=label)
    axes[2].axhline(results["config"]["detect"]["fpr"], color="grey", lw=0.8, ls=":")
    axes[2].set(ylim=(-0.02, 1.02), xlabel="linf budget eps (pixel scale [0, 1])", ylabel="share flagged by low p(x)",
                title=f"(c) attacks on the {target}: flagged, of the successful adversarials")
    axes[2].title.set_fontsize(10)
    # legends below the axes: inside, every corner holds some set's curve or interval on one dataset or another
    axes[2].legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return save_figure(fig, out, "headline")[0]
