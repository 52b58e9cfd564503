"""Seaborn figures comparing the cells of a sweep, drawn from sweep.csv alone."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..errors import FooledError  # noqa: E402
from .plots import save_figure, t_interval  # noqa: E402


def _label(df: pd.DataFrame) -> pd.Series:
    """Cell names without their config hash, where that keeps them apart."""
    short = df["cell"].str.rsplit("-", n=1).str[0]
    return short if short.nunique() == df["cell"].nunique() else df["cell"]


def auroc_vs_eps(df: pd.DataFrame, out: Path) -> list[Path]:
    """AUROC of the -log p(x) detector against the linf budget, one line per dataset (or per cell if one dataset)."""
    d = df[(df["norm"] == "linf") & df["attack"].isin(["pgd", "adaptive_pgd"])]
    if d.empty:
        return []
    hue = "dataset" if d["dataset"].nunique() > 1 else "label"
    g = sns.relplot(d, x="eps", y="auroc", hue=hue, style="attack", col="target", kind="line", marker="o",
                    errorbar=t_interval, height=3.6, aspect=1.1, facet_kws={"ylim": (-0.02, 1.02)})
    for ax in g.axes.flat:
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    g.set_axis_labels("perturbation budget eps (linf, pixel scale [0, 1])", "AUROC of -log p(x), clean vs attacked")
    g.set_titles("attacks on the {col_name}")
    g.figure.suptitle("Does low likelihood flag the attacked images? (mean, 95% CI over seeds and cells)", y=1.04)
    return save_figure(g.figure, out, "sweep_auroc_vs_eps")


def adaptive_evasion(df: pd.DataFrame, out: Path) -> list[Path]:
    """Evasion rate (misclassified and not flagged) of the detector-aware attack, per cell and eps."""
    d = df[df["attack"] == "adaptive_pgd"].assign(eps=lambda t: t["eps"].map("{:g}".format))
    if d.empty:
        return []
    g = sns.catplot(d, y="label", x="evasion_rate", hue="eps", col="target", kind="bar", orient="h", errorbar=t_interval,
                    height=max(2.5, 0.45 * d["label"].nunique() * d["eps"].nunique() ** 0.5 + 1.5), aspect=1.3)
    g.set(xlim=(0, 1))
    g.set_axis_labels("evasion rate (misclassified, not flagged)", "")
    g.set_titles("adaptive PGD on the {col_name}")
    return save_figure(g.figure, out, "sweep_adaptive_evasion")


def draw_sweep(sweep_dir: Path) -> list[Path]:
    path = Path(sweep_dir) / "sweep.csv"
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise FooledError(f"not found: {path} (is this a finished sweep directory?)") from None
    except pd.errors.EmptyDataError:
        return []  # no cell finished: nothing to compare
    df["label"] = _label(df)
    out = Path(sweep_dir) / "figures"
    return auroc_vs_eps(df, out) + adaptive_evasion(df, out)
