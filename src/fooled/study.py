"""The whole experiment for one config and its seeds: train, attack, score, write results.json.

Every finished stage (a trained model, an attack's adversarial images) is stored in the run directory
under a hash of the config parts it depends on, so an interrupted study resumes where it stopped
and a changed attack setting redoes that attack only.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import attacks, detect
from .config import StudyConfig, config_hash, to_dict
from .data import Splits, load
from .errors import CheckpointError
from .models import MODEL_NAMES, bpd_from_log_prob, build_model, is_density_model
from .runs import prepare_run_dir, read_npz, versions, write_json, write_npz
from .train import fit, load_checkpoint, save_checkpoint
from .verdict import compute_verdict

DETECTOR = "flow"  # the density model whose log p(x) scores every input


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from .errors import FooledError

        raise FooledError("--device cuda asked for, but torch sees no CUDA device; use --device auto or cpu")
    return torch.device(device)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([model(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def _model_key(cfg: StudyConfig, name: str, seed: int) -> str:
    return config_hash({"model": name, "arch": to_dict(getattr(cfg.models, name)), "train": to_dict(cfg.train), "data": to_dict(cfg.data), "seed": seed})


def train_or_load(cfg: StudyConfig, name: str, splits: Splits, seed: int, run_dir: Path, device, log, progress) -> tuple[torch.nn.Module, dict]:
    """The trained model of this config and seed, from its checkpoint when one exists."""
    key = _model_key(cfg, name, seed)
    path = run_dir / "checkpoints" / f"{name}-seed{seed}-{key}.pt"
    model = build_model(name, splits.info, cfg.models, seed).to(device)
    if path.exists():
        try:
            meta = load_checkpoint(path, model, key)
            log(f"  {name}: loaded checkpoint {path.name}")
            return model.to(device), meta
        except CheckpointError as e:
            log(f"  {name}: {e}; retraining")
    result = fit(model, splits.train, splits.val, cfg.train, seed=seed, desc=f"{name} seed {seed}", progress=progress)
    meta = {
        "train_seconds": result.seconds,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    save_checkpoint(path, model, key, meta)
    log(f"  {name}: trained {result.epochs} epochs in {result.seconds:.1f}s (best epoch {result.best_epoch})")
    return model, meta


def run_attack(name: str, model, x, y, eps: float, cfg: StudyConfig, generator: torch.Generator) -> torch.Tensor:
    a = cfg.attacks
    if name == "fgsm":
        if a.norm != "linf":
            raise ValueError("fgsm is an linf attack")
        return attacks.fgsm(model, x, y, eps=eps)
    step_size = a.step_size if a.step_size is not None else 2.5 * eps / a.steps
    return attacks.pgd(model, x, y, eps=eps, steps=a.steps, step_size=step_size, norm=a.norm, restarts=a.restarts, generator=generator)


def _attack_or_load(cfg, run_dir, model_key, target, name, model, x, y, eps, seed, log) -> tuple[torch.Tensor, float]:
    a = cfg.attacks
    key = config_hash({"model": model_key, "attack": name, "eps": eps, "norm": a.norm, "steps": a.steps,
                       "step_size": a.step_size, "restarts": a.restarts, "n": len(x), "seed": seed})
    path = run_dir / "stages" / f"{target}-{name}-eps{eps:g}-seed{seed}-{key}.npz"
    if path.exists():
        stage = read_npz(path)
        return torch.from_numpy(stage["x_adv"]), float(stage["seconds"])
    start = time.perf_counter()
    generator = torch.Generator(device=x.device).manual_seed(seed * 7919 + int(round(eps * 1e4)))
    x_adv = run_attack(name, model, x, y, eps, cfg, generator).cpu()
    seconds = time.perf_counter() - start
    write_npz(path, {"x_adv": x_adv.numpy(), "seconds": np.array(seconds)})
    return x_adv, seconds


def run_seed(cfg: StudyConfig, seed: int, run_dir: Path, device, log, progress) -> tuple[dict, list[dict], dict, dict]:
    """One seed: returns (model rows, attack rows, per-example scores, example images)."""
    splits = load(cfg.data.name, seed=seed, root=cfg.data.root, download=cfg.data.download,
                  val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction, limit=cfg.data.limit)
    info = splits.info
    log(f"seed {seed}: {info.name}, {len(splits.train)} train / {len(splits.val)} validation / {len(splits.test)} test images")
    models, model_rows = {}, {}
    for name in MODEL_NAMES:
        model, meta = train_or_load(cfg, name, splits, seed, run_dir, device, log, progress)
        models[name] = model
        row = {"seed": seed, "test_acc": float((predict(model, splits.test.x) == splits.test.y).float().mean()), **meta}
        if is_density_model(model):
            g = torch.Generator().manual_seed(seed)
            bpd = torch.cat([model.dequantised_bpd(xb.to(device), g).cpu() for xb in splits.test.x.split(512)])
            row["test_bpd"] = float(bpd.mean())
        model_rows[name] = row

    detector = models[DETECTOR]
    score = lambda x: detect.neg_log_prob(detector, x)  # noqa: E731
    val_scores, test_scores = score(splits.val.x), score(splits.test.x)
    threshold = detect.calibrate_threshold(val_scores, cfg.detect.fpr)
    n = len(splits.test) if cfg.attacks.max_examples is None else min(len(splits.test), cfg.attacks.max_examples)
    x, y = splits.test.x[:n], splits.test.y[:n]
    scores = {f"seed{seed}__clean_val": val_scores, f"seed{seed}__clean_test": test_scores}
    examples = {f"seed{seed}__clean": x[:10].numpy(), f"seed{seed}__labels": y[:10].numpy()}
    rows = []
    for target in MODEL_NAMES:
        model = models[target]
        clean_pred = predict(model, x)
        clean_acc = float((clean_pred == y).float().mean())
        for name in cfg.attacks.names:
            for eps in cfg.attacks.eps:
                x_adv, seconds = _attack_or_load(cfg, run_dir, _model_key(cfg, target, seed), target, name, model, x.to(device), y.to(device), eps, seed, log)
                adv_pred = predict(model, x_adv)
                adv_scores = score(x_adv)
                wrong = (adv_pred != y).numpy()
                flags = detect.flagged(adv_scores, threshold)
                rows.append({
                    "seed": seed, "target": target, "attack": name, "norm": cfg.attacks.norm, "eps": eps, "adaptive": False,
                    "detector": DETECTOR, "n": n, "clean_acc": clean_acc, "adv_acc": float((adv_pred == y).float().mean()),
                    "auroc": detect.auroc(test_scores[:n], adv_scores), "tpr_at_fpr": detect.tpr_at_threshold(adv_scores, threshold),
                    "fpr": cfg.detect.fpr, "threshold": threshold,
                    "evasion_rate": float((wrong & ~flags).mean()),
                    "mean_bpd": float(bpd_from_log_prob(-torch.from_numpy(adv_scores), info.dim, info.levels).mean()),
                    "max_perturbation": _max_perturbation(x_adv, x, cfg.attacks.norm),
                    "seconds": seconds,
                })
                scores[f"seed{seed}__{target}__{name}__{eps:g}"] = adv_scores
                examples[f"seed{seed}__{target}__{name}__{eps:g}"] = x_adv[:10].numpy()
                examples[f"seed{seed}__{target}__{name}__{eps:g}__pred"] = adv_pred[:10].numpy()
        log(f"  attacks on {target}: done")
    return model_rows, rows, scores, examples


def _max_perturbation(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> float:
    d = (x_adv - x.cpu()).flatten(1)
    return float((d.abs().amax(1) if norm == "linf" else d.norm(dim=1)).max()) if len(d) else 0.0


def run_study(cfg: StudyConfig, out_dir: str | Path, *, device: str = "auto", log: Callable[[str], None] = print,
              progress: bool = False, figures: bool = True) -> dict:
    """Run every seed of the study, write results.json, scores.npz, examples.npz, report.md and figures."""
    run_dir = prepare_run_dir(Path(out_dir))
    dev = resolve_device(device)
    start = time.perf_counter()
    results = {
        "config": to_dict(cfg), "config_hash": config_hash(cfg), "versions": versions(), "device": str(dev),
        "dataset": dataclasses.asdict(load_info(cfg)), "score": "-log p(x) in nats from the flow; flagged if above threshold",
        "models": {name: [] for name in MODEL_NAMES}, "attacks": [],
    }
    all_scores, all_examples = {}, {}
    for seed in cfg.seeds:
        model_rows, rows, scores, examples = run_seed(cfg, seed, run_dir, dev, log, progress)
        for name, row in model_rows.items():
            results["models"][name].append(row)
        results["attacks"] += rows
        all_scores.update(scores)
        all_examples.update(examples)
    results["verdict"] = compute_verdict(results)
    results["seconds"] = time.perf_counter() - start
    write_npz(run_dir / "scores.npz", all_scores)
    write_npz(run_dir / "examples.npz", all_examples)
    write_json(run_dir / "results.json", _finite(results))
    if figures:
        from .plots import draw_all
        from .report import write_report

        draw_all(run_dir)
        write_report(run_dir)
    return results


def load_info(cfg: StudyConfig):
    from .data import dataset_info

    return dataset_info(cfg.data.name)


def _finite(obj):
    """NaN and infinities become None, so results.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
