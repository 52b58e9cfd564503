"""Gradient attacks in an eps-ball: FGSM, PGD with restarts, and MultiTargeted PGD.

Every attack puts the model in eval mode and restores each submodule's mode afterwards, takes
gradients with torch.autograd.grad w.r.t. the input only (parameter .grad is untouched), draws
randomness only from `generator`, and projects its result onto the eps-ball and [0, 1].
"""

import torch
import torch.nn.functional as F

from fooled.attacks._common import (
    ascent_step,
    box,
    check_attack_inputs,
    check_budget,
    check_labels,
    check_model,
    check_norm,
    check_positive,
    frozen,
    is_success,
    l2_norm,
    lexi_better,
    no_budget,
    project,
    select,
    sample_in_ball,
    take,
)
from fooled.attacks.losses import objective
from fooled.errors import ConfigError
from fooled.settings import Attacked

SCHEDULES = ("constant", "decay")  # PGD step sizes: 2.5 eps / steps throughout, or 2 eps shrinking to eps / 40


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


def pgd(model, x, y, *, eps, steps=40, step_size=None, norm="linf", random_start=True, restarts=1, loss="ce", target=None,
        generator=None, early_stop=False, schedule="constant") -> Attacked:
    """Projected gradient ascent of `loss` in the eps-ball; per example the best iterate of all restarts, and its success
    (misclassified, or classified as `target`), which the attack knows from its own forward passes.

    "Best" means successful first, then highest objective. Every iterate is ranked by the forward pass that computes
    its gradient; the final iterate of a run (which has no gradient to compute) is ranked only where no earlier iterate
    succeeded, since only there can it change success. step_size defaults to 2.5 * eps / steps. Without random_start,
    restarts would repeat the same run, so one run is made. eps may be a tensor (N,) of one budget per example (see
    `check_budget`); step_size then defaults per example.

    early_stop=True is for robust accuracy: an example leaves the batch at its first successful
    iterate, which is returned, and later restarts attack only the examples not yet fooled. The
    others follow the same trajectory as without it, so the same examples are fooled, for less
    work; the fooled ones get a shallower adversarial (successful, but not the highest objective).
    schedule "decay" (step_size must be None): the step starts at 2 eps, APGD's first step (Croce & Hein 2020), and
    shrinks geometrically to eps / 40 at the last step; its long first steps reach points of a robust model that
    small constant steps from one random start miss.
    """
    x, y, target = check_attack_inputs(model, x, y, target)
    eps = check_budget(eps, x)
    check_positive("steps", steps, integer=True)
    check_positive("restarts", restarts, integer=True)
    check_norm(norm)
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown step schedule {schedule!r}; valid schedules: {', '.join(SCHEDULES)}")
    if schedule == "decay" and step_size is not None:
        raise ConfigError("schedule='decay' sets the step size itself (2 eps down to eps / 40); do not pass step_size=")
    scale, decay = (2.0, (1 / 80) ** (1 / max(steps - 1, 1))) if schedule == "decay" else (2.5 / steps, 1.0)
    if step_size is None:
        step_size = (scale * eps).flatten() if isinstance(eps, torch.Tensor) else scale * eps
    else:
        check_positive("step_size", step_size, allow_zero=True)
    fn = objective(loss, y, target)
    if no_budget(eps):
        with frozen(model), torch.no_grad():
            return Attacked(x.clone(), is_success(model(x), y, target))

    bounds = box(x, eps) if norm == "linf" else None
    best = None
    with frozen(model), torch.enable_grad():
        for _ in range(restarts if random_start else 1):
            if random_start:
                x0 = project(sample_in_ball(x, eps, norm, generator), x, eps, norm, bounds)
            else:
                x0 = x.clone()
            best = _ascend(model, fn, x0, x, y, target=target, eps=eps, steps=steps, step_size=step_size, norm=norm,
                           bounds=bounds, early_stop=early_stop, best=best, decay=decay)
            if early_stop and best[1].all():
                break
    # every iterate already lies in the ball and the box, so the projection leaves it (and its success) unchanged
    return Attacked(project(best[0], x, eps, norm, bounds).detach(), best[1])


