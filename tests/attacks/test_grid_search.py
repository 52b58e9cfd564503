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


@pytest.fixture(scope="module")
def toy_mlp():
    """An MLP trained on the 2-D toy world in about a second, and correctly classified test points."""
    from fooled.config import TrainConfig
    from fooled.models.mlp import MLPClassifier, MLPConfig
    from fooled.study import toy_world as world
    from fooled.train import fit

    splits = world.splits(world.ToySizes(600, 200, 200), seed=0)
    torch.manual_seed(0)
    model = MLPClassifier(world.SHAPE, world.NUM_CLASSES, MLPConfig(hidden=32))
    fit(model, splits.train, splits.val, TrainConfig(epochs=10, batch_size=100, lr=1e-2, patience=5), seed=0)
    with torch.no_grad():
        right = model(splits.test.x).argmax(1) == splits.test.y
    return model, splits.test.x[right][:30], splits.test.y[right][:30], world


def true_density_score(world):
    """-log p_data(x), the mixture's own density in torch: a nonlinear detector whose every value is known."""
    centres = torch.tensor([b[1] for b in world.BLOBS])
    stds = torch.tensor([b[2] for b in world.BLOBS])

    def score(x):
        z = (x.flatten(1)[:, None, :] - centres) / stds
        log_comp = -0.5 * z.pow(2).sum(2) - torch.log(2 * math.pi * stds.prod(1))
        return -(torch.logsumexp(log_comp, 1) - math.log(len(world.BLOBS)))

    return score


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_attacks_reach_the_exact_answer_on_a_trained_nonlinear_model(toy_mlp, norm):
    """The nonlinear known-answer case beside the linear-Gaussian one: multitargeted PGD misclassifies every point the
    grid can (within its resolution), and the detector-aware attack evades the true density's detector wherever the
    grid can, but for at most one point; neither finds what the grid rules out."""
    from fooled.attacks import multitarget_pgd, strongest_aware_attack

    model, x, y, world = toy_mlp
    score = true_density_score(world)
    threshold = float(score(world.sample(500, torch.Generator().manual_seed(5))[0]).quantile(0.99))
    eps = 0.2
    answer = grid_search(model, x, y, eps=eps, norm=norm, score=score, threshold=threshold, points_per_side=61)
    g = torch.Generator().manual_seed(0)
    x_pgd = multitarget_pgd(model, x, y, eps=eps, norm=norm, targets=None, steps=30, restarts=2, generator=g).x_adv
    x_aware = strongest_aware_attack(model, x, y, score=score, threshold=threshold, eps=eps, norm=norm, steps=30,
                                     restarts=2, starts=[x_pgd], generator=g)
    with torch.no_grad():
        wrong = model(x_pgd).argmax(1) != y
        evading = (model(x_aware).argmax(1) != y) & (score(x_aware) <= threshold)
    res = answer.resolution
    assert found_within(answer.misclassified, eps).any() and found_within(answer.evading, eps).any()  # not a vacuous case
    assert not (found_within(answer.misclassified, eps - res) & ~wrong).any()
    assert not (wrong & ~found_within(answer.misclassified, eps + res)).any()
    assert int((found_within(answer.evading, eps - res) & ~evading).sum()) <= 1
