"""Training loops with early stopping on validation loss, and checkpoints written atomically."""

from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .config import TrainConfig
from .data import Split, batches
from .errors import CheckpointError


@dataclass
class TrainResult:
    epochs: int  # epochs run
    best_epoch: int  # epoch whose weights were kept
    best_val_loss: float
    seconds: float
    val_losses: list[float] = field(default_factory=list)


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, split: Split, batch_size: int = 512) -> float:
    """Mean `training_loss` over a split, in eval mode (deterministic)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        total = 0.0
        for x, y in batches(split, batch_size, shuffle=False):
            total += model.training_loss(x.to(device), y.to(device)).item() * len(x)
        return total / len(split)
    finally:
        model.train(was_training)


def fit(model: torch.nn.Module, train: Split, val: Split, cfg: TrainConfig, *, seed: int, desc: str = "train", progress: bool = False) -> TrainResult:
    """Adam on `model.training_loss`; stops after `cfg.patience` epochs without a better validation loss.

    The best weights are restored, and the model is left in eval mode.
    """
    torch.manual_seed(seed)  # dequantisation noise and dropout use the global generator
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, best_epoch, stale, losses = float("inf"), None, 0, 0, []
    start = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=desc, disable=not progress, leave=False)
    epoch = 0
    for epoch in bar:
        model.train()
        for x, y in batches(train, cfg.batch_size, shuffle=True, generator=generator):
            loss = model.training_loss(x.to(device), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val_loss = evaluate_loss(model, val)
        losses.append(val_loss)
        bar.set_postfix(val_loss=f"{val_loss:.4f}")
        if val_loss < best - 1e-5:
            best, best_state, best_epoch, stale = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(epoch + 1, best_epoch, best, time.perf_counter() - start, losses)


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
