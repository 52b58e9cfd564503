"""Training loops with early stopping on validation loss, and checkpoints written atomically.

A model with an `adversarial_budget` (the adversarially trained CNN) is trained and validated on PGD
adversarials of itself (Madry et al. 2018), so early stopping watches the robust validation loss.
"""

from __future__ import annotations

import copy
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .attacks import pgd
from .config import StudyConfig, TrainConfig, config_hash, key_dict, to_dict, training_dict
from .data import Split, Splits, batches
from .errors import CheckpointError
from .models import bpd_from_log_prob, build_model, fit_base, is_density_model
from .rundir import atomic_write_bytes


@dataclass
class TrainResult:
    epochs: int  # epochs run
    best_epoch: int  # epoch whose weights were kept
    best_val_loss: float
    seconds: float
    val_losses: list[float] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)  # per epoch: losses, and accuracy and bits/dim on train and validation


def batch_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """`model.training_loss(x, y)`, or for a model with an `adversarial_budget` the loss at PGD adversarials of x.

    PGD (cross-entropy, random start drawn from `generator`) attacks the model in eval mode and restores each
    submodule's mode, so dropout is active in the loss but not while crafting; gradients w.r.t. x only.
    """
    budget = getattr(model, "adversarial_budget", None)
    if budget is not None:
        x = pgd(model, x, y, generator=generator, **budget).x_adv
    return model.training_loss(x, y)


@torch.no_grad()
def curve_point(model: torch.nn.Module, split: Split, n: int, prefix: str) -> dict:
    """Accuracy on the first n images of a split, and for a density model their mean bits/dim (mid-bin), from one
    pass: {prefix_acc, prefix_bpd}. The model is scored in eval mode and left in the mode it had."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x, y = split.x[:n].to(device), split.y[:n].to(device)
        if not is_density_model(model):
            return {f"{prefix}_acc": float((model(x).argmax(1) == y).float().mean())}
        joint = model.log_joint(x)
        bpd = bpd_from_log_prob(torch.logsumexp(joint, 1), model.dim, model.levels)
        return {f"{prefix}_acc": float((joint.argmax(1) == y).float().mean()), f"{prefix}_bpd": float(bpd.mean())}
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, split: Split, batch_size: int = 512, seed: int = 0) -> float:
    """Mean `batch_loss` over a split, in eval mode (deterministic: adversarial random starts drawn from `seed`)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    try:
        device = next(model.parameters()).device
        total = 0.0
        for x, y in batches(split, batch_size, shuffle=False):
            total += batch_loss(model, x.to(device), y.to(device), generator).item() * len(x)
        return total / len(split)
    finally:
        model.train(was_training)


