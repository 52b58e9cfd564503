"""grid_search, the exhaustive known answer in two dimensions, against answers worked out by hand and against
linear_linf_robust (exact for a linear model: its worst point is a corner of the box, and the grid holds every corner)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.attacks import linear_linf_robust
from fooled.attacks.grid_search import ball_offsets, found_within, grid_search
from fooled.errors import ConfigError


class HalfPlane(torch.nn.Module):
    """Class 1 iff the first coordinate exceeds 0.5: logits (0, 10 (x1 - 0.5)) on points (N, 2, 1, 1)."""

    def forward(self, x):
        x1 = x[:, 0, 0, 0]
        return torch.stack([torch.zeros_like(x1), 10 * (x1 - 0.5)], 1)


def points(*xy):
    return torch.tensor(xy, dtype=torch.float32).view(-1, 2, 1, 1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_distance_to_a_half_plane_is_found_by_hand(norm):
    # (0.4, 0.5) of class 0 is 0.1 from the boundary x1 = 0.5 in either norm; (0.2, 0.5) is 0.3 away, beyond eps 0.2
    answer = grid_search(HalfPlane(), points((0.4, 0.5), (0.2, 0.5)), torch.tensor([0, 0]), eps=0.2, norm=norm,
                         points_per_side=81)
    assert answer.spacing == pytest.approx(0.005)
    assert answer.misclassified[0] == pytest.approx(0.1, abs=answer.spacing)
    assert math.isinf(answer.misclassified[1]) and answer.evading is None
    assert found_within(answer.misclassified, 0.11).tolist() == [True, False]
    assert found_within(answer.misclassified, 0.09).tolist() == [False, False]


def test_evading_needs_the_misclassified_side_and_a_low_score():
    # the detector flags points farther than 0.15 from (0.6, 0.8): an evading point is in that disc and has x1 > 0.5; the
    # disc's nearest point to (0.4, 0.5) has x1 ~ 0.517, so the answer is its distance, sqrt(0.2^2 + 0.3^2) - 0.15 (~0.211)
    centre = torch.tensor([0.6, 0.8])

    def score(x):
        return (x.flatten(1) - centre).norm(dim=1)

    answer = grid_search(HalfPlane(), points((0.4, 0.5)), torch.tensor([0]), eps=0.25, norm="l2", score=score,
                         threshold=0.15, points_per_side=101)
    assert answer.misclassified[0] == pytest.approx(0.1, abs=answer.spacing)
    assert answer.resolution == pytest.approx(0.005 * math.sqrt(2))
    assert answer.evading[0] == pytest.approx(math.hypot(0.2, 0.3) - 0.15, abs=answer.resolution)
    none = grid_search(HalfPlane(), points((0.4, 0.5)), torch.tensor([0]), eps=0.19, norm="l2", score=score, threshold=0.15)
    assert math.isinf(none.evading[0]) and none.misclassified[0] <= 0.19


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), classes=st.integers(2, 4), eps=st.floats(0.01, 0.5))
def test_linf_search_is_exact_on_linear_models(seed, classes, eps):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 2, 1, 1, generator=g, dtype=torch.float64)
    weight = torch.randn(classes, 2, generator=g, dtype=torch.float64)
    bias = torch.randn(classes, generator=g, dtype=torch.float64)
    y = torch.randint(classes, (6,), generator=g)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, classes).double())
    with torch.no_grad():
        model[1].weight.copy_(weight)
        model[1].bias.copy_(bias)
    answer = grid_search(model, x, y, eps=eps, norm="linf", points_per_side=5)
    assert torch.equal(found_within(answer.misclassified, eps), ~linear_linf_robust(weight, bias, x, y, eps))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_offsets_stay_in_the_ball_and_reach_its_edge(norm):
    offsets = ball_offsets(2, eps=0.1, norm=norm, points_per_side=21)
    length = offsets.abs().amax(1) if norm == "linf" else offsets.norm(dim=1)
    assert length.max() == pytest.approx(0.1) and (length <= 0.1 + 1e-12).all()
    assert (offsets == 0).all(1).any()  # the point itself is a candidate


def test_points_near_the_box_edge_stay_in_the_box():
    answer = grid_search(HalfPlane(), points((0.98, 0.01)), torch.tensor([1]), eps=0.6, norm="linf")
    assert answer.misclassified[0] == pytest.approx(0.48, abs=answer.spacing)


def test_a_grid_too_large_is_refused_by_name():
    with pytest.raises(ConfigError, match="points_per_side"):
        ball_offsets(8, eps=0.1, norm="linf", points_per_side=41)
