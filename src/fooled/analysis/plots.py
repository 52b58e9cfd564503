"""Seaborn figures drawn from a run directory alone (results.json, scores.npz, examples.npz)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..detection import roc  # noqa: E402
from ..models import bpd_from_log_prob  # noqa: E402
from ..rundir import Key, lookup, read_json, read_npz, select  # noqa: E402
from .ablation import threshold_table  # noqa: E402
from .stats import mean_ci  # noqa: E402



def save_figure(fig, out: Path, name: str) -> list[Path]:
    """Save as PNG (150 dpi) and PDF in `out`, and close the figure."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def t_interval(values) -> tuple[float, float]:
    """Error bars of every figure: the report's 95% t-interval over seeds (seaborn's bootstrap took most of the drawing time)."""
    ci = mean_ci(values)
    return ci["lo"], ci["hi"]


def _bpd(neg_log_prob: np.ndarray, dim: int, levels: int) -> np.ndarray:
    return bpd_from_log_prob(-np.asarray(neg_log_prob), dim, levels)


def shown_eps(results: dict) -> list[float]:
    """The linf budgets the example and histogram figures show: the middle one of the run and the largest."""
    eps = sorted(results["config"]["attacks"]["eps"])
    return sorted({eps[(len(eps) - 1) // 2], eps[-1]})


def shown_targets(results: dict) -> list[str]:
    """The attacked models the example figures show: the first one without a density of its own, and the detector that guards it."""
    detector_of = {r["target"]: r["detector"] for r in results["attacks"]}
    plain = [t for t in results["config"]["models"]["names"] if t in detector_of and detector_of[t] != t]
    first = plain[0] if plain else next(iter(detector_of))
    return list(dict.fromkeys([first, detector_of[first]]))


def accuracy_vs_eps(results: dict, out: Path) -> list[Path]:
    df = pd.DataFrame([r for r in results["attacks"] if r["norm"] == "linf"])
    clean = df.groupby(["seed", "target", "attack"], as_index=False).first().assign(eps=0.0)
    clean["adv_acc"] = clean["clean_acc"]
    df = pd.concat([clean, df])
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    sns.lineplot(df, x="eps", y="adv_acc", hue="target", style="attack", marker="o", errorbar=t_interval, ax=ax)
    ax.set(xlabel=f"perturbation budget eps ({df['norm'].iloc[0]}, pixel scale [0, 1])", ylabel="accuracy on attacked test images",
           ylim=(-0.02, 1.02), title="Accuracy under attack (mean, 95% CI over seeds)")
    return save_figure(fig, out, "accuracy_vs_eps")


def detection(results: dict, scores: dict, out: Path) -> list[Path]:
    """ROC of the likelihood detector, and detection rate at the calibrated threshold, per attack and eps."""
    seed = results["attacks"][0]["seed"]
    rows = [r for r in results["attacks"] if r["seed"] == seed and r["attack"] == "pgd" and r["eps"] > 0]
    targets = sorted({r["target"] for r in rows})
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 4), squeeze=False)
    palette = sns.color_palette("viridis", len({r["eps"] for r in rows}))
    for ax, target in zip(axes[0], targets):
        for r in [r for r in rows if r["target"] == target]:
            clean = lookup(scores, Key(seed, r["detector"], "clean_test"))
            fpr, tpr = roc(clean[: r["n"]], lookup(scores, Key(seed, target, r["attack"], r["eps"])))
            eps_idx = sorted({q["eps"] for q in rows}).index(r["eps"])
            ax.plot(fpr, tpr, color=palette[eps_idx], ls="-" if r["attack"] == "pgd" else "--",
                    label=f"{r['attack']} eps {r['eps']:g} (AUROC {r['auroc']:.2f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.axvline(rows[0]["fpr"], color="black", lw=0.8, ls=":")
        ax.set(xlabel="false-positive rate on clean test images", ylabel="detection rate (true-positive rate)",
               title=f"-log p(x) detector, attacks on the {target} (seed {seed})")
        ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, out, "detector_roc")


def log_prob_histograms(results: dict, scores: dict, out: Path) -> list[Path]:
    info = results["dataset"]
    seed = results["attacks"][0]["seed"]
    dim = int(np.prod(info["shape"]))
    shown = shown_eps(results)
    detector_of = {r["target"]: r["detector"] for r in results["attacks"]}
    frames = [pd.DataFrame({"bits/dim": _bpd(lookup(scores, Key(seed, d, "clean_test")), dim, info["levels"]), "set": "clean test", "target": t})
              for t, d in detector_of.items()]
    for r in results["attacks"]:
        if r["seed"] == seed and r["eps"] in shown and r["norm"] == "linf":
            s = lookup(scores, Key(seed, r["target"], r["attack"], r["eps"]))
            frames.append(pd.DataFrame({"bits/dim": _bpd(s, dim, info["levels"]), "set": f"{r['attack']} eps {r['eps']:g}", "target": r["target"]}))
    df = pd.concat(frames, ignore_index=True)
    g = sns.displot(df, x="bits/dim", hue="set", col="target", kind="hist", element="step", stat="density", log_scale=(True, False),
                    common_norm=False, height=3.6, aspect=1.2, facet_kws={"sharey": False, "sharex": False})
    threshold_of = {r["target"]: r["threshold"] for r in results["attacks"] if r["seed"] == seed}
    for target, ax in g.axes_dict.items():
        ax.axvline(_bpd(np.array([threshold_of[target]]), dim, info["levels"])[0], color="black", ls=":", lw=1)
        ax.set_xlabel(f"bits/dim under the {detector_of[target]}, log scale (higher = less likely)")
        ax.set_title(f"attacks on the {target}; dotted: threshold of the {detector_of[target]}")
    return save_figure(g.figure, out, "log_prob_hist")


def example_grid(results: dict, examples: dict, scores: dict, out: Path) -> list[Path]:
    info = results["dataset"]
    seed = results["config"]["seeds"][0]
    dim = int(np.prod(info["shape"]))
    clean = lookup(examples, Key(seed, "data", "clean_test", column="images"), "examples.npz")
    labels = lookup(examples, Key(seed, "data", "clean_test", column="labels"), "examples.npz")
    targets, shown = shown_targets(results), shown_eps(results)
    detector = next(r["detector"] for r in results["attacks"] if r["target"] == targets[0])
    bpd = _bpd(lookup(scores, Key(seed, detector, "clean_test"))[: len(clean)], dim, info["levels"])
    rows = [("clean", clean, [f"label {int(y)}\n{b:.2f} b/d" for y, b in zip(labels, bpd)])]
    for r in results["attacks"]:
        if r["seed"] == seed and r["attack"] in ("pgd", "adaptive_pgd") and r["target"] in targets and r["eps"] in shown:
            bpd = _bpd(lookup(scores, Key(seed, r["target"], r["attack"], r["eps"]))[: len(clean)], dim, info["levels"])
            label = "adaptive PGD" if r["adaptive"] else "PGD"
            imgs = lookup(examples, Key(seed, r["target"], r["attack"], r["eps"], "images"), "examples.npz")
            pred = lookup(examples, Key(seed, r["target"], r["attack"], r["eps"], "pred"), "examples.npz")
            rows.append((f"{label} on {r['target']}\neps {r['eps']:g}", imgs, [f"pred {int(p)}\n{b:.2f} b/d" for p, b in zip(pred, bpd)]))
    return _grid(rows, f"Clean and adversarial test images: prediction and bits/dim under the detector (seed {seed})", out, "examples")


def draw_all(run_dir: str | Path) -> list[Path]:
    """Redraw every figure of a run into RUN_DIR/figures from its saved files."""
    run_dir = Path(run_dir)
    results = read_json(run_dir / "results.json")
    scores = read_npz(run_dir / "scores.npz")
    examples = read_npz(run_dir / "examples.npz")
    out = run_dir / "figures"
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)
    paths = accuracy_vs_eps(results, out)
    paths += detection(results, scores, out)
    paths += log_prob_histograms(results, scores, out)
    paths += example_grid(results, examples, scores, out)
    if results.get("convergence"):
        paths += convergence(results, out)
    if results.get("ood"):
        paths += likelihood_failures(results, scores, out)
        paths += ood_grid(results, examples, out)
    if results.get("fooling"):
        paths += fooling_grid(results, examples, scores, out)
    if select(examples, set="samples"):
        paths += samples_grid(results, examples, out)
    paths += threshold_ablation(threshold_table(results, scores), out)
    return paths


