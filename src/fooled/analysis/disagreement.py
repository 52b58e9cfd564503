"""Reading a `fooled disagree` directory: do flows that fit the data equally well agree on it and disagree off it?

The maximum-likelihood argument: training fixes p_theta where the data has mass and leaves it arbitrary
elsewhere, so flows that differ only in their seed (or size) should give the same bits/dim to test images and
different bits/dim to inputs off the data. `disagreement_scores.csv` has one row per (set, input, model) with
the bits/dim of that input under that model. The spread of an input is the standard deviation of its
bits/dim across models: across the seeds of one size (averaged over sizes), and across every model. A set's
spread is the median over its inputs, with a 95% percentile-bootstrap interval over inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..rundir import read_json
from .stats import _rng

CLEAN = "test"  # the set on the data; every other set is off it
DRAWS = 2000


def input_spread(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (set, input): mean bits/dim, spread across seeds (mean over sizes of the std across seeds) and across all models."""
    keys = ["set", "input"]
    by_size = scores.groupby(keys + ["size"])["bpd"].std(ddof=1).groupby(level=keys).mean().rename("spread_seeds")
    overall = scores.groupby(keys)["bpd"].agg(mean_bpd="mean", spread_all=lambda v: v.std(ddof=1))
    return overall.join(by_size).reset_index()


def median_ci(values, *, seed_parts=()) -> dict:
    """Median with a 95% percentile-bootstrap interval over the values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"median": None, "lo": None, "hi": None, "n": 0}
    boots = np.median(v[_rng("median", *seed_parts, v.size).integers(0, v.size, size=(DRAWS, v.size))], axis=1)
    return {"median": float(np.median(v)), "lo": float(np.quantile(boots, 0.025)), "hi": float(np.quantile(boots, 0.975)), "n": int(v.size)}


def set_spread(spread: pd.DataFrame) -> dict:
    """Per set: median bits/dim and the median spreads across seeds and across all models, with intervals."""
    out = {}
    for name, rows in spread.groupby("set", sort=False):
        out[name] = {"bpd": float(rows["mean_bpd"].median()),
                     **{col: median_ci(rows[col], seed_parts=(name, col)) for col in ("spread_seeds", "spread_all")}}
    return out


def agreement_verdict(per_set: dict, column: str = "spread_seeds") -> dict:
    """YES when the clean set's spread interval lies below that of every off-data set, NO when below none, else PARTLY."""
    clean = per_set[CLEAN][column]
    off = {name: s[column] for name, s in per_set.items() if name != CLEAN}
    wider = [name for name, s in off.items() if s["lo"] is not None and s["lo"] > clean["hi"]]
    answer = "YES" if len(wider) == len(off) else "NO" if not wider else "PARTLY"
    return {"answer": answer, "column": column, "clean": clean, "wider": wider,
            "not_wider": [name for name in off if name not in wider]}


def summarise(scores: pd.DataFrame) -> dict:
    """Spreads per set and the verdict (across seeds, and across all models)."""
    per_set = set_spread(input_spread(scores))
    return {"sets": per_set, "verdict": agreement_verdict(per_set), "verdict_all_models": agreement_verdict(per_set, "spread_all"),
            "models": sorted(scores["model"].unique().tolist())}


def verdict_line(verdict: dict) -> str:
    """'models agree on the data and disagree off it: yes/partly/no' with the numbers that decide it."""
    c = verdict["clean"]
    what = "across seeds" if verdict["column"] == "spread_seeds" else "across all models"
    line = (f"Models agree on the data and disagree off it ({what}): **{verdict['answer']}**. Median spread (std of bits/dim) on "
            f"clean test images {c['median']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]")
    if verdict["not_wider"]:
        line += f"; sets whose spread is not clearly wider: {', '.join(verdict['not_wider'])}"
    return line + "."


def describe(summary: dict) -> list[str]:
    """The table and the verdict lines, markdown."""
    lines = ["| set | median bits/dim | spread across seeds | spread across all models |", "|---|---|---|---|"]
    order = sorted(summary["sets"], key=lambda name: (name != CLEAN, summary["sets"][name]["spread_seeds"]["median"]))
    for name in order:
        s = summary["sets"][name]
        cells = [f"{s[col]['median']:.3f} [{s[col]['lo']:.3f}, {s[col]['hi']:.3f}]" for col in ("spread_seeds", "spread_all")]
        lines.append(f"| {name} | {s['bpd']:.3f} | {cells[0]} | {cells[1]} |")
    return lines + ["", "- " + verdict_line(summary["verdict"]), "- " + verdict_line(summary["verdict_all_models"])]


def is_disagreement_dir(path: str | Path) -> bool:
    return (Path(path) / "disagreement.json").exists()


def draw_disagreement(run_dir: str | Path) -> list[Path]:
    """Per-input spread of bits/dim across seeds, one box per set, the clean set's interval shaded."""
    from .style import plt, save_figure, sns

    run_dir = Path(run_dir)
    spread = input_spread(pd.read_csv(run_dir / "disagreement_scores.csv"))
    clean = read_json(run_dir / "disagreement.json")["summary"]["sets"][CLEAN]["spread_seeds"]
    order = [CLEAN] + sorted(set(spread["set"]) - {CLEAN}, key=lambda s: spread.loc[spread["set"] == s, "spread_seeds"].median())
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(order) + 1.6))
    sns.boxplot(spread, y="set", x="spread_seeds", order=order, ax=ax, color="#9ecae1", fliersize=2, log_scale=True)
    ax.axvspan(clean["lo"], clean["hi"], color="#31a354", alpha=0.25, label="clean test: 95% interval of the median")
    ax.set_xlabel("spread of bits/dim across flows of different seeds (std; per input, mean over sizes)")
    ax.set_ylabel("")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Do flows that fit the data equally well agree off it?")
    fig.tight_layout()
    return save_figure(fig, run_dir / "figures", "disagreement")
