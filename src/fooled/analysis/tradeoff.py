"""Reading a `fooled tradeoff` directory: the knob chosen on validation, what classification costs, sentences and the figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..rundir import read_json

TOLERANCE = 0.005  # validation accuracy within half a point of the best counts as as good
UNBOUNDED = 1e4  # the flow's coupling log-scale bound that is in effect no bound: |s| << 1e4


def main_knobs(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each head's trade-off knob (not the scale-bound comparison)."""
    return table[~table["knob"].str.endswith(".scale_bound")]


def bound_cost(table: pd.DataFrame) -> dict | None:
    """Test bits/dim and accuracy of the flow with bounded and (in effect) unbounded coupling scales, mean over seeds."""
    rows = table[table["knob"].str.endswith(".scale_bound")]
    if rows.empty:
        return None
    mean = rows.groupby("value")[["test_acc", "test_bpd"]].mean()
    bounded = float(mean.index.min())
    return {"bound": bounded, "bounded_bpd": float(mean.loc[bounded, "test_bpd"]), "unbounded_bpd": float(mean.loc[UNBOUNDED, "test_bpd"]),
            "extra_bpd": float(mean.loc[bounded, "test_bpd"] - mean.loc[UNBOUNDED, "test_bpd"]),
            "bounded_acc": float(mean.loc[bounded, "test_acc"]), "unbounded_acc": float(mean.loc[UNBOUNDED, "test_acc"])}


def choose(table: pd.DataFrame, tolerance: float = TOLERANCE) -> dict:
    """Per model, the knob value chosen on validation (means over seeds): best accuracy, then lowest bits/dim within tolerance."""
    chosen = {}
    for name, rows in main_knobs(table).groupby("model"):
        mean = rows.groupby("value")[["val_acc", "val_bpd"]].mean()
        good = mean[mean["val_acc"] >= mean["val_acc"].max() - tolerance]
        value = float(good["val_bpd"].idxmin())
        chosen[name] = {"knob": rows["knob"].iloc[0], "value": value, "val_acc": float(mean.loc[value, "val_acc"]),
                        "val_bpd": float(mean.loc[value, "val_bpd"])}
    return chosen


def cost_of_classification(table: pd.DataFrame) -> dict:
    """Per model: test bits/dim and accuracy at each knob value minus those at 0 (no class term), mean over seeds."""
    out = {}
    for name, rows in main_knobs(table).groupby("model"):
        mean = rows.groupby("value")[["test_acc", "test_bpd"]].mean()
        if 0.0 not in mean.index:
            continue
        out[name] = {f"{v:g}": {"extra_bpd": float(mean.loc[v, "test_bpd"] - mean.loc[0.0, "test_bpd"]),
                                "test_bpd": float(mean.loc[v, "test_bpd"]), "test_acc": float(mean.loc[v, "test_acc"])} for v in mean.index}
    return out


def describe(summary: dict) -> list[str]:
    """Sentences (markdown) that say what the class term and the scale bound cost, with the numbers of `summary`."""
    heads = {"flow": "FlowGMM head (`flow`), class-mean distance", "hybrid": "DIGLM head (`hybrid`), weight of log p(y|x)"}
    n = len(summary["seeds"])
    lines = []
    for name, cost in summary["cost"].items():
        knob = summary["chosen"][name]["knob"].rsplit(".", 1)[-1]
        configured, chosen = summary["configured"][name], summary["chosen"][name]["value"]
        at, base = cost.get(f"{configured:g}"), cost["0"]
        if at is None:
            continue
        line = (f"- {heads.get(name, name)} `{knob}` = {configured:g}: the classification term costs {at['extra_bpd']:+.3f} bits/dim "
                f"against `{knob}` = 0 (no class term: {base['test_bpd']:.3f} bits/dim, {100 * base['test_acc']:.1f} % accuracy) "
                f"and buys {100 * at['test_acc']:.1f} % accuracy (test, mean over {n} seed{'s' if n > 1 else ''}).")
        line += (" Validation chooses the same value." if chosen == configured
                 else f" Validation would choose `{knob}` = {chosen:g} instead (rule: best accuracy, then fewest bits).")
        lines.append(line)
    b = summary.get("scale_bound")
    if b:
        lines.append(f"- The tanh bound on the flow's coupling log-scales (|s| <= {b['bound']:g}), which keeps log p(x) finite on any input, "
                     f"costs {_signed(b['extra_bpd'])} bits/dim ({b['bounded_bpd']:.3f} bounded vs {b['unbounded_bpd']:.3f} unbounded; "
                     f"accuracy {100 * b['bounded_acc']:.1f} % vs {100 * b['unbounded_acc']:.1f} %).")
    return lines


def is_tradeoff_dir(path: str | Path) -> bool:
    return (Path(path) / "tradeoff.json").exists()


def draw_tradeoff(run_dir: str | Path) -> list[Path]:
    """Redraw the trade-off figure of a `fooled tradeoff` run directory from tradeoff.csv and tradeoff.json."""
    from .plots import tradeoff_figure

    run_dir = Path(run_dir)
    table = pd.read_csv(run_dir / "tradeoff.csv")
    return tradeoff_figure(main_knobs(table), read_json(run_dir / "tradeoff.json"), run_dir / "figures")


def _signed(v: float) -> str:
    """+0.049, -0.012, or ±0.000 where the difference rounds to nothing."""
    return "±0.000" if abs(v) < 5e-4 else f"{v:+.3f}"




__all__ = ["TOLERANCE", "UNBOUNDED", "main_knobs", "bound_cost", "choose", "cost_of_classification", "describe", "draw_tradeoff",
           "is_tradeoff_dir"]
