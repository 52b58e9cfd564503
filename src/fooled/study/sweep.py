"""Sweeps: one ordinary study per cell of a product of config axes, run here or on Ray, gathered into sweep.csv.

    fooled sweep experiments/sweeps/digits_small.toml --quick
    fooled sweep experiments/sweeps/mnist_family.toml --engine ray --set data.root=~/data

A sweep file names a base experiment, overrides applied to it, and the axes to vary:

    base = "../digits.toml"          # experiment TOML, relative to this file (omit: the built-in default)
    [set]                            # dotted config keys applied to the base in every cell
    "attacks.max_examples" = 60
    [axes]                           # dotted config key -> list of values; the cells are their product
    "detect.fpr" = [0.01, 0.05]
    seeds = [[0], [1]]

`base` may itself be an axis (a list of experiment files). Every cell's config is built and validated before
anything runs; each cell runs in OUT/cells/<readable name>-<config hash>, and a cell whose results.json has
that hash is never run again, so rerunning a sweep retries only failed and missing cells.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import StudyConfig, apply_overrides, config_hash, from_dict, load_config, quick, read_toml, set_key, to_dict
from ..errors import ConfigError, FooledError, suggest
from ..rundir import atomic_write_text, prepare_run_dir, write_json

SWEEP_KEYS = ("name", "description", "base", "set", "axes")
ENGINES = ("local", "ray")
RAY_MISSING = '--engine ray needs Ray, which is not installed: pip install -e ".[ray]"'
CELL_THREADS = 1  # torch threads per cell on CPU, the same in both engines so they give the same numbers


@dataclass(frozen=True)
class Cell:
    name: str  # <readable axis values>-<config hash>: the run directory under OUT/cells
    axes: dict  # axis key -> this cell's value
    config: StudyConfig


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    axes: dict  # axis key -> list of values, in file order
    cells: tuple[Cell, ...]


def _flatten(table: dict, prefix: str = "") -> dict:
    """Nested TOML tables -> {dotted key: value}, so `attacks.eps = ...` and `"attacks.eps" = ...` mean the same."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _slug(key: str, value) -> str:
    if key == "base":
        return Path(value).stem
    if isinstance(value, str):
        return value
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v).lower()  # noqa: E731
    text = ",".join(fmt(v) for v in value) if isinstance(value, (list, tuple)) else fmt(value)
    return key.rsplit(".", 1)[-1] + text


def cell_name(axes: dict, cfg: StudyConfig) -> str:
    readable = re.sub(r"[^A-Za-z0-9.,=+_-]", "", "_".join(_slug(k, v) for k, v in axes.items()))[:60]
    return f"{readable or 'cell'}-{config_hash(cfg)}"


