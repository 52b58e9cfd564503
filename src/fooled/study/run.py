"""The whole experiment for one config and its seeds: train, attack, score, write results.json.

Every finished stage (a trained model, an attack's adversarial images) is stored in the run directory
under a hash of the config parts it depends on, so an interrupted study resumes where it stopped
and a changed attack setting redoes that attack only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
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
from ..detection.guard import MEMO
from ..detection.baselines import baseline_scores
from ..errors import FooledError
from ..models import is_density_model, mean_bpd, predict
from ..rundir import Key, exclusive, prepare_run_dir, versions, write_json, write_npz
from ..train import model_key, train_or_load
from .audit import audit, convergence_curve, convergence_eps
from .audit_aware import audit_aware
from .context import Made, SeedContext
from .likelihood import out_of_distribution
from .honest import honest_study
from .honest_oracle import fit_oracle, hold_out_for_oracle
from .oracle import label_oracle
from .stages import adaptive_attacks, carlini_wagner, controls, fooling_images, plain_attacks, transfer

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


def run_seed(cfg: StudyConfig, seed: int, run_dir: Path, device, log, progress) -> dict:
    """One seed: train (or load) the models, attack them, score everything; returns this seed's records."""
    splits = load(cfg.data.name, seed=seed, root=cfg.data.root, download=cfg.data.download,
                  val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction, limit=cfg.data.limit)
    splits, oracle_split = hold_out_for_oracle(splits, cfg.data.oracle_fraction, seed)  # no model or attack sees the oracle's images
    info = splits.info
    log(f"seed {seed}: {info.name}, {len(splits.train)} train / {len(oracle_split)} oracle / {len(splits.val)} validation / {len(splits.test)} test images")
    models, model_rows = {}, {}
    for name in cfg.models.names:
        model, meta = train_or_load(cfg, name, splits, seed, run_dir, device, log, progress)
        models[name] = model
        row = {"seed": seed, "test_acc": float((predict(model, splits.test.x) == splits.test.y).float().mean()), **meta}
        if is_density_model(model):
            row["test_bpd"] = mean_bpd(model, splits.test.x, seed)
        model_rows[name] = row
    densities = {}
    if cfg.models.density_baselines:
        rows, densities = density_baselines(splits, seed)
        model_rows.update(rows)

    n = len(splits.test) if cfg.attacks.max_examples is None else min(len(splits.test), cfg.attacks.max_examples)
    x, y = splits.test.x[:n], splits.test.y[:n]
    made = Made()
    MEMO.clear()  # scores are memoised by the ids of this seed's models and detectors
    guards = {name: Guard.fit(name, model, splits.val.x, x, info, cfg.detect.fpr) for name, model in models.items() if is_density_model(model)}
    shared, per_target = baseline_scores(models, splits.train.x, splits.train.y, splits.val.x, info.levels, densities)
    for name in models:  # density classifiers are their own detector; the others are guarded by the flow; all get the baselines
        guard, val_scores = guards.get(name, guards[DETECTOR])
        scorers = {**shared, **{d: make(models[name]) for d, make in per_target.items()}}
        guard, extra_val = guard.with_detectors(scorers, splits.val.x, x, cfg.detect.fpr, shared=shared)
        guards[name] = guard, {**val_scores, **extra_val}
        for det, v in guards[name][1].items():
            made.score(Key(seed, name, "clean_val", column=det), v)
            made.score(Key(seed, name, "clean_test", column=det), guard.clean_test[det])
    guards = {name: guards[name][0] for name in models}
    clean_pred = {name: predict(model, x).numpy() for name, model in models.items()}
    latent_means = {name: latent_class_means(model, splits.train.x.to(device), splits.train.y.to(device), info.num_classes)
                    for name, model in models.items() if hasattr(model, "encode") and getattr(getattr(model, "base", None), "means", None) is None}
    donors = (splits.train.x[: cfg.attacks.aware_donors], splits.train.y[: cfg.attacks.aware_donors]) if cfg.attacks.aware_donors else ()
    ctx = SeedContext(cfg, seed, run_dir, device, info, x, y, models, {m: model_key(cfg, m, seed) for m in models}, guards, clean_pred,
                      latent_means, donors, log, progress)
    if ctx.first_seed:
        made.example(Key(seed, "data", "clean_test", column="images"), x[:10].numpy())
        made.example(Key(seed, "data", "clean_test", column="labels"), y[:10].numpy())
        made.examples.update(samples(models, info.num_classes, seed))

    a = cfg.attacks

    def timed(label: str, run: Callable[[], Made], summary: Callable[[Made], str] = lambda out: f"{len(out.rows)} rows") -> Made:
        """Run one stage of this seed and log one line with its seed, what it made and its time."""
        start = time.perf_counter()
        out = run()
        log(f"  seed {seed}: {label}: {summary(out)} in {time.perf_counter() - start:.1f} s")
        return out

    records = {key: [] for key in LISTS}

    def keep(key: str, out: Made) -> None:
        records[key] += out.rows
        made.scores.update(out.scores)
        made.examples.update(out.examples)

    plain, advs = plain_attacks(ctx)
    keep("attacks", plain)
    keep("attacks", timed("random-perturbation controls", lambda: controls(ctx)))
    if a.transfer:
        keep("transfer", timed("transfer", lambda: transfer(ctx, advs)))
    if a.adaptive:
        keep("attacks", timed("adaptive attacks", lambda: adaptive_attacks(ctx, advs)))
    if a.cw:
        keep("cw", timed("Carlini-Wagner", lambda: carlini_wagner(ctx)))
    if cfg.fooling.enabled:
        keep("fooling", timed("fooling images", lambda: fooling_images(ctx)))
    if a.adaptive:
        committee, row = fit_oracle(cfg, replace(splits, val=_at_most(splits.val, COMMITTEE_TRAIN // 4, seed)),
                                    _at_most(oracle_split, COMMITTEE_TRAIN, seed), seed, run_dir, device)
        records["committee"].append(row)
        keep("oracle", timed("label oracle", lambda: label_oracle(ctx, committee, advs)))
        keep("honest", timed("one threat model (grid, combined defence, valid evasion, matched controls)",
                             lambda: honest_study(ctx, advs, committee, splits.val.x)))
    if cfg.ood.enabled:
        keep("ood", timed("likelihood failures", lambda: out_of_distribution(ctx, splits), lambda out: f"{len(out.rows)} sets scored"))
    if cfg.audit.enabled:
        rows = records["attacks"]

        def audit_all() -> Made:
            checks = audit(ctx, rows, advs, records["transfer"], records["fooling"])
            budgets = {t: e for t in models if (e := convergence_eps(rows, t)) is not None}
            if a.adaptive:
                checks += audit_aware(ctx, rows, advs, budgets)
            records["convergence"] = [c for t, e in budgets.items() for c in convergence_curve(ctx, t, e)]
            return Made(rows=checks)

        keep("audit", timed("audit", audit_all, lambda out: f"{sum(c['passed'] for c in out.rows)}/{len(out.rows)} checks passed"))
    return {"models": model_rows, **records, "scores": made.scores, "examples": made.examples}


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
    results["verdict"] = compute_verdict(results)
    results["seconds"] = time.perf_counter() - start
    write_npz(run_dir / "scores.npz", all_scores)
    write_npz(run_dir / "examples.npz", all_examples)
    write_json(run_dir / "results.json", _finite(results))
    if figures:
        draw_all(run_dir)
        write_report(run_dir)
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
