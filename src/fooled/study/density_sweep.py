"""Does a better p(x) notice more? The same attacks scored by density detectors of increasing quality.

On the split of `fooled disagree` (one CNN, the oracle's share of the training images held out), every density is
fitted on the same training images and thresholded at the same false-positive rate on the same validation images:
scikit-learn's KDE and GMM (scored in closed form, differentiably), the Gaussian classifier, the diagonal-base flows of
every size and seed that `fooled disagree` trains, and the study's own flow (which starts at the Gaussian). Each then
faces, on the same test images and at one linf budget on the grey-level grid:

- plain PGD against the CNN (one set of adversarials for all densities): the share of the images it fools that the
  density flags, beside the same images under sign noise of the same size (the matched control);
- a detector-aware attack that knows this density (`attacks.grid_aware_attack`): valid evasions, that is images the CNN
  got right that end misclassified, unflagged and still given their class by the independent label oracle.

Each row keeps its per-image outcomes, so `analysis.density_sweep` compares densities on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..attacks import attack_success, grid_aware_attack, pgd
from ..attacks.controls import round_to_grid
from ..attacks.matched import grid_sign_noise
from ..detection.metrics import calibrate_threshold
from ..models.density_baselines import fit_gmm, fit_kde
from .stages.honest_oracle import oracle_labels


@dataclass(frozen=True)
class Density:
    """A density detector: -log_prob(x) > its threshold flags x. log_prob is differentiable (N, C, H, W) -> (N,) nats."""

    name: str
    family: str  # what the figure colours by: "KDE", "GMM", "Gaussian", "flow 4x64", ..., "study flow"
    log_prob: Callable[[torch.Tensor], torch.Tensor]
    test_bpd: float  # mean bits/dim of the test images (uniform dequantisation where the model has it, else mid-bin)
    knob: str | None = None  # a trade-off knob's config key, for the flows trained along it (`knob_densities`)
    value: float | None = None


@dataclass(frozen=True)
class SweepAttack:
    eps: float  # linf budget, rounded down to whole grey levels on the grid
    pgd_steps: int
    aware_steps: int
    lambdas: tuple[float, ...]
    fpr: float  # of every threshold, on the clean validation images


def baseline_densities(splits, seed: int, limit: int | None = None) -> list[Density]:
    """The KDE and the GMM (scikit-learn, hyper-parameters chosen on validation), scored in closed form; with `limit`,
    fitted on a random `limit` of the training images and chosen on a quarter as many validation images."""
    train, val = splits.train.x, splits.val.x
    if limit is not None:
        g = torch.Generator().manual_seed(seed)
        train = train[torch.randperm(len(train), generator=g)[:limit]]
        val = val[torch.randperm(len(val), generator=g)[:max(1, limit // 4)]]
    out = []
    for name, fit in (("KDE", fit_kde), ("GMM", fit_gmm)):
        b = fit(train, val, splits.info.levels, seed)
        out.append(Density(name, name, lambda x, b=b: b.torch_log_prob(x),
                           b.test_bpd(splits.test.x, torch.Generator().manual_seed(seed))))
    return out


def model_density(name: str, family: str, model, test_x: torch.Tensor, seed: int, **knob) -> Density:
    """A torch density model (flow, Gaussian classifier) as a detector; its test bits/dim under uniform dequantisation."""
    bpd = float(model.dequantised_bpd(test_x, torch.Generator().manual_seed(seed)).mean())
    return Density(name, family, model.log_prob, bpd, **knob)


KNOB_FAMILIES = {"flow": "FlowGMM, mean_norm", "hybrid": "DIGLM, lam"}


def knob_densities(cfg, splits, run_dir, log) -> list[Density]:
    """The class-conditional heads along their trade-off knobs (`study.tradeoff.KNOBS`: the FlowGMM's mean_norm with its
    diagonal base, the DIGLM's lam), each trained on `splits` (checkpoints in run_dir), as densities."""
    from ..train import train_or_load
    from .tradeoff import KNOBS, for_flow_kind, knob_config

    seed, out = cfg.seeds[0], []
    for name, (key, values) in KNOBS.items():
        key = for_flow_kind(cfg, key)
        for value in values:
            model, _ = train_or_load(knob_config(cfg, key, value), name, splits, seed, run_dir, torch.device("cpu"), log, False)
            out.append(model_density(f"{name} {key.rsplit('.', 1)[-1]}={value:g}", KNOB_FAMILIES[name], model.eval(), splits.test.x, seed,
                                     knob=key, value=float(value)))
    return out


@torch.no_grad()
def _flags(density: Density, x: torch.Tensor, threshold: float) -> np.ndarray:
    return (-density.log_prob(x)).double().numpy() > threshold


def _wrong(model, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return attack_success(model, x, y).cpu().numpy()


def sweep_rows(cnn, densities: list[Density], splits, committee, attack: SweepAttack, *, n: int, seed: int, log) -> list[dict]:
    """One row per density: its test bits/dim, threshold and per-image outcomes on the first n test images."""
    g = torch.Generator().manual_seed(seed)
    levels = splits.info.levels
    x, y = splits.test.x[:n], splits.test.y[:n]
    correct = ~_wrong(cnn, x, y)
    x_pgd = round_to_grid(pgd(cnn, x, y, eps=attack.eps, steps=attack.pgd_steps, norm="linf", loss="margin", generator=g).x_adv,
                          x, levels=levels, eps=attack.eps)
    fooled = correct & _wrong(cnn, x_pgd, y)
    x_noise = grid_sign_noise(x, eps=attack.eps, levels=levels, generator=g)
    rows = []
    for d in densities:
        with torch.no_grad():
            threshold = calibrate_threshold((-d.log_prob(splits.val.x)).double().numpy(), attack.fpr)
        score = lambda z, d=d: -d.log_prob(z)  # noqa: E731
        x_aware = grid_aware_attack(cnn, x, y, score=score, threshold=threshold, eps=attack.eps, levels=levels,
                                    steps=attack.aware_steps, lambdas=attack.lambdas, generator=g)
        evaded = correct & _wrong(cnn, x_aware, y) & ~_flags(d, x_aware, threshold)
        kept = (oracle_labels(committee, x_aware) == y).numpy()
        rows.append({"density": d.name, "family": d.family, **({"knob": d.knob, "value": d.value} if d.knob else {}),
                     "test_bpd": d.test_bpd, "threshold": threshold,
                     "correct": correct.tolist(), "fooled": fooled.tolist(), "pgd_flagged": _flags(d, x_pgd, threshold).tolist(),
                     "noise_flagged": _flags(d, x_noise, threshold).tolist(), "evaded": evaded.tolist(),
                     "valid": (evaded & kept).tolist()})
        log(f"  {d.name}: {d.test_bpd:.3f} bits/dim; PGD flagged {np.mean(np.array(rows[-1]['pgd_flagged'])[fooled]):.2f}, "
            f"valid evasion {int((evaded & kept).sum())} of {int(correct.sum())}")
    return rows


__all__ = ["Density", "SweepAttack", "baseline_densities", "knob_densities", "model_density", "sweep_rows"]
