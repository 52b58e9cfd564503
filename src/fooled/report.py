"""report.md from a run directory's results.json alone: verdict, methods, tables with 95% intervals, figures."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .runs import atomic_write_bytes, read_json
from .verdict import mean_ci


def _fmt(ci: dict, pct: bool = False, digits: int = 3) -> str:
    if ci["mean"] is None:
        return "n/a"
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.{digits}f}")
    return f(ci["mean"]) if ci["n"] < 2 else f"{f(ci['mean'])} [{f(ci['lo'])}, {f(ci['hi'])}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def render(results: dict) -> str:
    cfg, v = results["config"], results["verdict"]
    seeds = cfg["seeds"]
    ival = "mean [95% interval over seeds]" if len(seeds) > 1 else "one seed, no interval"
    out = [f"# fooled: {cfg['name']} ({results['dataset']['name']}, {len(seeds)} seed{'s' if len(seeds) > 1 else ''})", ""]
    out += ["## Verdict", ""]
    for a in v["answers"]:
        out.append(f"- **{a['question']}** {a['answer'].upper()}. _Criterion:_ {a['criterion']}. "
                   + ", ".join(f"{k} = {_fmt(a[k], pct=(k == 'tpr'))}{'%' if k == 'tpr' else ''}" for k in ("tpr", "auroc", "accuracy_gap") if k in a))
    out += ["", "## Models", "", f"Test accuracy (%) and bits/dim, {ival}.", ""]
    rows = []
    for name, per_seed in results["models"].items():
        acc = mean_ci([r["test_acc"] for r in per_seed])
        bpd = mean_ci([r.get("test_bpd") for r in per_seed])
        rows.append([name, _fmt(acc, pct=True), _fmt(bpd) if bpd["n"] else "-", f"{per_seed[0]['n_params']:,}",
                     f"{sum(r['train_seconds'] for r in per_seed) / len(per_seed):.1f}"])
    out.append(_table(["model", "test accuracy %", "test bits/dim", "parameters", "train seconds"], rows))
    a = cfg["attacks"]
    out += ["", "## Attacks and detection", "",
            f"Attacks: {', '.join(a['names'])} (linf eps {', '.join(map(str, a['eps']))}; L2 eps {', '.join(map(str, a['l2_eps']))}; "
            f"PGD {a['steps']} steps, step size {'2.5 eps / steps' if a['step_size'] is None else a['step_size']}, "
            f"{a['restarts']} restart(s), worst case over the {' and '.join(a['losses'])} losses; "
            f"adaptive PGD {a['adaptive_steps']} steps). "
            f"Detector: {results['score']}; threshold at {cfg['detect']['fpr']:.0%} false positives on clean validation images "
            f"(never test images). Evasion: misclassified and not flagged. {ival}.", ""]
    groups = defaultdict(list)
    for r in results["attacks"]:
        groups[(r["target"], r["attack"], r["eps"], r["adaptive"])].append(r)
    rows = []
    for (target, attack, eps, adaptive), rs in sorted(groups.items()):
        rows.append([target, attack + (" (adaptive)" if adaptive else ""), f"{eps:g}",
                     _fmt(mean_ci([r["adv_acc"] for r in rs]), pct=True), _fmt(mean_ci([r["auroc"] for r in rs])),
                     _fmt(mean_ci([r["tpr_at_fpr"] for r in rs]), pct=True), _fmt(mean_ci([r["evasion_rate"] for r in rs]), pct=True),
                     _fmt(mean_ci([r["mean_bpd"] for r in rs]), digits=2)])
    out.append(_table(["target", "attack", "eps", "accuracy %", "AUROC", "detected %", "evasion %", "bits/dim"], rows))
    out += ["", "## Figures", ""]
    for name, caption in [("accuracy_vs_eps", "Accuracy under attack"), ("detector_roc", "ROC of the likelihood detector"),
                          ("log_prob_hist", "Bits/dim of clean and adversarial images"), ("examples", "Examples")]:
        out += [f"![{caption}](figures/{name}.png)", ""]
    out += ["## Reproduce", "", f"`fooled study` with this config (hash `{results['config_hash']}`); "
            f"versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}; device {results['device']}; "
            f"{results['seconds']:.0f} s.", ""]
    return "\n".join(out)


def write_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.md from RUN_DIR/results.json."""
    run_dir = Path(run_dir)
    path = run_dir / "report.md"
    atomic_write_bytes(path, render(read_json(run_dir / "results.json")).encode())
    return path
