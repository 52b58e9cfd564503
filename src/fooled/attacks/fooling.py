"""Fooling images (Nguyen, Yosinski & Clune, 2015): unrecognisable inputs classified with high confidence.

`fooling_gradient` and `fooling_evolution` grow `n` images of `shape` toward class `target` until the model's
softmax probability of the target reaches `confidence`, and return (images (n, *shape), confidence (n,)).
Their density-aware variants `fooling_gradient_unflagged` and `fooling_evolution_unflagged` must also stay
unflagged by a detector (score <= threshold), and return (images, confidence, score) so that success,
confident AND unflagged, is measured on the images returned.
"""

import math

import torch
import torch.nn.functional as F

from fooled.attacks._common import (
    BestIterate,
    check_labels,
    check_model,
    check_positive,
    frozen,
    module_of,
    normal,
    per_example,
    uniform,
    unit,
)
from fooled.attacks.aware import check_score, scores_of
from fooled.errors import ConfigError

INITS = ("uniform", "gray")


def _setup(model, target, n, shape, confidence, generator):
    check_model(model)
    check_positive("n", n, integer=True)
    shape = tuple(shape)
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ConfigError(f"shape must be a tuple of positive ints such as (1, 8, 8), got {shape!r}")
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ConfigError(f"confidence must be a probability in (0, 1), got {confidence!r}")
    param = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    device = param.device if param is not None else (generator.device if generator is not None else "cpu")
    like = torch.empty(0, device=device)
    return check_labels(target, n, device, name="target"), shape, like


def _target_log_prob(model, images, target):
    return F.log_softmax(model(images), dim=1).gather(1, target[:, None]).squeeze(1)


def _initial_images(init, n, shape, like, generator):
    if init not in INITS:
        raise ConfigError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
    if init == "uniform":
        return uniform((n, *shape), like, generator)
    return torch.full((n, *shape), 0.5, device=like.device)


def fooling_gradient(
    model,
    target,
    n,
    *,
    shape,
    steps=200,
    step_size=0.01,
    confidence=0.99,
    generator=None,
    init="uniform",
):
    """Gradient ascent (signed steps) on log p(target | x) from noise; each image stops at `confidence`."""
    target, shape, like = _setup(model, target, n, shape, confidence, generator)
    check_positive("steps", steps, integer=True)
    check_positive("step_size", step_size)
    images = _initial_images(init, n, shape, like, generator)
    with frozen(model), torch.enable_grad():
        for _ in range(steps):
            images.requires_grad_(True)
            log_p = _target_log_prob(model, images, target)
            active = log_p.detach() < math.log(confidence)
            if not active.any():
                break
            (grad,) = torch.autograd.grad(log_p.sum(), images)
            step = step_size * grad.sign() * per_example(active, images)
            images = (images.detach() + step).clamp(0, 1)
        images = images.detach()
        with torch.no_grad():
            conf = _target_log_prob(model, images, target).exp()
    return images, conf


def fooling_evolution(
    model,
    target,
    n,
    *,
    shape,
    generations=300,
    population=32,
    mutation_rate=0.1,
    mutation_scale=0.25,
    elite_fraction=0.25,
    confidence=0.99,
    generator=None,
):
    """Black-box elitist evolution (no gradients) of a population per image on p(target | x).

    Each generation keeps the top `elite_fraction` of every population and refills it with
    copies of random elites in which each pixel is, with probability `mutation_rate`, moved by
    Gaussian noise of std `mutation_scale` (then clamped to [0, 1]). Stops once every image
    reaches `confidence`. All populations are evaluated in one batched forward pass.
    """
    target, shape, like = _setup(model, target, n, shape, confidence, generator)
    _check_evolution(generations, population, mutation_rate, mutation_scale, elite_fraction)
    with frozen(model), torch.no_grad():
        images, log_p = _evolve(model, target, n, shape, like, rank=_confidence_rank(math.log(confidence)), top_tier=1,
                                generations=generations, population=population, mutation_rate=mutation_rate,
                                mutation_scale=mutation_scale, elite_fraction=elite_fraction, generator=generator)
    return images, log_p.exp()


def _check_evolution(generations, population, mutation_rate, mutation_scale, elite_fraction):
    check_positive("generations", generations, integer=True)
    check_positive("population", population, integer=True)
    if population < 2:
        raise ConfigError(f"population must be >= 2 for selection to act, got {population}")
    if not (0 < mutation_rate <= 1):
        raise ConfigError(f"mutation_rate must be in (0, 1], got {mutation_rate!r}")
    check_positive("mutation_scale", mutation_scale)
    if not (0 < elite_fraction < 1):
        raise ConfigError(f"elite_fraction must be in (0, 1), got {elite_fraction!r}")


def _confidence_rank(log_confidence):
    """rank(images, log p(target | images)) -> (tier, value): tier 1 where confident, value the log-probability."""
    return lambda images, log_p: ((log_p >= log_confidence).long(), log_p)


def _lexi_order(tier, value):
    """Per row, the indices that sort (tier, value) lexicographically, best first: by value, then stably by tier
    (where tier only grows with value, as in `fooling_evolution`, that is the plain sort by value)."""
    order = value.sort(dim=1, descending=True)[1]
    return order.gather(1, tier.gather(1, order).argsort(dim=1, descending=True, stable=True))


