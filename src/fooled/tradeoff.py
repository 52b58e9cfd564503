"""What classification costs a density model: bits/dim against accuracy as the class term grows.

Each class-conditional head has one knob that trades log p(x) for p(y|x): for the FlowGMM head (`flow`) the
distance between the class means, `models.flow.mean_norm` (0: every class has the same base Gaussian, an
unconditional flow); for the DIGLM head (`hybrid`) the weight of log p(y|x) in the loss, `models.hybrid.lam`
(0: pure maximum likelihood of x). `fooled tradeoff` trains every value for every seed (checkpoints cached in
the run directory like the study's), measures accuracy and bits/dim on validation and test, and chooses each
knob on validation only: the highest validation accuracy, and among the values within `tolerance` of it,
the lowest validation bits/dim. Test numbers are reported, never used to choose.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from .config import StudyConfig, override
from .data import load
from .errors import FooledError
from .evaluate import predict
from .runs import atomic_write_bytes, prepare_run_dir, write_json

KNOBS = {"flow": ("models.flow.mean_norm", (0.0, 3.0, 6.0, 12.0, 20.0)), "hybrid": ("models.hybrid.lam", (0.0, 1.0, 8.0, 64.0))}
TOLERANCE = 0.005  # validation accuracy within half a point of the best counts as as good


def _scores(model, split, seed: int) -> tuple[float, float]:
    """(accuracy, mean bits/dim under uniform dequantisation) of a trained density classifier on a split."""
    acc = float((predict(model, split.x) == split.y).float().mean())
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    bpd = torch.cat([model.dequantised_bpd(xb.to(device), g).cpu() for xb in split.x.split(512)])
    return acc, float(bpd.mean())


def tradeoff_seed(cfg: StudyConfig, seed: int, run_dir: Path, device, log, progress, knobs=KNOBS) -> list[dict]:
    """Train (or load) every knob value of every head for one seed; one row per (model, value)."""
    from .study import train_or_load

    splits = load(cfg.data.name, seed=seed, root=cfg.data.root, download=cfg.data.download,
                  val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction, limit=cfg.data.limit)
    rows = []
    for name, (key, values) in knobs.items():
        for value in values:
            cfg_v = override(cfg, [f"{key}={value!r}"])
            model, meta = train_or_load(cfg_v, name, splits, seed, run_dir, device, log, progress)
            model.eval()
            val_acc, val_bpd = _scores(model, splits.val, seed)
            test_acc, test_bpd = _scores(model, splits.test, seed)
            rows.append({"seed": seed, "model": name, "knob": key, "value": float(value), "val_acc": val_acc, "val_bpd": val_bpd,
                         "test_acc": test_acc, "test_bpd": test_bpd, "train_seconds": meta["train_seconds"]})
    return rows


def choose(table: pd.DataFrame, tolerance: float = TOLERANCE) -> dict:
    """Per model, the knob value chosen on validation (means over seeds): best accuracy, then lowest bits/dim within tolerance."""
    chosen = {}
    for name, rows in table.groupby("model"):
        mean = rows.groupby("value")[["val_acc", "val_bpd"]].mean()
        good = mean[mean["val_acc"] >= mean["val_acc"].max() - tolerance]
        value = float(good["val_bpd"].idxmin())
        chosen[name] = {"knob": rows["knob"].iloc[0], "value": value, "val_acc": float(mean.loc[value, "val_acc"]),
                        "val_bpd": float(mean.loc[value, "val_bpd"])}
    return chosen


def cost_of_classification(table: pd.DataFrame) -> dict:
    """Per model: test bits/dim and accuracy at each knob value minus those at 0 (no class term), mean over seeds."""
    out = {}
    for name, rows in table.groupby("model"):
        mean = rows.groupby("value")[["test_acc", "test_bpd"]].mean()
        if 0.0 not in mean.index:
            continue
        out[name] = {f"{v:g}": {"extra_bpd": float(mean.loc[v, "test_bpd"] - mean.loc[0.0, "test_bpd"]),
                                "test_acc": float(mean.loc[v, "test_acc"])} for v in mean.index if v != 0.0}
    return out


def run_tradeoff(cfg: StudyConfig, out_dir: str | Path, *, device: str = "auto", log=print, jobs: int | None = None,
                 figures: bool = True, knobs=KNOBS) -> dict:
    """Write tradeoff.csv, tradeoff.json (chosen values, cost of classification) and the figure into out_dir."""
    from functools import partial

    from .study import all_seeds, default_jobs, resolve_device

    unknown = sorted(set(knobs) - set(cfg.models.names))
    if unknown:
        raise FooledError(f"tradeoff: model {unknown[0]!r} is not in models.names {list(cfg.models.names)}")
    run_dir = prepare_run_dir(Path(out_dir))
    dev = resolve_device(device)
    jobs = default_jobs(cfg, dev) if jobs is None else jobs
    work = partial(tradeoff_seed, knobs=knobs)
    table = pd.DataFrame([row for rows in all_seeds(cfg, run_dir, dev, log, False, jobs, work=work) for row in rows])
    atomic_write_bytes(run_dir / "tradeoff.csv", table.to_csv(index=False).encode())
    summary = {"seeds": list(cfg.seeds), "tolerance": TOLERANCE, "chosen": choose(table), "cost": cost_of_classification(table),
               "configured": {name: float(_get(cfg, key)) for name, (key, _) in knobs.items()}}
    write_json(run_dir / "tradeoff.json", summary)
    if figures:
        from .plots import tradeoff_figure

        tradeoff_figure(table, summary, run_dir / "figures")
    return summary


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


__all__ = ["KNOBS", "TOLERANCE", "tradeoff_seed", "choose", "cost_of_classification", "run_tradeoff"]
