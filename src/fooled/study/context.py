"""What every per-seed stage of a study reads (SeedContext), and what each returns (Made)."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import StudyConfig
from ..data import DatasetInfo
from ..models import bpd_from_log_prob
from ..rundir import Key, cached


@dataclass
class Made:
    """What a stage made: result rows, per-example scores (scores.npz) and a few images (examples.npz), by score-table Key."""

    rows: list = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)

    def __iadd__(self, other: "Made") -> "Made":
        self.rows += other.rows
        self.scores.update(other.scores)
        self.examples.update(other.examples)
        return self

    def score(self, key: Key, values: np.ndarray) -> None:
        self.scores[str(key)] = values

    def example(self, key: Key, values: np.ndarray) -> None:
        self.examples[str(key)] = values


@dataclass(frozen=True)
class SeedContext:
    """Read-only inputs of one seed's stages: config, data, trained models and their detectors."""

    cfg: StudyConfig
    seed: int
    run_dir: Path
    device: torch.device
    info: DatasetInfo
    x: torch.Tensor  # attacked clean test images (CPU)
    y: torch.Tensor
    models: dict  # classifier name -> trained module
    keys: dict  # classifier name -> hash of its training config
    guards: dict  # classifier name -> the detection.Guard scoring inputs to it (its density's detectors and the baselines)
    clean_pred: dict  # classifier name -> its predictions (numpy) on the attacked clean images x
    latent_means: dict = field(default_factory=dict)  # flow classifier name -> its class means in latent space (latent attack)
    donors: tuple = ()  # (images, labels) of training images: the detector-aware attack starts from each image's nearest likely one of another class
    log: Callable[[str], None] = print
    progress: bool = False  # tqdm bars (on a terminal only)

    @property
    def first_seed(self) -> bool:
        """Example images are kept for the first seed only."""
        return self.seed == self.cfg.seeds[0]

    def generator(self, *parts) -> torch.Generator:
        """A generator seeded by the study seed and a stage's name, so stages do not share noise."""
        return torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + zlib.crc32(repr(parts).encode()))

    def key(self, target: str, *, eps: float | None = None, settings=None, version: int | None = None, **extra) -> dict:
        """A stage's cache key, derived: the attacked model's key, the budget, the attack's settings (`settings.key()`),
        what else the stage depends on (`extra`), and the stage's version constant where its meaning changed (the seed and
        the number of images are added by `stage`)."""
        return {"model": self.keys[target], **({} if eps is None else {"eps": eps}), **({} if settings is None else settings.key()),
                **extra, **({} if version is None else {"version": version})}

    def stage(self, label: str, key: dict, compute: Callable[[], dict]) -> dict:
        return cached(self.run_dir, f"{label}-seed{self.seed}", {"seed": self.seed, "n": len(self.x), **key}, compute, log=self.log)

    def subset(self, m: int | None) -> "SeedContext":
        """The same context on the first m attacked images (for the expensive attacks)."""
        if m is None or m >= len(self.x):
            return self
        return dataclasses.replace(self, x=self.x[:m], y=self.y[:m], guards={k: g.first(m) for k, g in self.guards.items()},
                                   clean_pred={k: v[:m] for k, v in self.clean_pred.items()})

    def bpd(self, neg_log_prob: np.ndarray) -> np.ndarray:
        return bpd_from_log_prob(-np.asarray(neg_log_prob), self.info.dim, self.info.levels)
