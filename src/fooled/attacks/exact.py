"""Exact linf robustness of a linear classifier: the ground truth an attack on a linear model must reach.

For logits z = W x + b, an image x of class y can be misclassified inside the linf eps-ball intersected with
[0, 1]^D iff for some class j != y the largest value of z_j - z_y over that box is >= 0. The box is a product
of intervals and z_j - z_y is linear, so the largest value is reached at the corner that takes, pixel by pixel,
the upper bound where w_j - w_y > 0 and the lower bound elsewhere.
"""

import torch

from fooled.attacks._common import box, check_images, check_labels, check_positive
from fooled.errors import ConfigError


def linear_linf_robust(weight, bias, x, y, eps):
    """Per image, whether every point of its linf eps-ball in [0, 1] keeps label y under logits x.flatten(1) @ weight.T + bias.

    A tie (z_j = z_y for some j) counts as not robust, as the attacks' success does (argmax would be ambiguous).
    """
    x = check_images(x)
    y = check_labels(y, len(x), x.device)
    check_positive("eps", eps, allow_zero=True)
    weight, bias = weight.detach(), bias.detach()
    if weight.dim() != 2 or weight.shape[1] != x[0].numel() or bias.shape != (weight.shape[0],):
        raise ConfigError(f"weight must be (K, {x[0].numel()}) and bias (K,), got {tuple(weight.shape)} and {tuple(bias.shape)}")
    lo, hi = (b.flatten(1) for b in box(x, eps))
    robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for j in range(weight.shape[0]):
        d = weight[j] - weight[y]  # (N, D): the gradient of z_j - z_y
        gap = (torch.where(d > 0, hi, lo) * d).sum(1) + bias[j] - bias[y]
        robust &= (gap < 0) | (y == j)
    return robust