def fit(model: torch.nn.Module, train: Split, val: Split, cfg: TrainConfig, *, seed: int, desc: str = "train", progress: bool = False,
        keep_initial: bool = False) -> TrainResult:
    """Adam on `batch_loss` (the model's `training_loss`, adversarial for a model with a budget); stops after `cfg.patience` epochs without a better validation loss.
    With `cfg.lr_drop`, each epoch without a better validation loss multiplies the learning rate by it (training goes on
    from the last weights, not the best).

    The best weights are restored, and the model is left in eval mode. With `keep_initial` (a model that starts
    fitted) the starting weights compete too: if no epoch beats them on validation they are kept (best_epoch -1).
    """
    torch.manual_seed(seed)  # dequantisation noise and dropout use the global generator
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, best_epoch, stale, losses = float("inf"), None, 0, 0, []
    start = time.perf_counter()
    if keep_initial:
        best, best_state, best_epoch = evaluate_loss(model, val, seed=seed), copy.deepcopy(model.state_dict()), -1
    bar = tqdm(range(cfg.epochs), desc=desc, disable=not progress, leave=False)
    epoch = 0
    curve = []
    for epoch in bar:
        model.train()
        total = 0.0
        for x, y in batches(train, cfg.batch_size, shuffle=True, generator=generator):
            loss = batch_loss(model, x.to(device), y.to(device), generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
        val_loss = evaluate_loss(model, val, seed=seed)
        losses.append(val_loss)
        if cfg.curve_images:
            curve.append({"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": total / len(train), "val_loss": val_loss,
                          **curve_point(model, train, cfg.curve_images, "train"), **curve_point(model, val, cfg.curve_images, "val")})
        bar.set_postfix(val_loss=f"{val_loss:.4f}")
        if val_loss < best - 1e-5:
            best, best_state, best_epoch, stale = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
            if cfg.lr_drop:
                for group in opt.param_groups:
                    group["lr"] *= cfg.lr_drop
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(epoch + 1, best_epoch, best, time.perf_counter() - start, losses, curve)


def atomic_save(obj, path: Path) -> None:
    """torch.save into memory, then an atomic write: never a half-written file."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def save_checkpoint(path: Path, model: torch.nn.Module, config_hash: str, meta: dict) -> None:
    """Weights plus the hash of the config they were trained with, and plain-data metadata."""
    atomic_save({"config_hash": config_hash, "state_dict": model.state_dict(), "meta": meta}, path)


def load_checkpoint(path: Path, model: torch.nn.Module, config_hash: str) -> dict:
    """Load weights into `model` (weights_only); refuse a checkpoint trained with another config."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as e:  # truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    if ckpt.get("config_hash") != config_hash:
        raise CheckpointError(
            f"checkpoint {path} was trained with config {ckpt.get('config_hash')}, not {config_hash}; delete it or use the matching config"
        )
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return ckpt.get("meta", {})


def model_key(cfg: StudyConfig, name: str, seed: int) -> str:
    """Hash of everything a trained model depends on: its architecture, training, data and seed."""
    arch = key_dict(getattr(cfg.models, name))
    if name == "flow" and cfg.models.flow.kind == "glow":
        arch["glow"] = key_dict(cfg.models.glow)
    return config_hash({"model": name, "arch": arch, "train": training_dict(cfg.train), "data": to_dict(cfg.data), "seed": seed})


def checkpoint_path(run_dir: Path, name: str, seed: int, key: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{name}-seed{seed}-{key}.pt"


def train_or_load(cfg: StudyConfig, name: str, splits: Splits, seed: int, run_dir: Path, device, log, progress) -> tuple[torch.nn.Module, dict]:
    """The trained model of this config and seed, from its checkpoint when one exists (a damaged one is named and retrained)."""
    key = model_key(cfg, name, seed)
    path = checkpoint_path(run_dir, name, seed, key)
    model = build_model(name, splits.info, cfg.models, seed).to(device)
    if path.exists():
        try:
            meta = load_checkpoint(path, model, key)
            log(f"  {name}: loaded checkpoint {path.name}")
            return model.to(device), meta
        except CheckpointError as e:
            log(f"  {name}: {e}; retraining")
    if hasattr(model, "fit_data"):  # closed-form fit, hyperparameters chosen on validation
        start = time.perf_counter()
        chosen = model.fit_data(splits.train, splits.val)
        model.eval()
        meta = {"train_seconds": time.perf_counter() - start, "epochs": 0, "best_epoch": 0,
                "best_val_loss": evaluate_loss(model, splits.val), "chosen": chosen}
    else:
        start = time.perf_counter()
        base = fit_base(model, splits.train, splits.val)  # a flow that starts at the Gaussian classifier: fitted first
        result = fit(model, splits.train, splits.val, cfg.train, seed=seed, desc=f"{name} seed {seed}", progress=progress,
                     keep_initial=base is not None)
        meta = {"train_seconds": time.perf_counter() - start, "epochs": result.epochs, "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss, **({"base": base} if base is not None else {}),
                **({"curve": result.curve} if result.curve else {})}
    meta["n_params"] = sum(p.numel() for p in model.parameters())
    save_checkpoint(path, model, key, meta)
    log(f"  {name}: trained in {meta['train_seconds']:.1f} s ({meta['epochs']} epochs, best {meta['best_epoch']})")
    return model, meta