def _ascend(model, fn, x_adv, x, y, *, target, eps, steps, step_size, norm, bounds, early_stop, best, decay=1.0):
    """One PGD run from x_adv, tracking per example the best (iterate, success, objective) so far.

    `best` carries the result of earlier restarts (None for the first run); an iterate replaces
    it only if it ranks strictly higher, so the first restart replays a single-restart run.
    With early_stop, an example leaves the batch at its first successful iterate: the examples
    that stay follow the same trajectory as without it, so success is the same, for less work.
    Step k has size step_size * decay**k.
    """
    if best is None:
        best = (
            x_adv,
            torch.zeros(len(x), dtype=torch.bool, device=x.device),
            torch.full((len(x),), -torch.inf, dtype=x.dtype, device=x.device),
        )
    best = list(best)
    run = _Active(x, y, target, bounds, eps, step_size)
    for step in range(steps + 1):
        if step == steps or early_stop:  # the final iterate only matters where no iterate has succeeded yet
            keep = ~best[1] if run.idx is None else ~best[1][run.idx]
            if not keep.all():
                x_adv = run.narrow(keep, x_adv)
        if run.empty:
            break
        last = step == steps
        with torch.set_grad_enabled(not last):
            x_adv.requires_grad_(not last)
            logits = model(x_adv)
            obj = fn(logits, x_adv, run.idx)
            if not last:
                (grad,) = torch.autograd.grad(obj.sum(), x_adv)
        x_adv = x_adv.detach()
        _track(best, run.idx, x_adv, is_success(logits, run.y, run.target), obj.detach())
        if not last:
            size = run.step if decay == 1.0 else run.step * decay**step
            x_adv = project(ascent_step(x_adv, grad, size, norm), run.x, run.eps, norm, run.bounds)
    return tuple(best)


class _Active:
    """The examples a PGD run still attacks: positions `idx` in the batch (None: all) and their x, y, target, bounds, and
    budget and step size (numbers, or per-example tensors)."""

    def __init__(self, x, y, target, bounds, eps, step):
        self.idx, self.x, self.y, self.target, self.bounds = None, x, y, target, bounds
        self.eps, self.step = eps, step

    @property
    def empty(self):
        return self.idx is not None and not len(self.idx)

    def narrow(self, keep, x_adv):
        """Keep only the examples where `keep` (over the active ones) is True; returns x_adv narrowed alike."""
        k = keep.nonzero().squeeze(1)
        self.idx = k if self.idx is None else self.idx[k]
        self.x, self.y = self.x[k], self.y[k]
        self.target = None if self.target is None else self.target[k]
        self.bounds = None if self.bounds is None else (self.bounds[0][k], self.bounds[1][k])
        self.eps, self.step = take(self.eps, k), take(self.step, k)
        return x_adv[k]


def _track(best, idx, x_adv, succ, obj):
    """Update best = [x, success, objective] in place with the iterate x_adv of the examples idx (None: all)."""
    best_x, best_succ, best_obj = best if idx is None else (b[idx] for b in best)
    better = lexi_better(succ, obj, best_succ, best_obj)
    new = (select(better, x_adv, best_x), best_succ | succ, torch.where(better, obj, best_obj))
    # success never ranks below failure, so best_succ | succ is where(better, succ, best_succ)
    best[:] = new if idx is None else [b.index_copy(0, idx, n) for b, n in zip(best, new)]


