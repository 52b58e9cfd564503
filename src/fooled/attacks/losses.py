"""Per-example objectives that attacks MAXIMISE.

A loss is called as ``loss(logits, y, x_adv) -> (N,)``. The built-in losses ignore ``x_adv``
(it defaults to None, so ``loss(logits, y)`` works too); a detector-aware loss uses it, e.g.
``lambda logits, y, x_adv: margin(logits, y) + 0.01 * flow.log_prob(x_adv)``, and reuses the
PGD loop unchanged. A callable passed to an attack must accept these three arguments.

Targeted attacks maximise ``-loss(logits, target, x_adv)``: targeted cross-entropy is
``-CE(logits, target)`` and targeted margin is ``z_t - max_{j != t} z_j``.
"""

import torch
import torch.nn.functional as F

from fooled.errors import ConfigError


def cross_entropy(logits, y, x_adv=None):
    """Cross-entropy of label y per example; large when y is unlikely."""
    return F.cross_entropy(logits, y, reduction="none")


def margin(logits, y, x_adv=None):
    """Carlini-Wagner margin max_{j != y} z_j - z_y per example; positive iff y is not predicted."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -torch.inf)
    return others.amax(1) - true


def log_margin(logits, y, x_adv=None):
    """`margin` of the log-probabilities log_softmax(logits): the log-odds log p(j*|x) - log p(y|x) of the most
    likely wrong class j* against y. Softmax is shift-invariant, so this equals the logit margin; the point is the
    unit: a threshold kappa on it means p(j*|x) >= e^kappa p(y|x) for any model whose outputs are softmax logits."""
    return margin(torch.log_softmax(logits, dim=1), y)


def dlr_targeted(logits, y, target):
    """Croce & Hein's (2020) targeted DLR loss as a quantity to MAXIMISE: (z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2), the
    target's logit against the true class's, divided by the spread of the sorted logits (pi: descending order), so the
    step does not depend on the logits' scale. Needs at least 4 classes."""
    if logits.shape[1] < 4:
        raise ConfigError(f"the targeted DLR loss needs at least 4 classes, got {logits.shape[1]}")
    z = logits.sort(1, descending=True).values
    pick = lambda c: logits.gather(1, c[:, None]).squeeze(1)  # noqa: E731
    return (pick(target) - pick(y)) / (z[:, 0] - (z[:, 2] + z[:, 3]) / 2 + 1e-12)


TARGETED = {"dlr": dlr_targeted}  # losses defined for a (true class, target) pair, targeted only


LOSSES = {"ce": cross_entropy, "cross_entropy": cross_entropy, "margin": margin, "log_margin": log_margin}


def get_loss(loss):
    """Resolve a loss name ("ce", "cross_entropy", "margin") or pass a callable through."""
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]
    raise ConfigError(f"unknown loss {loss!r}; valid losses: {', '.join(LOSSES)} or a callable")


def objective(loss, y, target=None):
    """The function (logits, x_adv, idx=None) -> (N,) that an attack maximises, untargeted or toward target;
    with `idx`, logits and x_adv are those of the examples y[idx] (or target[idx])."""
    if isinstance(loss, str) and loss in TARGETED:
        if target is None:
            raise ConfigError(f"the loss {loss!r} is targeted only: pass target=")
        pair = TARGETED[loss]
        return lambda logits, x_adv, idx=None: pair(logits, y if idx is None else y[idx], target if idx is None else target[idx])
    loss = get_loss(loss)
    if target is None:
        return lambda logits, x_adv, idx=None: loss(logits, y if idx is None else y[idx], x_adv)
    return lambda logits, x_adv, idx=None: -loss(logits, target if idx is None else target[idx], x_adv)
