"""What the attacks made, labelled by a committee no attack was run against (a stand-in for a human).

For the -log p(x)-aware adversarials of every model and budget (the successful ones), and the density-aware
fooling images (those confident and unflagged): does the committee still see the original class (a real
adversarial example), the attacker's class (the image changed its meaning), or disagree?
"""

from __future__ import annotations

import torch

from ...models import predict
from ...models.oracle import Committee, oracle_verdicts
from ..context import Made, SeedContext
from .batching import images_and_seconds
from .fooling import fooling_targets


def _votes(committee: Committee, x: torch.Tensor, target: str) -> torch.Tensor:
    """The committee's votes without the attacked model itself (when it is a member); (members, 0) for no image."""
    keep = [i for i, name in enumerate(committee.members) if name != target]
    if len(x) == 0:
        return torch.zeros((len(keep), 0), dtype=torch.long)
    return committee.votes(x)[keep]


def label_oracle(ctx: SeedContext, committee: Committee, aware: dict, fooling: dict) -> Made:
    """One row per attacked model and set: counts and rates of 'original', 'changed' and 'disagree'. `aware` holds the
    detector-aware stages ({(target, attacked detector): {eps: stage}}), `fooling` the fooling searches ({(target, method): stage})."""
    a, f, made = ctx.cfg.attacks, ctx.cfg.fooling, Made()
    sub = ctx.subset(a.expensive_examples)  # where the detector-aware attacks ran
    y = sub.y.numpy()
    for target, model in ctx.models.items():
        for eps, stage in aware.get((target, "nll"), {}).items():
            x_adv, _ = images_and_seconds(stage)
            pred = predict(model, x_adv)
            success = torch.from_numpy((sub.clean_pred[target] == y) & (pred.numpy() != y))
            counts = oracle_verdicts(_votes(committee, x_adv[success], target), sub.y[success], pred[success])
            made.rows.append({"seed": ctx.seed, "target": target, "set": "adaptive_pgd", "eps": eps, **counts})
        if fooling:
            targets, guard = fooling_targets(ctx), ctx.guards[target]
            for method in ("gradient_unflagged", "evolution_unflagged"):
                stage = fooling[(target, method)]
                imgs, conf = torch.from_numpy(stage["images"]), torch.from_numpy(stage["confidence"])
                ok = (conf >= f.confidence) & torch.from_numpy(guard.score(imgs) <= guard.threshold)
                none = torch.full((int(ok.sum()),), -1, dtype=torch.long)  # grown from noise: no original class
                counts = oracle_verdicts(_votes(committee, imgs[ok], target), none, targets[ok])
                made.rows.append({"seed": ctx.seed, "target": target, "set": f"fooling_{method}", "eps": None, **counts})
    return made