def _check_schema(raw: dict, path: Path) -> None:
    for key in raw:
        if key not in SWEEP_KEYS:
            raise ConfigError(f"{path}: unknown key '{key}'{suggest(key, SWEEP_KEYS)}")
    for key, kind in (("name", str), ("description", str), ("base", str), ("set", dict), ("axes", dict)):
        if key in raw and not isinstance(raw[key], kind):
            raise ConfigError(f"{path}: '{key}' must be a {'table' if kind is dict else 'string'}, got {raw[key]!r}")
    axes = _flatten(raw.get("axes", {}))
    if not axes:
        raise ConfigError(f"{path}: [axes] needs at least one axis, e.g. \"detect.fpr\" = [0.01, 0.05]")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: axis '{key}' must be a non-empty list of values, got {values!r}")
    if "base" in raw and "base" in axes:
        raise ConfigError(f"{path}: 'base' is both a top-level key and an axis; keep one")
    if "base" in axes and not all(isinstance(v, str) for v in axes["base"]):
        raise ConfigError(f"{path}: axis 'base' must list experiment files, got {axes['base']!r}")


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, quick_cells: bool = False) -> Sweep:
    """Read and validate a sweep file; build every cell's config (base < [set] < `overrides` < axes)."""
    path = Path(path)
    raw = read_toml(path, "sweep file")
    _check_schema(raw, path)
    axes = _flatten(raw["axes"])
    fixed = list(_flatten(raw.get("set", {})).items())
    bases = {}

    def base_raw(ref: str | None) -> dict:
        if ref not in bases:
            try:
                bases[ref] = to_dict(load_config(None if ref is None else path.parent / ref))
            except ConfigError as e:
                raise ConfigError(f"{path}: base: {e}") from None
        return bases[ref]

    def build(raw_cfg: dict, cell_axes: dict) -> StudyConfig:
        for key, value in fixed:
            raw_cfg = set_key(raw_cfg, key, value)
        raw_cfg = apply_overrides(raw_cfg, overrides)
        for key, value in cell_axes.items():
            if key != "base":
                raw_cfg = set_key(raw_cfg, key, value)
        return from_dict(raw_cfg)

    cells, seen = [], {}
    for values in itertools.product(*axes.values()):
        cell_axes = dict(zip(axes, values))
        where = ", ".join(f"{k}={json.dumps(v)}" for k, v in cell_axes.items())
        try:
            cfg = build(base_raw(cell_axes.get("base", raw.get("base"))), cell_axes)
            if quick_cells:  # --quick shrinks the base; what the sweep file and --set say still wins
                cfg = build(to_dict(quick(cfg)), cell_axes)
        except ConfigError as e:
            msg = str(e)
            raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: cell {where}: {msg}") from None
        key = config_hash(cfg)
        if key in seen:
            raise ConfigError(f"{path}: cells {seen[key]} and {where} have the same config")
        seen[key] = where
        cells.append(Cell(cell_name(cell_axes, cfg), cell_axes, cfg))
    name = raw.get("name", path.stem) + ("-quick" if quick_cells else "")
    return Sweep(name, path, axes, tuple(cells))


def is_finished(cell: Cell, run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "results.json").read_text()).get("config_hash") == config_hash(cell.config)
    except (OSError, ValueError):
        return False


def run_cell(cfg: StudyConfig, run_dir: str, device: str, jobs: int | None, figures: bool, log=None) -> dict:
    """One cell as an ordinary study; never raises, so a failed cell does not stop the sweep."""
    import torch

    from .run import run_study, silent

    threads = torch.get_num_threads()
    torch.set_num_threads(CELL_THREADS)
    start = time.perf_counter()
    try:
        run_study(cfg, run_dir, device=device, log=log or silent, figures=figures, jobs=jobs)
        return {"ok": True, "seconds": time.perf_counter() - start}
    except Exception as e:  # noqa: BLE001 - every failure is recorded, and the sweep goes on
        outcome = {"ok": False, "seconds": time.perf_counter() - start}
        if isinstance(e, FooledError):  # a user error: its message says what to do
            return {**outcome, "error": " ".join(str(e).split())}
        return {**outcome, "error": " ".join(f"{type(e).__name__}: {e}".split()), "traceback": traceback.format_exc()}
    finally:
        torch.set_num_threads(threads)


def _local(cells, out: Path, *, device, jobs, figures, log, **_):
    for cell in cells:
        log(f"{cell.name}: running")
        yield cell, run_cell(cell.config, str(out / "cells" / cell.name), device, jobs, figures, log)


def import_ray():
    try:
        import ray
    except ImportError:
        raise FooledError(RAY_MISSING) from None
    return ray


def _ray(cells, out: Path, *, device, jobs, figures, log, address=None):
    import logging

    ray = import_ray()
    started = not ray.is_initialized()
    if started and address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    elif started:  # a local instance with the least Ray needs: no dashboard, a small object store, quiet
        ray.init(num_cpus=jobs or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 logging_level=logging.ERROR, object_store_memory=100 * 2**20)
    try:
        gpu = device != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1
        task = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, max_retries=0)(run_cell)
        # a cell's seeds run one after another inside its task; run directories must be on a shared file system
        pending = {task.remote(c.config, str((out / "cells" / c.name).resolve()), device, 1, figures): c for c in cells}
        log(f"submitted {len(pending)} cells to Ray ({'1 GPU' if gpu else '1 CPU'} each)")
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - the worker died: report it like any failed cell
                outcome = {"ok": False, "seconds": None, "error": "Ray task failed: " + " ".join(str(e).split())[:500]}
            yield cell, outcome
    finally:
        if started:
            ray.shutdown()


