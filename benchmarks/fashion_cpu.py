"""Time the pieces of the Fashion-MNIST CPU study for one seed, and measure the likelihood paradox beside the paper.

    python benchmarks/fashion_cpu.py --set data.root=DIR [--config experiments/fashion_mnist_cpu.toml] [--out RUN_DIR]

For seed 0 of the config: trains (or loads from RUN_DIR/checkpoints, so a second call only scores) every model of
`models.names` and prints its wall and CPU seconds per epoch, test accuracy and bits/dim; times one PGD attack
(the config's steps, losses and targets, at its middle eps) on `attacks.max_examples` test images against each
classifier; then scores the Fashion-MNIST OOD sets under the flow and prints their bits/dim beside the published
numbers (Nalisnick et al. 2019). CPU seconds are process time: on a shared machine they are what a free core takes.
Training here is what the study does, so pointing the study at the same RUN_DIR would reuse these checkpoints:
keep the default RUN_DIR away from the study's to time the study cold.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fooled import attacks
from fooled.config import load_config
from fooled.data import load
from fooled.detection.ood import PAPER_REFERENCE, ood_sets
from fooled.models import bpd_from_log_prob, is_density_model, mean_bpd, predict
from fooled.train import train_or_load


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


@torch.no_grad()
def bits_per_dim(flow, x: torch.Tensor, info) -> np.ndarray:
    """Bits/dim of each image under the flow (eval mode: mid-bin dequantisation)."""
    log_p = torch.cat([flow.log_prob(b) for b in x.split(500)])
    return bpd_from_log_prob(log_p, info.dim, info.levels).double().numpy()


def paradox(flow, splits, n: int, seed: int) -> list[tuple[str, float, float, float]]:
    """(set, mean bits/dim as the study scores them (mid-bin), share more likely than the median test image, mean
    bits/dim under uniform dequantisation noise (the bound the paper reports)) for the test set and every OOD set."""
    test = bits_per_dim(flow, splits.test.x, splits.info)
    sets = ood_sets(splits.test.x, splits.info, n, torch.Generator().manual_seed(seed), test_y=splits.test.y)
    rows = [("test", float(test.mean()), 0.5, mean_bpd(flow, splits.test.x, seed))]
    for name, x in sets.items():
        b = bits_per_dim(flow, x, splits.info)
        rows.append((name, float(b.mean()), float((b < np.median(test)).mean()), mean_bpd(flow, x, seed)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/fashion_mnist_cpu.toml")
    parser.add_argument("--out", default="runs/fashion_cpu_pieces")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; the study gives each seed's process one on 2 cores")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.set)
    d, seed = cfg.data, cfg.seeds[0]
    splits = load(d.name, seed=seed, root=d.root, download=d.download, val_fraction=d.val_fraction, limit=d.limit)
    print(f"{d.name}: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test, "
          f"{torch.get_num_threads()} threads")
    models = {}
    for name in cfg.models.names:
        (model, meta), wall, cpu = timed(lambda: train_or_load(cfg, name, splits, seed, args.out, "cpu", print, False))
        models[name] = model
        epochs = max(meta["epochs"], 1)
        acc = float((predict(model, splits.test.x) == splits.test.y).float().mean())
        bpd = f", {mean_bpd(model, splits.test.x, seed):.3f} bits/dim" if is_density_model(model) else ""
        print(f"{name}: {meta['n_params']} parameters, {meta['epochs']} epochs (best {meta['best_epoch'] + 1}), "
              f"{wall / epochs:.1f} s wall / {cpu / epochs:.1f} s CPU per epoch here, test accuracy {acc:.4f}{bpd}")
    a = cfg.attacks
    x, y = splits.test.x[: a.max_examples], splits.test.y[: a.max_examples]
    eps = a.eps[len(a.eps) // 2]
    for name, model in models.items():
        adv, wall, cpu = timed(lambda: attacks.pgd_worst_case(model, x, y, eps=eps, norm="linf", settings=a.pgd,
                                                              generator=torch.Generator().manual_seed(seed)).x_adv)
        adv_acc = float((predict(model, adv) == y).float().mean())
        print(f"PGD linf eps={eps} on {len(x)} images vs {name}: {wall:.1f} s wall / {cpu:.1f} s CPU, accuracy {adv_acc:.3f}")
    if "flow" in models:
        print(f"\nLikelihood paradox under our flow (seed {seed}) beside {PAPER_REFERENCE['model']} "
              f"({PAPER_REFERENCE['citation']}):")
        print(f"{'set':<20} {'bits/dim':>9} {'more likely than median test':>30} {'dequantised bits/dim':>21}")
        for name, bpd, share, noisy in paradox(models["flow"], splits, cfg.ood.n, seed):
            print(f"{name:<20} {bpd:>9.3f} {share:>30.3f} {noisy:>21.3f}")
        for theirs, ours in PAPER_REFERENCE["ours"].items():
            print(f"paper: {theirs} {PAPER_REFERENCE['bits_per_dim'][theirs]} bits/dim (ours: '{ours}')")


if __name__ == "__main__":
    main()
