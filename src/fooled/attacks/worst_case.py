"""The study's PGD: the worst case per image over several losses and random restarts."""

from __future__ import annotations

import torch

from fooled.attacks.gradient import multitarget_pgd, pgd
from fooled.models import predict


def pgd_worst_case(model, x, y, *, eps: float, norm: str = "linf", steps: int = 40, step_size: float | None = None,
                   restarts: int = 1, losses=("ce",), targets: int | None = None, generator=None,
                   early_stop: bool = False) -> torch.Tensor:
    """PGD from `restarts` random starts with every loss in `losses`; per example the first misclassified result is kept.

    Each run after the first (restart x loss) attacks only the images that the earlier ones left correctly
    classified: the others would keep their earlier result anyway. Where every run fails, the first run's
    result stands. The loss "multitarget" is `multitarget_pgd` toward `targets` classes. step_size None means
    2.5 * eps / steps (Madry et al.). early_stop (for accuracy only): each image stops at its first misclassified iterate.
    """
    step_size = step_size if step_size is not None else 2.5 * eps / steps
    kwargs = dict(eps=eps, steps=steps, step_size=step_size, norm=norm, generator=generator, early_stop=early_stop)
    best, done = x, torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for i, loss in enumerate(list(losses) * restarts):
        todo = (~done).nonzero().squeeze(1)
        if not len(todo):
            break
        if loss == "multitarget":
            x_adv = multitarget_pgd(model, x[todo], y[todo], targets=targets, **kwargs)
        else:
            x_adv = pgd(model, x[todo], y[todo], loss=loss, **kwargs)
        wrong = (predict(model, x_adv) != y[todo].cpu()).to(x.device)
        take = todo if i == 0 else todo[wrong]  # the first loss's result stands even where it failed
        best = best.index_copy(0, take, x_adv if i == 0 else x_adv[wrong])
        done[todo[wrong]] = True
    return best
