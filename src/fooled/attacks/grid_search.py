"""Exhaustive search of a fine grid over the eps-ball: the known answer for any model in a few dimensions.

In two dimensions a grid of the ball decides, up to its spacing, whether a misclassified point exists, and whether a
misclassified AND unflagged one does, for a model however nonlinear. `grid_search` returns, per point, the distance of
the nearest such grid point (inf where the ball holds none), so one search answers every budget up to `eps`:
a point is misclassifiable within e <= eps iff its distance is <= e. The grid is the cube [-eps, eps]^D sampled with
`points_per_side` values per axis (corners included); for L2 each offset longer than eps is scaled back onto the sphere
(so the rim is sampled too); every candidate is then clamped to [0, 1], which moves no coordinate away from x and so
keeps it in the ball. An attack we trust must find an adversarial wherever the grid does (minus its spacing).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from fooled.attacks._common import (
    check_attack_inputs,
    check_norm,
    check_positive,
    frozen,
    module_of,
)
from fooled.attacks.aware import check_score, scores_of
from fooled.errors import ConfigError

MAX_GRID = 200_000  # candidates per point: the search is meant for two or three dimensions
CHUNK = 65_536  # candidates per forward pass


class GridAnswer(NamedTuple):
    misclassified: torch.Tensor  # (N,) distance of the nearest misclassified grid point in the ball, inf if none
    evading: torch.Tensor | None  # (N,) distance of the nearest misclassified and unflagged one (None without a score)
    spacing: float  # distance between neighbouring grid values on one axis
    resolution: float  # the answer's tolerance in the norm: spacing (linf) or spacing * sqrt(D) (l2), twice the farthest
    # any point of the ball lies from the grid, so a distance on the grid exceeds the true one by less than this


def ball_offsets(dim: int, *, eps: float, norm: str, points_per_side: int) -> torch.Tensor:
    """(M, dim) offsets that sample the eps-ball of `norm` on an even grid, corners (linf) or rim (l2) included."""
    check_norm(norm)
    check_positive("eps", eps)
    check_positive("points_per_side", points_per_side, integer=True)
    if points_per_side < 2 or points_per_side**dim > MAX_GRID:
        raise ConfigError(f"points_per_side must be >= 2 with points_per_side ** {dim} <= {MAX_GRID}, got {points_per_side}")
    steps = torch.arange(points_per_side, dtype=torch.float64) - (points_per_side - 1) / 2  # exactly 0 in the middle
    axis = (steps * (2 * eps / (points_per_side - 1))).clamp(-eps, eps)
    offsets = torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)
    if norm == "l2":
        length = offsets.norm(dim=1, keepdim=True)
        offsets = offsets * torch.clamp(eps / length.clamp_min(1e-300), max=1.0)
    return offsets


def _distance(delta: torch.Tensor, norm: str) -> torch.Tensor:
    return delta.abs().amax(-1) if norm == "linf" else delta.norm(dim=-1)


@torch.no_grad()
def grid_search(model, x, y, *, eps, norm="linf", score=None, threshold=None, points_per_side=41):
    """Per point of x, the distance to the nearest grid point of its eps-ball (in [0, 1]) that `model` misclassifies
    and, given `score` (x -> (N,), flagged when > threshold), the nearest that is also unflagged. See the module doc."""
    x, y, _ = check_attack_inputs(model, x, y)
    if score is not None:
        check_score(score, threshold)
    dim = x[0].numel()
    offsets = ball_offsets(dim, eps=eps, norm=norm, points_per_side=points_per_side)
    near_wrong = torch.full((len(x),), torch.inf, dtype=torch.float64)
    near_evading = torch.full((len(x),), torch.inf, dtype=torch.float64) if score is not None else None
    with frozen(model, module_of(score)):
        for i in range(len(x)):
            cand = (x[i].flatten().double() + offsets).clamp(0, 1)
            dist = _distance(cand - x[i].flatten().double(), norm)
            images = cand.to(x.dtype).reshape(-1, *x.shape[1:])
            wrong = torch.cat([model(b).argmax(1) != y[i] for b in images.split(CHUNK)]).cpu()
            if not wrong.any():
                continue
            near_wrong[i] = dist[wrong].min()
            if score is not None:
                s = torch.cat([scores_of(score, b) for b in images[wrong].split(CHUNK)]).cpu()
                unflagged = s <= threshold
                if unflagged.any():
                    near_evading[i] = dist[wrong][unflagged].min()
    spacing = 2 * eps / (points_per_side - 1)
    return GridAnswer(near_wrong, near_evading, spacing, spacing * (1.0 if norm == "linf" else dim**0.5))


def found_within(distance: torch.Tensor, eps: float) -> torch.Tensor:
    """(N,) bool: the grid holds a point within eps (a small float tolerance for points on the ball's edge)."""
    return distance <= eps * (1 + 1e-9) + 1e-12
