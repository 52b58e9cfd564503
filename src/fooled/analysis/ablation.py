"""Threshold ablation from a run directory's saved scores: detection rate against the validation false-positive rate.

Needs no model: thresholds are quantiles of the clean *validation* scores saved in scores.npz, and every
adversarial set's per-example scores are there too. `fooled ablate RUN_DIR [--fpr ...]` reruns it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import detection as detect
from ..errors import FooledError
from ..records import attack_rows
from ..rundir import Key, atomic_write_text, lookup, read_json, read_npz

FPR_GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def _check_fprs(fprs) -> tuple[float, ...]:
    fprs = tuple(sorted(float(f) for f in fprs))
    if not fprs or not all(0 < f < 1 for f in fprs):
        raise FooledError(f"--fpr values must lie in (0, 1), got {', '.join(map(str, fprs)) or 'none'}")
    return fprs


def threshold_table(results: dict, scores: dict, fprs=FPR_GRID) -> pd.DataFrame:
    """One row per (attack row, detector, FPR): threshold from validation, detection rate of the successful adversarials (all
    images for the random-perturbation controls) and the realised false-positive rate on clean test images."""
    fprs = _check_fprs(fprs)
    out = []
    for r in attack_rows(results):
        counted = slice(None) if r.is_control else lookup(scores, r.key("success")).astype(bool)
        for det in r.detectors or {"nll": None}:
            val = lookup(scores, Key(r.seed, r.target, "clean_val", column=det))
            test = lookup(scores, Key(r.seed, r.target, "clean_test", column=det))
            adv = lookup(scores, r.key(det))[counted]
            for fpr in fprs:
                thr = detect.calibrate_threshold(val, fpr)
                out.append({
                    "seed": r.seed, "target": r.target, "attack": r.attack, "eps": r.eps, "norm": r.norm,
                    "grid": r.grid or "continuous", "attacked_detector": r.attacked_detector or "-", "detector": det, "fpr": fpr, "threshold": thr,
                    "tpr": detect.tpr_at_threshold(adv, thr) if len(adv) else None, "test_fpr": float(detect.flagged(test, thr).mean()),
                })
    return pd.DataFrame(out)


def ablate(run_dir: str | Path, fprs=FPR_GRID) -> pd.DataFrame:
    """Write RUN_DIR/ablation.csv from results.json and scores.npz."""
    run_dir = Path(run_dir)
    table = threshold_table(read_json(run_dir / "results.json"), read_npz(run_dir / "scores.npz"), fprs)
    atomic_write_text(run_dir / "ablation.csv", table.to_csv(index=False))
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean detection rate over seeds and targets, per attack, eps, detector and FPR."""
    return table.groupby(["attack", "grid", "eps", "detector", "fpr"], as_index=False)[["tpr", "test_fpr"]].mean()


__all__ = ["FPR_GRID", "threshold_table", "ablate", "summary"]
