"""Frozen settings of the attack families, which make their own stage keys, and the one type attacks return.

The config builds the settings (`AttackConfig.pgd`), the attack takes them (`attacks.pgd_worst_case(..., settings=)`) and
a stage's cache key is derived from them (`PGDSettings.key`), so a new setting reaches the attack loop and the key
together; below `config` so that the config can build them and `attacks` take them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import torch


class Attacked(NamedTuple):
    """What a gradient attack returns: the points, per image whether the attack's own forward passes found them
    successful (misclassified, or classified as the target), and which run won: the position of the loss (worst case)
    or of the target rank (multitargeted) that fooled the image, -1 where none did; None for a single run."""

    x_adv: torch.Tensor
    success: torch.Tensor
    won: torch.Tensor | None = None


@dataclass(frozen=True)
class PGDSettings:
    """The study's worst-case PGD (`attacks.pgd_worst_case`): every loss in `losses` from `restarts` random starts, per
    image the first run that fools it. "_decay" losses run `decay_steps` APGD-like steps, `decay_restarts` times in all;
    "multitarget" losses aim at the `targets` most promising wrong classes. step_size None: 2.5 eps / steps."""

    steps: int = 40
    step_size: float | None = None
    restarts: int = 1
    losses: tuple[str, ...] = ("ce",)
    targets: int | None = 3
    decay_steps: int | None = None
    decay_restarts: int = 1

    def key(self) -> dict:
        """The settings as a stage's cache key holds them (decay_restarts only where it does something)."""
        out = asdict(self)
        out["losses"] = list(self.losses)
        if self.decay_restarts <= 1:
            del out["decay_restarts"]
        return out

    def scaled(self, steps: int | None = None, restarts: int | None = None) -> "PGDSettings":
        """The same attack with other steps or restarts (None: unchanged); the "_decay" losses' steps scale in proportion
        (the convergence curve and the audit's checks vary the whole attack)."""
        out = replace(self, steps=steps or self.steps, restarts=restarts or self.restarts)
        if self.decay_steps and out.steps != self.steps:
            out = replace(out, decay_steps=max(1, round(self.decay_steps * out.steps / self.steps)))
        return out
