"""Plain attacks: FGSM and the study's worst-case PGD (linf, L2) at every budget against every classifier."""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from ... import attacks
from ...attacks import stacked
from ...config import NORM_OF
from ..context import Made, SeedContext
from .batching import batched_stages, budgets_of, images_and_seconds, per_image_budgets
from .scoring import AttackedSet, scored_rows


VERSION = 2  # plain PGD's stages; 2: they hold which loss fooled each image (`won`), so stages written before are recomputed


def plain_key(ctx: SeedContext, target: str, name: str, eps: float) -> dict:
    """The cache key of attack `name` on `target` at `eps`: the model's key, the budget and the PGD settings (with the
    budgets PGD runs in one batch), and this stage's version."""
    if name == "fgsm":
        return ctx.key(target, eps=eps, attack=name)
    return ctx.key(target, eps=eps, attack=name, settings=ctx.cfg.attacks.pgd, batch=budgets_of(ctx, name), version=VERSION)


def plain_attacks(ctx: SeedContext) -> tuple[Made, dict]:
    """FGSM and PGD (linf, L2) at every budget against every classifier; returns what it made and the adversarials."""
    a, made, advs = ctx.cfg.attacks, Made(), {}
    for target, model in ctx.models.items():
        start = time.perf_counter()
        dev_x, dev_y = ctx.x.to(ctx.device), ctx.y.to(ctx.device)
        for name in tqdm(a.names, desc=f"attacks on {target} (seed {ctx.seed})", disable=not ctx.progress, leave=False):
            budgets = budgets_of(ctx, name)

            def batch(name=name, budgets=budgets) -> dict:
                if name == "fgsm":
                    return {eps: attacks.fgsm(model, dev_x, dev_y, eps=eps) for eps in budgets}
                x_adv, _, fooled_by = attacks.pgd_worst_case(
                    model, stacked(dev_x, len(budgets)), stacked(dev_y, len(budgets)), eps=per_image_budgets(budgets, dev_x),
                    norm=NORM_OF[name], settings=a.pgd, generator=ctx.generator(name, tuple(budgets)))
                return {eps: {"x_adv": x, "fooled_by": f} for eps, x, f in zip(budgets, x_adv.split(len(dev_x)), fooled_by.split(len(dev_x)))}

            def stage_of(eps, name=name) -> tuple[str, dict]:
                return f"{target}-{name}-eps{eps:g}", plain_key(ctx, target, name, eps)

            for eps, stage in batched_stages(ctx, budgets, stage_of, batch).items():
                x_adv, seconds = images_and_seconds(stage)
                advs[(target, name, eps)] = x_adv
                made += scored_rows(ctx, AttackedSet(target, name, eps, x_adv, seconds, fooled_by=stage.get("fooled_by")))
        ctx.log(f"  seed {ctx.seed}: attacks on {target}: {sum(len(budgets_of(ctx, n)) for n in a.names)} budgets "
                f"in {time.perf_counter() - start:.1f} s")
    return made, advs
