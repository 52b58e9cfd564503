"""report.md from a run directory's results.json alone: verdict, methods, tables with 95% intervals, audit, figures."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..errors import FooledError
from ..rundir import atomic_write_text, read_json
from .stats import mean_ci, rate_ci
from .tradeoff import describe

FIGURES = [
    ("accuracy_vs_eps", "Accuracy under linf attacks, every model (mean and 95% interval over seeds)"),
    ("detector_roc", "ROC of the -log p(x) detector against PGD, per attacked model"),
    ("threshold_ablation", "Detection rate against the validation false-positive rate that sets the threshold"),
    ("log_prob_hist", "Bits/dim of clean and adversarial test images"),
    ("likelihood_failures", "Where likelihood fails: OOD sets, adversarials, fooling and maximal-likelihood images"),
    ("examples", "Clean, adversarial and detector-aware adversarial images, with predictions and bits/dim"),
    ("fooling", "Fooling images grown from noise"),
    ("ood_examples", "Out-of-distribution sets and maximal-likelihood images"),
    ("convergence", "Attack convergence: accuracy against PGD steps"),
    ("samples", "Samples from p(x | y) of each generative classifier, one column per class"),
]


def _pct(v: float) -> str:
    """A rate in percent with one decimal, or more where one would round onto a multiple of 10 % (where the verdict's
    thresholds sit) that the rate does not reach: 89.96 % is not shown as 90.0 % under "yes if >= 90%"."""
    for decimals in (1, 2, 3, 4):
        text = f"{100 * v:.{decimals}f}"
        # not on a multiple of 10, or not rounded up onto it (beyond float32 noise: rates are counts over images)
        if float(text) % 10 or 100 * v > float(text) - 1e-4:
            break
    return text


def _fmt(ci: dict, pct: bool = False, digits: int = 3) -> str:
    if ci["mean"] is None:
        return "n/a"
    f = _pct if pct else (lambda v: f"{v:.{digits}f}")
    return f(ci["mean"]) if ci["n"] < 2 else f"{f(ci['mean'])} [{f(ci['lo'])}, {f(ci['hi'])}]"


# rates with their counts: (successes, trials) keys of a row, or (trials,) when the row stores the rate over them
COUNTS = {"adv_acc": ("n",), "clean_acc": ("n",), "tpr_all": ("n",), "evasion_all": ("n",), "tpr_at_fpr": ("n_detected", "n_success"),
          "evasion_rate": ("n_evaded", "n_correct")}


def _ci(rows, key, pct=False, digits=3) -> str:
    """Mean and 95% interval of `key` over rows (seeds): pooled counts for the rates that have them, else over seeds."""
    if key in COUNTS and all(all(r.get(c) is not None for c in COUNTS[key]) and r.get(key) is not None for r in rows):
        names = COUNTS[key]
        counts = [(r[names[0]], r[names[1]]) if len(names) == 2 else (round(r[key] * r[names[0]]), r[names[0]]) for r in rows]
        return _fmt(rate_ci(counts), pct, digits)
    return _fmt(mean_ci([r.get(key) for r in rows]), pct, digits)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _group(rows, *keys) -> dict:
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys)].append(r)
    return dict(sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])))


def _value(a: dict, ci: dict) -> str:
    if a["criterion"] in ("robust", "shallow"):
        return f"{_fmt({k: (None if v is None else 100 * v) if k in ('mean', 'lo', 'hi') else v for k, v in ci.items()}, digits=1)} points"
    return f"{_fmt(ci, pct=True)}%"


def verdict_lines(results) -> list[str]:
    """One line per answer: the answer, the number that decides it (at the budget that decides most against a yes) with its
    95% interval, and the answer at every budget; then the criteria, each stated once."""
    out = []
    for a in results["verdict"]["answers"]:
        at = f" at eps {a['eps']:g}" if a.get("eps") is not None else ""
        line = f"- **{a['question']}** {a['answer'].upper()}. {a['measure']}{at}: {_value(a, a['value'])}"
        if len(a["per_eps"]) > 1:
            line += "; per eps: " + ", ".join(f"{p['eps']:g} {p['answer']}" for p in a["per_eps"])
        if a["criterion"] == "control":
            line += "; random perturbations flagged: " + ", ".join(f"{_fmt(p['control'], pct=True)}%" for p in a["per_eps"])
        if a.get("sets") is not None:
            line += "; sets: " + ", ".join(f"{n} {_fmt(c, pct=True)}%" for n, c in a["shares"].items())
        out.append(line + ".")
    criteria = results["verdict"].get("criteria", {})
    used = list(dict.fromkeys(a["criterion"] for a in results["verdict"]["answers"]))
    out += ["", "Criteria (95% intervals: rates pooled over seeds and images, see Methods):", ""]
    out += [f"- *{kind}*: {criteria[kind]}." for kind in used + ["overall"] if kind in criteria]
    return out


def _audit_detail(rows: list[dict]) -> str:
    """The detail of a check's first failing seed (a failure is never hidden behind a passing seed), else of its first seed."""
    row = next((r for r in rows if not r["passed"]), rows[0])
    return f"seed {row['seed']}: {row['detail']}"


