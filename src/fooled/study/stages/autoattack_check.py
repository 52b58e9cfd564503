"""A second opinion on the study's plain robust accuracy: AutoAttack (torchattacks' APGD-CE, APGD-T, ...; Croce & Hein
2020) on the audit's images, for every model and linf budget, beside the study's worst-case PGD on the same images.

The second opinion is a yardstick only: nothing in the study's attack is tuned on it. It runs on the images the study's
PGD left correct (elsewhere it cannot lower the robust accuracy); its check fails, and says by how much, where it fools
more of them than `audit.tolerance` of the images.
"""

from __future__ import annotations

import zlib

import torch

from ...audit_prose import check_row
from ...attacks.reference import autoattack
from ...models import predict
from ..context import SeedContext


def autoattack_settings(cfg) -> dict:
    """What AutoAttack runs (from `audit`), part of its stages' keys."""
    au = cfg.audit
    return {"parts": list(au.autoattack), "steps": au.autoattack_steps, "targets": au.autoattack_targets}


def autoattack_name(cfg, num_classes: int) -> str:
    """The attack that ran, in words, for the check's detail."""
    au = cfg.audit
    targets = num_classes - 1 if au.autoattack_targets is None else min(au.autoattack_targets, num_classes - 1)
    parts = [p.upper() + (f" ({targets} targets)" if p.endswith("-t") else "") for p in au.autoattack]
    return f"AutoAttack's {', '.join(parts)} (torchattacks, {au.autoattack_steps} steps)"


def autoattack_fooled(ctx: SeedContext, target: str, eps: float, standing: torch.Tensor) -> torch.Tensor:
    """Which images of `ctx` AutoAttack fools against model `target` at linf `eps`, run only on the `standing` ones (those the
    study's PGD left correct: elsewhere it cannot lower the robust accuracy), cached as a stage keyed by them."""
    model, settings = ctx.models[target], autoattack_settings(ctx.cfg)
    seed = (ctx.seed * 1_000_003 + zlib.crc32(f"autoattack {target} {eps:g}".encode())) % 2**31
    idx = torch.nonzero(standing).flatten()
    fooled = torch.zeros(len(ctx.x), dtype=torch.bool)
    if len(idx) == 0:
        return fooled

    def compute() -> dict:
        x_adv = autoattack(model, ctx.x[idx].to(ctx.device), ctx.y[idx].to(ctx.device), eps=eps, seed=seed, **settings)
        return {"x_adv": x_adv.cpu().numpy()}

    key = ctx.key(target, eps=eps, images=idx.tolist(), **settings)
    stage = ctx.stage(f"{target}-autoattack-eps{eps:g}", key, compute)
    fooled[idx] = predict(model, torch.from_numpy(stage["x_adv"])) != ctx.y[idx]
    return fooled


def autoattack_checks(ctx: SeedContext, advs: dict) -> list[dict]:
    """One check per model: at every linf budget of the study's PGD, AutoAttack's robust accuracy on the audit's first
    `attacks.expensive_examples` images is not lower than the study's (from its own adversarials of those images) by
    more than `audit.tolerance`."""
    cfg = ctx.cfg
    if not cfg.audit.autoattack:
        return []
    sub = ctx.subset(cfg.attacks.expensive_examples)
    n, tol = len(sub.x), cfg.audit.tolerance
    checks = []
    for target, model in ctx.models.items():
        budgets = [e for e in sorted(cfg.attacks.eps) if (target, "pgd", e) in advs]
        if not budgets:
            continue
        ok, per_eps = True, []
        for eps in budgets:
            study = predict(model, advs[(target, "pgd", eps)][:n]) != sub.y
            only = autoattack_fooled(sub, target, eps, ~study)  # AutoAttack runs where the study's PGD left the image correct
            study_acc, both_acc = 1 - float(study.float().mean()), 1 - float((study | only).float().mean())
            ok &= study_acc - both_acc <= tol + 1e-9
            per_eps.append({"eps": eps, "study": study_acc, "both": both_acc, "only": int(only.sum()), "left": int((~study).sum())})
        checks.append(check_row(ctx.seed, "second opinion: AutoAttack's robust accuracy is not lower than the study's PGD by more "
                                "than the tolerance", target, ok, "autoattack", name=autoattack_name(cfg, ctx.info.num_classes),
                                n=n, tolerance=tol, per_eps=per_eps))
    return checks
