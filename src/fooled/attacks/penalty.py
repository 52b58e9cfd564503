"""Detector-aware reference attacks by the penalty method: yardsticks for the study's detector-aware attack.

Written apart from `attacks/aware.py` (they share only the generic checks and projections of `_common`), so that a
flaw of the study's formulation is not a flaw of its yardstick. Both misclassify x while keeping an anomaly score
(higher = more suspicious, flagged when score > threshold) at or below its threshold.

`penalty_aware_pgd` ascends, per image,

    min(m(x), kappa) + lam * (10 / D) * min(threshold - score(x), 0)

with m the log-odds margin of the most likely wrong class over y (or, targeted, of the target over every other class),
D the number of pixels, and lam a per-image weight that doubles at each step the point is flagged and halves at each
step it is not. Sign steps (linf) or unit-gradient steps (L2) of eps/8 for the first half of the steps and eps/32
after; per image the best iterate is kept: misclassified and unflagged (lowest score), else misclassified (lowest
score), else the highest margin.

`multitarget_penalty_pgd` is the second formulation: the same objective toward each of the `targets` wrong classes
that the clean image's logits rank highest, one targeted run each, per image the best.
"""

import numbers

import torch

from fooled.attacks._common import (
    check_attack_inputs,
    check_budget,
    check_norm,
    check_positive,
    frozen,
    module_of,
    no_budget,
    project,
    sample_in_ball,
    select,
    stacked,
    unit,
)
from fooled.errors import ConfigError

KAPPA = 2.0  # the margin (log-odds) beyond which misclassification earns nothing more: the rest goes to the score
LAMBDA_RANGE = (1e-3, 1e4)  # the per-image penalty weight stays inside this range while it doubles and halves


def _check_score(score, threshold):
    if not callable(score):
        raise ConfigError("score must be a callable mapping x (N, C, H, W) to anomaly scores (N,), higher = more suspicious")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ConfigError(f"threshold must be a float (inputs with score > threshold are flagged), got {threshold!r}")


def _margin(logits, y, target):
    """Log-odds margin: untargeted max_{j != y} log p_j - log p_y, targeted log p_t - max_{j != t} log p_j (> 0: success)."""
    log_p = torch.log_softmax(logits, dim=1)
    label = y if target is None else target
    own = log_p.gather(1, label[:, None]).squeeze(1)
    other = log_p.scatter(1, label[:, None], -torch.inf).amax(1)
    return other - own if target is None else own - other


def _rank(logits, y, s, threshold):
    """(tier, value), both higher = better: tier 2 misclassified and unflagged, 1 misclassified, 0 neither; value -score
    where misclassified, else the untargeted margin."""
    mis = logits.argmax(1) != y
    tier = mis.long() + (mis & (s <= threshold)).long()
    return tier, torch.where(mis, -s, _margin(logits, y, None)).detach()


def _better(tier, value, best_tier, best_value):
    return (tier > best_tier) | ((tier == best_tier) & (value > best_value))


def _scores(score, x_adv):
    s = score(x_adv)
    if not isinstance(s, torch.Tensor) or s.shape != (len(x_adv),):
        raise ConfigError(f"score must return a tensor of shape ({len(x_adv)},), got {getattr(s, 'shape', type(s))}")
    return s


def _descend(model, score, threshold, x, y, *, target, x_adv, eps, steps, norm, kappa, lam0):
    """One penalty run per row of a (stacked) batch; returns per row the best iterate and its (tier, value)."""
    scale = 10.0 / x[0].numel()
    lam = torch.full((len(x),), float(lam0), dtype=x.dtype, device=x.device)
    best_x, best_tier = x_adv.detach(), torch.full((len(x),), -1, dtype=torch.long, device=x.device)
    best_value = torch.full((len(x),), -torch.inf, dtype=x.dtype, device=x.device)
    for i in range(steps + 1):
        x_adv = x_adv.detach().requires_grad_(i < steps)
        logits, s = model(x_adv), _scores(score, x_adv)
        tier, value = _rank(logits.detach(), y, s.detach(), threshold)
        better = _better(tier, value, best_tier, best_value)
        best_x, best_tier, best_value = select(better, x_adv.detach(), best_x), torch.where(better, tier, best_tier), torch.where(better, value, best_value)
        if i == steps:
            break
        objective = _margin(logits, y, target).clamp_max(kappa) + lam * scale * (threshold - s).clamp_max(0)
        (grad,) = torch.autograd.grad(objective.sum(), x_adv)
        step = eps / 8 if i < steps // 2 else eps / 32
        direction = grad.sign() if norm == "linf" else unit(grad)
        x_adv = project(x_adv.detach() + direction * step, x, eps, norm)
        flagged = s.detach() > threshold
        lam = torch.where(flagged, lam * 2, lam / 2).clamp(*LAMBDA_RANGE)
    return best_x, best_tier, best_value


