"""Plain attacks: FGSM and the study's worst-case PGD (linf, L2) at every budget against every classifier."""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ... import attacks
from ...attacks import stacked
from ...config import NORM_OF
from ..context import Made, SeedContext
from .batching import batched_stages, budgets_of, images_and_seconds, per_image_budgets
from .scoring import AttackedSet, scored_rows


def pgd_settings(a) -> dict:
    """The keyword arguments of `attacks.pgd_worst_case` set by the config (besides eps and norm); part of its stages' keys."""
    return {"steps": a.steps, "step_size": a.step_size, "restarts": a.restarts, "losses": a.losses, "targets": a.targets,
            "decay_steps": a.decay_steps, **({"decay_restarts": a.decay_restarts} if a.decay_restarts > 1 else {})}


def plain_key(ctx: SeedContext, target: str, name: str, eps: float) -> dict:
    batch = {} if name == "fgsm" else {"batch": budgets_of(ctx, name)}  # PGD runs every budget in one batch
    return {"model": ctx.keys[target], "attack": name, "eps": eps, **pgd_settings(ctx.cfg.attacks), **batch}


def study_pgd(ctx: SeedContext, model, x, y, *, eps: float, norm: str, generator, **override) -> torch.Tensor:
    """`attacks.pgd_worst_case` with the study's settings; `override` changes some of them (steps, restarts, early_stop)."""
    return study_pgd_with_losses(ctx, model, x, y, eps=eps, norm=norm, generator=generator, **override)[0]


def study_pgd_with_losses(ctx: SeedContext, model, x, y, *, eps, norm: str, generator, **override) -> tuple[torch.Tensor, torch.Tensor]:
    """`study_pgd` and, per image, the position in `attacks.losses` of the loss that fooled it (-1: none did). An override of
    `steps` scales the "_decay" losses' steps in proportion (the convergence curve and check vary the whole attack)."""
    a = ctx.cfg.attacks
    kwargs = {**pgd_settings(a), **{k: v for k, v in override.items() if v is not None}}
    if a.decay_steps and kwargs["steps"] != a.steps:
        kwargs["decay_steps"] = max(1, round(a.decay_steps * kwargs["steps"] / a.steps))
    return attacks.worst_case_with_losses(model, x, y, eps=eps, norm=norm, generator=generator, **kwargs)


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
                x_adv, fooled_by = study_pgd_with_losses(
                    ctx, model, stacked(dev_x, len(budgets)), stacked(dev_y, len(budgets)), eps=per_image_budgets(budgets, dev_x),
                    norm=NORM_OF[name], generator=ctx.generator(name, tuple(budgets)))
                return {eps: {"x_adv": x, "fooled_by": f} for eps, x, f in zip(budgets, x_adv.split(len(dev_x)), fooled_by.split(len(dev_x)))}

            def stage_of(eps, name=name) -> tuple[str, dict]:
                # PGD's stages also hold which loss fooled each image (stages written before they did are recomputed)
                return f"{target}-{name}-eps{eps:g}", {**plain_key(ctx, target, name, eps), **({} if name == "fgsm" else {"fooled_by": True})}

            for eps, stage in batched_stages(ctx, budgets, stage_of, batch).items():
                x_adv, seconds = images_and_seconds(stage)
                advs[(target, name, eps)] = x_adv
                made += scored_rows(ctx, AttackedSet(target, name, eps, x_adv, seconds, fooled_by=stage.get("fooled_by")))
        ctx.log(f"  seed {ctx.seed}: attacks on {target}: {sum(len(budgets_of(ctx, n)) for n in a.names)} budgets "
                f"in {time.perf_counter() - start:.1f} s")
    return made, advs
