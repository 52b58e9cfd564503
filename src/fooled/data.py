"""Datasets as `Splits(train, val, test)` of float32 tensors in [0, 1], shape (N, C, H, W).

`digits` ships with scikit-learn and needs no files; `mnist`, `fashion-mnist` and `cifar10`
are read from a data root: torchvision's layout (downloaded there only when asked), or, for the
28x28 sets, a directory holding the four raw IDX files directly, gzipped or not (the layout of
Debian's `dataset-fashion-mnist`; `dpkg -L dataset-fashion-mnist` shows where it puts them).
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from fooled.errors import ConfigError, DataError, suggest

DIGIT_NAMES = tuple(str(k) for k in range(10))


@dataclass(frozen=True)
class DatasetInfo:
    """What downstream code needs to know about a dataset without loading it."""

    name: str  # canonical name, one of DATASETS
    num_classes: int
    shape: tuple[int, int, int]  # (C, H, W) of one example
    levels: int  # grey levels per channel; the flow dequantises with noise of width 1/(levels-1)
    class_names: tuple[str, ...]

    @property
    def dim(self) -> int:
        """Number of values in one example, C*H*W."""
        c, h, w = self.shape
        return c * h * w


# eq=False: tensors have no truth value, so identity is the only sensible equality.
@dataclass(frozen=True, eq=False)
class Split:
    """Examples `x` (float32 in [0, 1], (N, C, H, W)) and integer labels `y` (int64, (N,))."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise DataError(
                f"a split needs x of shape (N, C, H, W) and y of shape (N,), "
                f"got x {tuple(self.x.shape)} and y {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, eq=False)
class Splits:
    """Disjoint train / validation / test splits of one dataset."""

    train: Split
    val: Split
    test: Split
    info: DatasetInfo


FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_INFO = {
    "digits": DatasetInfo("digits", 10, (1, 8, 8), 17, DIGIT_NAMES),
    "mnist": DatasetInfo("mnist", 10, (1, 28, 28), 256, DIGIT_NAMES),
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, (1, 28, 28), 256, FASHION_NAMES),
    "cifar10": DatasetInfo("cifar10", 10, (3, 32, 32), 256, CIFAR10_NAMES),
}

DATASETS: tuple[str, ...] = tuple(_INFO)

# What torchvision looks for under ROOT, named in the error when it is missing.
_TORCHVISION_FILES = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "fashion-mnist": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
}


# The four raw IDX files of MNIST and Fashion-MNIST, as published and as torchvision keeps them.
RAW_FILES = tuple(f"{split}-{kind}-ubyte" for split in ("train", "t10k") for kind in ("images-idx3", "labels-idx1"))


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    if key in _INFO:
        return key
    raise DataError(f"unknown dataset '{name}'{suggest(key, DATASETS, cutoff=0.5, list_all=True)}")


def dataset_info(name: str) -> DatasetInfo:
    """The `DatasetInfo` of dataset `name`, without loading any data."""
    return _INFO[_canonical_name(name)]


def load(
    name: str,
    *,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool = False,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    limit: int | None = None,
) -> Splits:
    """Load dataset `name` as stratified train/val/test splits fixed by `seed`.

    For `digits`, `val_fraction` and `test_fraction` are fractions of the whole set. For the
    torchvision datasets the official test set is the test split (`test_fraction` is unused)
    and `val_fraction` of the official training set is held out for validation. `limit` keeps
    at most that many examples in each split, a class-balanced subset chosen by `seed`.
    """
    info = dataset_info(name)
    _check_fraction("val_fraction", val_fraction)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")
    rng = np.random.RandomState(seed)

    if info.name == "digits":
        _check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1:
            raise ConfigError(
                f"val_fraction + test_fraction must be below 1 to leave training data, "
                f"got {val_fraction} + {test_fraction}"
            )
        x, y = _read_digits()
        rest, test_idx = _stratified_split(np.arange(len(y)), y, test_fraction, rng, "test_fraction")
        train_idx, val_idx = _stratified_split(
            rest, y[rest], val_fraction / (1 - test_fraction), rng, "val_fraction"
        )
        parts = ((x, y, train_idx), (x, y, val_idx), (x, y, test_idx))
    else:
        x_train, y_train, x_test, y_test = _read_torchvision(info, root, download)
        train_idx, val_idx = _stratified_split(
            np.arange(len(y_train)), y_train, val_fraction, rng, "val_fraction"
        )
        parts = (
            (x_train, y_train, train_idx),
            (x_train, y_train, val_idx),
            (x_test, y_test, np.arange(len(y_test))),
        )

    train, val, test = (
        _make_split(x, y, _balanced_subset(idx, y[idx], limit, rng), info) for x, y, idx in parts
    )
    return Splits(train=train, val=val, test=test, info=info)


def batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield `(x, y)` minibatches of `split`, the last one possibly smaller.

    With `shuffle=True` the order is a permutation drawn from `generator`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(split)
    if shuffle:
        device = generator.device if generator is not None else "cpu"
        order = torch.randperm(n, generator=generator, device=device).to(split.x.device)
    else:
        order = None
    for start in range(0, n, batch_size):
        if order is None:
            yield split.x[start : start + batch_size], split.y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield split.x[idx], split.y[idx]


def _check_fraction(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}")


