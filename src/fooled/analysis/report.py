"""report.md from a run directory's results.json alone: the answer, the verdict table, then each result beside its figure.

Long tables go to CSV files beside the report (attacks.csv, detectors.csv), which the report links.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd

from ..detection.ood_fashion import PAPER_REFERENCE
from ..config import run_config, trained_hash
from ..errors import FooledError
from ..records import VerdictCell, audit_checks, model_rows, rows as attack_rows_where, verdict_cells
from ..rundir import atomic_write_text, read_json, read_npz
from ..stage_rows import committee_rows, ood_rows, oracle_rows
from .curves import stopping_text
from .methods import methods, who_scores
from .stats import rate_ci
from .answer_tables import answer_tables
from .precision import precision_sentence
from .summary import plain_answer, verdict_table
from .tables import audit_detail, ci_text, detector_table, fmt, group, loss_table, md_table
from .tradeoff import describe
from .verdict import compute_verdict

RELATED = [  # published results this study can be set beside (cited, not measured here)
    "- **Nalisnick et al. 2019** (*Do deep generative models know what they don't know?*): a Glow trained on FashionMNIST gives "
    "MNIST test images a *higher* likelihood (about 1.8 bits/dim) than FashionMNIST's own test images (about 2.9): likelihood "
    "alone does not detect inputs off the data's support. Our 'Where likelihood fails' section tests the same on our data.",
    "- **Carlini & Wagner 2017** (*Adversarial examples are not easily detected*): ten detection methods, among them kernel density "
    "on features (Feinman et al. 2017) and density-based ones, are bypassed once the attacker's loss includes the detector; our "
    "detector-aware attacks, including their detector-as-extra-class formulation, test -log p(x) the same way.",
    "- **Li, Bradshaw & Sharma 2019** (*Are generative classifiers more robust to adversarial attacks?*): generative classifiers of "
    "p(x, y) on MNIST resist some attacks better and can detect many adversarials by their low likelihood, but not all attacks; our "
    "robustness and detection rows compare a flow classifier and a CNN on the same data.",
    "- **Fetaya et al. 2020** (*Understanding the limitations of conditional generative models*): class-conditional flows are not "
    "more robust than discriminative ones, and their likelihood stays high on adversarial and interpolated inputs; our "
    "detector-aware attacks and near-data sets probe the same failure.",
]
LIMITATIONS = [
    "- Every attack is white-box within its budget and checked by the audit, but no audit proves optimality: robust accuracies are "
    "upper bounds and evasion rates lower bounds.",
    "- A committee of classifiers stands in for a human judging what an adversarial image shows; it can share their blind spots.",
    "- One density family (normalizing flows, plus shallow baselines) at one size per dataset in the study; whether a better "
    "density flags more is measured separately, on one split of the data, by `fooled disagree`'s density sweep (KDE, GMM, "
    "Gaussian, flows of two sizes and three seeds, the study's flow).",
    "- Thresholds are set at one validation false-positive rate; the threshold ablation shows the whole trade-off.",
]


def _value(a: VerdictCell, ci: dict) -> str:
    if a.criterion in ("robust", "shallow"):
        return f"{fmt({k: (None if v is None else 100 * v) if k in ('mean', 'lo', 'hi') else v for k, v in ci.items()}, digits=1)} points"
    return f"{fmt(ci, pct=True)}%"


def verdict_lines(results) -> list[str]:
    """One line per answer: the answer, the number that decides it (at the budget that decides most against a yes) with its
    95% interval, and the answer at every budget; then the criteria, each stated once."""
    out, answers = [], verdict_cells(results)
    for a in answers:
        at = f" at eps {a.eps:g}" if a.eps is not None else ""
        line = f"- **{a.question}** {a.answer.upper()}. {a.measure}{at}: {_value(a, a.value)}"
        if len(a.per_eps) > 1:
            line += "; per eps: " + ", ".join(f"{p['eps']:g} {p['answer']}" for p in a.per_eps)
        if a.criterion == "control":
            line += "; random perturbations flagged: " + ", ".join(f"{fmt(p['control'], pct=True)}%" for p in a.per_eps)
        if a.sets is not None:
            line += "; sets: " + ", ".join(f"{n} {fmt(c, pct=True)}%" for n, c in a.shares.items())
        out.append(line + ".")
    criteria = results["verdict"].get("criteria", {})
    used = list(dict.fromkeys(a.criterion for a in answers))
    out += ["", "Criteria (95% intervals: rates pooled over seeds and images, see Methods):", ""]
    out += [f"- *{kind}*: {criteria[kind]}." for kind in used + ["overall"] if kind in criteria]
    return out


def _csv(run_dir: Path, results: dict) -> list[str]:
    """Write the long tables (every attack row; every detector of every row) beside the report; returns their links."""
    base = [{**{k: v for k, v in r.items() if k not in ("detectors", "fooled_by")},
             **{f"fooled_by_{loss}": n for loss, n in (r.get("fooled_by") or {}).items()}} for r in results["attacks"]]
    table = pd.DataFrame(base)
    counts = [c for c in table.columns if c.startswith("fooled_by_")]  # counts, empty where an attack has none (FGSM, controls)
    table[counts] = table[counts].astype("Int64")
    atomic_write_text(run_dir / "attacks.csv", table.to_csv(index=False))
    long = [{**{k: r[k] for k in ("seed", "target", "attack", "attacked_detector", "grid", "eps", "norm", "n", "n_success")},
             "detector": d, **v} for r in results["attacks"] for d, v in r.get("detectors", {}).items()]
    atomic_write_text(run_dir / "detectors.csv", pd.DataFrame(long).to_csv(index=False))
    return ["[attacks.csv](attacks.csv)", "[detectors.csv](detectors.csv)"]


def _figure(name: str, caption: str) -> list[str]:
    return [f"![{caption}](figures/{name}.png)", "", f"*{caption}*", ""]


def _key_rows(results: dict, attacks: tuple[str, ...], grid: str = "continuous") -> list[list[str]]:
    rows = attack_rows_where(results, attack=attacks, grid=grid, norm="linf", attacked_detector=(None, "nll"))
    return [[t, a, f"{e:g}", ci_text(rs, "adv_acc", True), str(sum(r.n_success for r in rs)), ci_text(rs, "auroc", digits=2),
             ci_text(rs, "tpr_at_fpr" if not a.startswith("noise") else "tpr_all", True), ci_text(rs, "evasion_rate", True),
             ci_text(rs, "mean_bpd", digits=2)]
            for (t, a, e), rs in group(rows, "target", "attack", "eps").items()]


KEY_HEADER = ["target", "attack", "eps", "accuracy %", "successful", "AUROC", "flagged %", "evasion %", "bits/dim"]


def render(results: dict, tradeoff: dict | None = None, links: list[str] = (), samples: bool = False) -> str:
    """The report; `tradeoff` is the summary of `fooled tradeoff` for the same config, if it was run; `samples`: the run
    drew samples of p(x|y) (figures/samples.png)."""
    cfg, info = run_config(results), results["dataset"]
    seeds = len(cfg.seeds)
    sections = ["The answer", "Verdict", "Methods", "Models", "Plain attacks and the detector", "Every detector",
                "Attacks that know the detector", "Fooling images", "What the attacks made", "Robustness", "Where likelihood fails",
                "Gradient-masking audit", "Related work", "Limitations", "Reproduce"]
    out = [f"# fooled: {cfg.name} ({info['name']}, {seeds} seed{'s' if seeds > 1 else ''})", "",
           "Would a model of p(x, y) notice the inputs that fool a classifier of p(y|x), because their p(x) is low?", "",
           "**Contents:** " + " · ".join(f"[{s}](#{s.lower().replace(' ', '-')})" for s in sections), "", "## The answer", ""]
    precision = precision_sentence(results)
    out += [" ".join(plain_answer(results)), ""] + [precision, ""] * bool(precision) + _figure("headline", "(a) a digit, its PGD and detector-aware versions; (b) how "
                                                         "likely each set is against the threshold; (c) share flagged against the budget")
    out += ["## Verdict", ""] + verdict_table(results) + [""] + answer_tables(results)
    out += ["", "## Methods", "", f"- **Bits/dim** (used throughout): -log2 p(x) / D of an image, D = {math.prod(info['shape'])}"
            f" dimensions on {info['levels']} grey levels; higher = less likely. Detection scores use the density of the image itself "
            "at its grid point (deterministic); the Models table's test bits/dim use uniform dequantisation (a bound on the discrete "
            f"likelihood), so the two differ slightly. {who_scores(results)}"] + methods(results)
    out += _models(results, tradeoff, samples)
    out += ["", "## Plain attacks and the detector", "", "Flagged: the successful adversarials (images the model got right and the "
            "attack made wrong) that -log p(x) flags at its validation threshold; for the random sign noise, all perturbed images. "
            "Every set as made and rounded to the grey levels is in " + " and ".join(links) + ".", ""]
    out += _figure("detector_roc", "ROC of -log p(x) against successful PGD adversarials (log false-positive axis)")
    out += _figure("log_prob_hist", "Bits/dim of clean test images and of each attack's images under each target's detector, "
                   "against its threshold")
    out.append(md_table(KEY_HEADER, _key_rows(results, ("pgd", "noise_linf"))))
    out += ["", "On the grid (every set rounded to the grey levels inside its budget):", ""]
    out.append(md_table(KEY_HEADER, _key_rows(results, ("pgd", "noise_linf"), "rounded")))
    out += [""] + _figure("threshold_ablation", "Share flagged against the validation false-positive rate: plain PGD, detector-aware "
                          "PGD and random noise")
    out += ["## Every detector", ""] + detector_table(results)[2:]
    out += ["", "## Attacks that know the detector", "", "Evasion: of the images the model got right, the share the attack made wrong "
            "without being flagged. The detector-aware attack keeps, per image, the best of the detector-as-extra-class PGD and a "
            "Lagrangian PGD from several starts (and, for flow classifiers, a latent-space attack).", ""]
    out.append(md_table(KEY_HEADER, _key_rows(results, ("adaptive_pgd",))))
    out += [""] + _figure("examples", "Clean, PGD and detector-aware PGD images with predictions, bits/dim and flags")
    out += _honest(results)
    out += _fooling(results) + _oracle(results)
    losses = loss_table(results)
    out += ["## Robustness", ""] + _figure("accuracy_vs_eps", "Accuracy under PGD and FGSM against the budget") + losses + [""] * bool(losses)
    if results.get("cw"):
        out.append(md_table(["target", "success %", "median L2", "AUROC (successful)", "flagged %"], [
            [t, ci_text(rs, "success_rate", True), ci_text(rs, "median_l2"), ci_text(rs, "auroc"), ci_text(rs, "tpr_at_fpr", True)]
            for (t,), rs in group(results["cw"], "target").items()]))
        out += ["", "Carlini-Wagner L2 above: minimal perturbations.", ""]
    if results.get("transfer"):
        out += _figure("transfer", "Transfer: accuracy of each model on PGD adversarials made on another")
    out += _ood(results) + _audit(results)
    out += ["## Related work", ""] + RELATED + ["", "## Limitations", ""] + LIMITATIONS
    out += ["", "## Reproduce", "", f"`fooled study` with this config (hash `{results['config_hash']}`); versions: "
            f"{', '.join(f'{k} {v}' for k, v in results['versions'].items())}; device {results['device']}; {results['seconds']:.0f} s "
            "for this run (stages an earlier run in the same directory cached are loaded, not recomputed).", ""]
    return "\n".join(out)


def _models(results: dict, tradeoff: dict | None, samples: bool) -> list[str]:
    """The Models section: accuracy and bits/dim, how training stopped, the samples and what classification costs."""
    out = ["", "## Models", "", "Test accuracy (%) and bits/dim; mean [95% interval over seeds].", ""]
    out.append(md_table(["model", "test accuracy %", "test bits/dim", "parameters", "train seconds"], [
        [name, ci_text(rows, "test_acc", pct=True) if rows[0].test_acc is not None else "-",
         ci_text(rows, "test_bpd") if rows[0].test_bpd is not None else "-", f"{rows[0].n_params or 0:,}",
         f"{sum(r.train_seconds or 0 for r in rows) / len(rows):.1f}"] for name, rows in model_rows(results).items()]))
    if any(r.curve for rs in model_rows(results).values() for r in rs):
        out += ["", stopping_text(results), ""] + _figure("learning_curves", "Learning curves: accuracy and bits/dim per epoch on "
                                                         f"{run_config(results).train.curve_images} train and validation images")
    out += [""] + (_figure("samples", "Samples x ~ p(x | y) of each generative classifier, one column per class") if samples else [])
    out += ["What classification costs in bits/dim:", ""]
    out += describe(tradeoff) if tradeoff else ["Run `fooled tradeoff` with this config and `fooled report RUN_DIR --tradeoff DIR`: "
                                                 "it trains each head with and without its class term and says what it costs."]
    return out


def _honest(results: dict) -> list[str]:
    """One threat model: the oracle, the combined defence beside each detector alone, the evading images with oracle labels."""
    from .honest import defence_table, oracle_lines

    if not results.get("honest"):
        return []
    return (["### One threat model: valid images on the grid, judged by an oracle", ""] + oracle_lines(results) + defence_table(results)
            + [""] + _figure("oracle_evasions", "Evading images on the grid with the label the independent oracle gives them"))


def _fooling(results: dict) -> list[str]:
    rows = results.get("fooling") or []
    out = [] if not rows else ["## Fooling images", "", "Unconstrained searches (Nguyen et al. 2015) ask only for p(target | x) >= the confidence target; "
           "the density-aware ones (`_unflagged`) also keep -log p(x) at or below the detector's threshold: can a model of p(x, y) be "
           "fooled by an image it finds likely?", ""]
    if not out:
        return out
    out.append(md_table(["target", "search", "confident %", "confident and unflagged %", "bits/dim", "clean bits/dim", "flagged %"], [
        [t, m, ci_text(rs, "success_rate", True), ci_text(rs, "unflagged_success_rate", True), ci_text(rs, "mean_bpd", digits=2),
         ci_text(rs, "clean_mean_bpd", digits=2), ci_text(rs, "flagged_rate", True)]
        for (t, m), rs in group(rows, "target", "method").items()]))
    return out + [""] + _figure("fooling", "Fooling images: target class, confidence and bits/dim")


def _oracle(results: dict) -> list[str]:
    if not results.get("oracle"):
        return []
    members = ", ".join(committee_rows(results)[0].members) if results.get("committee") else "a committee"
    out = ["## What the attacks made", "", f"A committee that was never attacked ({members}; the attacked model itself left out) "
           "stands in for a human. For the successful -log p(x)-aware adversarials: does it still see the original class (a real "
           "adversarial example), the attacker's class (the image changed its meaning), or disagree? For the density-aware fooling "
           "images (from noise, no original class): does it see the class the attacked model sees?", ""]
    out.append(md_table(["target", "set", "eps", "images", "original %", "attacker's class %", "disagree %"], [
        [t, st, "-" if e is None else f"{e:g}", str(sum(r.n for r in rs))]
        + [fmt(rate_ci([(getattr(r, v), r.n) for r in rs]), pct=True) for v in ("original", "changed", "disagree")]
        for (t, st, e), rs in group(oracle_rows(results), "target", "set", "eps").items()]))
    return out + [""]


def _ood(results: dict) -> list[str]:
    if not results.get("ood"):
        return []
    out = ["## Where likelihood fails", "", "Sets made without download, and images grown from noise by gradient ascent on log p(x) "
           "(max-likelihood, reported apart: the most likely image is not a typical one). In-distribution: not flagged at the "
           "validation threshold. Higher p: share above the median clean test image's log p(x).", ""]
    out += _figure("likelihood_failures", "Bits/dim of every set under the detector, against the threshold")
    out.append(md_table(["model", "set", "bits/dim", "test bits/dim", "in-distribution %", "higher p than test %", "AUROC"], [
        [m, s, ci_text(rs, "mean_bpd", digits=2), ci_text(rs, "test_mean_bpd", digits=2), ci_text(rs, "frac_in_distribution", True),
         ci_text(rs, "higher_likelihood_than_test", True), ci_text(rs, "auroc")] for (m, s), rs in group(ood_rows(results), "model", "set").items()]))
    return out + [""] + _paper_side_by_side(results) + _figure("ood_examples", "The out-of-distribution sets and the images of maximal likelihood")


def _paper_side_by_side(results: dict) -> list[str]:
    """On Fashion-MNIST: our bits/dim of the test set and of the set that stands for MNIST, beside Nalisnick et al. 2019's."""
    if results.get("dataset", {}).get("name") != "fashion-mnist":  # results hold the canonical name (data.dataset_info)
        return []
    ref, rows = PAPER_REFERENCE, []
    flow = ood_rows(results, model="flow")
    for paper_set, ours in ref["ours"].items():
        rs = [r for r in flow if r.set == ours] if ours != "test" else \
             [dataclasses.replace(r, mean_bpd=r.test_mean_bpd) for r in flow if r.set == ref["ours"]["MNIST test"]]
        if rs:
            rows.append([paper_set, f"{ref['bits_per_dim'][paper_set]:.1f}", ours, ci_text(rs, "mean_bpd", digits=2)])
    if not rows:
        return []
    return [f"Side by side with the paper: {ref['model']}, bits/dim as published ({ref['citation']}), and ours (the detector's, "
            "mean over seeds, scored as the OOD sets are: mid-bin dequantisation, so our test set's number is below the model "
            "table's, which dequantises uniformly). The direction is what matters: the paper's flow, like ours if the numbers "
            "say so, gives the out-of-distribution set *fewer* bits/dim than its own test set.", "",
            md_table(["paper's set", "paper bits/dim", "our set", "our bits/dim"], rows), ""]