def run_sweep(sweep: Sweep, out_dir: str | Path, *, engine: str = "local", address: str | None = None, device: str = "auto",
              jobs: int | None = None, cell_figures: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run the cells not finished yet, then write sweep.json, failures.json, sweep.csv and the sweep's figures.

    `jobs`: local engine: seeds of a cell at once (as `fooled study --jobs`); ray engine: cells at once on the
    local Ray instance it starts. Returns the manifest (sweep.json); its cells' `status` is done, skipped or failed.
    """
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got '{engine}'")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if engine == "ray":
        import_ray()
    out = prepare_run_dir(Path(out_dir))
    rows = {c.name: {"name": c.name, "dir": f"cells/{c.name}", "config_hash": config_hash(c.config), "axes": c.axes,
                     "status": "pending", "seconds": None, "error": None} for c in sweep.cells}
    manifest = {"name": sweep.name, "sweep_file": str(sweep.path), "engine": engine, "axes": sweep.axes, "cells": list(rows.values())}
    todo, tracebacks = [], {}
    for cell in sweep.cells:
        if is_finished(cell, out / "cells" / cell.name):
            rows[cell.name]["status"] = "skipped"
            log(f"{cell.name}: skipped (finished)")
        else:
            todo.append(cell)
    write_json(out / "sweep.json", manifest)
    log(f"{sweep.name}: {len(todo)} of {len(sweep.cells)} cells to run ({engine})")
    run = _ray if engine == "ray" else _local
    for cell, outcome in run(todo, out, device=device, jobs=jobs, figures=cell_figures, log=log, address=address):
        row = rows[cell.name]
        row.update(status="done" if outcome["ok"] else "failed", seconds=outcome["seconds"], error=outcome.get("error"))
        log(f"{cell.name}: " + (f"done in {outcome['seconds']:.0f}s" if outcome["ok"] else "failed"))
        if outcome.get("traceback"):  # not a user error: keep the details for a bug report
            tracebacks[cell.name] = outcome["traceback"]
        write_json(out / "sweep.json", manifest)
    write_json(out / "failures.json", [{"cell": r["name"], "axes": r["axes"], "error": r["error"],
                                        **({"traceback": tracebacks[r["name"]]} if r["name"] in tracebacks else {})}
                                       for r in manifest["cells"] if r["status"] == "failed"])
    write_table(sweep, out)
    draw_sweep(out)
    return manifest


def sweep_table(sweep: Sweep, out: Path):
    """One row per finished cell and attack row: the attack row's columns, the cell's name and axis values."""
    import pandas as pd

    records = []
    for cell in sweep.cells:
        run_dir = out / "cells" / cell.name
        if not is_finished(cell, run_dir):
            continue
        results = json.loads((run_dir / "results.json").read_text())
        axes = {k: (Path(v).stem if k == "base" else json.dumps(v) if isinstance(v, list) else v) for k, v in cell.axes.items()}
        for row in results["attacks"]:
            row = dict(row)
            for det, scores in row.pop("detectors", {}).items():
                row.update({f"{det}_{k}": v for k, v in scores.items()})
            row.update({f"fooled_by_{loss}": n for loss, n in (row.pop("fooled_by", None) or {}).items()})
            records.append({"cell": cell.name, **axes, "dataset": results["dataset"]["name"], "config_hash": results["config_hash"], **row})
    return pd.DataFrame(records)


def write_table(sweep: Sweep, out: Path) -> Path:
    path = out / "sweep.csv"
    atomic_write_text(path, sweep_table(sweep, out).to_csv(index=False))
    return path


def is_sweep_dir(path: str | Path) -> bool:
    """A sweep's output folder (sweep.csv or sweep.json), as opposed to a single study's run directory."""
    return (Path(path) / "sweep.csv").exists() or (Path(path) / "sweep.json").exists()


def draw_sweep(sweep_dir: str | Path) -> list[Path]:
    """Redraw the figures comparing cells from sweep.csv alone."""
    from ..analysis.sweep_plots import draw_sweep as draw

    return draw(Path(sweep_dir))
