"""`fooled toy`: the study's question in a 2-D world where every density, boundary and attack can be drawn, and where a
grid over the eps-ball gives the exact answer the attacks are measured against.

    fooled toy [--out DIR] [--quick]      # under a minute on one CPU core; writes runs/toy/

The package's own pieces on 2-D points (stored as (N, 2, 1, 1) images): an MLP, the flow classifier (FlowGMM head) and
the hybrid (DIGLM head) on normflows, trained with `train.fit`; the flow's -log p(x) as the detector, its threshold
calibrated on held-out points; PGD, the detector-aware `strongest_aware_attack`, random noise and fooling search;
`attacks.grid_search` as the known answer. Flows of several seeds give the maximum-likelihood argument in numbers:
they agree on log p(x) where the data is and disagree where it is not. Writes results.json, maps.npz (every map on a
grid of the square), points.npz (data, adversarials, budget paths, fooling points), then the figures and report.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..analysis.toy_plots import draw_toy
from ..analysis.toy_report import toy_audit, toy_verdict, write_toy_report
from ..config import TrainConfig
from ..detection.detectors import differentiable_score, fit_context
from ..detection.metrics import calibrate_threshold, neg_log_prob
from ..models import accuracy
from ..models.flow import FlowClassifier, FlowConfig
from ..models.hybrid import HybridFlow
from ..models.mlp import MLPClassifier, MLPConfig
from ..rundir import prepare_run_dir, write_json, write_npz
from ..train import fit
from . import toy_world as world
from .toy_attacks import AttackPlan, attack_all, fooling_and_ood


@dataclass(frozen=True)
class ToyConfig:
    sizes: world.ToySizes = world.ToySizes(1000, 400, 400)
    flow: FlowConfig = FlowConfig(blocks=4, hidden=32, mean_norm=3.0, alpha=0.01, permutation="lu")  # lu: a random
    # permutation of two coordinates is the identity half the time, and every coupling would then change the same one
    hybrid_lam: float = 4.0  # weight of log p(y|x) in the hybrid's loss (2 dimensions, not 64: a smaller weight suffices)
    mlp: MLPConfig = MLPConfig(hidden=32)
    train: TrainConfig = TrainConfig(epochs=30, batch_size=200, lr=1e-2, patience=6)
    mlp_epochs: int = 15  # the MLP separates the blobs within a few epochs
    flow_seeds: tuple[int, ...] = (0, 1, 2)  # flows trained for the disagreement map; the first is the detector
    fpr: float = 0.05  # the detector's false-positive rate on held-out points
    map_size: int = 161  # the maps are drawn on map_size x map_size points of the square
    on_data_mass: float = 0.9  # "on the data": the region of highest p_data that holds this share of the data
    off_data_mass: float = 0.999  # "off the data": outside the region that holds this share
    attack: AttackPlan = AttackPlan()


def quick_toy() -> ToyConfig:
    """A smaller world for tests: fewer points, epochs, seeds and attacked points (seconds, not a minute)."""
    cfg = ToyConfig()
    plan = AttackPlan(points=12, points_per_side=31, steps=20, restarts=1, pgd_restarts=4, fooling=6, ood=200, path_points=2, path_budgets=4)
    return replace(cfg, sizes=world.ToySizes(800, 300, 300), train=replace(cfg.train, epochs=20), mlp_epochs=10,
                   flow_seeds=(0, 1), map_size=61, attack=plan)


def train_models(cfg: ToyConfig, splits, log) -> tuple[dict, list, dict]:
    """(classifiers by name, flows of every seed, their training rows): the MLP, the flow of the first seed, the hybrid."""
    rows, flows = {}, []
    for seed in cfg.flow_seeds:
        flow = FlowClassifier(world.SHAPE, world.NUM_CLASSES, world.LEVELS, cfg.flow, seed=seed)
        rows[f"flow_seed{seed}"] = _fit(flow, splits, cfg.train, seed)
        flows.append(flow)
    hybrid = HybridFlow(world.SHAPE, world.NUM_CLASSES, world.LEVELS, cfg.flow, cfg.hybrid_lam, seed=0)
    rows["hybrid"] = _fit(hybrid, splits, cfg.train, 0)
    torch.manual_seed(0)
    mlp = MLPClassifier(world.SHAPE, world.NUM_CLASSES, cfg.mlp)
    rows["mlp"] = _fit(mlp, splits, replace(cfg.train, epochs=cfg.mlp_epochs), 0)
    for name, row in rows.items():
        log(f"  {name}: test accuracy {100 * row['test_acc']:.1f} %, trained in {row['train_seconds']:.1f} s")
    return {"mlp": mlp, "flow": flows[0], "hybrid": hybrid}, flows, rows


def _fit(model, splits, train_cfg, seed) -> dict:
    result = fit(model, splits.train, splits.val, train_cfg, seed=seed)
    row = {"test_acc": accuracy(model, splits.test.x, splits.test.y), "epochs": result.epochs,
           "train_seconds": result.seconds}
    if hasattr(model, "log_prob"):
        row["test_mean_log_p"] = float(-neg_log_prob(model, splits.test.x).mean())
    return row


def seed_spread(log_probs: np.ndarray, on: np.ndarray, off: np.ndarray) -> dict:
    """The maximum-likelihood argument in numbers: per point the standard deviation of log p(x) over flows of different
    seeds (log_probs (S, M)), summarised on the data (mask `on`) and off it (mask `off`) by median and 90th percentile."""
    log_probs, on, off = np.asarray(log_probs, dtype=float), np.asarray(on, bool), np.asarray(off, bool)
    if log_probs.ndim != 2 or len(log_probs) < 2 or not on.any() or not off.any():
        raise ValueError("seed_spread needs log p of at least two seeds (S, M) and non-empty on and off masks")
    spread = log_probs.std(axis=0, ddof=1)
    out = {f"{where}_{stat}": float(np.percentile(spread[mask], q))
           for where, mask in (("on", on), ("off", off)) for stat, q in (("median", 50), ("p90", 90))}
    out["ratio_median"] = out["off_median"] / out["on_median"]
    out |= {"on_points": int(on.sum()), "off_points": int(off.sum()), "seeds": len(log_probs)}
    return out


def support_masks(log_p_data: np.ndarray, log_p_data_at_data: np.ndarray, on_mass: float, off_mass: float):
    """(on, off, off_level): points inside the highest-density region that holds `on_mass` of the data (its level is the
    matching quantile of log p_data at data points), and points outside the region that holds `off_mass`."""
    on_level = np.quantile(log_p_data_at_data, 1 - on_mass)
    off_level = np.quantile(log_p_data_at_data, 1 - off_mass)
    return log_p_data >= on_level, log_p_data < off_level, float(off_level)


@torch.no_grad()
def maps(cfg: ToyConfig, models: dict, flows: list) -> dict[str, np.ndarray]:
    """Every quantity the figures draw, on the map grid: log p_data, each flow's and the hybrid's log p(x), and each
    classifier's class probabilities."""
    axis, points = world.grid(cfg.map_size)
    x = world.as_images(points)
    out = {"axis": axis, "log_p_data": world.log_density(points)}
    out["log_p_flows"] = np.stack([-neg_log_prob(f, x) for f in flows])
    out["log_p_hybrid"] = -neg_log_prob(models["hybrid"], x)
    for name, model in models.items():
        out[f"probs_{name}"] = torch.softmax(model(x), dim=1).numpy()
    return out


