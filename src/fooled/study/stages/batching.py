"""How a stage runs an attack at every budget in one batch and caches each budget as its own stage."""

from __future__ import annotations

import time
from typing import Callable

import torch

from ...config import NORM_OF
from ..context import SeedContext


def budgets_of(ctx: SeedContext, name: str) -> list[float]:
    """The budgets at which the study runs attack `name` (linf or L2), in the order of one batch."""
    a = ctx.cfg.attacks
    return sorted(a.l2_eps if NORM_OF[name] == "l2" else a.eps)


def batched_stages(ctx: SeedContext, budgets: list[float], stage_of: Callable[[float], tuple[str, dict]],
                   batch: Callable[[], dict]) -> dict:
    """{eps: stage} of an attack run at every budget in one batch (one pass through the models per step for all of them: on
    8x8 images a pass costs about as much for 4 x 48 images as for 48), each budget cached as its own stage (`stage_of(eps)`
    gives its label and key). The first budget not cached computes them all: `batch()` returns {eps: images} or
    {eps: {"x_adv": images, name: tensor, ...}}; a stage holds those arrays and "share_seconds", the batch's time shared
    evenly (`images_and_seconds` reads the two)."""
    made = {}

    def compute(eps: float) -> dict:
        if not made:
            start = time.perf_counter()
            made.update(batch())
            made["seconds"] = (time.perf_counter() - start) / len(budgets)
        arrays = made[eps] if isinstance(made[eps], dict) else {"x_adv": made[eps]}
        return {**{k: v.cpu().numpy() for k, v in arrays.items()}, "share_seconds": made["seconds"]}

    return {eps: ctx.stage(*stage_of(eps), lambda eps=eps: compute(eps)) for eps in budgets}


def images_and_seconds(stage: dict) -> tuple[torch.Tensor, float]:
    """The adversarials of a `batched_stages` stage and the seconds they took."""
    return torch.from_numpy(stage["x_adv"]), float(stage["share_seconds"])


def per_image_budgets(budgets: list[float], x: torch.Tensor) -> torch.Tensor:
    """The budget of each image of `stacked(x, len(budgets))`: budgets[0] for the first copy, and so on."""
    return torch.tensor(budgets, dtype=x.dtype, device=x.device).repeat_interleave(len(x))


