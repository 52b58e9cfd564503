"""Where likelihood fails: out-of-distribution sets made without download, and images of maximal log p(x).

Every density model of the seed scores every set; thresholds are the same validation-calibrated ones
as for the attacks.
"""

from __future__ import annotations

import numpy as np
import torch

from ...data import Splits
from ...detection import auroc, tpr_at_threshold
from ...detection.ood import max_likelihood_images, ood_sets, ood_summary, skipped_sets
from ...rundir import Key
from ..context import Made, SeedContext


def out_of_distribution(ctx: SeedContext, splits: Splits) -> Made:
    """One row per density model and OOD set (plus the max-likelihood images), with every detector's AUROC."""
    o = ctx.cfg.ood
    sets = ood_sets(splits.test.x, ctx.info, o.n, torch.Generator().manual_seed(ctx.seed), test_y=splits.test.y, fashion_root=o.fashion_root)
    for name, why in skipped_sets(ctx.info, o.fashion_root).items():
        ctx.log(f"  seed {ctx.seed}: OOD set '{name}' {why}")
    made = Made()
    for name in sorted({g.name for g in ctx.guards.values()}):  # every density model, scored by its own guard
        guard = ctx.guards[name]
        def grow():
            imgs, trace = max_likelihood_images(guard.model, o.max_likelihood_images, ctx.info.shape,
                                                steps=o.max_likelihood_steps, generator=ctx.generator("max-likelihood", name))
            return {"images": imgs.cpu().numpy(), "trace": trace}

        stage = ctx.stage(f"{name}-max-likelihood", ctx.key(name, n=o.max_likelihood_images, steps=o.max_likelihood_steps), grow)
        all_sets = {**sets, "max-likelihood": torch.from_numpy(stage["images"])}
        scores = {k: guard.score_all(v) for k, v in all_sets.items()}
        clean_test = guard.score(splits.test.x)
        summary = ood_summary(clean_test, {k: v["nll"] for k, v in scores.items()}, guard.threshold, ctx.info.dim, ctx.info.levels)
        for row in summary:
            s = scores[row["set"]]
            row.update({
                "seed": ctx.seed, "model": name,
                "detectors": {d: {"auroc": auroc(guard.clean_test[d], v), "tpr_at_fpr": tpr_at_threshold(v, guard.thresholds[d])}
                              for d, v in s.items()},
            })
            made.score(Key(ctx.seed, name, f"ood:{row['set']}"), s["nll"])
            if ctx.first_seed:
                made.example(Key(ctx.seed, name, f"ood:{row['set']}", column="images"), all_sets[row["set"]][:8].numpy())
        if ctx.first_seed:
            made.example(Key(ctx.seed, name, "max_likelihood_trace", column="trace"), np.asarray(stage["trace"]))
        made.rows += summary
    return made