def _evolve(model, target, n, shape, like, *, rank, top_tier, generations, population, mutation_rate, mutation_scale,
            elite_fraction, generator):
    """Elitist evolution of n populations, ranked per image by rank(images, log p(target | images)) -> (tier, value)
    lexicographically (higher = fitter); stops once every population's best reaches `top_tier`.
    Returns each population's best image and its log p(target | image)."""
    n_elite = min(population - 1, max(1, round(elite_fraction * population)))
    n_child = population - n_elite
    rows = torch.arange(n, device=like.device)[:, None]

    def fitness(images):  # (n, k, *shape) -> (tier, value, log p) each (n, k)
        k = images.shape[1]
        flat = images.reshape(n * k, *shape)
        log_p = _target_log_prob(model, flat, target.repeat_interleave(k))
        return tuple(t.view(n, k) for t in (*rank(flat, log_p), log_p))

    pop = uniform((n, population, *shape), like, generator)
    fit = fitness(pop)
    for _ in range(generations):
        order = _lexi_order(fit[0], fit[1])
        pop, fit = pop[rows, order], tuple(f.gather(1, order) for f in fit)
        if (fit[0][:, 0] >= top_tier).all():
            break
        elites = pop[:, :n_elite]
        parent = (uniform((n, n_child), like, generator) * n_elite).long().clamp(max=n_elite - 1)
        children = elites[rows, parent]
        mutate = uniform(children.shape, like, generator) < mutation_rate
        noise = normal(children.shape, like, generator) * mutation_scale
        children = (children + noise * mutate).clamp(0, 1)
        pop = torch.cat([elites, children], dim=1)
        fit = tuple(torch.cat([f[:, :n_elite], c], dim=1) for f, c in zip(fit, fitness(children)))
    top = fit[1].masked_fill(fit[0] < fit[0].amax(1, keepdim=True), -torch.inf).argmax(dim=1, keepdim=True)
    return pop[rows.squeeze(1), top.squeeze(1)], fit[2].gather(1, top).squeeze(1)


def _unflagged_rank(log_p, s, threshold, log_confidence):
    """(tier, value) per image: tier 2 confident and unflagged, 1 confident, 0 neither; value -score where
    confident (the lower the score the safer), else the log-probability of the target."""
    confident = log_p >= log_confidence
    return confident.long() + (confident & (s <= threshold)).long(), torch.where(confident, -s, log_p)


def fooling_gradient_unflagged(model, target, n, *, shape, score, threshold, steps=300, step_size=0.01,
                               confidence=0.99, generator=None, init="uniform"):
    """`fooling_gradient` that must also stay unflagged: signed steps along the unit gradient of log p(target | x)
    while not confident plus minus the unit gradient of score(x) while flagged (score > threshold); per image the
    best iterate (confident and unflagged first, lowest score). Returns (images, confidence, score), each (n, ...)."""
    target, shape, like = _setup(model, target, n, shape, confidence, generator)
    check_score(score, threshold)
    check_positive("steps", steps, integer=True)
    check_positive("step_size", step_size)
    images = _initial_images(init, n, shape, like, generator)
    best = BestIterate(images)
    with frozen(model, module_of(score)), torch.enable_grad():
        for i in range(steps + 1):
            images = images.detach().requires_grad_(i < steps)
            log_p = _target_log_prob(model, images, target)
            s = scores_of(score, images)
            tier, value = _unflagged_rank(log_p.detach(), s.detach(), threshold, math.log(confidence))
            best.update(images, tier, value)
            if i == steps or (best.tier == 2).all():
                break
            (g_p,) = torch.autograd.grad(log_p.sum(), images, retain_graph=True)
            (g_s,) = torch.autograd.grad(s.sum(), images)
            direction = unit(g_p) * per_example(tier == 0, g_p) - unit(g_s) * per_example(s.detach() > threshold, g_s)
            active = per_example(best.tier < 2, images)  # an image stops at its first success, as fooling_gradient's
            images = (images.detach() + step_size * direction.sign() * active).clamp(0, 1)
    return _report(model, best.x, target, score)


def fooling_evolution_unflagged(model, target, n, *, shape, score, threshold, generations=300, population=32,
                                mutation_rate=0.1, mutation_scale=0.25, elite_fraction=0.25, confidence=0.99,
                                generator=None):
    """`fooling_evolution` whose fitness ranks confident-and-unflagged first (lowest score), then confident (lowest
    score), then the highest p(target | x); black-box in the model and the score. Returns (images, confidence, score)."""
    target, shape, like = _setup(model, target, n, shape, confidence, generator)
    check_score(score, threshold)
    _check_evolution(generations, population, mutation_rate, mutation_scale, elite_fraction)

    def rank(images, log_p):
        return _unflagged_rank(log_p, scores_of(score, images), threshold, math.log(confidence))

    with frozen(model, module_of(score)), torch.no_grad():
        images, _ = _evolve(model, target, n, shape, like, rank=rank, top_tier=2, generations=generations, population=population,
                            mutation_rate=mutation_rate, mutation_scale=mutation_scale, elite_fraction=elite_fraction,
                            generator=generator)
    return _report(model, images, target, score)


@torch.no_grad()
def _report(model, images, target, score):
    """(images, p(target | images), score(images)), recomputed on the images returned."""
    with frozen(model, module_of(score)):
        images = images.detach()
        return images, _target_log_prob(model, images, target).exp(), score(images).detach()
