"""An attacked (or control) set scored by every detector of its target: one result row and its per-image scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ... import attacks
from ...config import NORM_OF
from ...detection import auroc
from ...models import predict
from ...rundir import Key, set_name
from ..context import Made, SeedContext


def counts(pred: np.ndarray, y: np.ndarray, clean_pred: np.ndarray, flags: np.ndarray) -> dict:
    """Detection over the successful adversarials (clean-correct images the attack made wrong), evasion over the clean-correct
    images (made wrong and not flagged), and the all-image rates beside them."""
    correct, wrong = clean_pred == y, pred != y
    success = correct & wrong
    n_correct, n_success = int(correct.sum()), int(success.sum())
    detected, evaded = int((success & flags).sum()), int((success & ~flags).sum())
    return {"n_detected": detected, "tpr_at_fpr": detected / n_success if n_success else None, "tpr_all": float(flags.mean()),
            "n_evaded": evaded, "evasion_rate": evaded / n_correct if n_correct else None,
            "evasion_all": float((wrong & ~flags).mean())}


@dataclass(frozen=True)
class AttackedSet:
    """One set of images an attack (or a control) made from the seed's attacked images, and what made it."""

    target: str  # the attacked classifier
    attack: str  # its name in the rows: fgsm, pgd, pgd_l2, adaptive_pgd, noise_linf, ...
    eps: float
    x_adv: torch.Tensor
    seconds: float = 0.0
    attacked: str | None = None  # the detector a detector-aware attack knew (None: the attack knew none)
    fooled_by: np.ndarray | None = None  # the study's PGD: per image the position of the loss that fooled it (-1: none)
    norm: str | None = None  # None: the attack's own (config.NORM_OF)

    @property
    def budget_norm(self) -> str:
        return self.norm or NORM_OF.get(self.attack, "linf")


def scored_row(ctx: SeedContext, s: AttackedSet, *, x_adv: torch.Tensor | None = None, rounded: bool = False) -> Made:
    """The row of one attacked (or control) set: accuracy, and every detector's detection and evasion rates; for the study's
    PGD, how many of its successful adversarials each loss made. `x_adv` replaces the set's images (its rounded copy)."""
    target, attack, eps, norm, attacked, adaptive = s.target, s.attack, s.eps, s.budget_norm, s.attacked, s.attacked is not None
    x_adv = s.x_adv if x_adv is None else x_adv
    det, model = ctx.guards[target], ctx.models[target]
    pred, clean_pred, y = predict(model, x_adv).numpy(), ctx.clean_pred[target], ctx.y.numpy()
    all_scores = det.score_all(x_adv)
    flags = det.flags(all_scores)
    name = set_name(attack, rounded, attacked)
    success = (clean_pred == y) & (pred != y)
    made = Made()
    for d, v in all_scores.items():
        made.score(Key(ctx.seed, target, name, eps, d), v)
    made.score(Key(ctx.seed, target, name, eps, "success"), success)  # the images an adversarial detection rate counts
    made.score(Key(ctx.seed, target, name, eps, "correct"), pred == y)  # per image, so accuracy gaps can be paired
    if ctx.first_seed and not rounded:
        made.example(Key(ctx.seed, target, name, eps, "images"), x_adv[:10].numpy())
        made.example(Key(ctx.seed, target, name, eps, "pred"), pred[:10])
    d = (x_adv - ctx.x).flatten(1)

    counted = np.ones_like(success) if attack.startswith("noise_") else success  # a control: every perturbed image counts

    def detector(name: str) -> dict:
        v, clean = all_scores[name], det.clean_test[name]
        return {"auroc": auroc(clean, v[counted]) if counted.any() else None, **counts(pred, y, clean_pred, flags[name]),
                "test_fpr": float((clean > det.thresholds[name]).mean())}

    detectors = {name: detector(name) for name in all_scores}
    fooled_by = None if rounded else s.fooled_by
    made.rows.append({
        "seed": ctx.seed, "target": target, "attack": attack, "norm": norm, "eps": eps, "adaptive": adaptive,
        "attacked_detector": attacked if adaptive else None,
        "grid": "rounded" if rounded else "continuous", "detector": det.name, "n": len(ctx.x),
        "clean_acc": float((clean_pred == y).mean()), "adv_acc": float((pred == y).mean()),
        "n_correct": int((clean_pred == y).sum()), "n_success": int(success.sum()),
        **{k: v for k, v in detectors["nll"].items() if k != "test_fpr"},
        "detectors": detectors, "fpr": ctx.cfg.detect.fpr, "threshold": det.threshold,
        "mean_bpd": float(ctx.bpd(all_scores["nll"]).mean()),
        "success_mean_bpd": float(ctx.bpd(all_scores["nll"][success]).mean()) if success.any() else None,
        "max_perturbation": float((d.abs().amax(1) if norm == "linf" else d.norm(dim=1)).max()) if len(d) else 0.0,
        "seconds": s.seconds,
        **({} if fooled_by is None else {"fooled_by": {loss: int((success & (fooled_by == i)).sum())
                                                        for i, loss in enumerate(ctx.cfg.attacks.losses)}}),
    })
    return made


def scored_rows(ctx: SeedContext, s: AttackedSet) -> Made:
    """The set as the attack made it, and rounded to the data's grey levels (inside the same budget)."""
    made = scored_row(ctx, s)
    on_grid = attacks.round_to_grid(s.x_adv, ctx.x, levels=ctx.info.levels, eps=s.eps, norm=s.budget_norm)
    made += scored_row(ctx, s, x_adv=on_grid, rounded=True)
    return made