def _fold(best_x, tier, value, n):
    """Rows k * n of k runs stacked -> per image (n) the best run's point."""
    k = len(best_x) // n
    tier, value = tier.view(k, n), value.view(k, n)
    key = tier.double() * 1e12 + value.double().clamp(-1e11, 1e11)  # lexicographic: tier first, then value
    pick = key.argmax(0)
    return best_x.view(k, n, *best_x.shape[1:])[pick, torch.arange(n, device=best_x.device)]


def penalty_aware_pgd(model, x, y, *, score, threshold, eps, norm="linf", steps=100, restarts=1, starts=(), kappa=KAPPA,
                      lam0=1.0, target=None, generator=None):
    """The penalty-method detector-aware PGD (see module doc); per image the best point of every run.

    eps: a number, or a tensor (N,) of one budget per image. Runs, stacked in one batch: one from x itself, one from
    each of `starts` (points like x, projected into the ball), and restarts - 1 from random points of the ball.
    target: None (untargeted) or a class per image (an int or a tensor (N,)) that the margin term asks for.
    """
    x, y, target = check_attack_inputs(model, x, y, target)
    _check_score(score, threshold)
    eps = check_budget(eps, x)
    check_norm(norm)
    for name, v in (("steps", steps), ("restarts", restarts)):
        check_positive(name, v, integer=True)
    check_positive("kappa", kappa)
    check_positive("lam0", lam0)
    if no_budget(eps) or not len(x):
        return x.clone()
    points = [x] + [project(s.detach().to(x), x, eps, norm) for s in _checked_starts(starts, x)]
    points += [project(sample_in_ball(x, eps, norm, generator), x, eps, norm) for _ in range(restarts - 1)]
    k = len(points)
    big_eps = stacked(eps, k) if isinstance(eps, torch.Tensor) else eps
    with frozen(model, module_of(score)), torch.enable_grad():
        big_target = None if target is None else stacked(target, k)
        found = _descend(model, score, threshold, stacked(x, k), stacked(y, k), target=big_target, x_adv=torch.cat(points),
                         eps=big_eps, steps=steps, norm=norm, kappa=kappa, lam0=lam0)
    return project(_fold(*found, len(x)), x, eps, norm).detach()


def _checked_starts(starts, x):
    starts = list(starts)
    for i, s in enumerate(starts):
        if not isinstance(s, torch.Tensor) or s.shape != x.shape:
            raise ConfigError(f"starts[{i}] must be a tensor of the shape of x {tuple(x.shape)}, got {getattr(s, 'shape', type(s))}")
    return starts


def multitarget_penalty_pgd(model, x, y, *, score, threshold, eps, norm="linf", steps=100, targets=3, kappa=KAPPA, lam0=1.0,
                            generator=None):
    """`penalty_aware_pgd` toward each of the `targets` wrong classes the clean logits rank highest (one targeted run
    each, all stacked in one batch); per image the best point of all of them."""
    x, y, _ = check_attack_inputs(model, x, y)
    check_positive("targets", targets, integer=True)
    eps = check_budget(eps, x)
    if no_budget(eps) or not len(x):
        return x.clone()
    with frozen(model), torch.no_grad():
        logits = model(x)
    k = min(targets, logits.shape[1] - 1)
    order = logits.scatter(1, y[:, None], -torch.inf).argsort(1, descending=True)[:, :k]  # (N, k) most likely wrong classes
    big_eps = stacked(eps.flatten(), k) if isinstance(eps, torch.Tensor) else eps
    x_all = penalty_aware_pgd(model, stacked(x, k), stacked(y, k), score=score, threshold=threshold, eps=big_eps, norm=norm,
                              steps=steps, kappa=kappa, lam0=lam0, target=order.T.reshape(-1), generator=generator)
    with frozen(model, module_of(score)), torch.no_grad():
        tier, value = _rank(model(x_all), stacked(y, k), _scores(score, x_all), threshold)
    return project(_fold(x_all, tier, value, len(x)), x, eps, norm).detach()
