"""The study's PGD: the worst case per image over several losses and random restarts."""

from __future__ import annotations

import torch

from fooled.attacks._common import take
from fooled.attacks.gradient import multitarget_pgd, pgd
from fooled.settings import Attacked, PGDSettings

MULTITARGET = "multitarget"  # a loss name starting so runs `multitarget_pgd`; a suffix names its targeted loss
DECAY = "_decay"  # a loss name with this suffix runs PGD with the "decay" step schedule (see `pgd`)


def pgd_worst_case(model, x, y, *, eps, norm: str = "linf", settings: PGDSettings = PGDSettings(), generator=None,
                   early_stop: bool = False) -> Attacked:
    """PGD from `settings.restarts` random starts with every loss in `settings.losses`; per example the first
    misclassified result is kept, with `won` the position in `losses` of the loss that fooled it (whatever the restart),
    -1 where no run did.

    Each run after the first (restart x loss) attacks only the images that the earlier ones left correctly
    classified: the others would keep their earlier result anyway. Where every run fails, the first run's
    result stands. So `won` 0 marks the images a run of the first loss fooled and a larger number the images only a
    later loss did: what a PGD of the first loss alone would have missed. The loss "multitarget" is `multitarget_pgd`
    toward `settings.targets` classes ("multitarget_dlr": its targeted DLR loss); a loss name ending in "_decay"
    ("margin_decay") runs that loss with the decaying step schedule of `pgd`, `settings.decay_steps` steps (None:
    `steps`), `decay_restarts` times in all. early_stop (for accuracy only): each image stops at its first misclassified
    iterate. The runs after the first always stop early: their result is kept only where it misclassifies, and
    early_stop fools the same images (see `pgd`), so only those images' adversarials are shallower (their first
    misclassified iterate rather than the highest-loss one). Success comes from the attacks' own forward passes.
    eps: a number, or a tensor (N,) of one budget per image (several budgets attacked in one batch).
    """
    s = settings
    kwargs = dict(steps=s.steps, step_size=s.step_size, norm=norm, generator=generator)
    eps = eps.to(x.device) if isinstance(eps, torch.Tensor) else eps  # indexed by the images still to attack
    best, done = x, torch.zeros(len(x), dtype=torch.bool, device=x.device)
    fooled_by = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
    runs = list(enumerate(s.losses)) * s.restarts
    runs += [(i, loss) for i, loss in enumerate(s.losses) if loss.endswith(DECAY)] * max(0, s.decay_restarts - s.restarts)
    for k, (i, loss) in enumerate(runs):
        todo = (~done).nonzero().squeeze(1)
        if not len(todo):
            break
        stop, e = early_stop or k > 0, take(eps, todo)
        base, run_kwargs = loss, kwargs
        if loss.endswith(DECAY):  # e.g. "margin_decay": that loss with APGD-like steps, from 2 eps shrinking to eps / 40
            base, run_kwargs = loss[: -len(DECAY)], {**kwargs, "step_size": None, "schedule": "decay", "steps": s.decay_steps or s.steps}
        if base.startswith(MULTITARGET):  # "multitarget" (targeted margin) or "multitarget_dlr" (targeted DLR)
            x_adv, wrong, _ = multitarget_pgd(model, x[todo], y[todo], eps=e, targets=s.targets, early_stop=stop,
                                              loss=base[len(MULTITARGET) + 1:] or "margin", **run_kwargs)
        else:
            x_adv, wrong, _ = pgd(model, x[todo], y[todo], eps=e, loss=base, early_stop=stop, **run_kwargs)
        kept = todo if k == 0 else todo[wrong]  # the first run's result stands even where it failed
        best = best.index_copy(0, kept, x_adv if k == 0 else x_adv[wrong])
        done[todo[wrong]] = True
        fooled_by[todo[wrong]] = i
    return Attacked(best, done, fooled_by)
