"""Figures of `fooled toy`, drawn from its run directory alone (maps.npz, points.npz, results.json), each with one
message: (a) the data and p_data, (b) each flow's log p(x) and the detector's threshold, (c) the classifiers' confident
regions, (d) plain and detector-aware adversarials as the budget grows, (e) fooling points by log p(x), (f) flows of
different seeds agree where the data is and disagree where it is not."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..rundir import read_json, read_npz

CLASS_COLORS = sns.color_palette("colorblind", 3)
EXTENT = (0, 1, 0, 1)
THRESHOLD_STYLE = {"colors": "crimson", "linewidths": 1.6}


def save_png(fig, out: Path, name: str) -> list[Path]:
    """PNG only (the maps are images: a PDF of them is large and slow), then close the figure."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return [path]


def _square(values: np.ndarray) -> np.ndarray:
    n = round(np.sqrt(values.size))
    return values.reshape(n, n)


def _axes(ncols: int, width: float = 4.2):
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, width), squeeze=False, constrained_layout=True)
    for ax in axes[0]:
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel="$x_1$", ylabel="$x_2$")
    return fig, list(axes[0])


def _data(ax, pts, alpha=0.35, size=6):
    df = pd.DataFrame({"x1": pts["train_x"][:, 0], "x2": pts["train_x"][:, 1], "class": pts["train_y"]})
    sns.scatterplot(data=df, x="x1", y="x2", hue="class", palette=CLASS_COLORS, s=size, alpha=alpha, linewidth=0, ax=ax,
                    legend=False)


def _log_p(ax, axis, log_p, floor, cmap="viridis"):
    return ax.imshow(np.maximum(_square(log_p), floor), extent=EXTENT, origin="lower", cmap=cmap, vmin=floor)


def _threshold(ax, axis, log_p, threshold):
    """The detector's boundary: log p(x) = -threshold; outside it (lower log p) points are flagged."""
    ax.contour(axis, axis, _square(log_p), levels=[-threshold], **THRESHOLD_STYLE)


def _class_boundaries(ax, axis, probs):
    """Where the predicted class changes: each class's probability minus the largest other one, at 0."""
    for k in range(probs.shape[1]):
        gap = probs[:, k] - np.delete(probs, k, axis=1).max(1)
        ax.contour(axis, axis, _square(gap), levels=[0.0], colors="gold", linewidths=1, linestyles="--")


def data_density(maps, pts, res, out: Path) -> list[Path]:
    fig, (ax,) = _axes(1, 5)
    ax.contourf(maps["axis"], maps["axis"], _square(np.exp(maps["log_p_data"])), levels=12, cmap="Greys", alpha=0.6)
    _data(ax, pts, alpha=0.7, size=8)
    ax.set_title("(a) The data: three classes in four blobs;\nbetween them p_data is almost zero")
    return save_png(fig, out, "toy_a_data")


def flow_density(maps, pts, res, out: Path) -> list[Path]:
    fig, axes = _axes(2)
    for ax, name, log_p in zip(axes, ("flow", "hybrid"), (maps["log_p_flows"][0], maps["log_p_hybrid"])):
        threshold = res["thresholds"][name]
        im = _log_p(ax, maps["axis"], log_p, -threshold - 12)
        _threshold(ax, maps["axis"], log_p, threshold)
        _data(ax, pts, alpha=0.15, size=3)
        ax.set_title(f"{name}: log p(x); red: threshold\n({100 * res['fpr']:.0f} % of held-out points outside)", fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.8, label="log p(x), nats")
    fig.suptitle("(b) Each flow's density: outside the red line a point is flagged", fontsize=11)
    return save_png(fig, out, "toy_b_log_p")


def decision_regions(maps, pts, res, out: Path) -> list[Path]:
    fig, axes = _axes(2)
    for ax, name in zip(axes, ("mlp", "flow")):
        probs = maps[f"probs_{name}"]
        rgb = np.array(CLASS_COLORS)[probs.argmax(1)]
        conf = (probs.max(1) - 1 / probs.shape[1]) / (1 - 1 / probs.shape[1])  # 0 at chance, 1 when certain
        image = 1 - conf[:, None] * (1 - rgb)  # white where unsure, the class colour where confident
        ax.imshow(image.reshape(len(maps["axis"]), len(maps["axis"]), 3), extent=EXTENT, origin="lower")
        _threshold(ax, maps["axis"], maps["log_p_flows"][0], res["thresholds"]["flow"])
        ax.scatter(*pts["train_x"].T, s=2, c="k", alpha=0.25, linewidths=0)
        share = float((probs.max(1) >= 0.99)[maps["off_data"]].mean())
        ax.set_title(f"{name}: class, shaded by confidence;\np >= 0.99 on {100 * share:.0f} % of the square off the data", pad=8)
    fig.suptitle("(c) Confident far from any data: those regions are the fooling inputs (red: the flow's threshold)",
                 fontsize=11)
    return save_png(fig, out, "toy_c_decisions")


