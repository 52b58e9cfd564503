"""The whole experiment for one config and its seeds: train, attack, score, write results.json.

Every finished stage (a trained model, an attack's adversarial images) is stored in the run directory
under a hash of the config parts it depends on, so an interrupted study resumes where it stopped
and a changed attack setting redoes that attack only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import torch
from threadpoolctl import threadpool_limits

from ..config import StudyConfig, config_hash, to_dict
from ..data import Split, Splits, dataset_info, load
from ..attacks import latent_class_means
from ..detection import Guard
from ..detection.guard import ScoreMemo
from ..detection.baselines import baseline_scores
from ..errors import FooledError
from ..models import is_density_model, mean_bpd, needs_latent_means, predict
from ..rundir import Key, exclusive, prepare_run_dir, versions, write_json, write_npz
from ..train import model_key, train_or_load
from .context import Made, SeedContext
from .stages.honest import honest_study
from .stages.honest_oracle import fit_oracle, hold_out_for_oracle
from .stages import (adaptive_attacks, audit, audit_aware, carlini_wagner, controls, convergence_curve, convergence_eps,
                     fooling_images, grid_opinion_checks, label_oracle, out_of_distribution, plain_attacks, transfer)

DETECTOR = "flow"  # the density model whose log p(x) scores inputs to classifiers without a density
LISTS = ("attacks", "transfer", "cw", "fooling", "committee", "oracle", "honest", "ood", "audit", "convergence")  # per-seed records in results.json


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise FooledError("--device cuda asked for, but torch sees no CUDA device; use --device auto or cpu")
    return torch.device(device)


def density_baselines(splits: Splits, seed: int) -> tuple[dict, dict]:
    """scikit-learn GaussianMixture and KernelDensity on pixels, hyperparameters chosen on validation: their rows (test
    bits/dim) and the fitted densities, which also serve as likelihood detectors. A fit takes seconds on digits."""
    from ..models.density_baselines import fit_gmm, fit_kde

    rows, fitted = {}, {}
    for name, fit_fn in (("gmm", fit_gmm), ("kde", fit_kde)):
        b = fit_fn(splits.train.x, splits.val.x, splits.info.levels, seed)
        fitted[name] = b
        rows[name] = {"seed": seed, "test_bpd": b.test_bpd(splits.test.x, torch.Generator().manual_seed(seed)), "n_params": b.n_params,
                      "train_seconds": b.fit_seconds, "chosen": b.params}
    return rows, fitted


COMMITTEE_TRAIN = 5000  # the label oracle's SVM and k-NN fit on at most this many training images (an RBF SVM is quadratic in them)


def _at_most(split: Split, n: int, seed: int) -> Split:
    """A random subset of at most n examples of a split (all of it when smaller)."""
    if len(split) <= n:
        return split
    keep = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    return Split(split.x[keep], split.y[keep])


def samples(models: dict, num_classes: int, seed: int, draws: int = 2) -> dict:
    """`draws` samples of every class from each model that can sample p(x|y), for the samples figure."""
    y = torch.arange(num_classes).repeat(draws)
    return {str(Key(seed, name, "samples", column="images")): m.sample(y, torch.Generator().manual_seed(seed)).cpu().numpy()
            for name, m in models.items() if hasattr(m, "sample")}


@dataclass(frozen=True)
class Runtime:
    """Where and how a seed runs: its run directory, device, log and progress bars."""

    run_dir: Path
    device: torch.device
    log: Callable[[str], None]
    progress: bool


def train_models(cfg: StudyConfig, splits: Splits, seed: int, rt: Runtime) -> tuple[dict, dict]:
    """Every configured classifier trained (or loaded): returns ({name: model}, {name: its row})."""
    models, rows = {}, {}
    for name in cfg.models.names:
        model, meta = train_or_load(cfg, name, splits, seed, rt.run_dir, rt.device, rt.log, rt.progress)
        models[name] = model
        rows[name] = {"seed": seed, "test_acc": float((predict(model, splits.test.x) == splits.test.y).float().mean()), **meta}
        if is_density_model(model):
            rows[name]["test_bpd"] = mean_bpd(model, splits.test.x, seed)
    return models, rows


def fit_guards(cfg: StudyConfig, seed: int, models: dict, densities: dict, splits: Splits, x: torch.Tensor, made: Made) -> dict:
    """{classifier: the Guard scoring inputs to it}: density classifiers are their own detector, the others are guarded by
    the flow; all get the baseline detectors. Every threshold is calibrated on validation; the clean scores go to `made`.
    The guards share one score memo, which lives as long as this seed's models."""
    info, memo = splits.info, ScoreMemo()
    fitted = {name: Guard.fit(name, model, splits.val.x, x, info, cfg.detect.fpr, memo=memo)
              for name, model in models.items() if is_density_model(model)}
    shared, per_target = baseline_scores(models, splits.train.x, splits.train.y, splits.val.x, info.levels, densities, memo)
    guards = {}
    for name in models:
        guard, val_scores = fitted.get(name, fitted[DETECTOR])
        scorers = {**shared, **{d: make(models[name]) for d, make in per_target.items()}}
        guards[name], extra_val = guard.with_detectors(scorers, splits.val.x, x, cfg.detect.fpr, shared=shared)
        for det, v in {**val_scores, **extra_val}.items():
            made.score(Key(seed, name, "clean_val", column=det), v)
            made.score(Key(seed, name, "clean_test", column=det), guards[name].clean_test[det])
    return guards


