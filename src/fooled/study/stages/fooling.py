"""Fooling images grown from noise (Nguyen et al. 2015), and the density-aware searches that keep p(x) above the threshold."""

from __future__ import annotations

import torch

from ... import attacks
from ...detection import differentiable_score, flagged
from ...rundir import Key
from ..context import Made, SeedContext


def fooling_search(ctx: SeedContext, target: str, method: str, targets: torch.Tensor) -> dict:
    """One search from noise, cached: images, the classifier's confidence in the target class and, for the density-aware
    searches (method ending in '_unflagged'), their -log p(x) must also stay at or below the detector's threshold."""
    f, model, guard = ctx.cfg.fooling, ctx.models[target], ctx.guards[target]
    common = dict(shape=ctx.info.shape, confidence=f.confidence, generator=ctx.generator("fooling", method, target))
    unflagged = method.endswith("_unflagged")
    if unflagged:
        common.update(score=differentiable_score("nll", guard.model, guard.context), threshold=guard.threshold)
    search = {"gradient": attacks.fooling_gradient, "evolution": attacks.fooling_evolution,
              "gradient_unflagged": attacks.fooling_gradient_unflagged, "evolution_unflagged": attacks.fooling_evolution_unflagged}[method]
    budget = {"steps": f.steps} if method.startswith("gradient") else {"generations": f.generations, "population": f.population}

    def compute():
        imgs, conf, *_ = search(model, targets.to(ctx.device), len(targets), **budget, **common)
        return {"images": imgs.cpu().numpy(), "confidence": conf.cpu().numpy()}

    key = ctx.key(target, method=method, **vars(f))
    if unflagged:
        key.update(detector=ctx.keys[guard.name], threshold=guard.threshold)
    return ctx.stage(f"{target}-fooling-{method}", key, compute)


METHODS = ("gradient", "evolution", "gradient_unflagged", "evolution_unflagged")


def fooling_targets(ctx: SeedContext) -> torch.Tensor:
    """The class each search grows an image of: every class, `fooling.per_class` times."""
    return torch.arange(ctx.info.num_classes).repeat_interleave(ctx.cfg.fooling.per_class)


def fooling_images(ctx: SeedContext) -> tuple[Made, dict]:
    """Images grown from noise until a classifier is confident (Nguyen et al. 2015), scored by its detector; the density-aware
    searches also keep -log p(x) under the detector's threshold: can a model of p(x, y) be fooled by an image it finds likely?
    Returns what it made and the searches, {(target, method): stage}, which the label oracle reads."""
    f, made, stages = ctx.cfg.fooling, Made(), {}
    K, targets = ctx.info.num_classes, fooling_targets(ctx)
    for target in ctx.models:
        det = ctx.guards[target]
        for method in METHODS:
            stage = stages[(target, method)] = fooling_search(ctx, target, method, targets)
            imgs, conf = torch.from_numpy(stage["images"]), stage["confidence"]
            s = det.score(imgs)
            bpd, flags = ctx.bpd(s), flagged(s, det.threshold)
            made.score(Key(ctx.seed, target, f"fooling_{method}"), s)
            if ctx.first_seed:
                made.example(Key(ctx.seed, target, f"fooling_{method}", column="images"), imgs.numpy())
                made.example(Key(ctx.seed, target, f"fooling_{method}", column="confidence"), conf)
            for k in range(K):
                m = (targets == k).numpy()
                made.rows.append({
                    "seed": ctx.seed, "target": target, "method": method, "constrained": method.endswith("_unflagged"), "class": k,
                    "n": int(m.sum()), "detector": det.name,
                    "success_rate": float((conf[m] >= f.confidence).mean()), "mean_confidence": float(conf[m].mean()),
                    "unflagged_success_rate": float(((conf[m] >= f.confidence) & ~flags[m]).mean()),
                    "mean_bpd": float(bpd[m].mean()), "clean_mean_bpd": float(ctx.bpd(det.clean_test["nll"]).mean()),
                    "flagged_rate": float(flags[m].mean()),
                    "seconds": float(stage["seconds"]),
                })
    return made, stages