def threshold_ablation(table: pd.DataFrame, out: Path) -> list[Path]:
    """Detection rate against the validation FPR that sets the threshold: one line per attack, one panel per eps."""
    df = table[(table["detector"] == "nll") & (table["norm"] == "linf")].copy()
    df["attack on"] = df["attack"] + " on " + df["target"]
    g = sns.relplot(df, x="fpr", y="tpr", hue="attack on", col="eps", kind="line", marker="o", errorbar=t_interval,
                    height=3.2, aspect=0.95, col_wrap=min(4, df["eps"].nunique()))
    for ax in g.axes.flat:
        ax.set(xscale="log", ylim=(-0.02, 1.02))  # rates: the t-interval of 3 seeds can reach past [0, 1]
        ax.plot([1e-3, 0.5], [1e-3, 0.5], color="grey", lw=0.8, ls=":")
    g.set_axis_labels("validation false-positive rate", "detection rate of adversarials")
    g.set_titles("linf eps {col_name}")
    return save_figure(g.figure, out, "threshold_ablation")


def convergence(results: dict, out: Path) -> list[Path]:
    df = pd.DataFrame(results["convergence"])
    df["model (linf eps)"] = [f"{t} ({e:g})" for t, e in zip(df["target"], df["eps"])]  # each model at its own budget
    fig, ax = plt.subplots(figsize=(5, 3.5))
    sns.lineplot(df, x="steps", y="adv_acc", hue="model (linf eps)", marker="o", errorbar=t_interval, ax=ax)
    ax.set(xscale="log", ylim=(-0.02, 1.02), xlabel="PGD steps (log scale)", ylabel="accuracy on attacked images",
           title=f"Attack convergence, at the budget where PGD leaves half\nthe clean accuracy ({df['n'].iloc[0]} images)")
    return save_figure(fig, out, "convergence")


