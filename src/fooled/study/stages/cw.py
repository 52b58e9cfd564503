"""Carlini-Wagner L2: minimal adversarials, and how the detector scores them."""

from __future__ import annotations

import torch

from ... import attacks
from ...detection import auroc, tpr_at_threshold
from ...models import predict
from ..context import Made, SeedContext


def carlini_wagner(ctx: SeedContext) -> Made:
    """Minimal L2 adversarials: success rate, median L2, and how the detector scores the successful ones."""
    ctx = ctx.subset(ctx.cfg.attacks.expensive_examples)
    a, made = ctx.cfg.attacks, Made()
    for target, model in ctx.models.items():
        det = ctx.guards[target]
        settings = a.carlini_wagner
        stage = ctx.stage(f"{target}-cw", ctx.key(target, settings=settings), lambda: {"x_adv": attacks.cw_l2(
            model, ctx.x.to(ctx.device), ctx.y.to(ctx.device), **settings.kwargs()).cpu().numpy()})
        x_adv = torch.from_numpy(stage["x_adv"])
        success = predict(model, x_adv) != ctx.y
        s = det.score(x_adv[success])
        made.rows.append({
            "seed": ctx.seed, "target": target, "attack": "cw_l2", "detector": det.name, "n": len(ctx.x),
            "success_rate": float(success.float().mean()),
            "median_l2": attacks.median_l2(ctx.x, x_adv, success),
            "auroc": auroc(det.clean_test["nll"], s) if len(s) else None,
            "tpr_at_fpr": tpr_at_threshold(s, det.threshold) if len(s) else None,
            "mean_bpd": float(ctx.bpd(s).mean()) if len(s) else None,
            "seconds": float(stage["seconds"]),
        })
    return made
