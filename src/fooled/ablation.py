"""Threshold ablation from a run directory's saved scores: detection rate against the validation false-positive rate.

Needs no model: thresholds are quantiles of the clean *validation* scores saved in scores.npz, and every
adversarial set's per-example scores are there too. `fooled ablate RUN_DIR [--fpr ...]` reruns it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import detect
from .errors import FooledError
from .runs import atomic_write_bytes, read_json, read_npz

FPR_GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def _check_fprs(fprs) -> tuple[float, ...]:
    fprs = tuple(sorted(float(f) for f in fprs))
    if not fprs or not all(0 < f < 1 for f in fprs):
        raise FooledError(f"--fpr values must lie in (0, 1), got {', '.join(map(str, fprs)) or 'none'}")
    return fprs


def threshold_table(results: dict, scores: dict, fprs=FPR_GRID) -> pd.DataFrame:
    """One row per (attack row, detector, FPR): threshold from validation, detection rate and test FPR."""
    fprs = _check_fprs(fprs)
    out = []
    for r in results["attacks"]:
        key = f"seed{r['seed']}__{r['target']}__{r['attack']}__{r['eps']:g}"
        for det in r.get("detectors", {"nll": None}):
            suffix = "" if det == "nll" else f"__det={det}"
            val = scores.get(f"seed{r['seed']}__clean_val__{r['detector']}{suffix}")
            test = scores.get(f"seed{r['seed']}__clean_test__{r['detector']}{suffix}")
            adv = scores.get(key + suffix)
            if val is None or test is None or adv is None:
                raise FooledError(f"scores.npz lacks the scores of {key}{suffix}; rerun `fooled study` to write them")
            for fpr in fprs:
                thr = detect.calibrate_threshold(val, fpr)
                out.append({
                    "seed": r["seed"], "target": r["target"], "attack": r["attack"], "eps": r["eps"], "norm": r["norm"],
                    "detector": det, "fpr": fpr, "threshold": thr,
                    "tpr": detect.tpr_at_threshold(adv, thr), "test_fpr": float(detect.flagged(test, thr).mean()),
                })
    return pd.DataFrame(out)


def ablate(run_dir: str | Path, fprs=FPR_GRID, *, figures: bool = True) -> pd.DataFrame:
    """Write RUN_DIR/ablation.csv (and its figure) from results.json and scores.npz."""
    run_dir = Path(run_dir)
    table = threshold_table(read_json(run_dir / "results.json"), read_npz(run_dir / "scores.npz"), fprs)
    atomic_write_bytes(run_dir / "ablation.csv", table.to_csv(index=False).encode())
    if figures:
        from .plots import threshold_ablation

        threshold_ablation(table, run_dir / "figures")
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean detection rate over seeds and targets, per attack, eps, detector and FPR."""
    return table.groupby(["attack", "eps", "detector", "fpr"], as_index=False)[["tpr", "test_fpr"]].mean()


__all__ = ["FPR_GRID", "threshold_table", "ablate", "summary"]
