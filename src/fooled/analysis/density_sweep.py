"""The density-quality sweep, read: does a better density (fewer test bits/dim) flag more of what the attacks make?

Per density (a row of `study.density_sweep.sweep_rows`): the share of plain PGD adversarials it flags, its gap over the
same images under matched sign noise (paired, on the images PGD fooled), and the valid detector-aware evasion of the
attack that knows it (on the images the CNN got right). The verdict compares the best density with the worst on the
same images: a better density "flags more" if its gap over the noise is larger, or the attacker who knows it evades
it less, with a 95% interval above zero, and the densities between agree: the rank correlation of bits/dim with that
measure, over every density, is at least TREND in the same direction (where it is defined). Otherwise it "flags no
more": a difference that only the worst density makes (one broken baseline) is not a trend in density quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

from .stats import paired_diff_ci, rate_ci

DRAWS = 4000  # bootstrap draws over images for the best-against-worst gap difference
TREND = 0.5  # |Spearman's rho| of bits/dim with the deciding measure, over every density, that a "flags more" needs


def _arrays(row: dict) -> dict[str, np.ndarray]:
    return {k: np.asarray(row[k], dtype=bool) for k in ("correct", "fooled", "pgd_flagged", "noise_flagged", "valid")}


def density_numbers(row: dict) -> dict:
    """One density's rates with their intervals (fractions)."""
    a = _arrays(row)
    f = a["fooled"]
    pgd_only, noise_only = int((a["pgd_flagged"] & ~a["noise_flagged"] & f).sum()), int((a["noise_flagged"] & ~a["pgd_flagged"] & f).sum())
    return {"density": row["density"], "family": row["family"], "test_bpd": row["test_bpd"],
            "pgd_flagged": rate_ci([(int((a["pgd_flagged"] & f).sum()), int(f.sum()))]),
            "noise_flagged": rate_ci([(int((a["noise_flagged"] & f).sum()), int(f.sum()))]),
            "gap": paired_diff_ci([(pgd_only, noise_only, int(f.sum()))]),
            "valid_evasion": rate_ci([(int(a["valid"].sum()), int(a["correct"].sum()))])}


def _gap_difference(better: dict, worse: dict, seed: int = 0) -> dict:
    """Mean over the images PGD fooled of (flagged by PGD - by noise) under `better` minus the same under `worse`, with a
    percentile bootstrap interval over images (the same images for both)."""
    a, b = _arrays(better), _arrays(worse)
    f = a["fooled"]
    per_image = ((a["pgd_flagged"].astype(int) - a["noise_flagged"]) - (b["pgd_flagged"].astype(int) - b["noise_flagged"]))[f]
    if not per_image.size:
        return {"mean": None, "lo": None, "hi": None}
    rng = np.random.default_rng(seed)
    boots = per_image[rng.integers(0, per_image.size, size=(DRAWS, per_image.size))].mean(1)
    return {"mean": float(per_image.mean()), "lo": float(np.quantile(boots, 0.025)), "hi": float(np.quantile(boots, 0.975))}


def _evasion_difference(better: dict, worse: dict) -> dict:
    """Valid evasion of `worse` minus that of `better` on the same images (positive: the better density lets fewer through)."""
    a, b = _arrays(better)["valid"], _arrays(worse)["valid"]
    return paired_diff_ci([(int((b & ~a).sum()), int((a & ~b).sum()), int(_arrays(better)["correct"].sum()))])


def _spearman(a: list, b: list) -> float | None:
    """Spearman's rank correlation, None where it is undefined (fewer than 3 values, a missing or a constant one)."""
    if len(a) < 3 or any(v is None for v in b) or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(_scipy_stats.spearmanr(a, b).statistic)


def summarise_sweep(rows: list[dict]) -> dict:
    """Every density's numbers (ordered by test bits/dim), the best-against-worst comparison and the verdict, over the
    densities trained as they are; the flows trained along a trade-off knob (rows with a `knob`) are summarised the same
    way, each knob on its own, under "knobs"."""
    knobs = {}
    for r in rows:
        if r.get("knob"):
            knobs.setdefault(r["knob"], []).append(r)
    out = _summarise([r for r in rows if not r.get("knob")])
    if knobs:
        out["knobs"] = {k: _summarise(rs) for k, rs in knobs.items() if len(rs) > 1}
    return out


def _summarise(rows: list[dict]) -> dict:
    rows = sorted(rows, key=lambda r: r["test_bpd"])
    numbers = [density_numbers(r) for r in rows]
    best, worst = rows[0], rows[-1]
    gap, evasion = _gap_difference(best, worst), _evasion_difference(best, worst)
    bpd = [n["test_bpd"] for n in numbers]
    rho = {key: _spearman(bpd, [n[key]["mean"] for n in numbers]) for key in ("gap", "valid_evasion")}
    endpoints = {"gap": gap["lo"] is not None and gap["lo"] > 0, "valid_evasion": evasion["lo"] is not None and evasion["lo"] > 0}
    # fewer bits/dim, larger gap: rho(bpd, gap) <= -TREND; fewer bits/dim, less evasion: rho(bpd, evasion) >= +TREND
    trend = {"gap": rho["gap"] is None or rho["gap"] <= -TREND, "valid_evasion": rho["valid_evasion"] is None or rho["valid_evasion"] >= TREND}
    more = any(endpoints[k] and trend[k] for k in endpoints)
    return {"densities": numbers, "best": best["density"], "worst": worst["density"], "gap_difference": gap,
            "evasion_difference": evasion, "spearman_bpd": rho, "answer": "flags more" if more else "flags no more",
            "endpoints_only": not more and any(endpoints.values())}


