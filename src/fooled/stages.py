"""Finished stages of a study, stored in the run directory under a hash of what they depend on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .config import config_hash
from .runs import read_npz, write_npz

STAGE_VERSION = 2  # part of every stage's key: bump it when a stage computes something else for the same key


def cached(run_dir: Path, label: str, key: dict, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return the arrays of stage `label` for `key`, computing and saving them (atomically) the first time.

    The arrays get a `seconds` entry: the time the computation took when it ran.
    """
    path = Path(run_dir) / "stages" / f"{label}-{config_hash({'stage_version': STAGE_VERSION, **key})}.npz"
    if path.exists():
        return read_npz(path)
    start = time.perf_counter()
    arrays = {k: np.asarray(v) for k, v in compute().items()}
    arrays["seconds"] = np.array(time.perf_counter() - start)
    write_npz(path, arrays)
    return arrays
