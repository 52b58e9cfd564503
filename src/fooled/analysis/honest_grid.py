"""The evading images of the detector-aware attack on the grid, with the label the independent oracle gives each."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..config import run_config
from ..rundir import lookup, select
from .grids import _grid
from .style import shown_targets


def oracle_grid(results: dict, examples: dict, out: Path) -> list[Path]:
    """One row per shown model and budget: misclassified images that -log p(x) does not flag, captioned 'label -> prediction'
    and the oracle's label ('oracle 7 kept' when it still gives the original class, '?' when its members split)."""
    seed = run_config(results).seeds[0]
    names = shown_targets(results)  # the models of the examples figure: the CNN and the flow that guards it
    rows = []
    for key, imgs in sorted(select(examples, seed=seed, set="grid_aware_nll", column="images"),
                            key=lambda kv: (names.index(kv[0].model) if kv[0].model in names else 99, kv[0].eps)):
        if not len(imgs) or key.model not in names:
            continue
        labels, pred, oracle = (lookup(examples, replace(key, column=c), "examples.npz") for c in ("labels", "pred", "oracle"))
        caps = [f"{int(y)}->{int(p)}\noracle {'?' if o < 0 else int(o)}{' kept' if o == y else ''}"
                for y, p, o in zip(labels, pred, oracle)]
        rows.append((f"{key.model}\neps {key.eps:g}", imgs, caps))
    if not rows:
        return []
    return _grid(rows, f"Evading images of the -log p(x)-aware attack on the grid (seed {seed}): label -> prediction, and the label "
                 "the independent oracle gives ('kept': still the original class, a valid evasion)", out, "oracle_evasions", ncol=10)
