"""Exact linf robustness of a linear classifier: the ground truth an attack on a linear model must reach.

For logits z = W x + b, an image x of class y can be misclassified inside the linf eps-ball intersected with
[0, 1]^D iff for some class j != y the largest value of z_j - z_y over that box is >= 0. The box is a product
of intervals and z_j - z_y is linear, so the largest value is reached at the corner that takes, pixel by pixel,
the upper bound where w_j - w_y > 0 and the lower bound elsewhere.

`linear_gaussian_l2_evadable` is the detector-aware counterpart under an L2 budget: a linear classifier and a
Gaussian density detector, where evading both is a small convex problem per image and wrong class.
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


def linear_gaussian_l2_evadable(weight, bias, mean, cov, x, y, *, eps, tau, starts=None):
    """Per image, whether some x' with ||x' - x||_2 <= eps, x' in [0, 1]^D is misclassified by the logits
    x'.flatten() @ weight.T + bias AND unflagged by the Gaussian detector -log N(x'; mean, cov) <= tau.

    Unflagged means (x' - mean)^T cov^-1 (x' - mean) <= r^2 with r^2 = 2 tau - D log(2 pi) - log det cov, so for
    each wrong class j the question is a convex problem: the least Mahalanobis distance over the ball, the box and
    the half-space z_j(x') >= z_y(x') (a tie counts as misclassified, as in `linear_linf_robust`). It is solved
    with SLSQP (scipy) in float64, with exact gradients, from x and from x moved eps toward the half-space (clipped to
    the box), keeping the least feasible result; evadable iff it is <= r^2 for some j. SLSQP can stop short on a badly
    conditioned covariance, so `starts` (N, ...), e.g. an attack's points, are further candidates and starts: with them
    the answer is never below what those points show. Classes whose half-space lies beyond the ball, or whose least
    distance to the mean without ball and box (closed form) is flagged, need no solve. Meant for small D and N.
    """
    import numpy as np
    from scipy.optimize import minimize

    x = check_images(x)
    y = check_labels(y, len(x), x.device)
    check_positive("eps", eps, allow_zero=True)
    d = x[0].numel()
    weight, bias, mean, cov = (torch.as_tensor(t).detach().double().cpu().numpy() for t in (weight, bias, mean, cov))
    if weight.shape != (weight.shape[0], d) or bias.shape != (weight.shape[0],) or mean.shape != (d,) or cov.shape != (d, d):
        raise ConfigError(f"weight must be (K, {d}), bias (K,), mean ({d},) and cov ({d}, {d}); got {weight.shape}, "
                          f"{bias.shape}, {mean.shape} and {cov.shape}")
    precision = np.linalg.inv(cov)
    r2 = 2 * tau - d * np.log(2 * np.pi) - np.linalg.slogdet(cov)[1]
    flat, labels = x.flatten(1).double().cpu().numpy(), y.cpu().numpy()
    extra = [None] * len(flat) if starts is None else torch.as_tensor(starts).flatten(1).double().cpu().numpy()
    out = []
    for xi, yi, given in zip(flat, labels, extra):
        def maha(u):
            return (u - mean) @ precision @ (u - mean)

        def maha_grad(u):
            return 2 * precision @ (u - mean)

        least = np.inf
        for j in np.argsort(-(weight @ xi + bias)):  # the most promising wrong class first: one evasion settles the image
            if j == yi or least <= r2:
                continue
            a, c = weight[j] - weight[yi], bias[j] - bias[yi]
            if a @ xi + c + eps * np.linalg.norm(a) < 0:  # the half-space lies beyond the ball: no solve needed
                continue
            if a @ mean + c < 0 and (a @ mean + c) ** 2 / (a @ cov @ a) > r2:  # even the half-space's least distance to the
                continue  # mean, without the ball and the box (closed form), is flagged
            constraints = [
                {"type": "ineq", "fun": lambda u, a=a, c=c: a @ u + c, "jac": lambda u, a=a: a},
                {"type": "ineq", "fun": lambda u: eps**2 - (u - xi) @ (u - xi), "jac": lambda u: -2 * (u - xi)},
            ]
            toward = np.clip(xi + eps * a / max(np.linalg.norm(a), 1e-12), 0, 1)
            for u0 in [xi, toward] + ([] if given is None else [given]):
                res = minimize(maha, u0, jac=maha_grad, bounds=[(0, 1)] * d, constraints=constraints, method="SLSQP",
                               options={"ftol": 1e-10, "maxiter": 300})
                for u in (np.clip(res.x, 0, 1), u0):  # a start that is itself feasible is a candidate too
                    if a @ u + c >= -1e-9 and (u - xi) @ (u - xi) <= eps**2 + 1e-9:
                        least = min(least, maha(u))
                if least <= r2:
                    break
        out.append(least <= r2)
    return torch.tensor(out, dtype=torch.bool, device=x.device)