def _multitarget_note(a: dict) -> str:
    if "multitarget" not in a["losses"]:
        return ""
    toward = "every other class" if a.get("targets") is None else f"the {a['targets']} wrong classes with the largest first-order reachable margin"
    return f" (multitarget: targeted margin PGD toward {toward}, after Gowal et al. 2019; exact on a linear model)"


def _flow_params(m: dict) -> dict:
    """The config table of the flow this run built: [models.glow] for a Glow, else [models.flow]."""
    return m["glow"] if m["flow"].get("kind") == "glow" else m["flow"]


def flow_description(m: dict) -> str:
    """The flow's architecture in words, from the run's config (`models` table)."""
    f = _flow_params(m)
    if m["flow"].get("kind") == "glow":
        return (f"a multiscale Glow (normflows GlowBlocks: actnorm, invertible 1x1 convolution, affine coupling with a conv net; "
                f"{f['scales']} scales x {f['blocks_per_scale']} blocks, {f['hidden_channels']} hidden channels, log-scales bounded by "
                f"{f['scale_bound']})")
    return (f"a RealNVP-style flow (normflows affine couplings with MLPs on the flattened image, {f['blocks']} blocks, hidden width "
            f"{f['hidden']}, log-scales bounded by {f['scale_bound']}, {f['permutation']} permutations)")


