"""Attack every classifier of one seed and score the results: plain, detector-aware, transfer, CW, fooling images.

Each attack's output is a cached stage (see `stages.cached`), so a rerun only scores.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import attacks, detect, detectors
from .config import NORM_OF, StudyConfig
from .models import bpd_from_log_prob
from .stages import cached


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted classes on CPU."""
    device = next(model.parameters()).device
    return torch.cat([model(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


@torch.no_grad()
def mean_bpd(model: torch.nn.Module, x: torch.Tensor, seed: int, batch_size: int = 512) -> float:
    """Mean bits/dim of images x under a density model, uniform dequantisation noise drawn from `seed`."""
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    return float(torch.cat([model.dequantised_bpd(xb.to(device), g).cpu() for xb in x.split(batch_size)]).mean())


@dataclass
class Guard:
    """A density model's anomaly scores (-log p(x) and the other detectors) with thresholds from clean validation images."""

    name: str  # the density model
    model: torch.nn.Module
    context: detectors.DetectorContext
    thresholds: dict  # detector name -> flag when score > threshold
    clean_test: dict  # detector name -> scores of the attacked clean test images

    @classmethod
    def fit(cls, name, model, train_x, val_x, test_x, info, fpr: float) -> tuple["Guard", dict]:
        """Typicality reference from training images, thresholds from validation images; returns (guard, val scores)."""
        context = detectors.fit_context(model, train_x, info)
        val = detectors.score_all(model, val_x, context=context)
        thresholds = {k: detect.calibrate_threshold(v, fpr) for k, v in val.items()}
        return cls(name, model, context, thresholds, detectors.score_all(model, test_x, context=context)), val

    @property
    def threshold(self) -> float:
        return self.thresholds["nll"]

    def score(self, x: torch.Tensor) -> np.ndarray:
        """-log p(x) in nats."""
        return detect.neg_log_prob(self.model, x)

    def score_all(self, x: torch.Tensor) -> dict:
        return detectors.score_all(self.model, x, context=self.context)


@dataclass
class SeedContext:
    cfg: StudyConfig
    seed: int
    run_dir: Path
    device: torch.device
    info: object  # DatasetInfo
    x: torch.Tensor  # attacked clean test images (CPU)
    y: torch.Tensor
    models: dict  # classifier name -> trained module
    keys: dict  # classifier name -> hash of its training config
    guards: dict  # classifier name -> the Guard scoring inputs to it
    log: Callable[[str], None] = print
    progress: bool = False  # tqdm bars (on a terminal only)
    scores: dict = field(default_factory=dict)  # per-example scores, saved to scores.npz
    examples: dict = field(default_factory=dict)  # a few images per set, saved to examples.npz

    def generator(self, *parts) -> torch.Generator:
        """A generator seeded by the study seed and a stage's name, so stages do not share noise."""
        return torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + zlib.crc32(repr(parts).encode()))

    def stage(self, label: str, key: dict, compute: Callable[[], dict]) -> dict:
        return cached(self.run_dir, f"{label}-seed{self.seed}", {"seed": self.seed, "n": len(self.x), **key}, compute)

    def subset(self, m: int | None) -> "SeedContext":
        """The same context on the first m attacked images (for the expensive attacks); shares scores and examples."""
        if m is None or m >= len(self.x):
            return self
        return dataclasses.replace(self, x=self.x[:m], y=self.y[:m],
                                   guards={k: dataclasses.replace(d, clean_test={n: v[:m] for n, v in d.clean_test.items()})
                                           for k, d in self.guards.items()})

    def bpd(self, neg_log_prob: np.ndarray) -> np.ndarray:
        return bpd_from_log_prob(-torch.as_tensor(neg_log_prob), self.info.dim, self.info.levels).numpy()


def pgd_worst_case(model, x, y, *, eps, norm, cfg: StudyConfig, generator, steps=None, restarts=None,
                   early_stop=False) -> torch.Tensor:
    """PGD from `restarts` random starts with every configured loss; per example the first misclassified result is kept.

    Each run after the first (restart x loss) attacks only the images that the earlier ones left correctly
    classified: the others would keep their earlier result anyway. Where every run fails, the first run's
    result stands. The loss "multitarget" is `attacks.multitarget_pgd` toward `attacks.targets` classes.
    early_stop (for accuracy only): each image stops at its first misclassified iterate.
    """
    a = cfg.attacks
    steps = steps or a.steps
    step_size = a.step_size if a.step_size is not None else 2.5 * eps / steps
    kwargs = dict(eps=eps, steps=steps, step_size=step_size, norm=norm, generator=generator, early_stop=early_stop)
    best, done = x, torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for i, loss in enumerate(list(a.losses) * (restarts or a.restarts)):
        todo = (~done).nonzero().squeeze(1)
        if not len(todo):
            break
        if loss == "multitarget":
            x_adv = attacks.multitarget_pgd(model, x[todo], y[todo], targets=a.targets, **kwargs)
        else:
            x_adv = attacks.pgd(model, x[todo], y[todo], loss=loss, **kwargs)
        wrong = (predict(model, x_adv) != y[todo].cpu()).to(x.device)
        take = todo if i == 0 else todo[wrong]  # the first loss's result stands even where it failed
        best = best.index_copy(0, take, x_adv if i == 0 else x_adv[wrong])
        done[todo[wrong]] = True
    return best


def pgd_key(a) -> dict:
    """What decides the study's PGD (pgd_worst_case) besides model, eps and norm: part of its stages' keys."""
    return {"steps": a.steps, "step_size": a.step_size, "restarts": a.restarts, "losses": a.losses, "targets": a.targets}


def _run_attack(name: str, model, x, y, eps: float, ctx: SeedContext) -> torch.Tensor:
    if name == "fgsm":
        return attacks.fgsm(model, x, y, eps=eps)
    return pgd_worst_case(model, x, y, eps=eps, norm=NORM_OF[name], cfg=ctx.cfg, generator=ctx.generator(name, eps))


def _row(ctx: SeedContext, target: str, attack: str, eps: float, x_adv: torch.Tensor, seconds: float, adaptive: bool) -> dict:
    det = ctx.guards[target]
    pred = predict(ctx.models[target], x_adv)
    all_scores = det.score_all(x_adv)
    s = all_scores["nll"]
    key = f"seed{ctx.seed}__{target}__{attack}__{eps:g}"
    ctx.scores[key] = s
    for name, v in all_scores.items():
        if name != "nll":
            ctx.scores[f"{key}__det={name}"] = v
    if ctx.seed == ctx.cfg.seeds[0]:
        ctx.examples[key] = x_adv[:10].numpy()
        ctx.examples[key + "__pred"] = pred[:10].numpy()
    wrong = (pred != ctx.y).numpy()
    flags = detect.flagged(s, det.threshold)
    d = (x_adv - ctx.x).flatten(1)
    norm = NORM_OF.get(attack, "linf")
    return {
        "seed": ctx.seed, "target": target, "attack": attack, "norm": norm, "eps": eps, "adaptive": adaptive,
        "detector": det.name, "n": len(ctx.x),
        "clean_acc": float((predict(ctx.models[target], ctx.x) == ctx.y).float().mean()),
        "adv_acc": float(1 - wrong.mean()),
        "auroc": detect.auroc(det.clean_test["nll"], s), "tpr_at_fpr": detect.tpr_at_threshold(s, det.threshold),
        "detectors": {name: {"auroc": detect.auroc(det.clean_test[name], v), "tpr_at_fpr": detect.tpr_at_threshold(v, det.thresholds[name])}
                      for name, v in all_scores.items()},
        "fpr": ctx.cfg.detect.fpr, "threshold": det.threshold,
        "evasion_rate": float((wrong & ~flags).mean()),
        "mean_bpd": float(ctx.bpd(s).mean()),
        "max_perturbation": float((d.abs().amax(1) if norm == "linf" else d.norm(dim=1)).max()) if len(d) else 0.0,
        "seconds": seconds,
    }


def _plain_key(ctx: SeedContext, target: str, name: str, eps: float) -> dict:
    a = ctx.cfg.attacks
    return {"model": ctx.keys[target], "attack": name, "eps": eps, **pgd_key(a)}


def plain_attacks(ctx: SeedContext) -> tuple[list[dict], dict]:
    """FGSM and PGD (linf, L2) at every budget against every classifier; returns rows and the adversarials."""
    a, rows, advs = ctx.cfg.attacks, [], {}
    for target, model in ctx.models.items():
        start = time.perf_counter()
        jobs = [(name, eps) for name in a.names for eps in (a.l2_eps if NORM_OF[name] == "l2" else a.eps)]
        for name, eps in tqdm(jobs, desc=f"attacks on {target} (seed {ctx.seed})", disable=not ctx.progress, leave=False):
            dev_x, dev_y = ctx.x.to(ctx.device), ctx.y.to(ctx.device)
            stage = ctx.stage(f"{target}-{name}-eps{eps:g}", _plain_key(ctx, target, name, eps),
                              lambda: {"x_adv": _run_attack(name, model, dev_x, dev_y, eps, ctx).cpu().numpy()})
            x_adv = torch.from_numpy(stage["x_adv"])
            advs[(target, name, eps)] = x_adv
            rows.append(_row(ctx, target, name, eps, x_adv, float(stage["seconds"]), adaptive=False))
        ctx.log(f"  attacks on {target}: {len(jobs)} budgets in {time.perf_counter() - start:.1f} s")
    return rows, advs


def adaptive_attacks(ctx: SeedContext, advs: dict) -> list[dict]:
    """Detector-aware PGD: from the plain PGD adversarials, raise log p(x) above the threshold while staying misclassified."""
    a, rows = ctx.cfg.attacks, []
    for target, model in ctx.models.items():
        det = ctx.guards[target]
        for eps in a.eps:
            key = {"model": ctx.keys[target], "detector": ctx.keys[det.name], "threshold": det.threshold, "eps": eps,
                   "steps": a.adaptive_steps, "restarts": a.restarts, "start": _plain_key(ctx, target, "pgd", eps)}

            def compute():
                x_adv = attacks.adaptive_pgd(model, ctx.x.to(ctx.device), ctx.y.to(ctx.device), log_prob=det.model.log_prob,
                                             threshold=-det.threshold, eps=eps, steps=a.adaptive_steps, restarts=a.restarts,
                                             generator=ctx.generator("adaptive", target, eps),
                                             x_start=advs[(target, "pgd", eps)].to(ctx.device))
                return {"x_adv": x_adv.cpu().numpy()}

            stage = ctx.stage(f"{target}-adaptive-eps{eps:g}", key, compute)
            rows.append(_row(ctx, target, "adaptive_pgd", eps, torch.from_numpy(stage["x_adv"]), float(stage["seconds"]), adaptive=True))
    return rows


def transfer(ctx: SeedContext, advs: dict) -> list[dict]:
    """Accuracy of every classifier on the linf PGD adversarials crafted on every other one."""
    rows = []
    for (source, attack, eps), x_adv in advs.items():
        if attack != "pgd":
            continue
        for target, model in ctx.models.items():
            if target != source:
                acc = float((predict(model, x_adv) == ctx.y).float().mean())
                rows.append({"seed": ctx.seed, "source": source, "target": target, "attack": attack, "eps": eps, "adv_acc": acc})
    return rows


def carlini_wagner(ctx: SeedContext) -> list[dict]:
    """Minimal L2 adversarials: success rate, median L2, and how the detector scores the successful ones."""
    ctx = ctx.subset(ctx.cfg.attacks.expensive_examples)
    a, rows = ctx.cfg.attacks, []
    for target, model in ctx.models.items():
        det = ctx.guards[target]
        key = {"model": ctx.keys[target], "steps": a.cw_steps, "binary_steps": a.cw_binary_steps}
        stage = ctx.stage(f"{target}-cw", key, lambda: {"x_adv": attacks.cw_l2(
            model, ctx.x.to(ctx.device), ctx.y.to(ctx.device), steps=a.cw_steps, binary_steps=a.cw_binary_steps).cpu().numpy()})
        x_adv = torch.from_numpy(stage["x_adv"])
        success = predict(model, x_adv) != ctx.y
        s = det.score(x_adv[success])
        rows.append({
            "seed": ctx.seed, "target": target, "attack": "cw_l2", "detector": det.name, "n": len(ctx.x),
            "success_rate": float(success.float().mean()),
            "median_l2": attacks.median_l2(ctx.x, x_adv, success),
            "auroc": detect.auroc(det.clean_test["nll"], s) if len(s) else None,
            "tpr_at_fpr": detect.tpr_at_threshold(s, det.threshold) if len(s) else None,
            "mean_bpd": float(ctx.bpd(s).mean()) if len(s) else None,
            "seconds": float(stage["seconds"]),
        })
    return rows


def fooling_images(ctx: SeedContext) -> list[dict]:
    """Images grown from noise until a classifier is confident (Nguyen et al. 2015), scored by its detector."""
    f, rows = ctx.cfg.fooling, []
    K = ctx.info.num_classes
    targets = torch.arange(K).repeat_interleave(f.per_class)
    for target, model in ctx.models.items():
        det = ctx.guards[target]
        for method in ("gradient", "evolution"):
            def compute():
                common = dict(shape=ctx.info.shape, confidence=f.confidence, generator=ctx.generator("fooling", method, target))
                if method == "gradient":
                    imgs, conf = attacks.fooling_gradient(model, targets.to(ctx.device), len(targets), steps=f.steps, **common)
                else:
                    imgs, conf = attacks.fooling_evolution(model, targets.to(ctx.device), len(targets), generations=f.generations,
                                                           population=f.population, **common)
                return {"images": imgs.cpu().numpy(), "confidence": conf.cpu().numpy()}

            key = {"model": ctx.keys[target], "method": method, **vars(f)}
            stage = ctx.stage(f"{target}-fooling-{method}", key, compute)
            imgs, conf = torch.from_numpy(stage["images"]), stage["confidence"]
            s = det.score(imgs)
            bpd = ctx.bpd(s)
            name = f"seed{ctx.seed}__{target}__fooling_{method}"
            ctx.scores[name] = s
            if ctx.seed == ctx.cfg.seeds[0]:
                ctx.examples[name] = imgs.numpy()
                ctx.examples[name + "__confidence"] = conf
            for k in range(K):
                m = (targets == k).numpy()
                rows.append({
                    "seed": ctx.seed, "target": target, "method": method, "class": k, "n": int(m.sum()), "detector": det.name,
                    "success_rate": float((conf[m] >= f.confidence).mean()), "mean_confidence": float(conf[m].mean()),
                    "mean_bpd": float(bpd[m].mean()), "clean_mean_bpd": float(ctx.bpd(det.clean_test["nll"]).mean()),
                    "flagged_rate": float(detect.flagged(s[m], det.threshold).mean()),
                    "seconds": float(stage["seconds"]),
                })
    return rows
