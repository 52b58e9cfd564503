"""What classification costs a density model: bits/dim against accuracy as the class term grows.

Each class-conditional head has one knob that trades log p(x) for p(y|x): for the FlowGMM head (`flow`) the
distance between the class means, `models.flow.mean_norm` (0: every class has the same base Gaussian, an
unconditional flow); for the DIGLM head (`hybrid`) the weight of log p(y|x) in the loss, `models.hybrid.lam`
(0: pure maximum likelihood of x). `fooled tradeoff` trains every value for every seed (checkpoints cached in
the run directory like the study's), measures accuracy and bits/dim on validation and test, and chooses each
knob on validation only: the highest validation accuracy, and among the values within `tolerance` of it,
the lowest validation bits/dim. Test numbers are reported, never used to choose. It also trains the flow as
configured with its coupling log-scales in effect unbounded, to say what the tanh bound costs in bits/dim.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import StudyConfig, config_hash, override
from .data import load
from .errors import FooledError
from .evaluate import mean_bpd, predict
from .runs import atomic_write_bytes, prepare_run_dir, write_json

KNOBS = {"flow": ("models.flow.mean_norm", (0.0, 3.0, 6.0, 12.0, 20.0)), "hybrid": ("models.hybrid.lam", (0.0, 1.0, 8.0, 64.0))}
TOLERANCE = 0.005  # validation accuracy within half a point of the best counts as as good
BOUND_KEY, UNBOUNDED = "models.flow.scale_bound", 1e4  # tanh-bounded log-scales vs (in effect) unbounded: |s| << 1e4


def for_flow_kind(cfg: StudyConfig, key: str) -> str:
    """A `models.flow.*` key of the flow this config builds: the Glow flow keeps its mean norm and bound in [models.glow]."""
    return key.replace("models.flow.", "models.glow.", 1) if cfg.models.flow.kind == "glow" else key


def _scores(model, split, seed: int) -> tuple[float, float]:
    """(accuracy, mean bits/dim under uniform dequantisation) of a trained density classifier on a split."""
    return float((predict(model, split.x) == split.y).float().mean()), mean_bpd(model, split.x, seed)


def tradeoff_seed(cfg: StudyConfig, seed: int, run_dir: Path, device, log, progress, knobs=KNOBS, bound=True) -> list[dict]:
    """Train (or load) every knob value of every head for one seed; one row per (model, knob, value).

    With `bound`, also the flow as configured with its coupling log-scales bounded (the config's `scale_bound`)
    and in effect unbounded, to measure what the bound costs in bits/dim."""
    from .study import train_or_load

    splits = load(cfg.data.name, seed=seed, root=cfg.data.root, download=cfg.data.download,
                  val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction, limit=cfg.data.limit)

    def row(name: str, key: str, value: float) -> dict:
        model, meta = train_or_load(override(cfg, [f"{key}={value!r}"]), name, splits, seed, run_dir, device, log, progress)
        model.eval()
        (val_acc, val_bpd), (test_acc, test_bpd) = _scores(model, splits.val, seed), _scores(model, splits.test, seed)
        return {"seed": seed, "model": name, "knob": key, "value": float(value), "val_acc": val_acc, "val_bpd": val_bpd,
                "test_acc": test_acc, "test_bpd": test_bpd, "train_seconds": meta["train_seconds"]}

    rows = [row(name, for_flow_kind(cfg, key), value) for name, (key, values) in knobs.items() for value in values]
    if bound and "flow" in cfg.models.names:  # the flow as configured, with its bound and in effect without
        key = for_flow_kind(cfg, BOUND_KEY)
        rows += [row("flow", key, value) for value in (_get(cfg, key), UNBOUNDED)]
    return rows


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


def run_tradeoff(cfg: StudyConfig, out_dir: str | Path, *, device: str = "auto", log=print, jobs: int | None = None,
                 figures: bool = True, knobs=KNOBS, bound: bool = True) -> dict:
    """Write tradeoff.csv, tradeoff.json (chosen values, cost of classification) and the figure into out_dir."""
    from functools import partial

    from .study import all_seeds, default_jobs, resolve_device

    knobs = {name: knob for name, knob in knobs.items() if name in cfg.models.names}  # the heads this config has
    if not knobs:
        raise FooledError(f"tradeoff: models.names {list(cfg.models.names)} has none of the class-conditional density heads 'flow', 'hybrid'")
    run_dir = prepare_run_dir(Path(out_dir))
    dev = resolve_device(device)
    jobs = default_jobs(cfg, dev) if jobs is None else jobs
    work = partial(tradeoff_seed, knobs=knobs, bound=bound)
    table = pd.DataFrame([row for rows in all_seeds(cfg, run_dir, dev, log, False, jobs, work=work) for row in rows])
    atomic_write_bytes(run_dir / "tradeoff.csv", table.to_csv(index=False).encode())
    summary = {"config_hash": config_hash(cfg), "seeds": list(cfg.seeds), "tolerance": TOLERANCE, "chosen": choose(table), "cost": cost_of_classification(table),
               "scale_bound": bound_cost(table),
               "configured": {name: float(_get(cfg, for_flow_kind(cfg, key))) for name, (key, _) in knobs.items()}}
    write_json(run_dir / "tradeoff.json", summary)
    report = ["# What classification costs a density model", "", f"Config `{cfg.name}`, seeds {list(cfg.seeds)}; "
              "each knob chosen on validation (best accuracy, then fewest bits/dim within "
              f"{100 * TOLERANCE:g} points), test numbers reported.", ""] + describe(summary) + ["", "![trade-off](figures/tradeoff.png)", ""]
    atomic_write_bytes(run_dir / "report.md", "\n".join(report).encode())
    if figures:
        draw_tradeoff(run_dir)
    return summary


def is_tradeoff_dir(path: str | Path) -> bool:
    return (Path(path) / "tradeoff.json").exists()


def draw_tradeoff(run_dir: str | Path) -> list[Path]:
    """Redraw the trade-off figure of a `fooled tradeoff` run directory from tradeoff.csv and tradeoff.json."""
    from .plots import tradeoff_figure
    from .runs import read_json

    run_dir = Path(run_dir)
    table = pd.read_csv(run_dir / "tradeoff.csv")
    return tradeoff_figure(main_knobs(table), read_json(run_dir / "tradeoff.json"), run_dir / "figures")


def _signed(v: float) -> str:
    """+0.049, -0.012, or ±0.000 where the difference rounds to nothing."""
    return "±0.000" if abs(v) < 5e-4 else f"{v:+.3f}"


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


__all__ = ["KNOBS", "TOLERANCE", "tradeoff_seed", "main_knobs", "bound_cost", "choose", "cost_of_classification", "describe", "run_tradeoff", "draw_tradeoff", "is_tradeoff_dir"]