def _methods(results) -> list[str]:
    cfg, info = results["config"], results["dataset"]
    a, f, m = cfg["attacks"], cfg["fooling"], cfg["models"]
    return [
        f"- **Data**: {info['name']} ({'x'.join(map(str, info['shape']))}, {info['levels']} grey levels), stratified train/validation/test "
        f"splits per seed. Validation is used for early stopping and for every threshold; test only for reporting.",
        f"- **Models**: {', '.join(results['models'])}. The flow is {flow_description(m)} with one "
        f"Gaussian per class in latent space (class means of norm {_flow_params(m)['mean_norm']}), trained by maximum likelihood on (x, y); "
        f"p(y|x) by Bayes' rule. Adam, lr {cfg['train']['lr']}, batch {cfg['train']['batch_size']}, early stopping (patience "
        f"{cfg['train']['patience']}). Bits/dim: uniform dequantisation over the grey levels; scores use mid-bin dequantisation, "
        f"so they are deterministic.",
        f"- **Attacks** (white-box, on {a['max_examples'] or 'all'} test images): FGSM and PGD in linf at eps "
        f"{', '.join(map(str, a['eps']))}, PGD in L2 at eps {', '.join(map(str, a['l2_eps']))}; PGD {a['steps']} steps, step "
        f"{'2.5 eps / steps' if a['step_size'] is None else a['step_size']}, {a['restarts']} random start(s), worst case per image over "
        f"the {', '.join(a['losses'])} losses{_multitarget_note(a)}. Detector-aware PGD starts from the PGD adversarials and raises log p(x) above the "
        f"threshold while staying misclassified ({a['adaptive_steps']} steps, per-image Lagrange weight). Carlini-Wagner L2 "
        f"({a['cw_binary_steps']} x {a['cw_steps']} steps), the audit's extra attacks and the convergence curve use the first "
        f"{a['expensive_examples']} test images (so the convergence check, doubled steps and restarts, allows no image to change "
        f"when one image is more than its tolerance); the convergence check and curve run per model at the budget where PGD "
        f"leaves about half the clean accuracy. Transfer: every model on every other model's PGD adversarials. Fooling images "
        f"(Nguyen et al. 2015): {f['per_class']} per class, gradient ascent ({f['steps']} steps) and an evolutionary search "
        f"({f['generations']} generations x {f['population']}), until p(target|x) >= {f['confidence']}.",
        f"- **Detection**: {results['score']}. Threshold: the {1 - cfg['detect']['fpr']:.0%} quantile of clean validation scores "
        f"(false-positive rate {cfg['detect']['fpr']:.0%}). Other detectors of the density: -log p(x | predicted class), typicality "
        f"(|-log p(x) - mean over clean validation images|, Nalisnick et al. 2019), complexity-corrected -log2 p(x) - PNG length "
        f"(Serra et al. 2020). Baselines: the attacked classifier's max-softmax (Hendrycks & Gimpel 2017), Mahalanobis distance on "
        f"the CNN's penultimate features (Lee et al. 2018), kernel density of those features and MC-dropout variance (Feinman et al. "
        f"2017, each alone), the distance to the grey-level grid (a trivial detector), and the pixel densities of the GMM, KDE and "
        f"Gaussian classifier. Every detector has its own threshold from clean validation images.",
        f"- **Counting**: detection rates count the *successful* adversarial examples only (test images the model classified "
        f"correctly and the attack made wrong); evasion is the share of the correctly classified images that the attack made wrong "
        f"without being flagged. The all-image rates are in results.json (`tpr_all`, `evasion_all`).",
        f"- **Controls**: random perturbations of every budget on the same images (uniform sign noise at each linf eps, Gaussian "
        f"directions scaled to each L2 eps), scored by every detector: a detector must flag adversarials more often than these. "
        f"Every adversarial and control set is also scored rounded to the data's {info['levels']} grey levels (inside the same "
        f"budget), where the clean images lie, so a detector cannot win by noticing off-grid pixels.",
        f"- **Statistics**: every number per seed in results.json. Rates are pooled over seeds and images with the wider of a Wilson "
        f"interval and a two-level bootstrap (seeds, then images within seeds); other numbers are means over seeds with a "
        f"percentile bootstrap over seeds; all intervals are 95% and stay in range. {len(cfg['seeds'])} seed(s). Each answer is "
        f"decided per eps on the interval's bounds.",
    ]


