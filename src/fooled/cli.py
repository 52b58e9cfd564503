"""Command line: `fooled study | tradeoff | disagree | toy | figures | report | show | ablate | sweep`, thin over the package's functions.

User errors (bad config, path, data, checkpoint) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._version import __version__
from .errors import FooledError


def _run_options(p: argparse.ArgumentParser, default_out: str, drawn: str) -> None:
    """The options of a command that runs a config's seeds (study, tradeoff)."""
    p.add_argument("config", nargs="?", help="experiment TOML (default: the digits study, experiments/digits.toml)")
    p.add_argument("--out", help=f"run directory (default: {default_out})")
    p.add_argument("--seeds", type=int, help="use seeds 0..N-1 instead of the config's")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto picks CUDA when present")
    p.add_argument("--quick", action="store_true", help="small variant for smoke tests (one seed, few epochs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. --set attacks.steps=100 (repeatable)")
    p.add_argument("--jobs", type=int, help="seeds run at once in separate processes (default: CPU cores on CPU, 1 on GPU)")
    p.add_argument("--no-figures", action="store_true", help=f"skip {drawn} (draw them later with `fooled figures`)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fooled", description="Would a model of p(x, y) notice the inputs that fool a classifier of p(y|x)?")
    p.add_argument("--version", action="version", version=f"fooled {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("study", help="train, attack, score, and write results.json, report.md and figures")
    _run_options(s, "runs/<config name>", "figures and report")
    t = sub.add_parser("tradeoff", help="bits/dim vs accuracy of the flow and hybrid heads as the class term grows; chooses it on validation")
    _run_options(t, "runs/<config name>-tradeoff", "the figure")
    d = sub.add_parser("disagree", help="flows of several seeds and sizes on one split: do they agree on the data and disagree off it?")
    d.add_argument("config", nargs="?", help="experiment TOML (default: the digits study)")
    d.add_argument("--out", help="run directory (default: runs/<config name>-disagreement)")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.add_argument("--sizes", help="flows to train, BLOCKSxHIDDEN comma-separated (default: 6x128,4x64)")
    d.add_argument("--no-sweep", action="store_true", help="skip the density-quality sweep (its KDE and GMM are slow on 28x28 images)")
    d.add_argument("--no-knobs", action="store_true", help="sweep without the flows trained along the trade-off knobs")
    d.add_argument("--no-baselines", action="store_true", help="sweep without scikit-learn's KDE and GMM (minutes per fit on 28x28 images)")
    d.add_argument("--baseline-images", type=int, metavar="N", help="fit the sweep's KDE and GMM on N random training images")
    y = sub.add_parser("toy", help="the question in a 2-D world: every density, boundary and attack drawn, exact search as the known answer")
    y.add_argument("--out", default="runs/toy", help="run directory (default: runs/toy)")
    y.add_argument("--quick", action="store_true", help="a smaller world for smoke tests (seconds)")
    y.add_argument("--quiet", action="store_true", help="no progress output")
    f = sub.add_parser("figures", help="redraw the figures of a study, sweep, tradeoff or toy directory from its saved files")
    f.add_argument("run_dir")
    r = sub.add_parser("report", help="rewrite report.md of a run directory from results.json")
    r.add_argument("run_dir")
    r.add_argument("--tradeoff", metavar="DIR", help="a `fooled tradeoff` directory of the same config, summarised in the report")
    h = sub.add_parser("show", help="write report.html beside report.md: one self-contained page with the figures embedded")
    h.add_argument("run_dir")
    a = sub.add_parser("ablate", help="detection rate vs the validation false-positive rate, from saved scores (no retraining)")
    a.add_argument("run_dir")
    a.add_argument("--fpr", type=float, nargs="+", help="false-positive rates on clean validation data (default: 0.001 to 0.5)")
    w = sub.add_parser("sweep", help="one study per cell of a product of config axes, locally or on Ray; writes sweep.csv and figures")
    w.add_argument("sweep_file", help="sweep TOML: base experiment, [set] overrides, [axes] (see experiments/sweeps/)")
    w.add_argument("--engine", default="local", choices=["local", "ray"], help="local: cells one after another here; ray: a Ray task per cell")
    w.add_argument("--address", help="Ray cluster to submit to (default: start a local Ray instance)")
    w.add_argument("--out", help="sweep directory (default: runs/sweeps/<sweep name>)")
    w.add_argument("--quick", action="store_true", help="small variant of every cell; the sweep file's [set] and axes still win")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key in every cell, e.g. --set data.root=DIR")
    w.add_argument("--jobs", type=int, help="local: seeds of a cell at once; ray: cells at once on a local Ray instance (default: CPU cores)")
    w.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto picks CUDA when present")
    w.add_argument("--no-cell-figures", action="store_true", help="skip each cell's figures and report.md (the sweep's figures are drawn)")
    w.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    return p


def _config(args):
    """The config of `study` and `tradeoff`: file, then --seeds, --quick, and --set last (it wins)."""
    from .config import load_config, override, quick, with_seeds
    from .errors import ConfigError

    cfg = load_config(args.config)
    if args.seeds is not None:
        cfg = with_seeds(cfg, args.seeds)
    if args.quick:
        cfg = quick(cfg)
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    return override(cfg, args.set)


def _study(args) -> int:
    from .study import run_study, silent, stderr_log

    cfg = _config(args)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    results = run_study(cfg, out, device=args.device, log=silent if args.quiet else stderr_log,
                        progress=not args.quiet and sys.stderr.isatty(), jobs=args.jobs, figures=not args.no_figures)
    _summary(results, out)
    return 0


def _summary(results: dict, out: Path) -> None:
    from .analysis import mean_ci

    print(f"{'model':<8} {'test acc %':>10} {'bits/dim':>9}")
    for name, rows in results["models"].items():
        bpd = mean_ci([r.get("test_bpd") for r in rows])["mean"]
        acc = mean_ci([r.get("test_acc") for r in rows])["mean"]
        print(f"{name:<8} {'' if acc is None else f'{100 * acc:.1f}':>10} {'' if bpd is None else f'{bpd:.3f}':>9}")
    for a in results["verdict"]["answers"]:
        print(f"{a['answer'].upper():<7} {a['question']}")
    print(f"report: {out / 'report.md'}  ({results['seconds']:.0f} s)")


def _tradeoff(args) -> int:
    from .study import silent, stderr_log
    from .study.tradeoff import run_tradeoff

    cfg = _config(args)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.name}-tradeoff"
    summary = run_tradeoff(cfg, out, device=args.device, log=silent if args.quiet else stderr_log, jobs=args.jobs,
                           figures=not args.no_figures)
    for name, c in summary["chosen"].items():
        print(f"{name}: {c['knob']} = {c['value']:g} chosen on validation (accuracy {100 * c['val_acc']:.1f} %, "
              f"{c['val_bpd']:.3f} bits/dim); configured {summary['configured'][name]:g}")
    b = summary["scale_bound"]
    if b:
        print(f"flow: test bits/dim {b['bounded_bpd']:.3f} with the tanh bound |log-scale| <= {b['bound']:g}, "
              f"{b['unbounded_bpd']:.3f} without")
    print(f"table: {out / 'tradeoff.csv'}" + ("" if args.no_figures else f"  figure: {out / 'figures' / 'tradeoff.png'}"))
    return 0


