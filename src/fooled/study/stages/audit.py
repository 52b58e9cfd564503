"""Gradient-masking audit (Carlini et al. 2019, "On Evaluating Adversarial Robustness"), run in every study.

Each check is a dict {check, target, passed, detail}; a failed check is reported, never hidden.
"""

from __future__ import annotations

import numpy as np
import torch

from ...audit_prose import check_row
from ...attacks import linear_linf_robust, pgd_worst_case
from ...models import accuracy as _acc
from ...models import predict
from ...models.baselines import LogisticRegression
from ..context import SeedContext
from .autoattack_check import autoattack_checks


def _check(ctx, name, target, passed, kind, **numbers) -> dict:
    return check_row(ctx.seed, name, target, passed, kind, **numbers)


STEPS_GRID = (1, 3, 10, 20, 40)  # the convergence curve's steps, with the study's own `attacks.steps` added


def convergence_grid(steps: int) -> tuple[int, ...]:
    """The convergence curve's steps: the fixed grid and the study's own number of steps, in order."""
    return tuple(sorted(set(STEPS_GRID) | {steps}))


def convergence_curve(ctx: SeedContext, target: str, eps: float) -> list[dict]:
    """Adversarial accuracy of linf PGD against the number of steps (one restart, every configured loss), up to at least
    the study's own steps."""
    steps_grid = convergence_grid(ctx.cfg.attacks.steps)
    ctx = ctx.subset(ctx.cfg.attacks.expensive_examples)
    model = ctx.models[target]

    def compute():
        accs = []
        for steps in steps_grid:
            x_adv = pgd_worst_case(model, ctx.x.to(ctx.device), ctx.y.to(ctx.device), eps=eps, norm="linf",
                                   settings=ctx.cfg.attacks.pgd.scaled(steps, restarts=1),
                                   generator=ctx.generator("convergence", target, steps), early_stop=True).x_adv
            accs.append(_acc(model, x_adv, ctx.y))
        return {"adv_acc": np.array(accs)}

    key = ctx.key(target, eps=eps, settings=ctx.cfg.attacks.pgd, grid=list(steps_grid), early_stop=True)
    stage = ctx.stage(f"{target}-convergence-eps{eps:g}", key, compute)
    return [{"seed": ctx.seed, "target": target, "eps": eps, "steps": s, "adv_acc": float(a), "n": len(ctx.x)}
            for s, a in zip(steps_grid, stage["adv_acc"])]


def convergence_eps(rows: list[dict], target: str) -> float | None:
    """The linf budget of the convergence check and curve for `target`: the one whose PGD accuracy is nearest half the
    clean accuracy (the smaller on a tie), where the most images sit near the decision boundary, so more effort
    could fool the most. At a budget where PGD already fools nearly every image the check could not fail."""
    pgd = [r for r in rows if r["target"] == target and r["attack"] == "pgd" and r.get("grid", "continuous") == "continuous"]
    return min(pgd, key=lambda r: (abs(r["adv_acc"] - r["clean_acc"] / 2), r["eps"]))["eps"] if pgd else None


def audit(ctx: SeedContext, rows: list[dict], advs: dict, transfer_rows: list[dict], fooling_rows: list[dict]) -> list[dict]:
    """All checks for every classifier of this seed; the extra attacks (large budgets, doubled steps and restarts) run on
    the first `attacks.expensive_examples` attacked images. With 48 of them one image is 2.1 points, so the convergence
    check then allows no image to change: stricter than its tolerance, for under half the cost of every attacked image."""
    checks = []
    for target in ctx.models:
        plain = [r for r in rows if r["target"] == target and r.get("grid", "continuous") == "continuous"]
        checks += _strength_checks(ctx, target, rows, advs)
        checks += _reference_checks(ctx, target, plain, transfer_rows, fooling_rows)
    return checks + autoattack_checks(ctx, advs)


def _strong_images(ctx: SeedContext, c: SeedContext, target: str, eps: float, label: str, *, steps=None, restarts=None) -> torch.Tensor:
    """linf PGD (every loss) on the images of context `c`, cached as a stage; each image stops at its first misclassified
    iterate (early_stop), which changes which images are fooled in no way."""
    a, model = ctx.cfg.attacks, ctx.models[target]
    settings = a.pgd.scaled(steps, restarts)  # the key holds what the attack runs with
    stage = c.stage(f"{target}-audit-{label}-eps{eps:g}", ctx.key(target, eps=eps, settings=settings, early_stop=True),
                    lambda: {"x_adv": pgd_worst_case(model, c.x.to(ctx.device), c.y.to(ctx.device), eps=eps, norm="linf",
                                                     settings=settings, early_stop=True,
                                                     generator=ctx.generator("audit", label, target, eps)).x_adv.cpu().numpy()})
    return torch.from_numpy(stage["x_adv"])