def _detector_table(results: dict) -> list[str]:
    """Every detector against PGD, PGD on the grid, detector-aware PGD and the sign-noise control, at the middle budget."""
    rows = [r for r in results["attacks"] if r["norm"] == "linf"]
    if not rows:
        return []
    eps_all = sorted({r["eps"] for r in rows})
    eps = eps_all[(len(eps_all) - 1) // 2]
    sets = [("pgd", "continuous", "PGD"), ("pgd", "rounded", "PGD, on grid"), ("adaptive_pgd", "continuous", "aware of this detector"),
            ("noise_linf", "continuous", "sign noise"), ("noise_linf", "rounded", "sign noise, on grid")]
    dets = list(dict.fromkeys(d for r in rows for d in r.get("detectors", {})))
    attacked = {r.get("attacked_detector") for r in rows}
    out = ["", f"### Every detector (linf eps {eps:g}; AUROC / detected %, pooled over the attacked models)", "",
           "Detected: successful adversarials flagged (controls: perturbed images flagged); AUROC of those against clean test images.", ""]
    body = []
    for d in dets:
        cells = []
        for attack, grid, _ in sets:
            rs = [r for r in rows if r["attack"] == attack and r.get("grid") == grid and r["eps"] == eps and d in r["detectors"]
                  and r.get("attacked_detector") in (None, d if d in attacked else "nll")]  # each detector against its own attack
            dd = [r["detectors"][d] for r in rs]
            key = "tpr_all" if attack.startswith("noise") else "tpr_at_fpr"
            cells.append("-" if not dd else f"{_fmt(mean_ci([x['auroc'] for x in dd]), digits=2)} / "
                                          f"{_ci([{**x, 'n': r['n'], 'n_success': r['n_success']} for x, r in zip(dd, rs)], key, pct=True)}")
        body.append([d] + cells)
    return out + [_table(["detector"] + [label for *_, label in sets], body)]


def render(results: dict, tradeoff: dict | None = None) -> str:
    """The report; `tradeoff` is the summary of `fooled tradeoff` for the same config, if it was run."""
    cfg = results["config"]
    out = [f"# fooled: {cfg['name']} ({results['dataset']['name']}, {len(cfg['seeds'])} seed{'s' if len(cfg['seeds']) > 1 else ''})", "",
           "Would a model of p(x, y) notice the inputs that fool a classifier of p(y|x), because their p(x) is low?", "",
           "## Verdict", ""] + verdict_lines(results) + ["", "## Methods", ""] + _methods(results)

    out += ["", "## Models", "", "Test accuracy (%) and bits/dim; mean [95% interval over seeds].", ""]
    out.append(_table(["model", "test accuracy %", "test bits/dim", "parameters", "train seconds"], [
        [name, _ci(rows, "test_acc", pct=True) if rows[0].get("test_acc") is not None else "-", _ci(rows, "test_bpd") if rows[0].get("test_bpd") is not None else "-",
         f"{rows[0].get('n_params', 0):,}", f"{sum(r.get('train_seconds', 0) for r in rows) / len(rows):.1f}"]
        for name, rows in results["models"].items()]))
    out += ["", "### What classification costs in bits/dim", ""]
    if tradeoff:

        out += describe(tradeoff) + ["", "From `fooled tradeoff` (its figure: `tradeoff.png` in its run directory)."]
    else:
        out.append("Run `fooled tradeoff` with this config: it trains each head with and without its class term and says what it costs.")

    out += ["", "## Attacks and the likelihood detector", "",
            "Detected: successful adversarials flagged at the validation threshold (controls: all perturbed images flagged). "
            "Evasion: correctly classified images made wrong and not flagged. Grid: as the attack made them, or rounded to the "
            "grey levels. Bits/dim under the target's detector.", ""]
    out.append(_table(["target", "attack", "grid", "eps", "accuracy %", "successful", "AUROC", "detected %", "all flagged %", "evasion %",
                       "bits/dim"], [
        [t, atk, grid, f"{eps:g}", _ci(rs, "adv_acc", True), str(sum(r["n_success"] for r in rs)), _ci(rs, "auroc"),
         _ci(rs, "tpr_at_fpr", True), _ci(rs, "tpr_all", True), _ci(rs, "evasion_rate", True), _ci(rs, "mean_bpd", digits=2)]
        for (t, atk, grid, eps), rs in _group(results["attacks"], "target", "attack", "grid", "eps").items()]))
    out += _detector_table(results)

    if results.get("cw"):
        out += ["", "### Carlini-Wagner L2 (minimal perturbation)", ""]
        out.append(_table(["target", "success %", "median L2", "AUROC (successful)", "detected %"], [
            [t, _ci(rs, "success_rate", True), _ci(rs, "median_l2"), _ci(rs, "auroc"), _ci(rs, "tpr_at_fpr", True)]
            for (t,), rs in _group(results["cw"], "target").items()]))
    if results.get("transfer"):
        out += ["", "### Transfer: accuracy of each model on another model's PGD adversarials", ""]
        out.append(_table(["source", "target", "eps", "accuracy %"], [
            [s, t, f"{eps:g}", _ci(rs, "adv_acc", True)] for (s, t, eps), rs in _group(results["transfer"], "source", "target", "eps").items()]))
    if results.get("fooling"):
        out += ["", "### Fooling images grown from noise", ""]
        out.append(_table(["target", "search", "success %", "confidence", "bits/dim", "clean bits/dim", "flagged %"], [
            [t, m, _ci(rs, "success_rate", True), _ci(rs, "mean_confidence"), _ci(rs, "mean_bpd", digits=2), _ci(rs, "clean_mean_bpd", digits=2),
             _ci(rs, "flagged_rate", True)] for (t, m), rs in _group(results["fooling"], "target", "method").items()]))
    if results.get("ood"):
        out += ["", "## Where likelihood fails", "",
                "Out-of-distribution sets (no download) and images grown from noise by gradient ascent on log p(x). "
                "In-distribution: not flagged at the validation threshold. Higher p: fraction above the median clean test image's log p(x).", ""]
        out.append(_table(["model", "set", "bits/dim", "test bits/dim", "in-distribution %", "higher p than test %", "AUROC"], [
            [m, s, _ci(rs, "mean_bpd", digits=2), _ci(rs, "test_mean_bpd", digits=2), _ci(rs, "frac_in_distribution", True),
             _ci(rs, "higher_likelihood_than_test", True), _ci(rs, "auroc")] for (m, s), rs in _group(results["ood"], "model", "set").items()]))
    if results.get("audit"):
        out += ["", "## Gradient-masking audit", "", "Checks after Carlini et al. (2019); a failed check is shown, not hidden.", ""]
        out.append(_table(["check", "target", "passed (seeds)", "detail (the first failing seed, else the first seed)"], [
            [c, t, f"{sum(r['passed'] for r in rs)}/{len(rs)}" + ("" if all(r["passed"] for r in rs) else " **FAILED**"), _audit_detail(rs)]
            for (c, t), rs in _group(results["audit"], "check", "target").items()]))
    out += ["", "## Figures", ""] + [f"![{cap}](figures/{name}.png)\n\n_{cap}._\n" for name, cap in FIGURES]
    out += ["## Limitations", "",
            "- 8x8 digits are tiny; conclusions about likelihood on natural images need the MNIST-class configs (`experiments/`).",
            "- Every attack is white-box within its budget and checked by the audit, but no audit proves optimality: the numbers are upper bounds on robustness.",
            "- Thresholds are set at one validation false-positive rate; the threshold ablation shows the whole trade-off.",
            "", "## Reproduce", "",
            f"`fooled study` with this config (hash `{results['config_hash']}`); versions: "
            f"{', '.join(f'{k} {v}' for k, v in results['versions'].items())}; device {results['device']}; {results['seconds']:.0f} s.", ""]
    return "\n".join(out)


def write_report(run_dir: str | Path, tradeoff_dir: str | Path | None = None) -> Path:
    """Write RUN_DIR/report.md from RUN_DIR/results.json, with the summary of a `fooled tradeoff` directory of the same config if given."""
    run_dir = Path(run_dir)
    path = run_dir / "report.md"
    results = read_json(run_dir / "results.json")
    tradeoff = read_json(Path(tradeoff_dir) / "tradeoff.json") if tradeoff_dir is not None else None
    if tradeoff and tradeoff.get("config_hash") != results["config_hash"]:
        raise FooledError(f"{tradeoff_dir} was made for config {tradeoff.get('config_hash')}, not this run's {results['config_hash']}")
    atomic_write_text(path, render(results, tradeoff))
    return path