def run_toy(out: str | Path, cfg: ToyConfig = ToyConfig(), log=print) -> dict:
    """Train, attack, search and score the 2-D world; write the run directory and its figures; return results.json."""
    start, cpu_start = time.perf_counter(), time.process_time()
    out = prepare_run_dir(Path(out))
    torch.set_num_threads(1)  # the world is tiny: one core is the budget, and threads only contend
    splits = world.splits(cfg.sizes, seed=0)
    log(f"toy: {len(splits.train.x)} training points, {world.NUM_CLASSES} classes; training")
    models, flows, rows = train_models(cfg, splits, log)
    guards = {"mlp": "flow", "flow": "flow", "hybrid": "hybrid"}  # the density model whose -log p(x) guards each classifier
    detectors = {}
    for name in ("flow", "hybrid"):
        model = models[name]
        threshold = calibrate_threshold(neg_log_prob(model, splits.val.x), cfg.fpr)
        score = differentiable_score("nll", model, fit_context(model, splits.val.x, world.INFO))
        detectors[name] = (score, threshold)
    grids = maps(cfg, models, flows)
    on, off, off_level = support_masks(grids["log_p_data"], world.log_density(splits.test.x.view(-1, 2).numpy()),
                                       cfg.on_data_mass, cfg.off_data_mass)
    spread = seed_spread(grids["log_p_flows"], on, off)
    log(f"toy: seed spread of log p(x), median on the data {spread['on_median']:.2f} nats, off it {spread['off_median']:.2f}")
    log("toy: attacks and the exact grid search")
    attacked, arrays = attack_all(models, guards, detectors, splits.test, cfg.attack, log)
    extra, extra_arrays = fooling_and_ood(models, guards, detectors, splits.test, off_level, cfg.attack)
    results = {
        "config": _plain(cfg), "models": rows, "thresholds": {k: v[1] for k, v in detectors.items()}, "guards": guards,
        "fpr": cfg.fpr, "seed_spread": spread, "attacks": attacked, **extra, "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
    }
    write_npz(out / "maps.npz", {**grids, "on_data": on, "off_data": off})
    write_npz(out / "points.npz", {"train_x": splits.train.x.view(-1, 2).numpy(), "train_y": splits.train.y.numpy(),
                                   **arrays, **extra_arrays})
    results["verdict"], results["audit"] = toy_verdict(results), toy_audit(results)
    write_json(out / "results.json", results)
    draw_toy(out)
    write_toy_report(out)
    results["seconds_with_figures"] = time.perf_counter() - start
    results["cpu_seconds_with_figures"] = time.process_time() - cpu_start
    write_json(out / "results.json", results)
    log(f"toy: done in {results['seconds_with_figures']:.1f} s ({results['cpu_seconds_with_figures']:.1f} s of CPU); "
        f"report {out / 'report.md'}")
    return results


def _plain(cfg) -> dict:
    from dataclasses import asdict

    return asdict(cfg)


def run_from_args(args) -> int:
    """`fooled toy [--out DIR] [--quick] [--quiet]`: run, then print the verdict lines and where the report is."""
    results = run_toy(args.out, quick_toy() if args.quick else ToyConfig(), log=(lambda *a: None) if args.quiet else print)
    for v in results["verdict"]:
        print(f"{(v['answer'] or '-').upper():<7} {v['model']:<7} {v['question']}")
    s = results["seed_spread"]
    print(f"seed spread of log p(x): median {s['on_median']:.2f} nats on the data, {s['off_median']:.2f} off it")
    print(f"report: {Path(args.out) / 'report.md'}  ({results['seconds_with_figures']:.0f} s)")
    return 0
