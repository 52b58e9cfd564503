"""torchattacks' AutoAttack (Croce & Hein 2020) as one of our pure attack functions: the independent yardstick that the
study's worst-case PGD is audited against, never a part of it.

torchattacks' own `AutoAttack` runs APGD and APGD-T for 10 steps each (its defaults); the original runs 100, so this
builds the same ensemble from its parts with the original's settings. Its attacks draw randomness from torch's global
generator (each reseeds it with its `seed`); here that happens inside `torch.random.fork_rng`, so the caller's global
random state is untouched and the same seed gives the same result.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from fooled.attacks._common import check_attack_inputs, check_positive, frozen, project
from fooled.config import AUTOATTACK_PARTS
from fooled.errors import ConfigError


def autoattack(model, x, y, *, eps: float, parts=AUTOATTACK_PARTS, steps: int = 100, targets: int | None = None,
               square_queries: int = 5000, seed: int = 0) -> torch.Tensor:
    """AutoAttack (linf) of the `parts` named in AUTOATTACK_PARTS, each on the images the earlier left correctly classified
    (torchattacks' `MultiAttack`); per image the first misclassified result, else x. `steps` per APGD / FAB run; the
    targeted parts aim at each image's `targets` most likely wrong classes (None: every one, as AutoAttack standard)."""
    import torchattacks  # a main dependency; imported here so that importing fooled.attacks stays light

    x, y, _ = check_attack_inputs(model, x, y)
    check_positive("eps", eps, allow_zero=True)
    check_positive("steps", steps, integer=True)
    unknown = [p for p in parts if p not in AUTOATTACK_PARTS]
    if unknown or not parts:
        raise ConfigError(f"autoattack parts: unknown {unknown!r}; expected some of {', '.join(AUTOATTACK_PARTS)}")
    if eps == 0 or not len(x):
        return x.clone()
    with frozen(model), _input_grads_only(model), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        with torch.no_grad():
            k = model(x[:1]).shape[1]
        if targets is not None:  # torchattacks targets the n_classes - 1 most likely wrong classes
            k = min(k, check_positive("targets", targets, integer=True) + 1)
        make = {
            "apgd-ce": lambda: torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, loss="ce", seed=seed),
            "apgd-t": lambda: torchattacks.APGDT(model, norm="Linf", eps=eps, steps=steps, seed=seed, n_classes=k),
            "fab-t": lambda: torchattacks.FAB(model, norm="Linf", eps=eps, steps=steps, seed=seed, multi_targeted=True,
                                              n_classes=k),
            "square": lambda: torchattacks.Square(model, norm="Linf", eps=eps, n_queries=square_queries, seed=seed),
        }
        runs = [make[p]() for p in parts]
        for run in runs:
            run.set_device(x.device)  # a model without parameters leaves torchattacks without a device
        attack = runs[0] if len(runs) == 1 else torchattacks.MultiAttack(runs)
        x_adv = attack(x, y).detach()
    return project(x_adv, x, eps, "linf")  # a float-rounding step past the ball is pulled back


@contextmanager
def _input_grads_only(model):
    """Parameters do not require grad for the duration (FAB calls .backward(), which would fill their .grad), then each gets
    its own flag back."""
    params = [(p, p.requires_grad) for p in model.parameters()] if isinstance(model, torch.nn.Module) else []
    try:
        for p, _ in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in params:
            p.requires_grad_(flag)
