"""Seaborn figures drawn from a run directory alone (results.json, scores.npz, examples.npz)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..config import run_config
from ..detection import roc  # noqa: E402
from ..records import ANY, budgets, middle_budget, rows  # noqa: E402
from ..rundir import Key, lookup, read_json, read_npz, select  # noqa: E402
from ..stage_rows import ood_rows  # noqa: E402
from .ablation import threshold_table  # noqa: E402
from .curves import learning_curves  # noqa: E402
from .grids import example_grid, fooling_grid, ood_grid, samples_grid  # noqa: E402
from .headline import headline  # noqa: E402
from .style import _bpd, model_lines, model_order, save_figure, shown_eps, shown_targets, t_interval  # noqa: E402



def _plain(results: dict) -> pd.DataFrame:
    """Attack rows as the attacks made them (not rounded), detector-aware ones against -log p(x) only."""
    return pd.DataFrame([r.to_dict() for r in rows(results, grid=("continuous", None), attacked_detector=(None, "nll"))])


def accuracy_vs_eps(results: dict, out: Path) -> list[Path]:
    """Accuracy under PGD and FGSM against the linf budget, one panel per attack, one colour, marker and dash per model."""
    df = _plain(results)
    df = df[(df["norm"] == "linf") & df["attack"].isin(["fgsm", "pgd"])]
    clean = df.groupby(["seed", "target", "attack"], as_index=False).first().assign(eps=0.0)
    clean["adv_acc"] = clean["clean_acc"]
    df = pd.concat([clean, df])
    attacks = [a for a in ("pgd", "fgsm") if a in set(df["attack"])]  # a panel per attack the run made
    g = sns.relplot(df, x="eps", y="adv_acc", **model_lines(df["target"].unique()), col="attack", col_order=attacks,
                    kind="line", errorbar=t_interval, height=3.4, aspect=1.1, markeredgewidth=0, markersize=7)
    g.set(ylim=(-0.02, 1.02))
    g.set_axis_labels("linf budget eps (pixel scale [0, 1])", "accuracy on attacked test images")
    g.set_titles("{col_name}")
    g.figure.suptitle("Accuracy under attack (mean and 95% interval over seeds)", y=1.03, fontsize=10)
    return save_figure(g.figure, out, "accuracy_vs_eps")


def detection(results: dict, scores: dict, out: Path) -> list[Path]:
    """ROC of -log p(x) against the successful PGD adversarials, per attacked model, on a log false-positive axis."""
    seed = run_config(results).seeds[0]
    pgd = [r for r in rows(results, seed=seed, attack="pgd") if r.eps > 0]
    targets = model_order({r.target for r in pgd})
    ncol = min(3, len(targets))
    nrow = -(-len(targets) // ncol)
    # constrained layout: each row's x-axis label clear of the titles of the row below
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.6 * nrow), squeeze=False, layout="constrained")
    eps_all = budgets(pgd)
    palette = sns.color_palette("viridis", len(eps_all))
    for ax, target in zip(axes.flat, targets):
        target_rows = [r for r in pgd if r.target == target]
        for r in target_rows:
            success = lookup(scores, r.key("success")).astype(bool)
            if not success.any():
                continue
            clean = lookup(scores, Key(seed, target, "clean_test"))
            fpr, tpr = roc(clean[: r.n], lookup(scores, r.key())[success])
            ax.plot(np.maximum(fpr, 1e-3), tpr, color=palette[eps_all.index(r.eps)], label=f"eps {r.eps:g} (AUROC {r.auroc:.2f})")
        ax.axvline(pgd[0].fpr, color="black", lw=0.8, ls=":")
        ax.set(xscale="log", xlim=(1e-3, 1), ylim=(-0.02, 1.02), xlabel="false-positive rate on clean test images (log)",
               ylabel="detection rate", title=f"PGD on the {target}, scored by the {target_rows[0].detector}")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(targets):]:
        ax.set_visible(False)
    return save_figure(fig, out, "detector_roc")


def transfer_heatmap(results: dict, out: Path) -> list[Path]:
    """Accuracy of each model (columns) on the PGD adversarials made on each other model (rows), at the middle budget."""
    df = pd.DataFrame(results["transfer"])
    eps = middle_budget(df["eps"].unique())
    table = df[df["eps"] == eps].groupby(["source", "target"])["adv_acc"].mean().unstack()
    order = model_order(set(table.index) | set(table.columns))
    table = table.reindex(index=order, columns=order)
    fig, ax = plt.subplots(figsize=(1.0 * len(order) + 2, 0.8 * len(order) + 1.5))
    sns.heatmap(table, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax, cbar_kws={"label": "accuracy"})
    ax.set(xlabel="evaluated on", ylabel="PGD adversarials made on", title=f"Transfer at linf eps {eps:g} (mean over seeds)")
    return save_figure(fig, out, "transfer")


def log_prob_histograms(results: dict, scores: dict, out: Path) -> list[Path]:
    info = results["dataset"]
    every = rows(results, grid=ANY)
    seed = every[0].seed
    dim = int(np.prod(info["shape"]))
    shown = shown_eps(results)
    detector_of = {r.target: r.detector for r in every}
    frames = [pd.DataFrame({"bits/dim": _bpd(lookup(scores, Key(seed, t, "clean_test")), dim, info["levels"]), "set": "clean test", "target": t})
              for t in detector_of]
    for r in rows(results, seed=seed, norm="linf", attack=("pgd", "adaptive_pgd", "noise_linf"), attacked_detector=(None, "nll")):
        if r.eps in shown:
            s = lookup(scores, r.key())
            frames.append(pd.DataFrame({"bits/dim": _bpd(s, dim, info["levels"]), "set": f"{r.attack} eps {r.eps:g}", "target": r.target}))
    df = pd.concat(frames, ignore_index=True)
    g = sns.displot(df, x="bits/dim", hue="set", col="target", col_order=model_order(detector_of), col_wrap=3, kind="hist",
                    element="step", stat="density", log_scale=(True, False), common_norm=False, height=3.2, aspect=1.2,
                    facet_kws={"sharey": False, "sharex": False})
    threshold_of = {r.target: r.threshold for r in every if r.seed == seed}
    for target, ax in g.axes_dict.items():
        ax.axvline(_bpd(np.array([threshold_of[target]]), dim, info["levels"])[0], color="black", ls=":", lw=1)
        ax.set_xlabel(f"bits/dim under the {detector_of[target]} (log)")
        ax.set_title(f"on the {target} (dotted: threshold)")
    g.tight_layout()  # again, for the labels set here: each row's x-axis label clear of the titles of the row below
    return save_figure(g.figure, out, "log_prob_hist")


def _figure_jobs(results: dict, examples: dict) -> list:
    """Every figure of a run as a function (results, scores, examples, out) -> paths, the slowest first."""
    jobs = [
        lambda r, s, e, o: example_grid(r, e, s, o),
        lambda r, s, e, o: log_prob_histograms(r, s, o),
        lambda r, s, e, o: detection(r, s, o),
        lambda r, s, e, o: threshold_ablation(threshold_table(r, s), o),
        lambda r, s, e, o: accuracy_vs_eps(r, o),
    ]
    if results.get("transfer"):
        jobs.append(lambda r, s, e, o: transfer_heatmap(r, o))
    if any(row.get("curve") for rs in results["models"].values() for row in rs):
        jobs.append(lambda r, s, e, o: learning_curves(r, o))
    if select(examples, set="adaptive_pgd"):
        jobs.append(lambda r, s, e, o: [headline(r, s, e, shown_targets(r)[0], o)])
    if results.get("convergence"):
        jobs.append(lambda r, s, e, o: convergence(r, o))
    if results.get("ood"):
        jobs += [lambda r, s, e, o: likelihood_failures(r, s, o), lambda r, s, e, o: ood_grid(r, e, o)]
    if results.get("fooling"):
        jobs.append(lambda r, s, e, o: fooling_grid(r, e, s, o))
    if select(examples, set="samples"):
        jobs.append(lambda r, s, e, o: samples_grid(r, e, o))
    if select(examples, set="grid_aware_nll"):
        from .honest_grid import oracle_grid

        jobs.append(lambda r, s, e, o: oracle_grid(r, e, o))
    return jobs


def _draw_share(run_dir: Path, share: int, shares: int) -> list[Path]:
    """Every `shares`-th figure of the run, starting at `share`, drawn from its saved files."""
    results = read_json(run_dir / "results.json")
    scores = read_npz(run_dir / "scores.npz")
    examples = read_npz(run_dir / "examples.npz")
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)
    paths = []
    for job in _figure_jobs(results, examples)[share::shares]:
        paths += job(results, scores, examples, run_dir / "figures")
        plt.close("all")
    return paths


def draw_all(run_dir: str | Path, jobs: int | None = None) -> list[Path]:
    """Redraw every figure of a run into RUN_DIR/figures from its saved files, in `jobs` processes (default: up to 2
    CPU cores; each figure is drawn by one process, so the files are the same whatever the number)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    run_dir = Path(run_dir)
    jobs = jobs or min(2, os.cpu_count() or 1)
    if jobs == 1 or "fork" not in multiprocessing.get_all_start_methods():
        return _draw_share(run_dir, 0, 1)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        shares = [pool.submit(_draw_share, run_dir, share, jobs) for share in range(jobs)]
        return [path for share in shares for path in share.result()]


