"""The maximum-likelihood argument, measured: flows of different seeds and sizes, trained on the same data, scored on the same inputs.

Each seed of the study draws its own split, so the study's flows cannot be compared input by input. Here every
flow is trained on the split of the config's first seed, and all of them score one common set of inputs:
clean test images, the OOD sets, PGD adversarials of a CNN trained on the same split, detector-aware
adversarials (against that CNN guarded by the first flow's -log p(x), so they are tuned to that flow only),
and fooling images grown from noise for the CNN. The flows are FlowGMM heads with the diagonal base (whose
training moves them: the Gaussian-base flow of the digits study keeps its closed-form start, so its seeds
would agree everywhere by construction). `fooled disagree` writes `disagreement_scores.csv` (bits/dim of each
input under each flow), `disagreement.json` (the summary of `analysis.disagreement`), a report and a figure. The same run also sweeps density
quality (`study.density_sweep`: does a better p(x) flag more?) into `density_sweep.json` and its own figure. The
label oracle's share of the training split is held out first, so the committee that judges valid evasion has seen
none of the images the models were trained on.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..analysis.density_sweep import describe_sweep, draw_sweep, summarise_sweep
from ..analysis.disagreement import describe, draw_disagreement, summarise
from ..attacks import detector_aware_pgd, fooling_gradient, pgd
from ..config import StudyConfig, config_hash, to_dict, training_dict
from ..data import load
from ..errors import ConfigError
from ..detection.metrics import calibrate_threshold
from ..detection.ood import ood_sets
from ..models import bpd_from_log_prob
from ..models.flow import FlowClassifier
from ..rundir import atomic_write_text, prepare_run_dir, write_json
from ..train import checkpoint_path, fit, load_checkpoint, save_checkpoint, train_or_load
from .density_sweep import SweepAttack, baseline_densities, knob_densities, model_density, sweep_rows
from .stages.honest_oracle import fit_oracle, hold_out_for_oracle


@dataclass(frozen=True)
class DisagreementConfig:
    seeds: tuple[int, ...] = (0, 1, 2)  # initialisation seeds of the flows of each size (one data split for all)
    sizes: tuple[tuple[int, int], ...] = ((6, 128), (4, 64))  # (coupling blocks, hidden width) of the flows
    attacked: int = 64  # test images attacked by PGD and by the detector-aware attack
    eps: float = 0.125  # linf budget of both attacks
    aware_steps: int = 40
    fooling: int = 20  # fooling images, targets cycling through the classes
    ood_n: int = 100  # images per OOD set
    sweep: bool = True  # also the density-quality sweep (`study.density_sweep`) on the same split and images
    knobs: bool = True  # the sweep also trains each head along its trade-off knob (mean_norm, lam) and scores those flows
    baselines: bool = True  # the sweep also fits scikit-learn's KDE and GMM
    baseline_images: int | None = None  # ... on at most this many training images (28x28: minutes per fit on all of them)


def _flow_config(cfg: StudyConfig, size: tuple[int, int]):
    return dataclasses.replace(cfg.models.flow, base="diagonal", blocks=size[0], hidden=size[1])


def trained_flow(cfg: StudyConfig, splits, size, seed: int, run_dir: Path, log) -> FlowClassifier:
    """A diagonal-base flow of this size and initialisation seed, trained on `splits` (checkpointed in run_dir)."""
    fcfg = _flow_config(cfg, size)
    key = config_hash({"flow": dataclasses.asdict(fcfg), "train": training_dict(cfg.train), "data": to_dict(cfg.data),
                       "split": cfg.seeds[0], "seed": seed, "oracle_held_out": True})
    path = checkpoint_path(run_dir, f"flow{size[0]}x{size[1]}", seed, key)
    flow = FlowClassifier(splits.info.shape, splits.info.num_classes, splits.info.levels, fcfg, seed=seed)
    if path.exists():
        load_checkpoint(path, flow, key)
        return flow
    result = fit(flow, splits.train, splits.val, cfg.train, seed=seed)
    save_checkpoint(path, flow, key, {"train_seconds": result.seconds, "epochs": result.epochs, "best_epoch": result.best_epoch})
    log(f"  flow {size[0]}x{size[1]} seed {seed}: {result.epochs} epochs, {result.seconds:.0f} s")
    return flow


def common_inputs(cfg: StudyConfig, dcfg: DisagreementConfig, splits, cnn, guard: FlowClassifier) -> dict[str, torch.Tensor]:
    """The inputs every flow scores: test, OOD sets, PGD and detector-aware adversarials of the CNN, fooling images."""
    g = torch.Generator().manual_seed(cfg.seeds[0])
    test = splits.test
    x, y = test.x[: dcfg.attacked], test.y[: dcfg.attacked]
    sets = {"test": test.x}
    sets |= ood_sets(test.x, splits.info, dcfg.ood_n, g, test_y=test.y)
    sets["PGD adversarial"] = pgd(cnn, x, y, eps=dcfg.eps, steps=cfg.attacks.steps, norm="linf", generator=g).x_adv
    with torch.no_grad():
        val_scores = -guard.log_prob(splits.val.x).numpy()
    threshold = calibrate_threshold(val_scores, cfg.detect.fpr)
    sets["detector-aware adversarial"] = detector_aware_pgd(cnn, x, y, score=lambda z: -guard.log_prob(z), threshold=threshold,
                                                            eps=dcfg.eps, steps=dcfg.aware_steps, lambdas=(1.0,), generator=g)
    targets = torch.arange(dcfg.fooling) % splits.info.num_classes
    sets["fooling"], _ = fooling_gradient(cnn, targets, dcfg.fooling, shape=splits.info.shape, steps=cfg.fooling.steps,
                                       confidence=cfg.fooling.confidence, generator=g)
    return sets


def score_table(flows: dict[tuple, FlowClassifier], sets: dict[str, torch.Tensor], info) -> pd.DataFrame:
    """One row per (set, input, flow): bits/dim of the input (mid-bin, as the detector scores it)."""
    rows = []
    for (size, seed), flow in flows.items():
        with torch.no_grad():
            for name, x in sets.items():
                bpd = bpd_from_log_prob(flow.log_prob(x), flow.dim, info.levels).numpy()
                rows += [{"set": name, "input": i, "size": size, "seed": seed, "model": f"{size}/seed{seed}", "bpd": float(b)}
                         for i, b in enumerate(bpd)]
    return pd.DataFrame(rows)


def run_disagreement(cfg: StudyConfig, out_dir: str | Path, *, dcfg: DisagreementConfig = DisagreementConfig(),
                     log=print, figures: bool = True) -> dict:
    """Train (or load) the flows and the CNN on one split, score the common inputs, write table, summary, report and
    figure; then the density-quality sweep on the same split (unless `dcfg.sweep` is off)."""
    start = time.perf_counter()
    run_dir = prepare_run_dir(Path(out_dir))
    d, seed = cfg.data, cfg.seeds[0]
    splits = load(d.name, seed=seed, root=d.root, download=d.download, val_fraction=d.val_fraction,
                  test_fraction=d.test_fraction, limit=d.limit)
    splits, oracle = hold_out_for_oracle(splits, d.oracle_fraction, seed)
    flows = {(f"{b}x{h}", s): trained_flow(cfg, splits, (b, h), s, run_dir, log) for b, h in dcfg.sizes for s in dcfg.seeds}
    cnn, _ = train_or_load(cfg, "cnn", splits, seed, run_dir, torch.device("cpu"), log, False)
    sets = common_inputs(cfg, dcfg, splits, cnn, next(iter(flows.values())))
    scores = score_table(flows, sets, splits.info)
    atomic_write_text(run_dir / "disagreement_scores.csv", scores.to_csv(index=False))
    summary = summarise(scores)
    write_json(run_dir / "disagreement.json", {"config_hash": config_hash(cfg), "dataset": cfg.data.name, "settings": dataclasses.asdict(dcfg),
                                               "seconds": time.perf_counter() - start, "summary": summary})
    report = ["# Do flows that fit the data equally well agree off it?", "", f"Config `{cfg.name}`, split of seed {seed}; "
              f"flows (blocks x hidden) {', '.join(f'{b}x{h}' for b, h in dcfg.sizes)}, seeds {list(dcfg.seeds)}; spread = std of "
              "bits/dim across models per input, median over inputs [95% bootstrap interval].", ""] + describe(summary)
    report += ["", "![disagreement](figures/disagreement.png)", ""]
    if dcfg.sweep:
        committee, _ = fit_oracle(cfg, splits, oracle, seed, run_dir, torch.device("cpu"))
        report += density_sweep_section(cfg, dcfg, SweepInputs(splits, cnn, flows, committee), run_dir, log, figures=figures)
    atomic_write_text(run_dir / "report.md", "\n".join(report))
    if figures:
        draw_disagreement(run_dir)
    return summary


@dataclass(frozen=True)
class SweepInputs:
    """What the disagreement run made that the sweep reuses: the split, its CNN, its flows and the label oracle."""

    splits: object
    cnn: torch.nn.Module
    flows: dict
    committee: object


def density_sweep_section(cfg: StudyConfig, dcfg: DisagreementConfig, made: SweepInputs, run_dir: Path, log, *,
                          figures: bool) -> list[str]:
    """Score the sweep's densities (baselines, Gaussian, every flow, the study's flow), write density_sweep.json and its
    figure; returns the report's section."""
    seed, splits, flows = cfg.seeds[0], made.splits, made.flows
    densities = baseline_densities(splits, seed, dcfg.baseline_images) if dcfg.baselines else []
    for name, family in (("gaussian", "Gaussian"), ("flow", "study flow")):
        model, _ = train_or_load(cfg, name, splits, seed, run_dir, torch.device("cpu"), log, False)
        densities.append(model_density(family if name == "gaussian" else "study flow", family, model, splits.test.x, seed))
    densities += [model_density(f"flow {size} seed {s}", f"flow {size}", flow, splits.test.x, seed) for (size, s), flow in flows.items()]
    if dcfg.knobs:
        densities += knob_densities(cfg, splits, run_dir, log)
    attack = SweepAttack(eps=dcfg.eps, pgd_steps=cfg.attacks.steps, aware_steps=dcfg.aware_steps,
                         lambdas=tuple(cfg.attacks.aware_lambdas), fpr=cfg.detect.fpr)
    rows = sweep_rows(made.cnn, densities, splits, made.committee, attack, n=dcfg.attacked, seed=seed, log=log)
    summary = summarise_sweep(rows)
    write_json(run_dir / "density_sweep.json", {"config_hash": config_hash(cfg), "attack": dataclasses.asdict(attack),
                                                 "rows": rows, "summary": summary})
    if figures:
        draw_sweep(summary, run_dir / "figures")
    return ["## Does a better density notice more?", "",
            f"The same {dcfg.attacked} test images, attacked at linf eps {dcfg.eps:g} on the grey-level grid, scored by "
            f"every density at {100 * cfg.detect.fpr:g}% validation false positives: plain PGD against the CNN (one set "
            "for all), the same images under sign noise of the same size, and a detector-aware attack that knows the "
            "density (valid evasion: misclassified, unflagged, and the independent label oracle keeps the class). "
            "Intervals: 95%, over images." + _baselines_note(dcfg, len(splits.train)),
            ""] + describe_sweep(summary) + ["", "![density sweep](figures/density_sweep.png)", ""]


