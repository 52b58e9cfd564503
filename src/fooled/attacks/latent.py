"""Latent-space attack on flow classifiers: walk each image's latent toward another class's mean, decode, project.

A flow (FlowClassifier, GlowClassifier, HybridFlow) maps x to a latent z with `encode(x) -> (z, log_det)` and
back with `decode(z)`; decode(encode(x)) = x. Moving z toward the mean latent of class j changes x along the
directions the flow considers natural for class j, which a gradient attack in pixel space does not prefer. The
decoded image is projected into the eps-ball and [0, 1], so the budget is the same as for every other attack.
"""

import torch

from fooled.attacks._common import BestIterate, box, check_attack_inputs, check_norm, check_positive, evasion_rank, frozen, module_of, project
from fooled.attacks.aware import check_score, scores_of
from fooled.attacks.losses import log_margin
from fooled.errors import ConfigError


def _check_flow(model):
    if not (callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))):
        raise ConfigError(f"the latent attack needs a flow with encode(x) -> (z, log_det) and decode(z) -> x, "
                          f"such as FlowClassifier, GlowClassifier or HybridFlow; {type(model).__name__} has neither")


@torch.no_grad()
def latent_class_means(model, x, y, num_classes):
    """(num_classes, D): the mean latent of each class's images, for flows without class means in their base
    (HybridFlow); a class with no image gets the overall mean."""
    _check_flow(model)
    x, y, _ = check_attack_inputs(model, x, y)
    with frozen(model):
        z = model.encode(x)[0]
    means = z.mean(0).repeat(num_classes, 1)
    for k in y.unique():
        means[k] = z[y == k].mean(0)
    return means


def latent_attack(model, x, y, *, eps, norm="linf", weights=(0.25, 0.5, 0.75, 1.0), class_means=None, score=None,
                  threshold=None):
    """Per image the best of decode((1 - w) z + w mu_j), projected into the eps-ball, over weights w and classes j != y.

    z = encode(x); mu_j = class_means[j], by default the flow's own class means (`model.base.means`, FlowClassifier
    and GlowClassifier); HybridFlow has one base for all classes, so pass `latent_class_means(model, x_train, y_train,
    K)`. Ranked as the detector-aware attacks rank (misclassified and unflagged, then misclassified, then the
    highest log-odds margin); without `score` only misclassification and the margin count. Deterministic.
    """
    x, y, _ = check_attack_inputs(model, x, y)
    _check_flow(model)
    check_positive("eps", eps, allow_zero=True)
    check_norm(norm)
    if score is not None:
        check_score(score, threshold)
    weights = tuple(weights)
    if not weights or not all(isinstance(w, (int, float)) and 0 < w <= 1 for w in weights):
        raise ConfigError(f"weights must be interpolation weights in (0, 1], got {weights!r}")
    if class_means is None:
        class_means = getattr(getattr(model, "base", None), "means", None)
        if class_means is None:
            raise ConfigError(f"{type(model).__name__} has no class means in its latent (base.means); pass class_means= "
                              f"(K, D), e.g. latent_class_means(model, x_train, y_train, K)")
    if eps == 0:
        return x.clone()
    bounds = box(x, eps) if norm == "linf" else None
    best = BestIterate(x)
    with frozen(model, module_of(score)), torch.no_grad():
        z = model.encode(x)[0]
        if class_means.dim() != 2 or class_means.shape[1] != z.shape[1]:
            raise ConfigError(f"class_means must be (K, {z.shape[1]}), got {tuple(class_means.shape)}")
        class_means = class_means.to(z)

        def consider(x_adv):
            s = None if score is None else scores_of(score, x_adv)
            best.update(x_adv, *evasion_rank(log_margin(model(x_adv), y), s, threshold))

        consider(x)
        for j in range(len(class_means)):
            for w in weights:
                x_adv = project(model.decode(torch.lerp(z, class_means[j].expand_as(z), w)).view_as(x), x, eps, norm, bounds)
                consider(x_adv)  # toward y's own mean it only ranks, never harms
    return project(best.x, x, eps, norm, bounds).detach()