def _audit(results: dict) -> list[str]:
    if not results.get("audit"):
        return []
    checks = group(audit_checks(results), "check", "target")
    failed = {k: rs for k, rs in checks.items() if not all(r.passed for r in rs)}
    out = ["## Gradient-masking audit", "", f"Checks after Carlini et al. (2019), and the detector-aware attack's own: "
           f"{len(checks) - len(failed)} of {len(checks)} (check, model) pairs pass on every seed."]
    if failed:
        out += ["", "Failed checks, in full:", ""]
        out.append(md_table(["check", "target", "passed (seeds)", "detail (the first failing seed)"], [
            [c, t, f"{sum(r.passed for r in rs)}/{len(rs)}", audit_detail(rs)] for (c, t), rs in failed.items()]))
    out += ["", "Every check:", ""]
    out.append(md_table(["check", "target", "passed (seeds)"], [[c, t, f"{sum(r.passed for r in rs)}/{len(rs)}"] for (c, t), rs in checks.items()]))
    if results.get("convergence"):
        out += [""] + _figure("convergence", "Attack convergence: accuracy against PGD steps")
    return out + [""]


def write_report(run_dir: str | Path, tradeoff_dir: str | Path | None = None) -> Path:
    """Write RUN_DIR/report.md (and its CSV tables) from RUN_DIR/results.json, with the summary of a `fooled tradeoff`
    directory if given: of the same config, or of one that trains the same models (`config.trained_hash`)."""
    run_dir = Path(run_dir)
    path = run_dir / "report.md"
    results = read_json(run_dir / "results.json")
    scores = read_npz(run_dir / "scores.npz") if (run_dir / "scores.npz").exists() else None  # paired gaps, threshold variance
    results["verdict"] = compute_verdict(results, scores)  # from the rows, by the rules of this version
    tradeoff = read_json(Path(tradeoff_dir) / "tradeoff.json") if tradeoff_dir is not None else None
    if tradeoff and tradeoff.get("config_hash") != results["config_hash"] \
            and tradeoff.get("trained_hash") != trained_hash(run_config(results)):
        raise FooledError(f"{tradeoff_dir} was made for config {tradeoff.get('config_hash')}, which trains other models than "
                          f"this run's {results['config_hash']}")
    samples = (run_dir / "figures" / "samples.png").exists()
    atomic_write_text(path, render(results, tradeoff, _csv(run_dir, results), samples=samples))
    return path
