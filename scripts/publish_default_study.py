"""Publish the default runs in the repository, so README's numbers are computed, never typed.

    fooled tradeoff && fooled disagree && fooled study experiments/digits_full.toml \
        && fooled study experiments/digits_seeds.toml && python scripts/publish_default_study.py
    fooled study experiments/fashion_mnist_cpu.toml --set data.root=DIR \
        && fooled disagree experiments/fashion_mnist_cpu.toml --set data.root=DIR \
           --sizes 4x128,2x64 --no-knobs --baseline-images 3000 \
        && python scripts/publish_default_study.py fashion

Fills README.md's generated blocks from runs/digits_full/results.json (the verdict and model table; the published
study, experiments/digits_full.toml), runs/digits_seeds/results.json (its plain answer, precision and verdict on 24 seeds) and
runs/digits-tradeoff/tradeoff.json (what classification costs in bits/dim, for
the same trained models: the default study's and the published one's differ only in their attacks), copies the study's report to
REPORT.md and its figures, with the trade-off figure, to figures/, and appends the density-quality sweep and the
seeds' disagreement of runs/digits-disagreement (`fooled disagree`) to REPORT.md and README.md. With `fashion`: the CPU Fashion-MNIST study's
report and PNG figures (runs/fashion_mnist_cpu) to figures/fashion_mnist/, its report's links made local, with the
seeds' disagreement of runs/fashion_mnist_cpu-disagreement appended where it exists.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from fooled.analysis import compute_verdict, mean_ci, write_report
from fooled.analysis.precision import precision_sentence
from fooled.analysis.report import _paper_side_by_side
from fooled.analysis.summary import plain_answer, verdict_table
from fooled.analysis.tradeoff import describe
from fooled.config import from_dict, trained_hash
from fooled.rundir import read_json, read_npz


RUN = Path("runs/digits_full")  # the published digits study
SEEDS = Path("runs/digits_seeds")  # the same study on 24 seeds, for the models the plain answer quotes
DENSITY = Path("runs/digits-disagreement")  # `fooled disagree` of the default config: density sweep and disagreement


def _block(text: str, name: str, lines: list[str]) -> str:
    pattern = rf"<!-- {name}:start -->.*<!-- {name}:end -->"
    if not re.search(pattern, text, flags=re.S):
        sys.exit(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return re.sub(pattern, lambda _: f"<!-- {name}:start -->\n" + "\n".join(lines) + f"\n<!-- {name}:end -->", text, flags=re.S)


def _fmt(value, scale: float, digits: int) -> str:
    return "-" if value is None else f"{scale * value:.{digits}f}"


def main(root: Path = Path(".")) -> None:
    run = root / RUN
    results = read_json(run / "results.json")
    scores = read_npz(run / "scores.npz")
    results["verdict"] = compute_verdict(results, scores)  # by the rules of this version, as the report does
    verdict = [f"The verdict of `fooled study experiments/digits_full.toml` ({results['dataset']['name']}, {len(results['config']['seeds'])} seeds, "
               f"on {results['device']}): each cell is the answer, the number that decides it at the "
               "budget that decides most against a yes (@eps), and its 95% interval over seeds and images.", ""]
    verdict += verdict_table(results) + [""] + _model_rows(results)
    text = _block((root / "README.md").read_text(), "verdict", verdict)
    text = _block(text, "answer", [" ".join(plain_answer(results))])
    tradeoff_dir = root / "runs/digits-tradeoff"
    summary = read_json(tradeoff_dir / "tradeoff.json") if (tradeoff_dir / "tradeoff.json").exists() else None
    if summary is not None and summary.get("trained_hash") == trained_hash(from_dict(results["config"])):
        text = _block(text, "tradeoff", describe(summary))
    else:  # the README keeps the trade-off lines of the last `fooled tradeoff` run of the default config
        print("runs/digits-tradeoff is missing or was made for another config: the README's trade-off lines are left as they are")
        tradeoff_dir = None
    density = _density_report(root, results)
    if density:
        picked = [line for line in density if line.startswith(("- Models agree", "**A better", "Along the trade-off knob"))]
        text = _block(text, "density", [line if line.startswith("-") else "\n" + line for line in picked])
    text = _seeds_block(root, text)
    (root / "README.md").write_text(text)
    report = write_report(run, tradeoff_dir).read_text()
    for table in ("attacks.csv", "detectors.csv"):  # the report's long tables, beside its figures
        shutil.copy(run / table, root / "figures" / table)
        report = report.replace(f"]({table})", f"](figures/{table})")
    if density:
        report = report.rstrip("\n") + "\n\n" + "\n".join(density) + "\n"
    (root / "REPORT.md").write_text(report)
    figures = sorted((run / "figures").glob("*.p[dn][fg]"))
    figures += sorted((root / DENSITY / "figures").glob("*.png")) if density else []
    figures += sorted((tradeoff_dir / "figures").glob("tradeoff.p[dn][fg]")) if tradeoff_dir else []
    for path in figures:
        shutil.copy(path, root / "figures" / path.name)
    print(f"README.md, REPORT.md and {len(figures)} files in figures/ updated")


def _seeds_block(root: Path, text: str, run: Path = SEEDS) -> str:
    """README's many-seed block: the plain answer, precision line and verdict of experiments/digits_seeds.toml, whose
    intervals are the headline's at about +-5 points; left as it is where that run is missing."""
    if not (root / run / "results.json").exists():
        print(f"{run} is missing: README's many-seed block is left as it is")
        return text
    results = read_json(root / run / "results.json")
    results["verdict"] = compute_verdict(results, read_npz(root / run / "scores.npz"))
    models = ", ".join(results["config"]["models"]["names"])
    lines = [f"The same study on {len(results['config']['seeds'])} seeds (`fooled study experiments/digits_seeds.toml`: {models}; "
             "each seed its own split, training and attacks; its cold time is in the config's header), which narrows the "
             "headline intervals: " + " ".join(plain_answer(results)), ""]
    lines += [precision_sentence(results), ""]
    return _block(text, "seeds", lines + verdict_table(results) + [""] + _model_rows(results))


