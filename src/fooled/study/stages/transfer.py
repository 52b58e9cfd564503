"""Transfer: every classifier's accuracy on the linf PGD adversarials crafted on every other one."""

from __future__ import annotations

from ...models import predict
from ..context import Made, SeedContext


def transfer(ctx: SeedContext, advs: dict) -> Made:
    """Accuracy of every classifier on the linf PGD adversarials crafted on every other one."""
    made = Made()
    for (source, attack, eps), x_adv in advs.items():
        if attack != "pgd":
            continue
        for target, model in ctx.models.items():
            if target != source:
                acc = float((predict(model, x_adv) == ctx.y).float().mean())
                made.rows.append({"seed": ctx.seed, "source": source, "target": target, "attack": attack, "eps": eps, "adv_acc": acc})
    return made
