"""Tests of fooled.data: digits from scikit-learn, tiny fake torchvision files read by torchvision itself, and the
same files laid flat in one directory (Debian's layout), gzipped or not."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_data import N_TEST, N_TRAIN, write_fake_cifar10, write_fake_flat, write_fake_mnist
from fooled.data import DATASETS, RAW_FILES, DatasetInfo, Split, Splits, batches, dataset_info, load
from fooled.errors import ConfigError, DataError, FooledError

N_DIGITS = 1797


@functools.lru_cache(maxsize=1)
def all_digit_rows() -> Counter:
    from sklearn.datasets import load_digits

    return rows(torch.from_numpy(load_digits().images).float().div(16).reshape(-1, 1, 8, 8))


def rows(x: torch.Tensor) -> Counter:
    """Multiset of examples, so splits can be compared as sets of images."""
    return Counter(map(bytes, x.flatten(1).mul(255).round().to(torch.uint8).numpy()))


def class_shares(y: torch.Tensor, k: int = 10) -> np.ndarray:
    return np.bincount(y.numpy(), minlength=k) / len(y)


def assert_on_grid(x: torch.Tensor, levels: int) -> None:
    assert x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    k = torch.round(x * (levels - 1))
    assert torch.equal(x, k / (levels - 1)), "values are not exactly k/(levels-1)"


# ---------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load("digits", seed=0)


def test_digits_shapes_dtypes_and_info(digits):
    assert isinstance(digits.info, DatasetInfo)
    assert digits.info == dataset_info("digits")
    assert (digits.info.name, digits.info.num_classes, digits.info.levels) == ("digits", 10, 17)
    assert digits.info.shape == (1, 8, 8) and digits.info.dim == 64
    assert digits.info.class_names == tuple("0123456789")
    for split in (digits.train, digits.val, digits.test):
        assert isinstance(split, Split)
        assert split.x.shape == (len(split), 1, 8, 8)
        assert split.y.dtype == torch.int64 and split.y.shape == (len(split),)
        assert set(split.y.tolist()) == set(range(10))
        assert_on_grid(split.x, 17)
    # the images use the whole range, not a rescaled piece of it
    assert digits.train.x.min() == 0 and digits.train.x.max() == 1


def test_digits_splits_are_disjoint_cover_the_dataset_and_have_requested_sizes(digits):
    parts = rows(digits.train.x) + rows(digits.val.x) + rows(digits.test.x)
    assert parts == all_digit_rows()
    assert len(digits.train) + len(digits.val) + len(digits.test) == N_DIGITS
    assert abs(len(digits.val) - 0.2 * N_DIGITS) <= 1
    assert abs(len(digits.test) - 0.2 * N_DIGITS) <= 1


def test_digits_splits_are_stratified(digits):
    overall = class_shares(torch.cat([digits.train.y, digits.val.y, digits.test.y]))
    for split in (digits.train, digits.val, digits.test):
        # stratification keeps each class within one example of its share
        assert np.abs(class_shares(split.y) - overall).max() <= 1.5 / len(split)


def test_same_seed_same_splits_other_seed_other_splits(digits):
    again = load("digits", seed=0)
    for a, b in [(digits.train, again.train), (digits.val, again.val), (digits.test, again.test)]:
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    other = load("digits", seed=1)
    assert rows(other.test.x) != rows(digits.test.x)
    assert rows(other.val.x) != rows(digits.val.x)


def test_fractions_set_split_sizes():
    s = load("digits", val_fraction=0.1, test_fraction=0.3)
    assert abs(len(s.val) - 0.1 * N_DIGITS) <= 1
    assert abs(len(s.test) - 0.3 * N_DIGITS) <= 1
    assert len(s.train) + len(s.val) + len(s.test) == N_DIGITS


def test_limit_keeps_a_balanced_subset_of_each_split(digits):
    small = load("digits", seed=0, limit=50)
    for part, whole in [(small.train, digits.train), (small.val, digits.val), (small.test, digits.test)]:
        assert len(part) == 50
        assert np.bincount(part.y.numpy(), minlength=10).min() >= 4  # ~5 per class
        # the same seed limits the same splits, so each part lies inside its full split
        assert not rows(part.x) - rows(whole.x)
        assert_on_grid(part.x, 17)
    assert len(load("digits", limit=10_000).train) == len(digits.train)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    val_fraction=st.floats(0.05, 0.45),
    test_fraction=st.floats(0.05, 0.45),
)
def test_any_seed_and_fractions_give_disjoint_covering_stratified_splits(seed, val_fraction, test_fraction):
    s = load("digits", seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    y_all = torch.cat([s.train.y, s.val.y, s.test.y])
    assert rows(s.train.x) + rows(s.val.x) + rows(s.test.x) == all_digit_rows()
    assert abs(len(s.test) - test_fraction * N_DIGITS) <= 1
    assert abs(len(s.val) - val_fraction * N_DIGITS) <= 2
    overall = class_shares(y_all)
    for split in (s.train, s.val, s.test):
        assert np.abs(class_shares(split.y) - overall).max() <= 2.0 / len(split)


# ---------------------------------------------------------------- argument errors


@pytest.mark.parametrize("bad, suggestion", [("mnst", "mnist"), ("cifar", "cifar10"), ("fashion", "fashion-mnist")])
def test_unknown_name_lists_names_and_suggests_the_closest(bad, suggestion):
    with pytest.raises(DataError) as err:
        load(bad)
    message = str(err.value)
    assert f"'{bad}'" in message and f"did you mean '{suggestion}'" in message
    assert all(name in message for name in DATASETS)
    assert "\n" not in message


def test_names_are_case_and_underscore_insensitive():
    assert dataset_info("Fashion_MNIST").name == "fashion-mnist"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_fraction": 0.0},
        {"val_fraction": 1.0},
        {"test_fraction": -0.1},
        {"val_fraction": 0.5, "test_fraction": 0.5},
        {"val_fraction": 0.001},  # fewer held-out examples than classes
        {"limit": 0},
    ],
)
def test_invalid_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError) as err:
        load("digits", **kwargs)
    assert isinstance(err.value, FooledError)


# ---------------------------------------------------------------- batches


def test_batches_cover_the_split_once_with_a_final_partial_batch():
    split = Split(x=torch.arange(10.0).reshape(10, 1, 1, 1), y=torch.arange(10))
    plain = list(batches(split, 4, shuffle=False))
    assert [len(y) for _, y in plain] == [4, 4, 2]
    assert torch.equal(torch.cat([y for _, y in plain]), split.y)

    shuffled = list(batches(split, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    order = torch.cat([y for _, y in shuffled])
    assert sorted(order.tolist()) == list(range(10)) and not torch.equal(order, split.y)
    for x, y in shuffled:  # x and y stay paired
        assert torch.equal(x.flatten().long(), y)

    again = list(batches(split, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(torch.cat([y for _, y in again]), order)
    with pytest.raises(ConfigError):
        next(batches(split, 0, shuffle=False))


# ---------------------------------------------------------------- torchvision datasets from fake files
# Every fake image carries its label in pixel 0 and a unique id in pixels 1-2, so the tests can
# check that labels stay with their images and that validation and training are disjoint.

@pytest.fixture(params=["mnist", "fashion-mnist", "cifar10", "fashion-mnist flat gz", "mnist flat plain"])
def fake_root(request, tmp_path, monkeypatch) -> tuple[str, Path]:
    name, _, layout = request.param.partition(" ")
    if name == "cifar10":
        write_fake_cifar10(tmp_path, monkeypatch)
    elif layout:
        write_fake_flat(tmp_path, gzipped=layout.endswith("gz"))
    else:
        write_fake_mnist(tmp_path, {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name])
    return name, tmp_path


def ids_of(split: Split) -> set[int]:
    flat = torch.round(split.x.flatten(1) * 255).long()
    return set((flat[:, 1] + 256 * flat[:, 2]).tolist())


def test_torchvision_and_flat_layouts_load_the_same_way(fake_root):
    name, root = fake_root
    s = load(name, root=root, seed=0)
    info = dataset_info(name)
    assert s.info == info and info.levels == 256
    assert len(s.val) == 20 and len(s.train) == N_TRAIN - 20 and len(s.test) == N_TEST
    for split in (s.train, s.val, s.test):
        assert split.x.shape == (len(split), *info.shape)
        assert split.y.dtype == torch.int64
        assert_on_grid(split.x, 256)
        assert torch.all(split.x.flatten(1)[:, 3] == 1.0)  # 255 -> 1
        # label pixel matches the label: channels and images were not reordered apart from labels
        assert torch.equal(torch.round(split.x.flatten(1)[:, 0] * 255).long(), split.y)
    # validation comes from the official training set, the official test set is the test split
    assert ids_of(s.train) | ids_of(s.val) == set(range(N_TRAIN))
    assert not ids_of(s.train) & ids_of(s.val)
    assert ids_of(s.test) == set(range(1000, 1000 + N_TEST))
    assert np.bincount(s.val.y.numpy(), minlength=10).tolist() == [2] * 10  # stratified
    assert ids_of(load(name, root=root, seed=1).val) != ids_of(s.val)
    assert ids_of(load(name, root=root, seed=0).val) == ids_of(s.val)

    small = load(name, root=root, limit=15)
    assert (len(small.train), len(small.val), len(small.test)) == (15, 15, 15)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_files_say_where_and_how_to_get_them(name, tmp_path):
    root = tmp_path / "empty"
    with pytest.raises(DataError) as err:
        load(name, root=root)
    message = str(err.value)
    assert name in message and str(root) in message and "--set data.download=true" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_no_root_asks_for_data_root(name):
    with pytest.raises(DataError, match="--set data.root=DIR"):
        load(name)


def test_images_of_the_wrong_size_are_a_data_error(tmp_path):
    write_fake_mnist(tmp_path, "MNIST", image_shape=(28, 27))
    with pytest.raises(DataError, match="expected"):
        load("mnist", root=tmp_path)


def test_flat_and_torchvision_layouts_give_the_same_splits(tmp_path):
    write_fake_flat(tmp_path / "flat")
    write_fake_mnist(tmp_path / "tv", "FashionMNIST")
    a, b = (load("fashion-mnist", root=tmp_path / d, seed=3) for d in ("flat", "tv"))
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part).x, getattr(b, part).x) and torch.equal(getattr(a, part).y, getattr(b, part).y)


def test_a_flat_directory_missing_a_file_names_it(tmp_path):
    write_fake_flat(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*data.root") as err:
        load("fashion-mnist", root=tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "header", "not gzip"])
def test_damaged_flat_files_are_a_data_error_naming_the_file(tmp_path, damage):
    write_fake_flat(tmp_path, gzipped=False)
    path = tmp_path / RAW_FILES[0]
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-5])
    elif damage == "header":
        path.write_bytes(b"\x00\x00\x0d\x03" + path.read_bytes()[4:])  # type 0x0d: floats
    else:
        path.rename(tmp_path / f"{RAW_FILES[0]}.gz")  # plain bytes under a .gz name
    with pytest.raises(DataError, match=RAW_FILES[0]):
        load("fashion-mnist", root=tmp_path)


def test_flat_images_of_the_wrong_size_are_a_data_error(tmp_path):
    write_fake_flat(tmp_path, image_shape=(28, 27))
    with pytest.raises(DataError, match="expected"):
        load("mnist", root=tmp_path)
