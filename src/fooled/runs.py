"""The run directory: atomic writes of results, scores and stage files, and version stamps."""

from __future__ import annotations

import io
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from .errors import FooledError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, allow_nan=True) + "\n").encode())


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FooledError(f"not found: {path} (is this a finished run directory?)") from None
    except json.JSONDecodeError as e:
        raise FooledError(f"{path} is not valid JSON: {e}") from None


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise FooledError(f"not found: {path} (is this a finished run directory?)") from None


def prepare_run_dir(path: Path) -> Path:
    """Create the run directory and check that it is writable, with a one-line error if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test", delete=True)
        probe.close()
    except OSError as e:
        raise FooledError(f"cannot write to output directory {path}: {e.strerror or e}") from None
    return path


def versions() -> dict[str, str]:
    import normflows
    import sklearn
    import torch

    from . import __version__

    return {
        "fooled": __version__,
        "torch": torch.__version__,
        "normflows": normflows.__version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
