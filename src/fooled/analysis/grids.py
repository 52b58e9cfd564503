"""Figures made of images: clean and adversarial examples, fooling images, OOD sets, samples (one mosaic each)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..config import run_config
from ..records import ANY, rows
from ..rundir import Key, lookup, select
from .style import _bpd, save_figure, shown_eps, shown_targets


def example_grid(results: dict, examples: dict, scores: dict, out: Path) -> list[Path]:
    info = results["dataset"]
    seed = run_config(results).seeds[0]
    dim = int(np.prod(info["shape"]))
    clean = lookup(examples, Key(seed, "data", "clean_test", column="images"), "examples.npz")
    labels = lookup(examples, Key(seed, "data", "clean_test", column="labels"), "examples.npz")
    targets, shown = shown_targets(results), shown_eps(results)
    threshold = rows(results, target=targets[0], seed=seed, grid=ANY)[0].threshold
    nll = lookup(scores, Key(seed, targets[0], "clean_test"))[: len(clean)]
    flag = lambda s, thr: " FLAG" if s > thr else ""  # noqa: E731
    strips = [("clean", clean, [f"label {int(y)}\n{b:.2f}{flag(s, threshold)}" for y, b, s in
                              zip(labels, _bpd(nll, dim, info["levels"]), nll)])]
    for r in rows(results, seed=seed, attack=("pgd", "adaptive_pgd"), target=tuple(targets), attacked_detector=(None, "nll")):
        if r.eps in shown:
            nll = lookup(scores, Key(seed, r.target, r.attack, r.eps))[: len(clean)]
            label = "detector-aware PGD" if r.adaptive else "PGD"
            imgs = lookup(examples, Key(seed, r.target, r.attack, r.eps, "images"), "examples.npz")
            pred = lookup(examples, Key(seed, r.target, r.attack, r.eps, "pred"), "examples.npz")
            strips.append((f"{label} on {r.target}\neps {r.eps:g}", imgs,
                           [f"{int(p)}{' wrong' if p != y else ''}\n{b:.2f}{flag(s, r.threshold)}"
                            for p, y, b, s in zip(pred, labels, _bpd(nll, dim, info["levels"]), nll)]))
    return _grid(strips, f"Clean and adversarial test images (seed {seed}): label or prediction ('wrong' if misclassified), then bits/dim "
                 "under the target's detector ('FLAG' if flagged)", out, "examples")


def _grid(rows: list[tuple[str, np.ndarray, list[str]]], title: str, out: Path, name: str, ncol: int = 8) -> list[Path]:
    """Rows of images with a caption each, drawn as one mosaic (one axes: fast, and small PDFs)."""
    c, h, w = rows[0][1].shape[1:]
    pad, gap = max(1, h // 8), max(2, h // 2)  # between columns; above each row, for the captions
    tile_h, tile_w = h + gap, w + pad
    canvas = np.ones((len(rows) * tile_h, ncol * tile_w, c))
    for i, (_, imgs, _) in enumerate(rows):
        for j, img in enumerate(imgs[:ncol]):
            tile = np.transpose(img, (1, 2, 0))
            canvas[i * tile_h + gap : (i + 1) * tile_h, j * tile_w : j * tile_w + w] = 1 - tile if c == 1 else tile  # grey: ink dark
    fig, ax = plt.subplots(figsize=(1.0 * ncol + 1.2, 1.0 * len(rows) * tile_h / h + 0.4))
    ax.imshow(canvas.squeeze(-1) if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=1, interpolation="nearest",
              extent=(0, ncol * tile_w, len(rows) * tile_h, 0))
    for i, (label, imgs, captions) in enumerate(rows):
        ax.text(-pad, i * tile_h + gap + h / 2, label, ha="right", va="center", fontsize=7)
        for j, cap in enumerate(captions[:ncol]):
            ax.text(j * tile_w + w / 2, i * tile_h + gap - 0.15, cap, ha="center", va="bottom", fontsize=5.5)
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return save_figure(fig, out, name)


def fooling_grid(results: dict, examples: dict, scores: dict, out: Path) -> list[Path]:
    """Fooling images per model and method: target class, confidence and bits/dim."""
    info, seed = results["dataset"], run_config(results).seeds[0]
    dim, K = int(np.prod(info["shape"])), info["num_classes"]
    per = run_config(results).fooling.per_class
    rows = []
    for target in sorted({r["target"] for r in results["fooling"]}):
        for method in ("gradient", "evolution", "gradient_unflagged", "evolution_unflagged"):
            key = Key(seed, target, f"fooling_{method}", column="images")
            if str(key) not in examples:
                continue
            idx = np.arange(0, K * per, per)[:10]  # one image per class
            bpd = _bpd(lookup(scores, Key(seed, target, f"fooling_{method}")), dim, info["levels"])
            conf = lookup(examples, Key(seed, target, f"fooling_{method}", column="confidence"), "examples.npz")
            rows.append((f"{method.replace('_', ' ')}\non {target}", examples[str(key)][idx], [f"{k}: p={conf[i]:.2f}\n{bpd[i]:.1f} b/d" for k, i in enumerate(idx)]))
    return _grid(rows, f"Fooling images grown from noise: target class, confidence, bits/dim (seed {seed})", out, "fooling", ncol=min(10, K))


def ood_grid(results: dict, examples: dict, out: Path) -> list[Path]:
    seed = run_config(results).seeds[0]
    detector = rows(results, target=shown_targets(results)[0], grid=ANY)[0].detector
    strips = [(k.set.removeprefix("ood:"), v, [""] * len(v)) for k, v in select(examples, seed=seed, model=detector, column="images")
            if k.set.startswith("ood:")]
    return _grid(strips, "Out-of-distribution sets and images of maximal likelihood (grown from noise)", out, "ood_examples")


def samples_grid(results: dict, examples: dict, out: Path) -> list[Path]:
    """Samples x ~ p(x|y) per class (columns) from each generative classifier (rows)."""
    K, seed = results["dataset"]["num_classes"], run_config(results).seeds[0]
    rows = []
    for key, imgs in sorted(select(examples, seed=seed, set="samples"), key=lambda kv: kv[0].model):
        name = key.model
        for d in range(len(imgs) // K):
            rows.append((f"{name}\ndraw {d + 1}", imgs[d * K : (d + 1) * K], [f"y = {k}" if d == 0 else "" for k in range(K)]))
    return _grid(rows, f"Samples from p(x | y), one column per class (temperature 1, seed {seed})", out, "samples", ncol=min(10, K))


