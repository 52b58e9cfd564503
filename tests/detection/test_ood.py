import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.data import dataset_info
from fooled.errors import ConfigError
from fooled.models.flow import bpd_from_log_prob
from fake_data import write_fake_flat
from fooled.detection.ood import (OOD_SETS, PAPER_REFERENCE, max_likelihood_images, ood_set_names, ood_sets, ood_summary,
                                  quantise, skipped_sets)
from fooled.detection.ood_digits import DIGITS_SETS, dilate, erode, shift

torch.set_num_threads(1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def fake_test_x(info, n=7, seed=0):
    return quantise(torch.rand((n, *info.shape), generator=gen(seed)), info.levels)


def fake_test_y(n=7):
    return torch.arange(n) % 3


def on_grid(x, levels):
    k = x * (levels - 1)
    return torch.allclose(k, k.round(), atol=1e-4)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(st.sampled_from(["digits", "mnist", "fashion-mnist", "cifar10"]), st.integers(1, 9), st.integers(0, 2**31))
def test_every_set_has_the_shape_range_and_grid_of_the_data(name, n, seed):
    info = dataset_info(name)
    sets = ood_sets(fake_test_x(info), info, n, gen(seed), test_y=fake_test_y())
    assert tuple(sets) == ood_set_names(info) and tuple(sets)[:5] == OOD_SETS
    for x in sets.values():
        assert x.shape == (n, *info.shape) and x.dtype == torch.float32
        assert x.min() >= 0 and x.max() <= 1
        assert on_grid(x, info.levels)


def sets_of(digits, n, seed=0, **kwargs):
    return ood_sets(digits.test.x, digits.info, n, gen(seed), test_y=digits.test.y, **kwargs)


def test_sets_are_deterministic_given_the_generator(digits):
    a, b, c = sets_of(digits, 20, 3), sets_of(digits, 20, 3), sets_of(digits, 20, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for k in ("natural patches", "uniform noise", "constant", "shifted 1 px", "interpolated"):
        assert not torch.equal(a[k], c[k])


def neighbour_difference(x):
    """Mean absolute difference of horizontally adjacent pixels: small for smooth images."""
    return (x[..., 1:] - x[..., :-1]).abs().mean().item()


def test_natural_patches_vary_and_are_smoother_than_noise(digits):
    sets = sets_of(digits, 200)
    patches, noise = sets["natural patches"], sets["uniform noise"]
    assert len(torch.unique(patches.flatten(1), dim=0)) > 190  # a few flat patches of sky may coincide
    assert (patches.flatten(1).std(1) > 0).float().mean() > 0.9  # almost none flat
    assert patches.mean(dim=(1, 2, 3)).std() > 0.1  # bright and dark patches
    assert neighbour_difference(patches) < 0.5 * neighbour_difference(noise)
    assert neighbour_difference(noise) == pytest.approx(1 / 3 * 18 / 17, rel=0.1)  # |U - U'| on 17 levels


def test_rgb_patches_have_colour():
    info = dataset_info("cifar10")
    patches = ood_sets(fake_test_x(info), info, 30, gen(0))["natural patches"]
    assert (patches[:, 0] - patches[:, 2]).abs().mean() > 0.02


def test_constant_images_are_one_grey_level_each(digits):
    const = sets_of(digits, 300)["constant"]
    flat = const.flatten(1)
    assert torch.equal(flat.amin(1), flat.amax(1))
    assert len(torch.unique(flat[:, 0])) == 17  # every level drawn


def test_inverted_and_blurred_come_from_the_test_images_in_order(digits):
    x = digits.test.x
    n = len(x) + 5  # wraps around
    sets = sets_of(digits, n)
    source = x[torch.arange(n) % len(x)]
    assert torch.allclose(sets["inverted"], 1 - source, atol=1e-6)
    blurred = sets["blurred"]
    assert neighbour_difference(blurred) < 0.7 * neighbour_difference(source)
    assert (blurred - source).abs().mean() > 0.02
    # blurring keeps the brightness up to edge effects and rounding to the grid
    assert blurred.mean(dim=(1, 2, 3)).sub(source.mean(dim=(1, 2, 3))).abs().max() < 0.08
    flat = torch.full((2, 1, 8, 8), 0.5)
    assert torch.equal(ood_sets(flat, digits.info, 2, gen(0), test_y=torch.arange(2))["blurred"], flat)


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_bad_n_is_refused(digits, n):
    with pytest.raises(ConfigError, match="n must"):
        sets_of(digits, n)


def test_test_images_of_the_wrong_shape_are_refused(digits):
    with pytest.raises(ConfigError, match=r"\(N, 1, 28, 28\)"):
        ood_sets(digits.test.x, dataset_info("mnist"), 3, gen(0))


def test_digits_need_their_test_labels(digits):
    with pytest.raises(ConfigError, match="test_y"):
        ood_sets(digits.test.x, digits.info, 3, gen(0))


# ---------------------------------------------------------------- near-data sets of the digits


def test_shift_moves_each_image_its_way_and_fills_with_background():
    x = torch.arange(1, 17, dtype=torch.float32).view(1, 1, 4, 4).repeat(4, 1, 1, 1)
    up, down, left, right = shift(x, torch.arange(4), 1)
    assert torch.equal(up[0, :3], x[0, 0, 1:]) and torch.equal(up[0, 3], torch.zeros(4))
    assert torch.equal(down[0, 1:], x[0, 0, :3]) and torch.equal(down[0, 0], torch.zeros(4))
    assert torch.equal(left[0, :, :3], x[0, 0, :, 1:]) and torch.equal(left[0, :, 3], torch.zeros(4))
    assert torch.equal(right[0, :, 1:], x[0, 0, :, :3]) and torch.equal(right[0, :, 0], torch.zeros(4))
    assert torch.equal(shift(x, torch.zeros(4, dtype=torch.long), 2)[0, 0, :2], x[0, 0, 2:])


def test_erosion_and_dilation_of_a_plus_sign():
    plus = torch.zeros(1, 1, 5, 5)
    plus[0, 0, 2, 1:4] = plus[0, 0, 1:4, 2] = 1
    assert erode(plus).sum() == 1 and erode(plus)[0, 0, 2, 2] == 1  # only the centre has all four neighbours
    assert torch.equal(dilate(plus)[0, 0, 2], torch.ones(5)) and dilate(plus).sum() == 13  # the cross of radius 2


def test_near_data_sets_stay_near_their_digits(digits):
    sets = sets_of(digits, 100)
    source = digits.test.x[:100]
    assert torch.equal(sets["blank"], torch.zeros_like(source))
    assert (sets["thinned"] <= source).all() and (sets["thickened"] >= source).all()
    assert sets["thinned"].mean() < 0.7 * source.mean() and sets["thickened"].mean() > 1.3 * source.mean()
    for k in (1, 2):  # ink moved, not made: at most what fell off the edge is lost
        moved = sets[f"shifted {k} px"]
        assert not torch.equal(moved, source) and (moved.sum((1, 2, 3)) <= source.sum((1, 2, 3)) + 1e-4).all()
    # each interpolation is half this digit and half a test digit of another class
    half = (sets["interpolated"] * 2 - source).clamp(0, 1)
    flat, test = half.flatten(1), digits.test.x.flatten(1)
    partner = torch.cdist(flat, test).argmin(1)
    assert (digits.test.y[partner] != digits.test.y[:100]).float().mean() > 0.95


def test_fashion_8x8_is_made_from_the_files_when_given_and_skipped_otherwise(digits, tmp_path):
    assert "Fashion-MNIST 8x8" not in sets_of(digits, 5)
    assert "ood.fashion_root" in skipped_sets(digits.info)["Fashion-MNIST 8x8"]
    write_fake_flat(tmp_path)
    sets = sets_of(digits, 12, fashion_root=tmp_path)
    assert tuple(sets) == OOD_SETS + DIGITS_SETS == ood_set_names(digits.info, tmp_path)
    assert skipped_sets(digits.info, tmp_path) == {}
    fashion = sets["Fashion-MNIST 8x8"]
    assert fashion.shape == (12, 1, 8, 8) and on_grid(fashion, 17) and fashion.min() >= 0 and fashion.max() <= 1
    assert fashion.std() > 0.05  # images, not a constant
    with pytest.raises(ConfigError, match="ood.fashion_root"):
        sets_of(digits, 2, fashion_root=tmp_path / "nowhere")


# ---------------------------------------------------------------- Fashion-MNIST's paradox sets


def test_fashion_sets_are_centred_digits_and_black():
    info = dataset_info("fashion-mnist")
    sets = ood_sets(fake_test_x(info), info, 50, gen(0))
    digits, black = sets["MNIST-like digits"], sets["all black"]
    assert torch.equal(black, torch.zeros(50, 1, 28, 28))
    assert digits.shape == (50, 1, 28, 28) and on_grid(digits, 256)
    assert digits[..., :4, :].abs().sum() == digits[..., 24:, :].abs().sum() == 0  # the 20x20 box in the middle
    assert digits[..., :, :4].abs().sum() == digits[..., :, 24:].abs().sum() == 0
    assert digits.amax((1, 2, 3)).min() > 0.5 and (digits > 0).float().mean((1, 2, 3)).mean() < 0.5  # ink on black
    assert "MNIST-like digits" not in ood_set_names(dataset_info("mnist"))


def test_paper_reference_has_the_published_direction():
    bpd = PAPER_REFERENCE["bits_per_dim"]
    assert bpd["MNIST test"] < bpd["FashionMNIST test"]
    assert "Nalisnick" in PAPER_REFERENCE["citation"] and set(PAPER_REFERENCE["ours"]) == set(bpd)


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            [m.training for m in model.modules()])


def assert_unchanged(model, before):
    state, grads, modes = snapshot(model)
    assert all(torch.equal(state[k], before[0][k]) for k in state)
    assert all((g is None and g0 is None) or torch.equal(g, g0) for g, g0 in zip(grads, before[1]))
    assert modes == before[2]


def test_max_likelihood_images_beat_the_data_and_leave_the_model_alone(flow, digits):
    flow.train()  # the call must evaluate in eval mode and restore this mode
    flow.flows[0].training = False  # a mixed state must come back exactly
    before = snapshot(flow)
    try:
        images, trace = max_likelihood_images(flow, 16, (1, 8, 8), steps=150, generator=gen(0))
        assert_unchanged(flow, before)
    finally:
        flow.eval()
    assert images.shape == (16, 1, 8, 8) and not images.requires_grad
    assert images.min() >= 0 and images.max() <= 1
    assert trace.shape == (151, 16) and trace.dtype == np.float64
    assert (np.diff(trace, axis=0) >= 0).all()  # best so far
    with torch.no_grad():
        final = flow.log_prob(images).double().numpy()
        data = flow.log_prob(digits.test.x).double().numpy()
    assert final == pytest.approx(trace[-1], rel=1e-5, abs=1e-3)
    bpd = lambda lp: bpd_from_log_prob(torch.from_numpy(lp), 64, 17).mean().item()  # noqa: E731
    assert bpd(trace[0]) - bpd(trace[-1]) > 3  # noise -> far more likely
    assert bpd(trace[-1]) < bpd(data)  # more likely than the average real digit
    again, _ = max_likelihood_images(flow, 16, (1, 8, 8), steps=150, generator=gen(0))
    assert torch.equal(images, again)


def test_zero_steps_returns_the_noise(flow):
    images, trace = max_likelihood_images(flow, 3, (1, 8, 8), steps=0, generator=gen(1))
    assert torch.equal(images, torch.rand((3, 1, 8, 8), generator=gen(1)))
    assert trace.shape == (1, 3)


def test_ood_summary_on_hand_made_scores():
    dim, levels = 64, 17
    clean = np.array([100.0, 110.0, 120.0, 130.0])  # median 115
    ood = {"far": np.array([200.0, 300.0]), "mixed": np.array([90.0, 112.0, 125.0, 140.0])}
    rows = {r["set"]: r for r in ood_summary(clean, ood, threshold=125.0, dim=dim, levels=levels)}
    to_bpd = lambda s: (s + dim * math.log(levels - 1)) / (dim * math.log(2))  # noqa: E731
    far, mixed = rows["far"], rows["mixed"]
    assert far["mean_bpd"] == pytest.approx(to_bpd(250.0))
    assert far["test_mean_bpd"] == mixed["test_mean_bpd"] == pytest.approx(to_bpd(115.0))
    assert far["frac_in_distribution"] == 0 and far["auroc"] == 1 and far["higher_likelihood_than_test"] == 0
    assert mixed["frac_in_distribution"] == 0.75  # 125 is not above the threshold
    assert mixed["higher_likelihood_than_test"] == 0.5  # 90 and 112 beat the median clean score
    # pairs (clean, ood) with ood > clean: 90: 0, 112: 2, 125: 3, 140: 4 -> 9 of 16
    assert mixed["auroc"] == pytest.approx(9 / 16)
    assert mixed["n"] == 4


def test_ood_summary_refuses_empty_clean_scores():
    with pytest.raises(ConfigError, match="clean"):
        ood_summary(np.zeros(0), {"a": np.ones(3)}, 0.0, 64, 17)
