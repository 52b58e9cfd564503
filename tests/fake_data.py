"""Tiny fake torchvision files written by the tests (nothing is downloaded).

Every fake image carries its label in pixel 0 and a unique id in pixels 1-2, so the tests can check that labels stay
with their images and that validation and training are disjoint.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd

from fooled.data import dataset_info

N_TRAIN, N_TEST = 100, 30


def fake_images(n: int, shape: tuple[int, ...], offset: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(offset)
    labels = np.arange(n) % 10
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    flat = x.reshape(n, -1)
    ids = np.arange(n) + offset
    flat[:, 0], flat[:, 1], flat[:, 2] = labels, ids % 256, ids // 256
    flat[:, 3] = 255
    return x, labels


def write_idx(path: Path, array: np.ndarray) -> None:
    """The big-endian idx format of the MNIST files: 0, 0, type 0x08 (uint8), ndim, dims, bytes; gzipped if `path` ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)


def _write_fake_files(folder: Path, image_shape, suffix: str) -> None:
    for prefix, n, offset in [("train", N_TRAIN, 0), ("t10k", N_TEST, 1000)]:
        x, y = fake_images(n, image_shape, offset)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y)


def write_fake_mnist(root: Path, folder: str, image_shape=(28, 28)) -> None:
    """torchvision's layout: ROOT/FOLDER/raw/ with the four files, not gzipped."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    _write_fake_files(raw, image_shape, "")


def write_fake_flat(root: Path, gzipped: bool = True, image_shape=(28, 28)) -> None:
    """The raw layout of Debian's dataset-fashion-mnist: the four files directly in ROOT, gzipped (or not)."""
    root.mkdir(parents=True, exist_ok=True)
    _write_fake_files(root, image_shape, ".gz" if gzipped else "")


def write_fake_cifar10(root: Path, monkeypatch) -> None:
    """Pickled batches as in cifar-10-python.tar.gz, with torchvision's checksums set to theirs."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name: str, entry: dict) -> list[str]:
        (folder / name).write_bytes(pickle.dumps(entry))
        return [name, hashlib.md5((folder / name).read_bytes()).hexdigest()]

    x, y = fake_images(N_TRAIN, (3, 32, 32), 0)
    per_batch = N_TRAIN // 5
    train_list = [
        dump(f"data_batch_{b + 1}", {"data": x[b * per_batch : (b + 1) * per_batch].reshape(per_batch, -1),
                                     "labels": y[b * per_batch : (b + 1) * per_batch].tolist()})
        for b in range(5)
    ]
    x, y = fake_images(N_TEST, (3, 32, 32), 1000)
    test_list = [dump("test_batch", {"data": x.reshape(N_TEST, -1), "labels": y.tolist()})]
    _, meta_md5 = dump("batches.meta", {"label_names": list(dataset_info("cifar10").class_names)})
    # torchvision verifies the md5s of the real release; point it at our files' md5s instead,
    # so its own integrity check and loading code still run.
    monkeypatch.setattr(tvd.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(tvd.CIFAR10, "test_list", test_list)
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": meta_md5})