def _pts(ci: dict) -> str:
    return "-" if ci["mean"] is None else f"{100 * ci['mean']:+.0f} [{100 * ci['lo']:+.0f}, {100 * ci['hi']:+.0f}]"


def _pct(ci: dict) -> str:
    return "-" if ci["mean"] is None else f"{100 * ci['mean']:.0f} [{100 * ci['lo']:.0f}, {100 * ci['hi']:.0f}]"


def verdict_line(summary: dict) -> str:
    """'a better density flags more / flags no more' with the numbers that decide it."""
    d = {n["density"]: n for n in summary["densities"]}
    best, worst = d[summary["best"]], d[summary["worst"]]
    rho = summary["spearman_bpd"]
    ranks = [f"{what} {rho[key]:+.2f}" for key, what in (("gap", "the gap"), ("valid_evasion", "valid evasion")) if rho[key] is not None]
    corr = f"; across all {len(d)} densities, Spearman's rho of bits/dim against {' and against '.join(ranks)}" if ranks else ""
    return (f"**A better density {summary['answer']}**: the best density here ({best['density']}, {best['test_bpd']:.3f} "
            f"bits/dim) against the worst ({worst['density']}, {worst['test_bpd']:.3f}), on the same images: gap over the "
            f"matched noise, best minus worst, {_pts(summary['gap_difference'])} points; valid evasion by an attacker who "
            f"knows the density, worst minus best, {_pts(summary['evasion_difference'])} points{corr}"
            + (f" (the best and the worst differ, but the densities between do not follow: |rho| below {TREND:g}, so the "
               "difference is the worst density's, not a trend in density quality)" if summary.get("endpoints_only") else "") + ".")


def _table(densities: list[dict]) -> list[str]:
    lines = ["| density | test bits/dim | PGD flagged % | matched noise flagged % | gap, points | valid aware evasion % |",
             "|---|---|---|---|---|---|"]
    return lines + [f"| {n['density']} | {n['test_bpd']:.3f} | {_pct(n['pgd_flagged'])} | {_pct(n['noise_flagged'])} | "
                    f"{_pts(n['gap'])} | {_pct(n['valid_evasion'])} |" for n in densities]


def describe_sweep(summary: dict) -> list[str]:
    """Markdown: the verdict line and one table row per density, best first; then the same along each trade-off knob."""
    lines = [verdict_line(summary), ""] + _table(summary["densities"])
    for knob, part in (summary.get("knobs") or {}).items():
        lines += ["", f"Along the trade-off knob `{knob}` (each value a flow trained on the same split; fewer bits/dim is "
                  "bought with less accuracy, see the trade-off study): " + verdict_line(part).replace("**A better density",
                                                                                                      "**A better density along this knob", 1), ""]
        lines += _table(part["densities"])
    return lines


def draw_sweep(summary: dict, out_dir: str | Path) -> list[Path]:
    """Three panels against test bits/dim: PGD flagged, gap over matched noise, valid detector-aware evasion."""
    from .style import plt, save_figure, sns

    every = summary["densities"] + [n for part in (summary.get("knobs") or {}).values() for n in part["densities"]]
    frame = pd.DataFrame([{"density": n["density"], "family": n["family"], "bpd": n["test_bpd"], "panel": panel,
                           "value": 100 * n[key]["mean"], "lo": 100 * n[key]["lo"], "hi": 100 * n[key]["hi"]}
                          for n in every for key, panel in
                          (("pgd_flagged", "plain PGD flagged, %"), ("gap", "gap over matched noise, points"),
                           ("valid_evasion", "valid detector-aware evasion, %")) if n[key]["mean"] is not None])
    panels = frame["panel"].unique().tolist()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        part = frame[frame["panel"] == panel]
        ax.errorbar(part["bpd"], part["value"], yerr=[part["value"] - part["lo"], part["hi"] - part["value"]], fmt="none",
                    ecolor="0.6", elinewidth=1, zorder=1)
        sns.scatterplot(data=part, x="bpd", y="value", hue="family", style="family", s=60, ax=ax, zorder=2,
                        legend=ax is axes[0][-1])
        ax.set(xlabel="test bits/dim (lower: a better density)", ylabel="", title=panel,
               ylim=(-105, 105) if "points" in panel else (-2, 102))
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title="density")
    fig.suptitle(f"Does a better density notice more? Best: {summary['best']}; verdict: {summary['answer']}")
    fig.tight_layout()
    return save_figure(fig, Path(out_dir), "density_sweep")
