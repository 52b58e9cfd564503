"""Fooling images (Nguyen, Yosinski & Clune, 2015): unrecognisable inputs classified with high confidence.

Both functions grow `n` images of `shape` toward class `target` until the model's softmax
probability of the target reaches `confidence`, and return (images (n, *shape), confidence (n,)).
"""

import math

import torch
import torch.nn.functional as F

from fooled.attacks._common import (
    check_labels,
    check_model,
    check_positive,
    frozen,
    normal,
    per_example,
    uniform,
)
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
    if init not in INITS:
        raise ConfigError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
    if init == "uniform":
        images = uniform((n, *shape), like, generator)
    else:
        images = torch.full((n, *shape), 0.5, device=like.device)

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
    check_positive("generations", generations, integer=True)
    check_positive("population", population, integer=True)
    if population < 2:
        raise ConfigError(f"population must be >= 2 for selection to act, got {population}")
    if not (0 < mutation_rate <= 1):
        raise ConfigError(f"mutation_rate must be in (0, 1], got {mutation_rate!r}")
    check_positive("mutation_scale", mutation_scale)
    if not (0 < elite_fraction < 1):
        raise ConfigError(f"elite_fraction must be in (0, 1), got {elite_fraction!r}")
    n_elite = min(population - 1, max(1, round(elite_fraction * population)))
    n_child = population - n_elite

    def fitness(images):  # (n, k, *shape) -> (n, k) log p(target | image)
        k = images.shape[1]
        flat = images.reshape(n * k, *shape)
        return _target_log_prob(model, flat, target.repeat_interleave(k)).view(n, k)

    with frozen(model), torch.no_grad():
        pop = uniform((n, population, *shape), like, generator)
        fit = fitness(pop)
        for _ in range(generations):
            fit, order = fit.sort(dim=1, descending=True)
            pop = pop[torch.arange(n, device=pop.device)[:, None], order]
            if (fit[:, 0] >= math.log(confidence)).all():
                break
            elites = pop[:, :n_elite]
            parent = (uniform((n, n_child), like, generator) * n_elite).long().clamp(max=n_elite - 1)
            children = elites[torch.arange(n, device=pop.device)[:, None], parent]
            mutate = uniform(children.shape, like, generator) < mutation_rate
            noise = normal(children.shape, like, generator) * mutation_scale
            children = (children + noise * mutate).clamp(0, 1)
            pop = torch.cat([elites, children], dim=1)
            fit = torch.cat([fit[:, :n_elite], fitness(children)], dim=1)
        best = fit.argmax(dim=1)
        images = pop[torch.arange(n, device=pop.device), best]
        conf = fit[torch.arange(n, device=pop.device), best].exp()
    return images, conf
