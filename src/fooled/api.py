"""The public API for finished runs: `load_run(DIR)`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from .config import StudyConfig, from_dict
from .data import Splits, load
from .errors import FooledError, suggest
from .rundir import read_json


@dataclass
class Run:
    """A finished study: its config, its results dict, its data, and its trained models."""

    path: Path
    results: dict

    @cached_property
    def config(self) -> StudyConfig:
        raw = dict(self.results["config"])
        return from_dict(raw)

    def splits(self, seed: int = 0) -> Splits:
        """The train/val/test splits of a seed, rebuilt from the config."""
        d = self.config.data
        return load(d.name, seed=seed, root=d.root, download=False, val_fraction=d.val_fraction, test_fraction=d.test_fraction, limit=d.limit)

    @property
    def data(self) -> Splits:
        """The splits of the first seed."""
        return self.splits(self.config.seeds[0])

    def model(self, name: str, seed: int = 0) -> torch.nn.Module:
        """The trained model `name` of `seed`, in eval mode, on CPU."""
        from .models import build_model
        from .train import checkpoint_path, load_checkpoint, model_key

        cfg = self.config
        if name not in cfg.models.names:
            raise FooledError(f"unknown model '{name}' in this run{suggest(name, cfg.models.names)}")
        if seed not in cfg.seeds:
            raise FooledError(f"seed {seed} is not in this run; its seeds are {list(cfg.seeds)}")
        key = model_key(cfg, name, seed)
        model = build_model(name, self.data.info, cfg.models, seed)
        load_checkpoint(checkpoint_path(self.path, name, seed, key), model, key)
        return model


def load_run(path: str | Path) -> Run:
    """Open a finished run directory."""
    path = Path(path)
    return Run(path, read_json(path / "results.json"))