def _density_report(root: Path, results: dict, density: Path = DENSITY) -> list[str]:
    """The `fooled disagree` report of the published study's data, as a REPORT.md section (headings one level down,
    figure links into figures/); [] where it is missing or was made for another dataset."""
    path = root / density / "report.md"
    if not path.exists():
        print(f"{density} is missing: the report goes without the density sweep and the seeds' disagreement")
        return []
    dataset = read_json(root / density / "disagreement.json").get("dataset", results["dataset"]["name"])
    if dataset != results["dataset"]["name"]:
        print(f"{density} was made on {dataset}, not {results['dataset']['name']}: left out")
        return []
    lines = ["## Density quality and the maximum-likelihood argument (`fooled disagree`)", "",
             "Made by `fooled disagree` (this config's data, its own split and models: see its first lines), "
             "not by the study above."]
    for line in path.read_text().splitlines():
        lines.append("### " + line.lstrip("#").strip() if line.startswith("#") else line)
    return lines


def _model_rows(results: dict) -> list[str]:
    return ["| model | test accuracy % | test bits/dim |", "|---|---|---|"] + [
        f"| {name} | {_fmt(mean_ci([r.get('test_acc') for r in rs])['mean'], 100, 1)} | "
        f"{_fmt(mean_ci([r.get('test_bpd') for r in rs])['mean'], 1, 3)} |" for name, rs in results["models"].items()]


def publish_fashion(root: Path = Path("."), name: str = "fashion_mnist_cpu", to: str = "figures/fashion_mnist") -> None:
    run, out = root / "runs" / name, root / to
    out.mkdir(parents=True, exist_ok=True)
    report = write_report(run).read_text().replace("](figures/", "](")
    results = read_json(run / "results.json")  # with the verdict write_report just computed
    density_dir = Path("runs") / f"{name}-disagreement"
    density = _density_report(root, results, density_dir)
    if density:
        report = report.rstrip("\n") + "\n\n" + "\n".join(density).replace("](figures/", "](") + "\n"
    block = [f"Its answer ({len(results['config']['seeds'])} seeds, on {results['device']}; its time cold is in the config's "
             "header): " + " ".join(plain_answer(results)), ""] + _model_rows(results) + [""]
    sweep = [line for line in density if line.startswith("**A better density")]
    block += sweep + [""] * bool(sweep) + [line for line in density if line.startswith("- Models agree")] + ([""] if density else [])
    block += _paper_side_by_side(results) + [f"Report and figures: [{to}/REPORT.md]({to}/REPORT.md)."]
    (root / "README.md").write_text(_block((root / "README.md").read_text(), "fashion", block))
    for table in ("attacks.csv", "detectors.csv"):
        shutil.copy(run / table, out / table)
    (out / "REPORT.md").write_text(report)
    figures = sorted((run / "figures").glob("*.png"))
    figures += sorted((root / density_dir / "figures").glob("*.png")) if density else []
    for path in figures:
        shutil.copy(path, out / path.name)
    print(f"{to}/REPORT.md and {len(figures)} figures updated")


if __name__ == "__main__":
    if sys.argv[1:] == ["fashion"]:
        publish_fashion()
    elif sys.argv[1:]:
        sys.exit("usage: python scripts/publish_default_study.py [fashion]")
    else:
        main()
