"""Time the study's detector-aware stage against the penalty-method reference (`attacks.penalty_aware_pgd`), on a finished
run's models, and say how many steps the reference needs for the study's evasion.

    python benchmarks/aware.py [RUN_DIR] [--config experiments/digits.toml] [--seed 0] [--target cnn]

RUN_DIR holds the models a study of that config trained (its checkpoints/; results.json is not needed).

On the run's first `attacks.expensive_examples` test images, against -log p(x) at its 5% validation threshold, at every linf
budget of the run (all budgets stacked in one batch, as the study does), on one CPU thread, process CPU time:
- the stage: `attacks.strongest_aware_attack` with the run's settings (and once without its penalty-method runs, as before
  issue 25), from plain PGD's output (computed first, not timed: it is the plain stage's product) and the nearest likely
  training image of another class (timed), then `attacks.best_over_budgets`;
- the reference: the penalty method from the clean image, at 50, 100, 200 and 400 steps (one run each).
Each line gives the images evading at each budget; the last lines give the stage's time against the reference's at the
fewest steps whose evasion reaches the stage's at every budget (or the longest, if none does), as `ratio: R`, R = the
stage's time / the reference's (R > 1: the reference is faster for the same evasion).
"""

import argparse
import time
from pathlib import Path

import torch

from fooled.api import Run
from fooled.attacks import best_over_budgets, donor_start, penalty_aware_pgd, pgd_worst_case, stacked, strongest_aware_attack
from fooled.config import load_config, to_dict
from fooled.detection import calibrate_threshold
from fooled.study.stages.batching import per_image_budgets


def timed(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", nargs="?", default="runs/digits")
    p.add_argument("--config", default=None, help="the run's experiment TOML (default: the digits study)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", default="cnn")
    args = p.parse_args()
    torch.set_num_threads(1)
    run = Run(Path(args.run_dir), {"config": to_dict(load_config(args.config))})
    cfg, a = run.config, run.config.attacks
    splits = run.splits(args.seed)
    model, flow = run.model(args.target, args.seed), run.model("flow", args.seed)
    guard = model if hasattr(model, "log_prob") else flow  # a density classifier is its own detector, the others the flow's

    def score(v):
        return -guard.log_prob(v)

    with torch.no_grad():
        threshold = float(calibrate_threshold(torch.cat([score(b) for b in splits.val.x.split(256)]).numpy(), cfg.detect.fpr))
    x, y = splits.test.x[: a.expensive_examples], splits.test.y[: a.expensive_examples]
    budgets, n = sorted(a.eps), len(x)
    xs, ys, eps = stacked(x, len(budgets)), stacked(y, len(budgets)), per_image_budgets(budgets, x)
    plain = pgd_worst_case(model, xs, ys, eps=eps, norm="linf", settings=a.pgd, generator=torch.Generator().manual_seed(0)).x_adv

    def evading(x_adv):
        with torch.no_grad():
            ok = (model(x_adv).argmax(1) != ys) & (score(x_adv) <= threshold) & stacked(model(x).argmax(1) == y, len(budgets))
        return [int(c.sum()) for c in ok.split(n)]

    def stage(penalty_steps=None):
        donor = donor_start(model, x, y, *(t[: a.aware_donors] for t in (splits.train.x, splits.train.y)), score=score, threshold=threshold)
        found = strongest_aware_attack(model, xs, ys, score=score, threshold=threshold, eps=eps, steps=a.adaptive_steps,
                                       starts=[plain, stacked(donor, len(budgets))], lambdas=a.aware_lambdas, restarts=a.restarts,
                                       random_start=False, generator=torch.Generator().manual_seed(0), penalty_steps=penalty_steps)
        best, _ = best_over_budgets(model, x, y, dict(zip(budgets, found.split(n))), score=score, threshold=threshold)
        return torch.cat([best[e] for e in budgets])

    print(f"{args.target} guarded by -log p(x), seed {args.seed}, {n} images, linf eps {budgets}")
    old, old_s = timed(lambda: stage(penalty_steps=0))
    print(f"study's stage without its penalty runs (as before issue 25): evading {evading(old)} in {old_s:.2f} s")
    study, study_s = timed(stage)
    target = evading(study)
    print(f"study's stage ({a.adaptive_steps} steps): evading {target} in {study_s:.2f} s")
    match = None
    for steps in (50, 100, 200, 400):
        ref, ref_s = timed(lambda: penalty_aware_pgd(model, xs, ys, score=score, threshold=threshold, eps=eps, steps=steps,
                                                    generator=torch.Generator().manual_seed(0)))
        got = evading(ref)
        print(f"penalty reference, {steps} steps: evading {got} in {ref_s:.2f} s")
        match = (steps, ref_s)
        if all(g >= t for g, t in zip(got, target)):
            break
    print(f"the reference reaches the stage's evasion at {match[0]} steps" if all(g >= t for g, t in zip(got, target))
          else f"the reference does not reach the stage's evasion within {match[0]} steps")
    print(f"ratio: {study_s / match[1]:.1f}")


if __name__ == "__main__":
    main()
