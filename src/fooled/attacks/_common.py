"""Helpers shared by the attacks: argument checks, model freezing, randomness, projections."""

import contextlib
import math
import numbers

import torch
from torch import nn

from fooled.errors import ConfigError

NORMS = ("linf", "l2")


@contextlib.contextmanager
def frozen(*modules):
    """Put every module in eval mode for the duration, then restore each submodule's own mode."""
    modules = [m for m in modules if isinstance(m, nn.Module)]  # plain functions have no mode
    saved = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for m, training in saved:
            m.training = training


def check_model(model):
    if not callable(model):
        raise ConfigError(
            f"model must be a callable nn.Module mapping x to logits, got {type(model).__name__}"
        )


def check_images(x):
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ConfigError("x must be a float tensor of shape (N, C, H, W) with values in [0, 1]")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ConfigError(
            f"x must lie in [0, 1], got values in [{x.min().item():.4g}, {x.max().item():.4g}]"
        )
    return x.detach()


def check_labels(labels, n, device, name="y"):
    """Return labels as a LongTensor (n,) on device; an int is broadcast to every example."""
    if isinstance(labels, int) and not isinstance(labels, bool):
        return torch.full((n,), labels, dtype=torch.long, device=device)
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,) or labels.is_floating_point():
        raise ConfigError(f"{name} must be an int or an integer tensor of shape ({n},), got {labels!r:.80}")
    return labels.detach().to(device=device, dtype=torch.long)


def check_attack_inputs(model, x, y, target=None):
    """(x, y, target) of an attack call, validated: a callable model, images in [0, 1], a label (and target) per image."""
    check_model(model)
    x = check_images(x)
    y = check_labels(y, len(x), x.device)
    if target is not None:
        target = check_labels(target, len(x), x.device, name="target")
    return x, y, target


def check_positive(name, value, *, allow_zero=False, integer=False):
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        what = "integer" if integer else "number"
        sign = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite {what} {sign}, got {value!r}")
    return value


def check_budget(eps, x):
    """eps, a number >= 0 or a tensor (N,) of one budget >= 0 per example of x (several budgets attacked in one batch),
    checked; a tensor comes back shaped (N, 1, ..., 1) so that it broadcasts against x."""
    if not isinstance(eps, torch.Tensor):
        return check_positive("eps", eps, allow_zero=True)
    if eps.shape != (len(x),) or not bool(torch.isfinite(eps).all()) or bool((eps < 0).any()):
        raise ConfigError(f"eps must be a number or a tensor of one finite budget >= 0 per example, shape ({len(x)},); "
                          f"got a tensor of shape {tuple(eps.shape)}")
    return per_example(eps.to(x), x)


def no_budget(eps):
    """Whether every budget (a number or a tensor from `check_budget`) is 0."""
    return bool((eps == 0).all()) if isinstance(eps, torch.Tensor) else eps == 0


def take(v, idx):
    """v[idx] for a per-example tensor (one budget or step size per image), v itself for a number."""
    return v[idx] if isinstance(v, torch.Tensor) else v


def stacked(x, k):
    """k copies of a batch, one after another (one per budget, or per run of a batched attack)."""
    return x.repeat(k, *([1] * (x.dim() - 1)))


def check_norm(norm):
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; valid norms: {', '.join(NORMS)}")
    return norm


def is_success(logits, y, target=None):
    """Misclassified (untargeted) or classified as the target (targeted), per example."""
    pred = logits.argmax(1)
    return pred != y if target is None else pred == target


def per_example(v, like):
    """Reshape a (N,) tensor so it broadcasts against a (N, ...) tensor."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def select(mask, a, b):
    """Per example, a where mask (N,) is True else b; exact, and on CPU several times faster than
    torch.where with a broadcast bool mask (lerp with weight 1 returns `a`, with weight 0 returns `b`)."""
    return torch.lerp(b, a, per_example(mask.to(a.dtype), a))


def l2_norm(v):
    return v.flatten(1).norm(dim=1)


def uniform(shape, like, generator=None):
    """U[0, 1) noise shaped `shape`, drawn from `generator` (on its device) and moved to like's device."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def normal(shape, like, generator=None):
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def sample_in_ball(x, eps, norm, generator=None):
    """A point drawn uniformly from the eps-ball around x (before clamping to [0, 1]); eps a number or (N, 1, ..., 1)."""
    if norm == "linf":
        return x + (2 * uniform(x.shape, x, generator) - 1) * eps
    direction = normal(x.shape, x, generator)
    direction = direction / per_example(l2_norm(direction).clamp_min(1e-12), x)
    # radius ~ eps * U^(1/d) makes the point uniform in the d-dimensional ball
    d = x[0].numel()
    radius = (eps.flatten() if isinstance(eps, torch.Tensor) else eps) * uniform((x.shape[0],), x, generator) ** (1.0 / d)
    return x + direction * per_example(radius, x)