def seed_context(cfg: StudyConfig, seed: int, rt: Runtime, splits: Splits, models: dict, guards: dict) -> SeedContext:
    """What every stage of this seed reads: the attacked test images, the models, their guards and clean predictions."""
    device = rt.device
    n = len(splits.test) if cfg.attacks.max_examples is None else min(len(splits.test), cfg.attacks.max_examples)
    x, y, info = splits.test.x[:n], splits.test.y[:n], splits.info
    latent_means = {name: latent_class_means(model, splits.train.x.to(device), splits.train.y.to(device), info.num_classes)
                    for name, model in models.items() if needs_latent_means(model)}
    donors = (splits.train.x[: cfg.attacks.aware_donors], splits.train.y[: cfg.attacks.aware_donors]) if cfg.attacks.aware_donors else ()
    return SeedContext(cfg, seed, rt.run_dir, device, info, x, y, models, {m: model_key(cfg, m, seed) for m in models}, guards,
                       {name: predict(model, x).numpy() for name, model in models.items()}, latent_means, donors, rt.log, rt.progress)


def run_seed(cfg: StudyConfig, seed: int, run_dir: Path, device, log, progress) -> dict:
    """One seed: train (or load) the models, attack them, score everything; returns this seed's records. Each stage gets
    what the earlier ones made, explicitly: plain PGD's adversarials (`advs`), the detector-aware and fooling stages."""
    a, seed_start = cfg.attacks, time.perf_counter()
    splits = load(cfg.data.name, seed=seed, root=cfg.data.root, download=cfg.data.download,
                  val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction, limit=cfg.data.limit)
    splits, oracle_split = hold_out_for_oracle(splits, cfg.data.oracle_fraction, seed)  # no model or attack sees the oracle's images
    log(f"seed {seed}: {splits.info.name}, {len(splits.train)} train / {len(oracle_split)} oracle / {len(splits.val)} validation / "
        f"{len(splits.test)} test images")
    rt = Runtime(run_dir, device, log, progress)
    models, model_rows = train_models(cfg, splits, seed, rt)
    densities = {}
    if cfg.models.density_baselines:
        rows, densities = density_baselines(splits, seed)
        model_rows.update(rows)
    made = Made()
    n = len(splits.test) if a.max_examples is None else min(len(splits.test), a.max_examples)
    guards = fit_guards(cfg, seed, models, densities, splits, splits.test.x[:n], made)
    ctx = seed_context(cfg, seed, rt, splits, models, guards)
    if ctx.first_seed:
        made.example(Key(seed, "data", "clean_test", column="images"), ctx.x[:10].numpy())
        made.example(Key(seed, "data", "clean_test", column="labels"), ctx.y[:10].numpy())
        made.examples.update(samples(models, splits.info.num_classes, seed))
    records = Records(made)
    timed = Timer(seed, log)
    log(f"  seed {seed}: data, models, thresholds and samples ready after {time.perf_counter() - seed_start:.1f} s")

    plain, advs = plain_attacks(ctx)
    records.keep("attacks", plain)
    records.keep("attacks", timed("random-perturbation controls", lambda: controls(ctx)))
    if a.transfer:
        records.keep("transfer", timed("transfer", lambda: transfer(ctx, advs)))
    aware, fooling, grid_sets = {}, {}, {}
    if a.adaptive:
        out, aware = timed("adaptive attacks", lambda: adaptive_attacks(ctx, advs))
        records.keep("attacks", out)
    if a.cw:
        records.keep("cw", timed("Carlini-Wagner", lambda: carlini_wagner(ctx)))
    if cfg.fooling.enabled:
        out, fooling = timed("fooling images", lambda: fooling_images(ctx))
        records.keep("fooling", out)
    if a.adaptive:
        oracle_start = time.perf_counter()
        committee, committee_row = fit_oracle(cfg, replace(splits, val=_at_most(splits.val, COMMITTEE_TRAIN // 4, seed)),
                                              _at_most(oracle_split, COMMITTEE_TRAIN, seed), seed, run_dir, device)
        log(f"  seed {seed}: label oracle's committee fitted in {time.perf_counter() - oracle_start:.1f} s")
        records.lists["committee"].append(committee_row)
        records.keep("oracle", timed("label oracle", lambda: label_oracle(ctx, committee, aware, fooling)))
        out, grid_sets = timed("one threat model (grid, combined defence, valid evasion, matched controls)",
                               lambda: honest_study(ctx, advs, aware, fooling, committee, splits.val.x))
        records.keep("honest", out)
    if cfg.ood.enabled:
        records.keep("ood", timed("likelihood failures", lambda: out_of_distribution(ctx, splits), "sets scored"))
    if cfg.audit.enabled:
        checks, curves = timed("audit", lambda: audit_all(ctx, records.lists, advs, aware, grid_sets), "checks")
        records.keep("audit", checks)
        records.lists["convergence"] = curves
    log(f"  seed {seed}: done in {time.perf_counter() - seed_start:.1f} s")
    return {"models": model_rows, **records.lists, "scores": made.scores, "examples": made.examples}


def audit_all(ctx: SeedContext, lists: dict, advs: dict, aware: dict, grid_sets: dict) -> tuple[Made, list]:
    """The gradient-masking audit of every model, the detector-aware attacks' own audit (the continuous ones and, from
    the one-threat-model stage, those on the grid: `grid_sets`), and the convergence curves."""
    rows = lists["attacks"]
    checks = audit(ctx, rows, advs, lists["transfer"], lists["fooling"])
    budgets = {t: e for t in ctx.models if (e := convergence_eps(rows, t)) is not None}
    if ctx.cfg.attacks.adaptive:
        checks += audit_aware(ctx, advs, aware, budgets) + grid_opinion_checks(ctx, grid_sets)
    curves = [c for t, e in budgets.items() for c in convergence_curve(ctx, t, e)]
    return Made(rows=checks), curves


class Records:
    """This seed's records by results.json list, and the scores and examples of every stage kept in one Made."""

    def __init__(self, made: Made):
        self.lists, self.made = {key: [] for key in LISTS}, made

    def keep(self, key: str, out: Made) -> None:
        self.lists[key] += out.rows
        self.made.scores.update(out.scores)
        self.made.examples.update(out.examples)


class Timer:
    """Runs one stage of a seed and logs one line with its seed, what it made and its time."""

    def __init__(self, seed: int, log):
        self.seed, self.log = seed, log

    def __call__(self, label: str, run: Callable, what: str = "rows"):
        start = time.perf_counter()
        out = run()
        made = out[0] if isinstance(out, tuple) else out
        self.log(f"  seed {self.seed}: {label}: {len(made.rows)} {what} in {time.perf_counter() - start:.1f} s")
        return out


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def silent(msg: str) -> None:
    pass


def _seed_job(work, cfg: StudyConfig, seed: int, run_dir: Path, device: torch.device, log, threads: int):
    """A seed in a worker process: `threads` threads per worker in torch and in the BLAS and OpenMP pools of numpy, scipy
    and scikit-learn, so workers do not fight over cores (OpenBLAS threads spin while they wait: with one pool of two
    threads per worker, three workers on two cores ran the audit's SLSQP solves six times slower)."""
    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        return work(cfg, seed, run_dir, device, log, progress=False)


def default_jobs(cfg: StudyConfig, device: torch.device) -> int:
    """Seeds run in parallel processes on a multi-core CPU (all at once up to twice the cores: no idle tail), one at a time on a GPU."""
    return 1 if device.type != "cpu" else max(1, min(len(cfg.seeds), 2 * (os.cpu_count() or 1)))


def all_seeds(cfg, run_dir, dev, log, progress, jobs, work=None) -> list:
    """`work(cfg, seed, run_dir, device, log, progress)` for every seed (default `run_seed`), `jobs` seeds at once in processes."""
    work = work or run_seed
    if jobs <= 1 or len(cfg.seeds) == 1:
        return [work(cfg, seed, run_dir, dev, log, progress) for seed in cfg.seeds]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    # workers fork from a server that imported the package once, so they share its pages (torch alone is ~500 MB)
    # instead of importing everything again each; the server itself never runs torch, so forking from it is safe
    if "forkserver" in multiprocessing.get_all_start_methods():
        mp = multiprocessing.get_context("forkserver")
        mp.set_forkserver_preload(["fooled.study._preload"])
    else:  # Windows
        mp = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp) as pool:
        futures = [pool.submit(_seed_job, work, cfg, seed, run_dir, dev, log, threads) for seed in cfg.seeds]
        return [f.result() for f in futures]


def run_study(cfg: StudyConfig, out_dir: str | Path, *, device: str = "auto", log: Callable[[str], None] = stderr_log,
              progress: bool = False, figures: bool = True, jobs: int | None = None) -> dict:
    """Run every seed of the study, write results.json, scores.npz, examples.npz, report.md and figures.

    `jobs` seeds run at once in separate processes (default: one per CPU core on CPU, 1 on GPU); `log` must be
    a module-level function (it is sent to the workers).
    """
    run_dir = prepare_run_dir(Path(out_dir))
    dev = resolve_device(device)
    jobs = default_jobs(cfg, dev) if jobs is None else jobs
    with exclusive(run_dir):
        finished = _finished(run_dir, cfg, figures)
        if finished is not None:
            log(f"{run_dir} already holds this finished study (config {finished['config_hash']}); nothing to do")
            return finished
        return _run(cfg, run_dir, dev, log, progress, figures, jobs)


def _run(cfg: StudyConfig, run_dir: Path, dev: torch.device, log, progress: bool, figures: bool, jobs: int) -> dict:
    from ..analysis import compute_verdict, draw_all, write_report  # the study's very end: analysis reads what it wrote

    start = time.perf_counter()
    results = {
        "config": to_dict(cfg), "config_hash": config_hash(cfg), "versions": versions(), "device": str(dev),
        "dataset": dataclasses.asdict(dataset_info(cfg.data.name)), "score": "-log p(x) in nats from the detector (the target itself if it is a density model, else the flow); flagged if above threshold",
        "models": {name: [] for name in cfg.models.names + (("gmm", "kde") if cfg.models.density_baselines else ())},
    }
    all_scores, all_examples = {}, {}
    for key in LISTS:
        results[key] = []
    for records in all_seeds(cfg, run_dir, dev, log, progress, jobs):
        for name, row in records["models"].items():
            results["models"][name].append(row)
        for key in LISTS:
            results[key] += records[key]
        all_scores.update(records["scores"])
        all_examples.update(records["examples"])
    seeds_done = time.perf_counter() - start
    results["verdict"] = compute_verdict(results, all_scores)  # per-image scores: paired gaps, the threshold's variance
    results["seconds"] = time.perf_counter() - start
    write_npz(run_dir / "scores.npz", all_scores)
    write_npz(run_dir / "examples.npz", all_examples)
    write_json(run_dir / "results.json", _finite(results))
    if figures:
        drawing = time.perf_counter()
        draw_all(run_dir)
        write_report(run_dir)
        log(f"verdict, figures and report in {time.perf_counter() - drawing + results['seconds'] - seeds_done:.1f} s")
    return results


def _finished(run_dir: Path, cfg: StudyConfig, figures: bool) -> dict | None:
    """The results of a finished run of exactly this config in run_dir, with all its outputs, else None."""
    try:
        results = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    outputs = ["scores.npz", "examples.npz"] + (["report.md", "figures/accuracy_vs_eps.png"] if figures else [])
    if results.get("config_hash") == config_hash(cfg) and all((run_dir / p).exists() for p in outputs):
        return results
    return None


def _finite(obj):
    """NaN and infinities become None, so results.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