def _stratified_split(
    idx: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.RandomState, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split `idx` into (rest, held_out) with `fraction` held out, preserving class proportions."""
    try:
        return train_test_split(idx, test_size=fraction, stratify=labels, random_state=rng)
    except ValueError as err:  # too few examples for every class to appear on both sides
        raise ConfigError(
            f"cannot hold out {what}={fraction:.3g} of {len(idx)} examples with every class "
            f"on both sides ({err}); use a fraction that leaves every class on both sides"
        ) from err


@functools.lru_cache(maxsize=1)
def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """Integer images (N, 1, 8, 8) with values 0..16, and labels (N,)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x.flags.writeable = y.flags.writeable = False  # cached and shared between calls
    return x, y


def _read_torchvision(
    info: DatasetInfo, root: str | os.PathLike | None, download: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """uint8 images (N, C, H, W) and int64 labels of the official train and test sets."""
    if root is None:
        raise DataError(
            f"dataset '{info.name}' needs a data directory: pass --set data.root=DIR "
            f"(and --set data.download=true to fetch it there)"
        )
    root = Path(root).expanduser()
    if info.name != "cifar10" and raw_files(root) is not None:
        return read_raw_idx(root)
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[info.name]
    arrays = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except RuntimeError as err:
            if download:
                raise DataError(f"could not download {info.name} to {root}: {err}") from err
            flat = "" if info.name == "cifar10" else f", or the four raw files ({', '.join(RAW_FILES)}, .gz or not) in {root} itself"
            raise DataError(
                f"{info.name} not found under {root}: pass --set data.download=true to fetch it, or place "
                f"torchvision's files there as {root / _TORCHVISION_FILES[info.name]}{flat}"
            ) from err
        except OSError as err:  # no network, full disk, unreadable file
            raise DataError(f"could not read or download {info.name} under {root}: {err}") from err
        except (ValueError, TypeError, AssertionError, KeyError) as err:
            raise DataError(f"{info.name} files under {root} are malformed ({err!r}); "
                            f"delete them and pass --set data.download=true to fetch them again") from err
        x = np.asarray(ds.data, dtype=np.uint8)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # (N, H, W[, C]) -> (N, C, H, W)
        y = np.asarray(ds.targets, dtype=np.int64)
        arrays += [np.ascontiguousarray(x), y]
    return tuple(arrays)


def raw_files(root: str | os.PathLike) -> list[Path] | None:
    """The paths of the four raw IDX files held directly in `root` (each plain or .gz), in RAW_FILES order;
    None when it holds none of them. A directory holding only some of them is a DataError naming the missing ones."""
    root = Path(root).expanduser()
    found = {}
    for name in RAW_FILES:
        present = [p for p in (root / name, root / f"{name}.gz") if p.is_file()]
        if present:
            found[name] = present[0]
    if not found:
        return None
    missing = [name for name in RAW_FILES if name not in found]
    if missing:
        raise DataError(f"{root} holds some raw IDX files but not {', '.join(missing)} (plain or .gz); add them, "
                        f"or point --set data.root=DIR at a directory with all four")
    return [found[name] for name in RAW_FILES]


def read_raw_idx(root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train images (N, 1, H, W) uint8, train labels int64, test images, test labels from the raw files in `root`."""
    paths = raw_files(root)
    if paths is None:
        raise DataError(f"no raw IDX files ({', '.join(RAW_FILES)}, .gz or not) in {root}; pass --set data.root=DIR")
    arrays = [_read_idx(p) for p in paths]
    for images, labels, path in ((arrays[0], arrays[1], paths[0]), (arrays[2], arrays[3], paths[2])):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{path}: expected images (N, H, W) and N labels beside them, got {images.shape} and {labels.shape}")
    return arrays[0][:, None], arrays[1].astype(np.int64), arrays[2][:, None], arrays[3].astype(np.int64)


def _read_idx(path: Path) -> np.ndarray:
    """One IDX file of unsigned bytes: magic 0, 0, 0x08, ndim, then ndim big-endian uint32 sizes, then the data."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            blob = f.read()
    except (OSError, EOFError) as err:  # unreadable, or a truncated or corrupt gzip stream
        raise DataError(f"cannot read {path}: {err}") from err
    if len(blob) < 4 or blob[:3] != b"\x00\x00\x08" or len(blob) < 4 + 4 * blob[3]:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (header {blob[:4].hex() or 'empty'})")
    ndim = blob[3]
    shape = tuple(int(d) for d in np.frombuffer(blob, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated or padded: its header says {shape}, {int(np.prod(shape))} values, it holds {data.size}")
    return data.reshape(shape)


def _balanced_subset(
    idx: np.ndarray, labels: np.ndarray, limit: int | None, rng: np.random.RandomState
) -> np.ndarray:
    """At most `limit` entries of `idx`, each class keeping its share to within one example."""
    if limit is None or len(idx) <= limit:
        return idx
    # Rank every example within its class in random order; sorting by rank / class size
    # then interleaves the classes in proportion to their sizes.
    perm = rng.permutation(len(idx))
    classes, counts = np.unique(labels, return_counts=True)
    position = np.empty(len(idx))
    for c, count in zip(classes, counts):
        members = perm[labels[perm] == c]
        position[members] = (np.arange(count) + rng.uniform()) / count
    keep = np.argsort(position, kind="stable")[:limit]
    return idx[np.sort(keep)]


def _make_split(x: np.ndarray, y: np.ndarray, idx: np.ndarray, info: DatasetInfo) -> Split:
    images = x[idx]
    if images.shape[1:] != info.shape:
        raise DataError(f"{info.name} images have shape {images.shape[1:]}, expected {info.shape}")
    labels = y[idx]
    if len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise DataError(f"{info.name} labels must lie in 0..{info.num_classes - 1}")
    values = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32) / (info.levels - 1)
    return Split(x=values, y=torch.from_numpy(np.ascontiguousarray(labels)).to(torch.int64))
