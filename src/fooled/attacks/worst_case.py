"""The study's PGD: the worst case per image over several losses and random restarts."""

from __future__ import annotations

import torch

from fooled.attacks._common import take
from fooled.attacks.gradient import multitarget_with_success, pgd_with_success

MULTITARGET = "multitarget"  # a loss name starting so runs `multitarget_with_success`; a suffix names its targeted loss
DECAY = "_decay"  # a loss name with this suffix runs PGD with the "decay" step schedule (see `pgd_with_success`)


def pgd_worst_case(model, x, y, *, eps: float, norm: str = "linf", steps: int = 40, step_size: float | None = None,
                   restarts: int = 1, losses=("ce",), targets: int | None = None, generator=None,
                   early_stop: bool = False) -> torch.Tensor:
    """PGD from `restarts` random starts with every loss in `losses`; per example the first misclassified result is kept.

    Each run after the first (restart x loss) attacks only the images that the earlier ones left correctly
    classified: the others would keep their earlier result anyway. Where every run fails, the first run's
    result stands. The loss "multitarget" is `multitarget_pgd` toward `targets` classes; a loss name ending in "_decay"
    ("margin_decay") runs that loss with the decaying step schedule of `pgd_with_success`. step_size None means
    2.5 * eps / steps (Madry et al.). early_stop (for accuracy only): each image stops at its first misclassified
    iterate. The runs after the first always stop early: their result is kept only where it misclassifies, and
    early_stop fools the same images (see `pgd`), so only those images' adversarials are shallower (their first
    misclassified iterate rather than the highest-loss one). Success comes from the attacks' own forward passes.
    eps: a number, or a tensor (N,) of one budget per image (several budgets attacked in one batch).
    """
    return worst_case_with_losses(model, x, y, eps=eps, norm=norm, steps=steps, step_size=step_size, restarts=restarts,
                                  losses=losses, targets=targets, generator=generator, early_stop=early_stop)[0]


def worst_case_with_losses(model, x, y, *, eps, norm="linf", steps=40, step_size=None, restarts=1, losses=("ce",), targets=None,
                           generator=None, early_stop=False, decay_steps=None, decay_restarts=1) -> tuple[torch.Tensor, torch.Tensor]:
    """`pgd_worst_case` and, per example, which loss fooled it: its position in `losses` (whatever the restart), -1 where
    no run did. decay_steps: the steps of the "_decay" losses (None: `steps`). The runs go in order, each on the images the earlier left correct, so 0 marks the images a run of the first
    loss fooled and a larger number the images only a later loss did: what a PGD of the first loss alone would have missed."""
    kwargs = dict(steps=steps, step_size=step_size, norm=norm, generator=generator)
    eps = eps.to(x.device) if isinstance(eps, torch.Tensor) else eps  # indexed by the images still to attack
    best, done = x, torch.zeros(len(x), dtype=torch.bool, device=x.device)
    fooled_by = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
    runs = list(enumerate(losses)) * restarts
    runs += [(i, loss) for i, loss in enumerate(losses) if loss.endswith(DECAY)] * max(0, decay_restarts - restarts)
    for k, (i, loss) in enumerate(runs):
        todo = (~done).nonzero().squeeze(1)
        if not len(todo):
            break
        stop, e = early_stop or k > 0, take(eps, todo)
        base, run_kwargs = loss, kwargs
        if loss.endswith(DECAY):  # e.g. "margin_decay": that loss with APGD-like steps, from 2 eps shrinking to eps / 40
            base, run_kwargs = loss[: -len(DECAY)], {**kwargs, "step_size": None, "schedule": "decay", "steps": decay_steps or steps}
        if base.startswith(MULTITARGET):  # "multitarget" (targeted margin) or "multitarget_dlr" (targeted DLR)
            x_adv, wrong = multitarget_with_success(model, x[todo], y[todo], eps=e, targets=targets, early_stop=stop,
                                                    loss=base[len(MULTITARGET) + 1:] or "margin", **run_kwargs)
        else:
            x_adv, wrong = pgd_with_success(model, x[todo], y[todo], eps=e, loss=base, early_stop=stop, **run_kwargs)
        kept = todo if k == 0 else todo[wrong]  # the first run's result stands even where it failed
        best = best.index_copy(0, kept, x_adv if k == 0 else x_adv[wrong])
        done[todo[wrong]] = True
        fooled_by[todo[wrong]] = i
    return best, fooled_by