def _strength_checks(ctx: SeedContext, target: str, rows: list[dict], advs: dict) -> list[dict]:
    """Accuracy falls to chance at a large budget and to 0 unbounded; doubling steps and restarts fools (almost) nothing more."""
    cfg, a, model = ctx.cfg, ctx.cfg.attacks, ctx.models[target]
    sub, K = ctx.subset(a.expensive_examples), ctx.info.num_classes
    acc_large = _acc(model, _strong_images(ctx, sub, target, cfg.audit.large_eps, "large"), sub.y)
    checks = [_check(ctx, f"accuracy falls to chance at linf eps {cfg.audit.large_eps:g}", target, acc_large <= 1 / K + 1e-9,
                     "large_eps", eps=cfg.audit.large_eps, acc=acc_large, chance=1 / K)]
    acc_unbounded = _acc(model, _strong_images(ctx, sub, target, 1.0, "unbounded"), sub.y)
    checks.append(_check(ctx, "accuracy falls to 0 for an unbounded attack (linf eps 1)", target, acc_unbounded <= 0.01,
                         "unbounded", acc=acc_unbounded))
    conv_eps = convergence_eps(rows, target)
    if (target, "pgd", conv_eps) not in advs:
        return checks
    n = len(sub.x)
    base = advs[(target, "pgd", conv_eps)][:n]
    double = _strong_images(ctx, sub, target, conv_eps, "double", steps=2 * a.steps, restarts=2 * a.restarts)
    # what the study's attack missed: images the doubled attack fools and it does not (an image it fools and the doubled
    # one's other random start misses does not make the study's accuracy too high)
    fooled_double, fooled_base = predict(model, double) != sub.y, predict(model, base) != sub.y
    missed = int((fooled_double & ~fooled_base).sum())
    checks.append(_check(ctx, "converged: doubling steps and restarts fools fewer than the tolerance of the images that PGD "
                         "left correct", target, missed < cfg.audit.tolerance * n, "doubling", eps=conv_eps, n=n,
                         acc=1 - float(fooled_base.float().mean()), acc_double=1 - float(fooled_double.float().mean()),
                         steps=a.steps, restarts=a.restarts, missed=missed, tolerance=cfg.audit.tolerance))
    return checks


def pgd_beats_noise(clean: float, noise: float, pgd: float) -> bool:
    """The noise control's sanity check at one budget (Carlini et al. 2019, "On evaluating adversarial robustness": random
    noise must not do about as well as the attack, or the attack's gradient is suspect). PGD passes when it does clearly
    better than noise on either scale: noise causes at most half of PGD's accuracy drop (a robust model, that noise barely
    moves), or PGD leaves at most half of the accuracy noise leaves (a fragile model, that noise already breaks; PGD
    leaving none passes). It fails when noise beats PGD, or comes within a factor of two of it on both scales."""
    if noise < pgd - 1e-9:
        return False
    return (clean - noise) <= 0.5 * (clean - pgd) + 1e-9 or pgd <= 0.5 * noise + 1e-9


def _reference_checks(ctx: SeedContext, target: str, plain: list[dict], transfer_rows: list[dict], fooling_rows: list[dict]) -> list[dict]:
    """PGD against what it must beat or reach: the linear model's exact answer, FGSM, transfer, black-box fooling, noise."""
    model, checks = ctx.models[target], []
    pgd = {r["eps"]: r["adv_acc"] for r in plain if r["attack"] == "pgd"}
    if isinstance(model, LogisticRegression) and pgd:  # a linear model: its exact robust accuracy is known
        exact = {e: float(linear_linf_robust(model.linear.weight.cpu(), model.linear.bias.cpu(), ctx.x, ctx.y, e).float().mean())
                 for e in sorted(pgd)}
        checks.append(_check(ctx, "PGD reaches the exact robust accuracy of the linear model", target,
                             all(pgd[e] <= exact[e] + 0.5 / len(ctx.x) for e in exact),  # the same count of images
                             "linear_exact", per_eps=[{"eps": e, "pgd": pgd[e], "exact": exact[e]} for e in exact]))
    fgsm = {r["eps"]: r["adv_acc"] for r in plain if r["attack"] == "fgsm"}
    common = sorted(set(pgd) & set(fgsm))
    if common:
        checks.append(_check(ctx, "iterative (PGD) beats single-step (FGSM)", target, all(pgd[e] <= fgsm[e] + 1e-9 for e in common),
                             "fgsm", per_eps=[{"eps": e, "pgd": pgd[e], "fgsm": fgsm[e]} for e in common]))
    tr = [r for r in transfer_rows if r["target"] == target]
    if tr and pgd:
        worst = {e: min(r["adv_acc"] for r in tr if r["eps"] == e) for e in pgd if any(r["eps"] == e for r in tr)}
        checks.append(_check(ctx, "white-box PGD beats black-box transfer", target, all(pgd[e] <= worst[e] + 1e-9 for e in worst),
                             "transfer", per_eps=[{"eps": e, "pgd": pgd[e], "transfer": worst[e]} for e in sorted(worst)]))
    fo = {m: np.mean([r["success_rate"] for r in fooling_rows if r["target"] == target and r["method"] == m])
          for m in ("gradient", "evolution") if any(r["target"] == target and r["method"] == m for r in fooling_rows)}
    if len(fo) == 2:
        checks.append(_check(ctx, "white-box fooling (gradient) beats black-box fooling (evolution)", target,
                             fo["gradient"] >= fo["evolution"], "fooling", gradient=float(fo["gradient"]), evolution=float(fo["evolution"])))
    noise = {r["eps"]: r["adv_acc"] for r in plain if r["attack"] == "noise_linf"}  # the study's random-perturbation control
    if pgd and noise:
        clean = _acc(model, ctx.x, ctx.y)
        budgets = sorted(set(pgd) & set(noise))
        checks.append(_check(ctx, "PGD does clearly better than random sign noise of the same linf norm (noise causes at most half "
                                  "of its accuracy drop, or PGD leaves at most half of the accuracy noise leaves)", target,
                             all(pgd_beats_noise(clean, noise[e], pgd[e]) for e in budgets), "noise",
                             per_eps=[{"eps": e, "noise": noise[e], "pgd": pgd[e]} for e in budgets], clean=clean))
    return checks
