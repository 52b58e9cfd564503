"""An independent label oracle: a committee fitted on training images that no model trains on and no attack sees.

`hold_out_for_oracle` splits the training split before any model is trained: the models (and the detector-aware
attack's donors, the first training images) get the rest. The committee (`models.oracle.Committee`) is an RBF SVM and
k-NN on pixels plus an adversarially trained CNN (its robust member), all three fitted on the held-out images only, with
their hyperparameters and early stopping chosen on the validation split. It stands in for a human: an image it still
calls by its original class after an attack is a real adversarial example, not a changed digit.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ...config import StudyConfig, config_hash, to_dict, training_dict
from ...data import Split, Splits
from ...errors import CheckpointError, ConfigError
from ...models import build_model
from ...models.oracle import Committee
from ...train import checkpoint_path, fit, load_checkpoint, save_checkpoint

ROBUST_MEMBER = "cnn_adv"  # the architecture and adversarial training of the committee's robust member


def hold_out_for_oracle(splits: Splits, fraction: float, seed: int) -> tuple[Splits, Split]:
    """(splits with the rest of the training split, the held-out oracle split): a stratified share `fraction` of train."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise ConfigError(f"oracle_fraction must lie in (0, 1), got {fraction!r}")
    y = splits.train.y.numpy()
    idx = np.arange(len(y))
    try:
        rest, held = train_test_split(idx, test_size=fraction, stratify=y, random_state=seed)
    except ValueError as err:
        raise ConfigError(f"cannot hold out oracle_fraction={fraction:.3g} of {len(y)} training images with every class on "
                          f"both sides ({err})") from err
    rest, held = torch.from_numpy(np.sort(rest)), torch.from_numpy(np.sort(held))
    train = Split(splits.train.x[rest], splits.train.y[rest])
    return replace(splits, train=train), Split(splits.train.x[held], splits.train.y[held])


def robust_member(cfg: StudyConfig, splits: Splits, oracle: Split, seed: int, run_dir: Path, device) -> torch.nn.Module:
    """The adversarially trained CNN of the committee, trained on the oracle split (early stopping on validation); cached."""
    key = config_hash({"oracle_member": ROBUST_MEMBER, "arch": to_dict(cfg.models.cnn_adv), "train": training_dict(cfg.train),
                       "data": to_dict(cfg.data), "seed": seed})
    path = checkpoint_path(run_dir, f"oracle_{ROBUST_MEMBER}", seed, key)
    model = build_model(ROBUST_MEMBER, splits.info, cfg.models, seed).to(device)
    if path.exists():
        try:
            load_checkpoint(path, model, key)
            return model.eval()
        except CheckpointError:
            pass  # retrained below
    result = fit(model, oracle, splits.val, cfg.train, seed=seed, desc=f"oracle {ROBUST_MEMBER} seed {seed}")
    save_checkpoint(path, model, key, {"train_seconds": result.seconds, "epochs": result.epochs})
    return model.eval()


def oracle_labels(committee: Committee, x: torch.Tensor) -> torch.Tensor:
    """The committee's label of each image: the class a strict majority of its members gives, else -1 (no verdict)."""
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.long)
    votes = committee.votes(x)
    counts = torch.nn.functional.one_hot(votes.clamp_min(0), int(votes.max()) + 1).sum(0)  # (N, K)
    best, label = counts.max(1)
    return torch.where(2 * best > votes.shape[0], label, torch.full_like(label, -1))


def fit_oracle(cfg: StudyConfig, splits: Splits, oracle: Split, seed: int, run_dir: Path, device) -> tuple[Committee, dict]:
    """The committee fitted on the oracle split, and its row: members, choices, each member's test accuracy, and its
    self-agreement on clean test images (all members agree; the majority label is the true one)."""
    start = time.perf_counter()
    committee = Committee(extra={f"robust_{ROBUST_MEMBER}": robust_member(cfg, splits, oracle, seed, run_dir, device)})
    chosen = committee.fit(oracle, splits.val)
    votes = committee.votes(splits.test.x)
    unanimous = (votes == votes[0]).all(0)
    right = oracle_labels(committee, splits.test.x) == splits.test.y
    return committee, {"seed": seed, "members": list(committee.members), "chosen": chosen, "robust_member": committee.members[-1],
                       "n_fit": len(oracle), "test_acc": committee.accuracy(splits.test.x, splits.test.y),
                       "self_agreement": float(unanimous.float().mean()), "majority_acc": float(right.float().mean()),
                       "seconds": time.perf_counter() - start}