def threshold_ablation(table: pd.DataFrame, out: Path) -> list[Path]:
    """Detection rate of -log p(x) against the validation FPR that sets its threshold, one panel per model: plain PGD,
    detector-aware PGD and the sign-noise control, each at the middle linf budget."""
    df = table[(table["detector"] == "nll") & (table["norm"] == "linf") & (table["grid"] == "continuous")
               & table["attack"].isin(["pgd", "adaptive_pgd", "noise_linf"])].copy()
    eps = middle_budget(df["eps"].unique())
    df = df[df["eps"] == eps]
    df["set"] = df["attack"].map({"pgd": "PGD", "adaptive_pgd": "detector-aware PGD", "noise_linf": "random sign noise"})
    order = model_order(df["target"].unique())
    g = sns.relplot(df, x="fpr", y="tpr", hue="set", hue_order=["PGD", "detector-aware PGD", "random sign noise"], col="target",
                    col_order=order, kind="line", marker="o", errorbar=t_interval, height=2.8, aspect=1.0, col_wrap=min(3, len(order)))
    for ax in g.axes.flat:
        ax.set(xscale="log", ylim=(-0.02, 1.02))
        ax.plot([1e-3, 0.5], [1e-3, 0.5], color="grey", lw=0.8, ls=":")
    g.set_axis_labels("validation false-positive rate (log)", "share flagged")
    g.set_titles("attacks on the {col_name}")
    g.figure.suptitle(f"Threshold ablation at linf eps {eps:g}: share flagged (successful adversarials; all noisy images)", y=1.03, fontsize=10)
    return save_figure(g.figure, out, "threshold_ablation")