def likelihood_failures(results: dict, scores: dict, out: Path) -> list[Path]:
    """Bits/dim under the flow of test data against OOD sets, adversarials, fooling and max-likelihood images."""
    info = results["dataset"]
    seed = results["config"]["seeds"][0]
    dim = int(np.prod(info["shape"]))
    bpd = lambda s: _bpd(s, dim, info["levels"])  # noqa: E731
    target, eps = shown_targets(results)[0], shown_eps(results)[0]
    detector = next(r["detector"] for r in results["attacks"] if r["target"] == target)
    sets = {"clean test": lookup(scores, Key(seed, detector, "clean_test"))}
    for r in results["ood"]:
        if r["seed"] == seed and r["model"] == detector:
            sets[r["set"]] = lookup(scores, Key(seed, detector, f"ood:{r['set']}"))
    sets[f"PGD on {target}, eps {eps:g}"] = scores.get(str(Key(seed, target, "pgd", eps)))
    sets[f"adaptive PGD on {target}, eps {eps:g}"] = scores.get(str(Key(seed, target, "adaptive_pgd", eps)))
    sets[f"fooling images ({target})"] = scores.get(str(Key(seed, target, "fooling_gradient")))
    df = pd.concat([pd.DataFrame({"bits/dim": bpd(v), "set": k}) for k, v in sets.items() if v is not None], ignore_index=True)
    thr = bpd(np.array([next(r["threshold"] for r in results["attacks"] if r["detector"] == detector and r["seed"] == seed)]))[0]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    order = df.groupby("set")["bits/dim"].median().sort_values().index
    sns.boxplot(df, y="set", x="bits/dim", order=order, ax=ax, fliersize=1.5, color="#9ecae1")
    ax.axvline(thr, color="black", ls=":", lw=1)
    ax.set(xscale="log", xlabel=f"bits/dim under the {detector}, log scale (left of dotted line: accepted as in-distribution)", ylabel="")
    ax.set_title(f"Where likelihood fails (seed {seed}): lower bits/dim = higher p(x)")
    return save_figure(fig, out, "likelihood_failures")


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
    info, seed = results["dataset"], results["config"]["seeds"][0]
    dim, K = int(np.prod(info["shape"])), info["num_classes"]
    per = results["config"]["fooling"]["per_class"]
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
    seed = results["config"]["seeds"][0]
    detector = next(r["detector"] for r in results["attacks"] if r["target"] == shown_targets(results)[0])
    rows = [(k.set.removeprefix("ood:"), v, [""] * len(v)) for k, v in select(examples, seed=seed, model=detector, column="images")
            if k.set.startswith("ood:")]
    return _grid(rows, "Out-of-distribution sets and images of maximal likelihood (grown from noise)", out, "ood_examples")


def samples_grid(results: dict, examples: dict, out: Path) -> list[Path]:
    """Samples x ~ p(x|y) per class (columns) from each generative classifier (rows)."""
    K, seed = results["dataset"]["num_classes"], results["config"]["seeds"][0]
    rows = []
    for key, imgs in sorted(select(examples, seed=seed, set="samples"), key=lambda kv: kv[0].model):
        name = key.model
        for d in range(len(imgs) // K):
            rows.append((f"{name}\ndraw {d + 1}", imgs[d * K : (d + 1) * K], [f"y = {k}" if d == 0 else "" for k in range(K)]))
    return _grid(rows, f"Samples from p(x | y), one column per class (temperature 1, seed {seed})", out, "samples", ncol=min(10, K))


def tradeoff_figure(table: pd.DataFrame, summary: dict, out: Path) -> list[Path]:
    """Test bits/dim against test accuracy as the class term grows, per head; the value chosen on validation starred."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)
    fig, ax = plt.subplots(figsize=(6, 4))
    colors = dict(zip(sorted(table["model"].unique()), sns.color_palette("colorblind")))
    for name, rows in table.groupby("model"):
        stats = rows.groupby("value").agg(bpd=("test_bpd", "mean"), bpd_sd=("test_bpd", "std"), acc=("test_acc", "mean"),
                                          acc_sd=("test_acc", "std")).fillna(0.0).reset_index()
        knob = rows["knob"].iloc[0].split(".")[-1]
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
