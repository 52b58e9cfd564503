"""The run directory: atomic writes, the stage cache (with recovery from damaged files), a lock, version stamps."""

from __future__ import annotations

import io
import json
import os
import platform
import tempfile
import time
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ._version import __version__
from .config import config_hash
from .errors import FooledError, suggest

STAGE_VERSION = 2  # part of every stage's key: bump it when a stage computes something else for the same key
LOCK_FILE = ".study.lock"


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


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=True) + "\n")


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


class DamagedFileError(FooledError):
    """A file of the run directory exists but cannot be read (truncated, corrupt)."""


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise FooledError(f"not found: {path} (is this a finished run directory?)") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as e:
        raise DamagedFileError(f"{path} is damaged ({type(e).__name__}: {e})") from None


def cached(run_dir: Path, label: str, key: dict, compute: Callable[[], dict[str, np.ndarray]],
           log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """Return the arrays of stage `label` for `key`, computing and saving them (atomically) the first time.

    The arrays get a `seconds` entry: the time the computation took when it ran. A damaged stage file (for example
    one truncated by a full disk) is named in one log line and computed again.
    """
    path = Path(run_dir) / "stages" / f"{label}-{config_hash({'stage_version': STAGE_VERSION, **key})}.npz"
    if path.exists():
        try:
            return read_npz(path)
        except DamagedFileError as e:
            log(f"  {e}; recomputing it")
    start = time.perf_counter()
    arrays = {k: np.asarray(v) for k, v in compute().items()}
    arrays["seconds"] = np.array(time.perf_counter() - start)
    write_npz(path, arrays)
    return arrays


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


@contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock for the duration; a second holder fails at once, naming the first one's process."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        owner = f.read().strip() or "another process"
        f.close()
        raise FooledError(f"{run_dir} is being written by {owner}; wait for it to finish or use another --out") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {platform.node()}")
        f.flush()
        yield
    finally:
        f.truncate(0)
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


# --- the score table ------------------------------------------------------------------------------------
# scores.npz and examples.npz hold one array per Key; only this section builds or parses their names.

SEP = "|"


@dataclass(frozen=True)
class Key:
    """The name of one array of scores.npz or examples.npz.

    model: the attacked classifier, or the density model for the clean and OOD sets, or "data" for the clean images.
    set: clean_val, clean_test, an attack (fgsm, pgd, pgd_l2, adaptive_pgd), fooling_gradient, fooling_evolution,
         ood:<name>, max_likelihood_trace, samples.
    column: a detector's name in scores.npz (nll, class_conditional, ...); images, pred, labels, confidence in examples.npz.
    """

    seed: int
    model: str
    set: str
    eps: float | None = None
    column: str = "nll"

    def __str__(self) -> str:
        for f in ("model", "set", "column"):
            if SEP in getattr(self, f):
                raise FooledError(f"score key {f} '{getattr(self, f)}' must not contain '{SEP}'")
        return SEP.join([f"seed{self.seed}", self.model, self.set, "-" if self.eps is None else f"{self.eps:g}", self.column])

    @classmethod
    def parse(cls, name: str) -> "Key":
        parts = name.split(SEP)
        if len(parts) != 5 or not parts[0].startswith("seed"):
            raise FooledError(f"'{name}' is not a score-table name (seed{SEP}model{SEP}set{SEP}eps{SEP}column)")
        seed, model, set_, eps, column = parts
        return cls(int(seed[4:]), model, set_, None if eps == "-" else float(eps), column)


def set_name(attack: str, rounded: bool = False, attacked: str | None = None) -> str:
    """The score-table set of an attacked (or control) set: the attack's name, '@detector' for a detector-aware attack on
    another detector than -log p(x), and ':grid' when rounded to the grey levels."""
    name = attack if attacked in (None, "nll") else f"{attack}@{attacked}"
    return f"{name}:grid" if rounded else name


def row_key(row: dict, column: str = "nll") -> Key:
    """The Key of an attack row's scores (results.json's `attacks` rows)."""
    return Key(row["seed"], row["target"], set_name(row["attack"], row.get("grid") == "rounded", row.get("attacked_detector")),
               row["eps"], column)


def lookup(table: dict[str, np.ndarray], key: Key, what: str = "scores.npz") -> np.ndarray:
    """The array of `key`, or a one-line error that names it and the closest name present."""
    name = str(key)
    if name not in table:
        raise FooledError(f"{what} has no '{name}'{suggest(name, sorted(table), cutoff=0.8) if table else ''}; "
                          "rerun `fooled study` on this directory to write it")
    return table[name]


def select(table: dict[str, np.ndarray], **match) -> list[tuple[Key, np.ndarray]]:
    """Every (key, array) whose key fields equal `match` (for example seed=0, set="pgd")."""
    names = {f.name for f in fields(Key)}
    unknown = set(match) - names
    if unknown:
        raise FooledError(f"unknown score-table field '{sorted(unknown)[0]}'{suggest(sorted(unknown)[0], sorted(names))}")
    keys = [(Key.parse(n), v) for n, v in table.items()]
    return [(k, v) for k, v in keys if all(getattr(k, f) == m for f, m in match.items())]


def versions() -> dict[str, str]:
    import normflows
    import sklearn
    import torch

    return {
        "fooled": __version__,
        "torch": torch.__version__,
        "normflows": normflows.__version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
