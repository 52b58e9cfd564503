"""What classification costs a density model: bits/dim against accuracy as the class term grows.

Each class-conditional head has one knob that trades log p(x) for p(y|x): for the FlowGMM head (`flow`) the
distance between the class means, `models.flow.mean_norm` (0: one base Gaussian, one scale, for every class: an
unconditional flow; swept with the head's diagonal base, `models.flow.base = "diagonal"`); for the DIGLM head (`hybrid`) the weight of log p(y|x) in the loss, `models.hybrid.lam`
(0: pure maximum likelihood of x). `fooled tradeoff` trains every value for every seed (checkpoints cached in
the run directory like the study's), measures accuracy and bits/dim on validation and test, and chooses each
knob on validation only: the highest validation accuracy, and among the values within `tolerance` of it,
the lowest validation bits/dim. Test numbers are reported, never used to choose. It also trains the flow as
configured (with the FlowGMM head's diagonal base) with its coupling log-scales in effect unbounded, to say what the tanh bound costs in bits/dim.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis.tradeoff import TOLERANCE, UNBOUNDED, bound_cost, choose, cost_of_classification, describe, draw_tradeoff
from ..config import StudyConfig, config_hash, override, trained_hash
from ..data import load
from ..errors import FooledError
from ..models import mean_bpd, predict
from ..rundir import atomic_write_text, prepare_run_dir, write_json
from ..train import train_or_load

KNOBS = {"flow": ("models.flow.mean_norm", (0.0, 3.0, 6.0, 12.0, 20.0)), "hybrid": ("models.hybrid.lam", (0.0, 1.0, 8.0, 64.0))}
BOUND_KEY = "models.flow.scale_bound"  # tanh-bounded log-scales vs (in effect) UNBOUNDED


def for_flow_kind(cfg: StudyConfig, key: str) -> str:
    """A `models.flow.*` key of the flow this config builds: the Glow flow keeps its mean norm and bound in [models.glow]."""
    return key.replace("models.flow.", "models.glow.", 1) if cfg.models.flow.kind == "glow" else key


def knob_config(cfg: StudyConfig, key: str, value: float) -> StudyConfig:
    """The config with one knob set. mean_norm is the knob of the FlowGMM head, so its flow has that head's diagonal base
    even where the study's starts at the Gaussian; so has the bound comparison (a flow that keeps its closed-form start
    would show no cost by construction)."""
    head = ["models.flow.base='diagonal'"] if key in ("models.flow.mean_norm", BOUND_KEY) else []
    return override(cfg, [f"{key}={value!r}", *head])


def _scores(model, split, seed: int) -> tuple[float, float]:
    """(accuracy, mean bits/dim under uniform dequantisation) of a trained density classifier on a split."""
    return float((predict(model, split.x) == split.y).float().mean()), mean_bpd(model, split.x, seed)


def tradeoff_seed(cfg: StudyConfig, seed: int, run_dir: Path, device, log, progress, knobs=KNOBS, bound=True) -> list[dict]:
    """Train (or load) every knob value of every head for one seed; one row per (model, knob, value).

    With `bound`, also the flow as configured with its coupling log-scales bounded (the config's `scale_bound`)
    and in effect unbounded, to measure what the bound costs in bits/dim."""
    splits = load(cfg.data.name, seed=seed, root=cfg.data.root, download=cfg.data.download,
                  val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction, limit=cfg.data.limit)

    def row(name: str, key: str, value: float) -> dict:
        model, meta = train_or_load(knob_config(cfg, key, value), name, splits, seed, run_dir, device, log, progress)
        model.eval()
        (val_acc, val_bpd), (test_acc, test_bpd) = _scores(model, splits.val, seed), _scores(model, splits.test, seed)
        return {"seed": seed, "model": name, "knob": key, "value": float(value), "val_acc": val_acc, "val_bpd": val_bpd,
                "test_acc": test_acc, "test_bpd": test_bpd, "train_seconds": meta["train_seconds"]}

    rows = [row(name, for_flow_kind(cfg, key), value) for name, (key, values) in knobs.items() for value in values]
    if bound and "flow" in cfg.models.names:  # the flow as configured, with its bound and in effect without
        key = for_flow_kind(cfg, BOUND_KEY)
        rows += [row("flow", key, value) for value in (_get(cfg, key), UNBOUNDED)]
    return rows


def run_tradeoff(cfg: StudyConfig, out_dir: str | Path, *, device: str = "auto", log=print, jobs: int | None = None,
                 figures: bool = True, knobs=KNOBS, bound: bool = True) -> dict:
    """Write tradeoff.csv, tradeoff.json (chosen values, cost of classification) and the figure into out_dir."""
    from functools import partial

    from .run import all_seeds, default_jobs, resolve_device

    knobs = {name: knob for name, knob in knobs.items() if name in cfg.models.names}  # the heads this config has
    if not knobs:
        raise FooledError(f"tradeoff: models.names {list(cfg.models.names)} has none of the class-conditional density heads 'flow', 'hybrid'")
    run_dir = prepare_run_dir(Path(out_dir))
    dev = resolve_device(device)
    jobs = default_jobs(cfg, dev) if jobs is None else jobs
    work = partial(tradeoff_seed, knobs=knobs, bound=bound)
    table = pd.DataFrame([row for rows in all_seeds(cfg, run_dir, dev, log, False, jobs, work=work) for row in rows])
    atomic_write_text(run_dir / "tradeoff.csv", table.to_csv(index=False))
    summary = {"config_hash": config_hash(cfg), "trained_hash": trained_hash(cfg), "seeds": list(cfg.seeds), "tolerance": TOLERANCE, "chosen": choose(table), "cost": cost_of_classification(table),
               "scale_bound": bound_cost(table),
               "configured": {name: float(_get(cfg, for_flow_kind(cfg, key))) for name, (key, _) in knobs.items()}}
    write_json(run_dir / "tradeoff.json", summary)
    report = ["# What classification costs a density model", "", f"Config `{cfg.name}`, seeds {list(cfg.seeds)}; "
              "each knob chosen on validation (best accuracy, then fewest bits/dim within "
              f"{100 * TOLERANCE:g} points), test numbers reported.", ""] + describe(summary) + ["", "![trade-off](figures/tradeoff.png)", ""]
    atomic_write_text(run_dir / "report.md", "\n".join(report))
    if figures:
        draw_tradeoff(run_dir)
    return summary


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


__all__ = ["KNOBS", "BOUND_KEY", "for_flow_kind", "knob_config", "tradeoff_seed", "run_tradeoff"]