def snap(x, levels):
    """The nearest of `levels` grey levels in [0, 1], per pixel, as round(x (levels - 1)) / (levels - 1): exactly what the
    data's images are, so snap leaves a snapped image unchanged bit for bit and the off-grid detector scores it 0."""
    return torch.round(x * (levels - 1)) / (levels - 1)


def grid_steps(eps, levels):
    """The linf budget eps in whole grey-level steps, rounded down (a number, or a tensor of one per image)."""
    steps = eps * (levels - 1) + 1e-6
    return torch.floor(steps) if isinstance(eps, torch.Tensor) else float(int(steps))


def into_grid_ball(x_adv, x, steps, levels):
    """x_adv rounded to the nearest grey level and clipped to `steps` whole grey levels (a number, or a tensor (N,)) around x
    and to [0, 1], computed in grey-level units so the result lies exactly on the grid. Clipping in pixel units
    (x - steps / (levels - 1)) misses the grid by a rounding error wherever 1 / (levels - 1) is not a power of two (256
    levels), and a detector that flags any distance from the grid (threshold 0) flags that."""
    k = levels - 1
    s = steps.to(x).view(-1, *([1] * (x.dim() - 1))) if isinstance(steps, torch.Tensor) else steps
    at = torch.round(x * k)
    return torch.minimum(torch.maximum(torch.round(x_adv * k), at - s), at + s).clamp(0, k) / k


def box(x, eps):
    """The per-pixel bounds of the intersection of the linf eps-ball with [0, 1]."""
    return (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)


def project(x_adv, x, eps, norm, bounds=None):
    """Project onto the eps-ball around x and clamp to [0, 1]; a point inside is returned unchanged."""
    if norm == "linf":
        lo, hi = bounds if bounds is not None else box(x, eps)
        return torch.clamp(x_adv, lo, hi)
    delta = x_adv - x
    dist = per_example(l2_norm(delta), x)
    # shrink by a hair more than needed so a projected point stays inside after float rounding
    scale = (eps / dist.clamp_min(1e-12)) * (1 - 1e-6)
    x_adv = torch.where(dist > eps, x + delta * scale, x_adv)
    return x_adv.clamp(0, 1)


def unit(v):
    """Each example's vector scaled to L2 norm 1 (zero stays zero)."""
    return v / per_example(l2_norm(v).clamp_min(1e-12), v)


def ascent_step(x_adv, grad, step_size, norm):
    """One steepest-ascent step: sign of the gradient (linf) or the unit gradient (l2).

    step_size is a number, or a tensor (N,) of one step size per example."""
    direction = grad.sign() if norm == "linf" else unit(grad)
    if isinstance(step_size, torch.Tensor):
        return x_adv + direction * per_example(step_size, x_adv)
    return torch.add(x_adv, direction, alpha=step_size)


def lexi_better(tier, score, best_tier, best_score):
    """Whether (tier, score) beats (best_tier, best_score) lexicographically, per example."""
    return torch.where(tier == best_tier, score > best_score, tier > best_tier)


class BestIterate:
    """Per example the best point seen so far, ranked by (tier, value) lexicographically, both higher = better.

    Starts with tier -1, so the first point seen becomes the best everywhere."""

    def __init__(self, like):
        n = len(like)
        self.x = like.detach()
        self.tier = torch.full((n,), -1, dtype=torch.long, device=like.device)
        self.value = torch.full((n,), -torch.inf, dtype=like.dtype, device=like.device)

    def update(self, x_adv, tier, value):
        """Take x_adv where it ranks strictly higher; returns that mask (N,)."""
        better = lexi_better(tier, value, self.tier, self.value)
        self.x = select(better, x_adv.detach(), self.x)
        self.tier = torch.where(better, tier, self.tier)
        self.value = torch.where(better, value.detach(), self.value)
        return better


def evasion_rank(log_margin, score=None, threshold=None):
    """(tier, value) of each example for an attack that must misclassify and stay unflagged.

    tier 2: misclassified (log_margin > 0) and unflagged (score <= threshold); 1: misclassified; 0: neither.
    value (higher = better): -score where misclassified (the lower the score, the safer), else the margin.
    Without a score, tier is 1 where misclassified and value is the margin."""
    mis = log_margin.detach() > 0
    if score is None:
        return mis.long(), log_margin.detach()
    score = score.detach()
    tier = mis.long() + (mis & (score <= threshold)).long()
    return tier, torch.where(mis, -score, log_margin.detach())


def module_of(fn):
    """The nn.Module behind a callable (itself or a bound method's owner), else None."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None
