"""Gradient attacks in an eps-ball: FGSM, PGD with restarts, and an eps sweep in foolbox style.

Every attack puts the model in eval mode and restores each submodule's mode afterwards, takes
gradients with torch.autograd.grad w.r.t. the input only (parameter .grad is untouched), draws
randomness only from `generator`, and projects its result onto the eps-ball and [0, 1].
"""

import torch

from fooled.attacks._common import (
    ascent_step,
    box,
    check_attack_inputs,
    check_labels,
    check_model,
    check_norm,
    check_positive,
    frozen,
    is_success,
    lexi_better,
    project,
    select,
    sample_in_ball,
)
from fooled.attacks.losses import objective
from fooled.errors import ConfigError


def attack_success(model, x_adv, y, target=None):
    """Per-example success: prediction != y, or prediction == target when targeted."""
    check_model(model)
    y = check_labels(y, len(x_adv), x_adv.device)
    if target is not None:
        target = check_labels(target, len(x_adv), x_adv.device, name="target")
    with frozen(model), torch.no_grad():
        return is_success(model(x_adv), y, target)


def fgsm(model, x, y, *, eps, loss="ce", target=None):
    """Fast gradient sign method: one linf step of size eps, clamped to [0, 1]."""
    x, y, target = check_attack_inputs(model, x, y, target)
    check_positive("eps", eps, allow_zero=True)
    fn = objective(loss, y, target)
    if eps == 0:
        return x.clone()
    with frozen(model), torch.enable_grad():
        x_in = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(model(x_in), x_in).sum(), x_in)
    return project(ascent_step(x, grad, eps, "linf"), x, eps, "linf").detach()


def pgd(
    model,
    x,
    y,
    *,
    eps,
    steps=40,
    step_size=None,
    norm="linf",
    random_start=True,
    restarts=1,
    loss="ce",
    target=None,
    generator=None,
    early_stop=False,
):
    """Projected gradient ascent of `loss` in the eps-ball; per example the best iterate of all restarts.

    "Best" means successful first (misclassified, or classified as `target`), then highest
    objective. Every iterate is ranked by the forward pass that computes its gradient; the final
    iterate of a run (which has no gradient to compute) is ranked only where no earlier iterate
    succeeded, since only there can it change success. step_size defaults to 2.5 * eps / steps.
    Without random_start, restarts would repeat the same run, so one run is made. early_stop ends
    a run once every example succeeds.
    """
    x, y, target = check_attack_inputs(model, x, y, target)
    check_positive("eps", eps, allow_zero=True)
    check_positive("steps", steps, integer=True)
    check_positive("restarts", restarts, integer=True)
    check_norm(norm)
    if step_size is None:
        step_size = 2.5 * eps / steps
    check_positive("step_size", step_size, allow_zero=True)
    fn = objective(loss, y, target)
    if eps == 0:
        return x.clone()

    bounds = box(x, eps) if norm == "linf" else None
    best = None
    with frozen(model), torch.enable_grad():
        for _ in range(restarts if random_start else 1):
            if random_start:
                x0 = project(sample_in_ball(x, eps, norm, generator), x, eps, norm, bounds)
            else:
                x0 = x.clone()
            best = _ascend(model, fn, x0, x, y, target, eps, steps, step_size, norm, bounds, early_stop, best)
            if early_stop and best[1].all():
                break
    return project(best[0], x, eps, norm, bounds).detach()


def _ascend(model, fn, x_adv, x, y, target, eps, steps, step_size, norm, bounds, early_stop, best):
    """One PGD run from x_adv, tracking per example the best (iterate, success, objective) so far.

    `best` carries the result of earlier restarts (None for the first run); an iterate replaces
    it only if it ranks strictly higher, so the first restart replays a single-restart run.
    """
    if best is None:
        best = (
            x_adv,
            torch.zeros(len(x), dtype=torch.bool, device=x.device),
            torch.full((len(x),), -torch.inf, dtype=x.dtype, device=x.device),
        )
    best_x, best_succ, best_obj = best

    def track(x_adv, logits, obj):
        nonlocal best_x, best_succ, best_obj
        succ = is_success(logits, y, target)
        better = lexi_better(succ, obj, best_succ, best_obj)
        best_x = select(better, x_adv, best_x)
        best_succ = best_succ | succ  # success never ranks below failure, so this is where(better, ...)
        best_obj = torch.where(better, obj, best_obj)

    for _ in range(steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        obj = fn(logits, x_adv)
        (grad,) = torch.autograd.grad(obj.sum(), x_adv)
        x_adv = x_adv.detach()
        track(x_adv, logits, obj.detach())
        if early_stop and best_succ.all():
            return best_x, best_succ, best_obj
        x_adv = project(ascent_step(x_adv, grad, step_size, norm), x, eps, norm, bounds)
    with torch.no_grad():  # the final iterate, where no iterate has succeeded yet (elsewhere it cannot change success)
        idx = (~best_succ).nonzero().squeeze(1)
        if len(idx):
            x_last = x_adv[idx]
            logits = model(x_last)
            succ = is_success(logits, y[idx], None if target is None else target[idx])
            obj = fn(logits, x_last, idx)
            better = lexi_better(succ, obj, best_succ[idx], best_obj[idx])
            best_x = best_x.index_copy(0, idx, select(better, x_last, best_x[idx]))
            best_succ = best_succ.index_copy(0, idx, succ)
            best_obj = best_obj.index_copy(0, idx, torch.where(better, obj, best_obj[idx]))
    return best_x, best_succ, best_obj


def pgd_sweep(model, x, y, *, eps_list, target=None, **pgd_kwargs):
    """PGD at each eps: returns (x_advs (len(eps_list), N, ...), success (len(eps_list), N))."""
    eps_list = list(eps_list)
    if not eps_list:
        raise ConfigError("eps_list must contain at least one eps")
    x_advs, success = [], []
    for eps in eps_list:
        x_adv = pgd(model, x, y, eps=eps, target=target, **pgd_kwargs)
        x_advs.append(x_adv)
        success.append(attack_success(model, x_adv, y, target))
    return torch.stack(x_advs), torch.stack(success)
