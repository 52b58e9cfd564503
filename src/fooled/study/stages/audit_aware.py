"""The detector-aware attack's own audit: converged, unbounded success, and a known answer it must reach.

Each check is a dict {check, target, passed, detail}, as in `audit`; a failed check is reported, never hidden.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from ...audit_prose import check_row
from ...attacks import attack_success, linear_gaussian_l2_evadable, strongest_aware_attack
from ...detection import calibrate_threshold
from ...models.baselines import LogisticRegression
from ..context import SeedContext
from .aware import aware_attack
from .batching import images_and_seconds
from .second_opinions import evades, second_opinion_checks

KNOWN_ANSWER_VERSION = 2  # the known-answer stage; 2: the exact answer from closed-form pruning and multi-start solves
UNBOUNDED_EVASION = 0.95  # an unbounded detector-aware attack (linf eps 1) must evade on at least this share of the images


def _check(ctx, name, target, passed, kind, **numbers) -> dict:
    return check_row(ctx.seed, name, target, passed, kind, **numbers)


def _evaded(ctx: SeedContext, target: str, x_adv: torch.Tensor) -> np.ndarray:
    """Images the model got right, the attack made wrong, and -log p(x) does not flag (scored alone, not with every detector)."""
    guard = ctx.guards[target]
    return evades(ctx, target, lambda x: ~(guard.score(x) <= guard.threshold), x_adv)


def audit_aware(ctx: SeedContext, advs: dict, aware: dict, convergence_eps: dict) -> list[dict]:
    """Per model of `attacks.aware_targets`, on the first `expensive_examples` images: doubling steps and restarts of the -log p(x)-aware attack at the
    convergence budget changes evasion by less than the tolerance; at every budget, a smaller budget's point adds evasion on
    fewer images than the tolerance (else the attack at that budget missed what a smaller ball holds); at linf eps 1 it
    evades nearly always. Once per seed, if a
    logistic regression was trained: the attack reaches the exact answer of a linear classifier with a Gaussian detector.
    Then, for every model and attacked detector, no second opinion (`second_opinions`) beats it at any budget.
    `advs` holds plain PGD's adversarials, `aware` the study's detector-aware stages ({(target, detector): {eps: stage}})."""
    a, tol = ctx.cfg.attacks, ctx.cfg.audit.aware_tolerance
    sub = ctx.subset(a.expensive_examples)
    n, checks = len(sub.x), []
    for target in [t for t in ctx.models if t in a.aware_targets]:
        eps = convergence_eps.get(target)
        if eps is None or (target, "pgd", eps) not in advs:
            continue
        start = advs[(target, "pgd", eps)][:n]
        stages = aware[(target, "nll")]  # the study's own
        base, _ = images_and_seconds(stages[eps])
        double, _ = aware_attack(sub, target, "nll", eps, start, steps=2 * a.adaptive_steps, restarts=2 * a.restarts, label="aware-double")
        e_base, e_double = int(_evaded(sub, target, base).sum()), int(_evaded(sub, target, double).sum())
        checks.append(_check(ctx, "detector-aware attack converged: doubling steps and restarts raises evasion by less than the "
                             "tolerance", target, e_double - e_base < tol * n, "aware_doubling", eps=eps, n=n, evaded=e_base,
                             evaded_double=e_double, steps=a.adaptive_steps, restarts=a.restarts, tolerance=tol))
        rescued = {e: int(stage["rescued"].sum()) for e, stage in stages.items()}
        checks.append(_check(ctx, "detector-aware attack converged at every budget: a smaller budget's point adds evasion on fewer "
                             "images than the tolerance", target, max(rescued.values()) < tol * n, "aware_budgets", n=n,
                             per_eps=[{"eps": e, "rescued": r} for e, r in rescued.items()], tolerance=tol))
        unbounded, _ = aware_attack(sub, target, "nll", 1.0, sub.x, label="aware-unbounded")
        evaded, correct = int(_evaded(sub, target, unbounded).sum()), int((sub.clean_pred[target] == sub.y.numpy()).sum())
        checks.append(_check(ctx, f"an unbounded detector-aware attack (linf eps 1) evades on at least {UNBOUNDED_EVASION:.0%} of the "
                             "images", target, evaded >= UNBOUNDED_EVASION * correct, "aware_unbounded", evaded=evaded, correct=correct))
    linear = next((name for name, m in ctx.models.items() if isinstance(m, LogisticRegression)), None)
    n = ctx.cfg.audit.known_answer_images
    if linear is not None and n and len(ctx.x) >= 4 * n:  # the Gaussian and its threshold need clean images beside those attacked
        checks.append(_known_answer(ctx, linear, n, ctx.cfg.audit.known_answer_eps))
    return checks + second_opinion_checks(ctx, aware)  # independent penalty-method attacks beside the study's, every budget


def _known_answer(ctx: SeedContext, name: str, n: int, eps: float) -> dict:
    """The logistic regression with a Gaussian density of the clean pixels (Ledoit-Wolf covariance) as the detector, threshold
    at the study's validation rate on the attacked images' held-out half: evadable per image by an exact convex solve."""
    model, x, y = ctx.models[name], ctx.x[:n], ctx.y[:n]
    flat = ctx.x[n:].flatten(1).double().numpy()  # the Gaussian and its threshold from other clean images than those attacked
    cov = LedoitWolf().fit(flat).covariance_
    mean = torch.from_numpy(flat.mean(0))
    gauss = torch.distributions.MultivariateNormal(mean.float(), covariance_matrix=torch.from_numpy(cov).float())

    def score(v):
        return -gauss.log_prob(v.flatten(1))

    tau = calibrate_threshold(score(ctx.x[n:]).double().numpy(), ctx.cfg.detect.fpr)
    w, b = model.linear.weight.detach().cpu(), model.linear.bias.detach().cpu()

    def compute():  # convex solves per image and wrong class (most pruned in closed form), cached
        exact = linear_gaussian_l2_evadable(w, b, mean, torch.from_numpy(cov), x, y, eps=eps, tau=tau)
        x_adv = strongest_aware_attack(model, x, y, score=score, threshold=tau, eps=eps, norm="l2",
                                       steps=2 * ctx.cfg.attacks.adaptive_steps, generator=ctx.generator("known-answer"))
        return {"exact": exact.numpy(), "found": (attack_success(model, x_adv, y) & (score(x_adv) <= tau)).cpu().numpy()}

    stage = ctx.stage(f"{name}-known-answer", ctx.key(name, eps=eps, n=n, fpr=ctx.cfg.detect.fpr, steps=ctx.cfg.attacks.adaptive_steps,
                                                      version=KNOWN_ANSWER_VERSION), compute)
    exact, found = torch.from_numpy(stage["exact"]), torch.from_numpy(stage["found"])
    slack = max(1, round(ctx.cfg.audit.tolerance * n))
    passed = int(exact.sum()) - int(found.sum()) <= slack and not bool((found & ~exact).any())
    return _check(ctx, "the detector-aware attack reaches the exact answer of a linear classifier with a Gaussian detector (L2)",
                  name, passed, "known_answer", eps=eps, n=n, exact=int(exact.sum()), found=int(found.sum()), slack=slack)