def _ablate(args) -> int:
    from .analysis.ablation import FPR_GRID, ablate, summary
    from .analysis.plots import threshold_ablation

    full = ablate(args.run_dir, args.fpr or FPR_GRID)
    threshold_ablation(full, Path(args.run_dir) / "figures")
    table = summary(full)
    table = table[table["detector"] == "nll"].pivot_table(index=["attack", "grid", "eps"], columns="fpr", values="tpr")
    print("detection rate of -log p(x) (mean over seeds and targets) by validation FPR:")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"table: {args.run_dir}/ablation.csv")
    return 0


def _sweep(args) -> int:
    """`fooled sweep`: exit code 1 if any cell failed (after writing everything), 2 on a bad sweep file."""
    from .study import silent, stderr_log
    from .study.sweep import load_sweep, run_sweep

    sweep = load_sweep(args.sweep_file, args.set, quick_cells=args.quick)
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / sweep.name
    manifest = run_sweep(sweep, out, engine=args.engine, address=args.address, device=args.device, jobs=args.jobs,
                         cell_figures=not args.no_cell_figures, log=silent if args.quiet else stderr_log)
    status = [c["status"] for c in manifest["cells"]]
    for c in manifest["cells"]:
        if c["status"] == "failed":
            print(f"fooled: cell {c['name']} failed: {c['error']}", file=sys.stderr)
    print(f"{len(status)} cells: {status.count('done')} run, {status.count('skipped')} finished before, {status.count('failed')} failed")
    print(f"table: {out / 'sweep.csv'}")
    return 1 if "failed" in status else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "study":
            return _study(args)
        if args.command == "figures":
            from .analysis import draw_all
            from .analysis.toy_plots import draw_toy, is_toy_dir
            from .analysis.tradeoff import draw_tradeoff, is_tradeoff_dir
            from .study.sweep import draw_sweep, is_sweep_dir

            draw = draw_sweep if is_sweep_dir(args.run_dir) else draw_tradeoff if is_tradeoff_dir(args.run_dir) else draw_all
            draw = draw_toy if is_toy_dir(args.run_dir) else draw
            for path in draw(args.run_dir):
                print(path)
            return 0
        if args.command == "tradeoff":
            return _tradeoff(args)
        if args.command == "disagree":
            from .study.disagreement import run_from_args

            return run_from_args(args)
        if args.command == "toy":
            from .study.toy import run_from_args

            return run_from_args(args)
        if args.command == "ablate":
            return _ablate(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "report":
            from .analysis import write_report
            from .analysis.toy_plots import is_toy_dir
            from .analysis.toy_report import write_toy_report

            print(write_toy_report(args.run_dir) if is_toy_dir(args.run_dir) else write_report(args.run_dir, args.tradeoff))
            return 0
        if args.command == "show":
            from .analysis.html import write_html

            print(write_html(args.run_dir))
            return 0
    except FooledError as e:
        print(f"fooled: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and friends
        return 0
    except KeyboardInterrupt:
        print("fooled: interrupted; finished stages are saved, rerun the same command to resume", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