def convergence(results: dict, out: Path) -> list[Path]:
    df = pd.DataFrame(results["convergence"])
    df["model (linf eps)"] = [f"{t} ({e:g})" for t, e in zip(df["target"], df["eps"])]  # each model at its own budget
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    sns.lineplot(df, x="steps", y="adv_acc", hue="model (linf eps)", marker="o", errorbar=t_interval, ax=ax)
    ax.set(xscale="log", ylim=(-0.02, 1.02), xlabel="PGD steps (log scale)", ylabel="accuracy on attacked images",
           title=f"Attack convergence, at the budget where PGD leaves half\nthe clean accuracy ({df['n'].iloc[0]} images)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), frameon=False)  # beside the curves, not over them
    return save_figure(fig, out, "convergence")


def likelihood_failures(results: dict, scores: dict, out: Path) -> list[Path]:
    """Bits/dim under the flow of test data against OOD sets, adversarials, fooling and max-likelihood images."""
    info = results["dataset"]
    seed = run_config(results).seeds[0]
    dim = int(np.prod(info["shape"]))
    bpd = lambda s: _bpd(s, dim, info["levels"])  # noqa: E731
    target, eps = shown_targets(results)[0], shown_eps(results)[0]
    detector = rows(results, target=target, grid=ANY)[0].detector
    sets = {"clean test": lookup(scores, Key(seed, detector, "clean_test"))}
    for r in ood_rows(results, model=detector, seed=seed):
        sets[r.set] = lookup(scores, Key(seed, detector, f"ood:{r.set}"))
    sets[f"PGD on {target}, eps {eps:g}"] = scores.get(str(Key(seed, target, "pgd", eps)))
    sets[f"adaptive PGD on {target}, eps {eps:g}"] = scores.get(str(Key(seed, target, "adaptive_pgd", eps)))
    sets[f"fooling images ({target})"] = scores.get(str(Key(seed, target, "fooling_gradient")))
    df = pd.concat([pd.DataFrame({"bits/dim": bpd(v), "set": k}) for k, v in sets.items() if v is not None], ignore_index=True)
    thr = bpd(np.array([rows(results, detector=detector, seed=seed, grid=ANY)[0].threshold]))[0]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    order = df.groupby("set")["bits/dim"].median().sort_values().index
    sns.boxplot(df, y="set", x="bits/dim", order=order, ax=ax, fliersize=1.5, color="#9ecae1")
    ax.axvline(thr, color="black", ls=":", lw=1)
    log = bool((df["bits/dim"] > 0).all())  # a set more likely than one bit per pixel (an all-black image) can go below 0
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(xlabel=f"bits/dim under the {detector}{', log scale' if log else ''} (left of dotted line: accepted as in-distribution)",
           ylabel="")
    ax.set_title(f"Where likelihood fails (seed {seed}): lower bits/dim = higher p(x)")
    return save_figure(fig, out, "likelihood_failures")


def tradeoff_figure(table: pd.DataFrame, summary: dict, out: Path) -> list[Path]:
    """Test bits/dim against test accuracy as the class term grows, per head; the value chosen on validation starred."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)
    fig, ax = plt.subplots(figsize=(6, 4))
    colors = dict(zip(sorted(table["model"].unique()), sns.color_palette("colorblind")))
    for name, runs in table.groupby("model"):
        stats = runs.groupby("value").agg(bpd=("test_bpd", "mean"), bpd_sd=("test_bpd", "std"), acc=("test_acc", "mean"),
                                          acc_sd=("test_acc", "std")).fillna(0.0).reset_index()
        knob = runs["knob"].iloc[0].split(".")[-1]
        ax.errorbar(stats["bpd"], stats["acc"], xerr=stats["bpd_sd"], yerr=stats["acc_sd"], marker="o", ms=4, capsize=2,
                    color=colors[name], label=f"{name} (knob: {knob})")
        for _, s in stats.iterrows():
            ax.annotate(f"{s['value']:g}", (s["bpd"], s["acc"]), textcoords="offset points", xytext=(4, -9), fontsize=7, color=colors[name])
        chosen = summary["chosen"][name]["value"]
        c = stats[stats["value"] == chosen].iloc[0]
        ax.plot([c["bpd"]], [c["acc"]], marker="*", ms=13, color=colors[name], mec="black", ls="none")
    ax.set(xlabel="test bits/dim (lower: better model of p(x))", ylabel="test accuracy",
           title=f"What classification costs in bits/dim (mean ± sd over {table['seed'].nunique()} seeds; * chosen on validation)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    return save_figure(fig, out, "tradeoff")