def attack_paths(maps, pts, res, out: Path) -> list[Path]:
    fig, (ax,) = _axes(1, 5.5)
    log_p, threshold = maps["log_p_flows"][0], res["thresholds"]["flow"]
    _log_p(ax, maps["axis"], log_p, -threshold - 12, cmap="Greys_r")
    _threshold(ax, maps["axis"], log_p, threshold)
    _class_boundaries(ax, maps["axis"], maps["probs_mlp"])
    for key, color, label in (("path_pgd", "tab:orange", "PGD"), ("path_aware", "tab:cyan", "detector-aware")):
        for i, path in enumerate(pts[key]):
            ax.plot(*path.T, "-o", color=color, ms=2.5, lw=1.4, label=label if i == 0 else None)
    ax.plot(*pts["path_pgd"][:, 0].T, "*", color="white", mec="k", mew=0.6, ms=11, ls="none", label="clean point")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8)
    ax.set_title("(d) The MLP's adversarial as the L2 budget grows: PGD goes\nstraight across the class boundary (yellow); "
                 "the aware\nattack bends to keep log p(x) above the threshold (red)")
    return save_png(fig, out, "toy_d_paths")


def fooling_points(maps, pts, res, out: Path) -> list[Path]:
    fig, axes = _axes(2)
    for ax, name in zip(axes, ("mlp", "flow")):
        log_p, threshold = maps["log_p_flows"][0], res["thresholds"]["flow"]
        ax.contourf(maps["axis"], maps["axis"], _square(np.exp(maps["log_p_data"])), levels=8, cmap="Greys", alpha=0.4)
        _threshold(ax, maps["axis"], log_p, threshold)
        found = pts[f"fooling_{name}"]
        sc = ax.scatter(*found.T, c=pts[f"fooling_{name}_log_p"], cmap="viridis", vmin=-threshold - 12, vmax=-threshold + 4,
                        s=30, edgecolors="k", linewidths=0.4)
        flagged = res["fooling"][name]["flagged"]
        ax.set_title(f"{name}: fooling points grown from noise\n{'' if flagged is None else f'{100 * flagged:.0f} % flagged'}"
                     f" (outside the red line)")
    fig.colorbar(sc, ax=axes, shrink=0.8, label="log p(x) under the flow, nats")
    fig.suptitle("(e) Fooling points grown from noise: flagged in the corners, accepted on the data and in the empty gaps "
                 "where the flow put density anyway", fontsize=10)
    return save_png(fig, out, "toy_e_fooling")


def seed_disagreement(maps, pts, res, out: Path) -> list[Path]:
    spread = maps["log_p_flows"].std(axis=0, ddof=1)
    s = res["seed_spread"]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.2), constrained_layout=True, gridspec_kw={"width_ratios": [1.15, 1]})
    ax = axes[0]
    im = ax.imshow(_square(np.log10(spread)), extent=EXTENT, origin="lower", cmap="magma")
    ax.contour(maps["axis"], maps["axis"], _square(maps["on_data"].astype(float)), levels=[0.5], colors="c", linewidths=1.2)
    ax.set(aspect="equal", xlabel="$x_1$", ylabel="$x_2$", title=f"std of log p(x) over {s['seeds']} seeds\n(cyan: where "
           "the data is)")
    fig.colorbar(im, ax=ax, shrink=0.8, label="log10 std, nats")
    where = np.where(maps["on_data"], "on the data", np.where(maps["off_data"], "off the data", "edge"))
    df = pd.DataFrame({"spread": spread, "where": where})
    sns.histplot(data=df[df["where"] != "edge"], x="spread", hue="where", log_scale=True, stat="density",
                 common_norm=False, element="step", ax=axes[1])
    axes[1].set(xlabel="std of log p(x) over seeds, nats",
                title=f"median: {s['on_median']:.2f} on the data, {s['off_median']:.2f} off it ({s['ratio_median']:.0f}x)")
    fig.suptitle("(f) Maximum likelihood pins p(x) down only where the data is: flows of different seeds agree there "
                 "and disagree elsewhere", fontsize=10)
    return save_png(fig, out, "toy_f_seeds")


FIGURES = (data_density, flow_density, decision_regions, attack_paths, fooling_points, seed_disagreement)


def is_toy_dir(run_dir: str | Path) -> bool:
    """Whether run_dir was written by `fooled toy` (its maps are what no other run writes)."""
    return (Path(run_dir) / "maps.npz").exists()


def draw_toy(run_dir: str | Path) -> list[Path]:
    """Every toy figure from the run directory's files, into run_dir/figures; returns the paths written."""
    run_dir = Path(run_dir)
    maps, pts, res = read_npz(run_dir / "maps.npz"), read_npz(run_dir / "points.npz"), read_json(run_dir / "results.json")
    return [p for draw in FIGURES for p in draw(maps, pts, res, run_dir / "figures")]