def _baselines_note(dcfg: DisagreementConfig, n_train: int) -> str:
    if not dcfg.baselines:
        return (" scikit-learn's KDE and GMM are left out here (`--no-baselines`: each fit takes minutes on 28x28 images); the "
                "Gaussian classifier is the closed-form density.")
    if dcfg.baseline_images is not None and dcfg.baseline_images < n_train:
        return (f" The KDE and the GMM are fitted on {dcfg.baseline_images} of the {n_train} training images (`--baseline-images`: "
                "a fit on all of them takes too long on 28x28 images); every other density on all of them.")
    return ""


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'6x128,4x64' -> ((6, 128), (4, 64)); a ConfigError naming the bad part otherwise."""
    sizes = []
    for part in text.split(","):
        blocks, _, hidden = part.strip().partition("x")
        if not (blocks.isdigit() and hidden.isdigit() and int(blocks) > 0 and int(hidden) > 0):
            raise ConfigError(f"--sizes: '{part.strip()}' is not BLOCKSxHIDDEN with positive integers, e.g. 6x128")
        sizes.append((int(blocks), int(hidden)))
    return tuple(sizes)


def run_from_args(args) -> int:
    """`fooled disagree [CONFIG] [--out DIR] [--set KEY=VALUE ...] [--quiet]`: run, then print the table and the verdict."""
    from ..config import load_config, override
    from .run import silent, stderr_log

    cfg = override(load_config(args.config), args.set)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.name}-disagreement"
    dcfg = DisagreementConfig(sweep=not getattr(args, "no_sweep", False), knobs=not getattr(args, "no_knobs", False),
                              baselines=not getattr(args, "no_baselines", False), baseline_images=getattr(args, "baseline_images", None))
    if dcfg.baseline_images is not None and dcfg.baseline_images < 1:
        raise ConfigError(f"--baseline-images must be >= 1, got {dcfg.baseline_images}")
    if getattr(args, "sizes", None):
        dcfg = dataclasses.replace(dcfg, sizes=parse_sizes(args.sizes))
    summary = run_disagreement(cfg, out, dcfg=dcfg, log=silent if args.quiet else stderr_log)
    print("\n".join(describe(summary)))
    print(f"report: {out / 'report.md'}")
    return 0


__all__ = ["run_from_args", "DisagreementConfig", "run_disagreement", "score_table", "common_inputs", "trained_flow"]