def multitarget_pgd(model, x, y, *, eps, targets=3, generator=None, loss="margin", **pgd_kwargs) -> Attacked:
    """MultiTargeted PGD (Gowal et al. 2019): targeted PGD toward each of the `targets` most promising wrong classes
    (None: every one), in turn, each run only on the images the earlier runs left correctly classified.

    The untargeted losses follow the currently closest wrong class and can miss a farther one that the budget
    does reach. Classes are ranked per image by `reachable_margins`, the first-order estimate of the largest
    margin z_j - z_y inside the ball; on a linear model that estimate is exact, so one target finds every
    image the budget can misclassify. Per image the first run that misclassifies it (as any wrong class)
    gives the result, else the first run; `success` says whether the result is misclassified and `won` which target
    rank fooled it (-1: none). loss: "margin" (targeted margin) or "dlr" (Croce & Hein's targeted DLR). pgd_kwargs go
    to `pgd` (steps, step_size, norm, restarts, early_stop, ...), except loss and target.
    """
    x, y, _ = check_attack_inputs(model, x, y)
    if "target" in pgd_kwargs:
        raise ConfigError("multitarget_pgd sets target itself (each promising wrong class in turn); do not pass target=")
    if loss not in ("margin", "dlr"):
        raise ConfigError(f"multitarget_pgd: unknown targeted loss {loss!r}; valid: margin, dlr")
    if targets is not None:
        check_positive("targets", targets, integer=True)
    norm = check_norm(pgd_kwargs.get("norm", "linf"))
    check_budget(eps, x)
    eps = eps.to(x) if isinstance(eps, torch.Tensor) else eps  # indexed by the images still to attack
    reach = reachable_margins(model, x, y, eps=eps, norm=norm)
    k = reach.shape[1] - 1 if targets is None else min(targets, reach.shape[1] - 1)
    order = reach.argsort(1, descending=True)[:, :k]  # y itself has -inf, so it is never among them
    best, done = None, torch.zeros(len(x), dtype=torch.bool, device=x.device)
    won = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
    for rank in range(k):
        todo = (~done).nonzero().squeeze(1)
        if not len(todo):
            break
        x_adv, wrong, _ = pgd(model, x[todo], y[todo], eps=take(eps, todo), loss=loss, target=order[todo, rank],
                              generator=generator, **pgd_kwargs)
        other = (~wrong).nonzero().squeeze(1)  # missed the target: misclassified as another class perhaps
        if len(other):
            with frozen(model), torch.no_grad():
                wrong[other] = model(x_adv[other]).argmax(1) != y[todo][other]
        best = x_adv if best is None else best.index_copy(0, todo[wrong], x_adv[wrong])
        done[todo[wrong]] = True
        won[todo[wrong]] = rank
    return Attacked(x.clone() if best is None else best, done, won)


def reachable_margins(model, x, y, *, eps, norm="linf"):
    """(N, K): per image and class j, the first-order estimate of the largest z_j - z_y in the eps-ball and [0, 1];
    -inf for j = y. With g the gradient of z_j - z_y at x: z_j - z_y plus the largest g . delta over the box
    (linf: exact for a linear model) or plus eps ||g||_2 (L2, ignoring the box). One backward pass per class."""
    x, y, _ = check_attack_inputs(model, x, y)
    budget = check_budget(eps, x)
    if norm == "linf":
        lo, hi = (b - x for b in box(x, budget))
    with frozen(model), torch.enable_grad():
        x_in = x.clone().requires_grad_(True)
        logits = model(x_in)
        num_classes = logits.shape[1]
        out = torch.empty(len(x), num_classes, dtype=x.dtype, device=x.device)
        true = logits.gather(1, y[:, None]).squeeze(1)
        for j in range(num_classes):
            gap = logits[:, j] - true
            (g,) = torch.autograd.grad(gap.sum(), x_in, retain_graph=j < num_classes - 1)
            if norm == "linf":
                gain = torch.maximum(g * hi, g * lo).flatten(1).sum(1)
            else:
                gain = eps * l2_norm(g)  # eps a number or (N,)
            out[:, j] = (gap + gain).detach()
    return out.masked_fill(F.one_hot(y, num_classes).bool(), -torch.inf)
