"""Detector-aware attacks on any differentiable anomaly score: misclassify AND stay below the detector's threshold.

`detector_aware_pgd` descends any score x -> (N,) (higher = more suspicious, flagged when score > threshold) from
several starting points (a random point of the ball, plus the caller's `starts`, e.g. plain PGD's or CW's adversarials); a grid of initial
Lagrange weights; random restarts; and an APGD-like step size (Croce & Hein 2020) that starts at `INITIAL_STEP` eps
and is halved, going back to the run's best point, at checkpoints where the run stalled. Each run descends the score
while a hinge with a per-example Lagrange weight keeps the log-odds margin above `kappa` (examples not yet
misclassified ascend the margin instead). Every start is itself a candidate, so the result is never ranked
below any point passed in `starts`.

`detector_class_pgd` is the second formulation (Carlini & Wagner 2017, "Adversarial examples are not easily
detected"): the detector becomes an extra class whose logit wins iff the input is flagged, and margin PGD asks
for a winner that is neither y nor the detector. `strongest_aware_attack` keeps per image the best of both and of a
lean run of the penalty method (`attacks.penalty`: a clamped margin plus a weighted score hinge, sign steps), which
finds evasions the two miss on the CNN (issue 25) at little cost.

`best_over_budgets` gives each budget's images the smaller budgets' results where those rank higher: a point of a
smaller ball lies in every larger one, so evasion never falls as the budget grows.

Ranking, per image, of every point the attacks see (`_common.evasion_rank`): misclassified and unflagged first
(lowest score), then misclassified (lowest score), then the highest log-odds margin.
"""

import numbers

import torch

from fooled.attacks._common import (
    BestIterate,
    ascent_step,
    box,
    check_attack_inputs,
    check_budget,
    check_norm,
    check_positive,
    evasion_rank,
    frozen,
    lexi_better,
    module_of,
    no_budget,
    per_example,
    project,
    sample_in_ball,
    stacked,
    select,
    unit,
)
from fooled.attacks.gradient import pgd
from fooled.attacks.losses import log_margin
from fooled.attacks.penalty import multitarget_penalty_pgd, penalty_aware_pgd
from fooled.errors import ConfigError
from fooled.settings import INITIAL_STEP, PENALTY_PER_STEP, PENALTY_TARGETS


def check_score(score, threshold):
    if not callable(score):
        raise ConfigError("score must be a callable mapping x (N, C, H, W) to anomaly scores (N,), higher = more suspicious")
    if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool):
        raise ConfigError(f"threshold must be a float (inputs with score > threshold are flagged), got {threshold!r}")


def scores_of(score, x_adv):
    """score(x_adv), checked to be one value per example."""
    s = score(x_adv)
    if not isinstance(s, torch.Tensor) or s.shape != (len(x_adv),):
        raise ConfigError(f"score must return a tensor of shape ({len(x_adv)},), got {getattr(s, 'shape', type(s))}")
    return s


def check_starts(starts, x, eps, norm):
    """The caller's start points as a list of tensors like x, projected into the eps-ball and [0, 1]."""
    out = []
    for i, s in enumerate(starts):
        if not isinstance(s, torch.Tensor) or s.shape != x.shape:
            raise ConfigError(f"starts[{i}] must be a tensor of the shape of x {tuple(x.shape)}, got {getattr(s, 'shape', type(s))}")
        out.append(project(s.detach().to(x), x, eps, norm))
    return out


def apgd_checkpoints(steps):
    """The iterations at which APGD (Croce & Hein 2020) checks for progress: p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), as fractions of `steps`."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({round(q * steps) for q in p[1:] if 0 < round(q * steps) < steps})


def detector_aware_pgd(model, x, y, *, score, threshold, eps, steps=50, norm="linf", starts=(),
                       lambdas=(0.1, 1.0, 10.0), restarts=1, kappa=0.01, random_start=True, generator=None,
                       initial_step=INITIAL_STEP):
    """Misclassify x while keeping score(x_adv) <= threshold; per image the best point of every run (see module doc).

    score: differentiable callable x -> (N,), higher = more suspicious (e.g. `differentiable_score`, or `bpda`
    around a non-differentiable one). If it is an nn.Module or a bound method of one, that module is frozen too.
    starts: point sets like x from which runs start besides a random point of the ball; each is a candidate.
    eps: a number, or a tensor (N,) of one budget per image (several budgets attacked in one batch).
    lambdas: initial Lagrange weights of the margin hinge, one run per value and start.
    restarts: runs per start and weight; all but the first start from a fresh random point of the ball.
    random_start: whether a random point of the ball is a start besides `starts` (at least one start is needed).
    kappa: the log-odds margin log p(j*|x) - log p(y|x) the hinge keeps (model-independent units).
    initial_step: each run's first step size as a fraction of eps (halved where the run stalls).
    Runs: (random_start + len(starts)) * len(lambdas) * restarts, of `steps` gradient steps each.
    """
    x, y, _ = check_attack_inputs(model, x, y)
    check_score(score, threshold)
    eps = check_budget(eps, x)
    check_positive("steps", steps, integer=True)
    check_positive("restarts", restarts, integer=True)
    check_positive("kappa", kappa, allow_zero=True)
    check_positive("initial_step", initial_step)
    check_norm(norm)
    lambdas = tuple(lambdas)
    if not lambdas:
        raise ConfigError("lambdas must contain at least one initial Lagrange weight")
    for lam in lambdas:
        check_positive("each of lambdas", lam)
    starts = check_starts(starts, x, eps, norm)
    if not random_start and not starts:
        raise ConfigError("detector_aware_pgd needs a start: pass starts or set random_start=True")
    if no_budget(eps) or not len(x):
        return x.clone()
    bounds = box(x, eps) if norm == "linf" else None

    def random_point():
        return project(sample_in_ball(x, eps, norm, generator), x, eps, norm, bounds)

    best = BestIterate(x)
    with frozen(model, module_of(score)), torch.enable_grad():
        points = ([random_point()] if random_start else []) + starts
        for point in points:
            with torch.no_grad():
                best.update(point, *evasion_rank(log_margin(model(point), y), scores_of(score, point), threshold))
        runs = [(point if r == 0 else random_point(), lam) for point in points for lam in lambdas for r in range(restarts)]
        per_call = max(1, MAX_BATCH // len(x))
        for i in range(0, len(runs), per_call):  # the runs side by side in one batch: one pass through the models per step
            chunk = runs[i:i + per_call]
            k = len(chunk)
            lam0 = torch.cat([torch.full((len(x),), float(lam), dtype=x.dtype, device=x.device) for _, lam in chunk])
            stacked_bounds = None if bounds is None else tuple(stacked(b, k) for b in bounds)
            stacked_eps = stacked(eps, k) if isinstance(eps, torch.Tensor) else eps
            _run(model, score, threshold, stacked(x, k), stacked(y, k), torch.cat([x0 for x0, _ in chunk]), lam0=lam0,
                 eps=stacked_eps, steps=steps, norm=norm, bounds=stacked_bounds, kappa=kappa, best=_Folded(best, len(x)),
                 initial_step=initial_step)
    return project(best.x, x, eps, norm, bounds).detach()


MAX_BATCH = 4096  # images per pass of detector_aware_pgd's stacked runs


class _Folded:
    """`BestIterate` of n images fed by k runs stacked in one batch of k * n: each run's block updates it in turn."""

    def __init__(self, best, n):
        self.best, self.n = best, n

    def update(self, x_adv, tier, value):
        for start in range(0, len(x_adv), self.n):
            block = slice(start, start + self.n)
            self.best.update(x_adv[block], tier[block], value[block])


def _run(model, score, threshold, x, y, x_adv, *, lam0, eps, steps, norm, bounds, kappa, best, initial_step):
    """One run from x_adv (or several, stacked: every quantity is per example); updates `best` with every iterate.
    lam0: the initial Lagrange weight of each example (N,). Step size initial_step * eps, halved (and the run sent back to
    its own best point) at each checkpoint where fewer than 3/4 of the steps since the last one improved the
    iterate or the run's best did not improve at all (APGD's two conditions)."""
    n = len(x)
    lam = lam0.clone()
    step = (initial_step * eps).flatten().to(x) if isinstance(eps, torch.Tensor) else torch.full((n,), initial_step * eps, dtype=x.dtype, device=x.device)
    run_best = BestIterate(x_adv)
    prev_tier, prev_value = run_best.tier.clone(), run_best.value.clone()
    improved_steps = torch.zeros(n, dtype=torch.long, device=x.device)
    best_moved = torch.zeros(n, dtype=torch.bool, device=x.device)
    checkpoints, last_checkpoint = apgd_checkpoints(steps), 0
    for i in range(steps + 1):
        x_adv = x_adv.detach().requires_grad_(i < steps)
        m = log_margin(model(x_adv), y)
        s = scores_of(score, x_adv)
        tier, value = evasion_rank(m, s, threshold)
        best.update(x_adv, tier, value)
        best_moved |= run_best.update(x_adv, tier, value) & (i > 0)
        improved_steps += lexi_better(tier, value, prev_tier, prev_value).long()
        prev_tier, prev_value = tier, value
        if i == steps:
            break
        (g_s,) = torch.autograd.grad(s.sum(), x_adv, retain_graph=True)
        (g_m,) = torch.autograd.grad(m.sum(), x_adv)
        # unit directions make the Lagrange weight independent of the two gradient scales
        unsafe = m.detach() <= kappa
        evading = -unit(g_s) + per_example(lam * unsafe, x) * unit(g_m)
        direction = torch.where(per_example(tier > 0, x), evading, unit(g_m))
        lam = torch.where(unsafe, lam * 2, lam * 0.75)
        x_adv = project(ascent_step(x_adv.detach(), direction, step, norm), x, eps, norm, bounds)
        if i + 1 in checkpoints:
            stalled = (improved_steps < 0.75 * (i + 1 - last_checkpoint)) | ~best_moved
            step = torch.where(stalled, step / 2, step)
            x_adv = select(stalled, run_best.x, x_adv)
            improved_steps.zero_()
            best_moved.zero_()
            last_checkpoint = i + 1


def detector_class_logits(logits, score, threshold, c=1.0):
    """(N, K + 1): log_softmax(logits) and the detector as class K, with logit max_k log p(k|x) + c (score - threshold),
    which is the largest iff the input is flagged (Carlini & Wagner 2017's augmented classifier)."""
    log_p = torch.log_softmax(logits, dim=1)
    return torch.cat([log_p, (log_p.amax(1) + c * (score - threshold))[:, None]], dim=1)


def evasion_margin(augmented, y, x_adv=None):
    """max_{j != y, j < K} z_j - max(z_y, z_K) of detector-class logits (N, K + 1): >= 0 iff some wrong class
    beats both y and the detector, i.e. iff misclassified and unflagged."""
    classes = augmented[:, :-1]
    guard = torch.maximum(classes.gather(1, y[:, None]).squeeze(1), augmented[:, -1])
    wrong = classes.scatter(1, y[:, None], -torch.inf)
    return wrong.amax(1) - guard


def detector_class_pgd(model, x, y, *, score, threshold, eps, c=1.0, steps=50, step_size=None, norm="linf",
                       restarts=1, generator=None):
    """Margin PGD on the detector-class logits (`detector_class_logits`): a winner that is neither y nor the detector.

    The same `pgd` loop with another model and loss: pgd keeps per image the best iterate, successful first
    (not predicted y, which includes flagged points), then the highest `evasion_margin`; an evading iterate has
    margin >= 0 and a flagged one < 0, so if any iterate evades, the returned one does.
    """
    check_score(score, threshold)
    check_positive("c", c)

    def augmented(x_adv):
        return detector_class_logits(model(x_adv), scores_of(score, x_adv), threshold, c)

    check_attack_inputs(model, x, y)
    with frozen(model, module_of(score)):
        return pgd(augmented, x, y, eps=eps, steps=steps, step_size=step_size, norm=norm, restarts=restarts,
                   loss=evasion_margin, generator=generator).x_adv


def strongest_aware_attack(model, x, y, *, score, threshold, eps, steps=50, norm="linf", starts=(),
                           lambdas=(0.1, 1.0, 10.0), restarts=1, kappa=0.01, c=1.0, random_start=True, generator=None,
                           initial_step=INITIAL_STEP, penalty_steps=None, penalty_targets=PENALTY_TARGETS):
    """Per image the best of `detector_class_pgd`, the penalty method (`attacks.penalty_aware_pgd`, `penalty_steps` steps
    (default `PENALTY_PER_STEP` * steps; 0 skips it) from x and from each of `starts`, and `attacks.multitarget_penalty_pgd`
    toward `penalty_targets` classes) and `detector_aware_pgd` (which starts from the caller's `starts` and those results
    too, all of them candidates)."""
    x_class = detector_class_pgd(model, x, y, score=score, threshold=threshold, eps=eps, c=c, steps=steps, norm=norm,
                                 restarts=restarts, generator=generator)
    found = [x_class]
    penalty_steps = round(PENALTY_PER_STEP * steps) if penalty_steps is None else penalty_steps
    if penalty_steps:
        found.append(penalty_aware_pgd(model, x, y, score=score, threshold=threshold, eps=eps, norm=norm, steps=penalty_steps,
                                       starts=starts, generator=generator))
        found.append(multitarget_penalty_pgd(model, x, y, score=score, threshold=threshold, eps=eps, norm=norm,
                                             steps=penalty_steps, targets=penalty_targets, generator=generator))
    return detector_aware_pgd(model, x, y, score=score, threshold=threshold, eps=eps, steps=steps, norm=norm,
                              starts=[*starts, *found], lambdas=lambdas, restarts=restarts, kappa=kappa,
                              random_start=random_start, generator=generator, initial_step=initial_step)


def best_over_budgets(model, x, y, advs, *, score, threshold):
    """{eps: adversarials of x} -> ({eps: adversarials}, {eps: rescued}): each budget takes per image the point of a smaller
    budget where that ranks strictly higher (`_common.evasion_rank`: evading first, then misclassified, each by the lowest
    score). Every point of a smaller ball lies in the larger one, so each result stays in its budget and evasion does not
    fall as eps grows. rescued (N,) marks the images that evade only through a smaller budget's point: evasions the
    budget's own attack missed, a measure of how far it is from converged."""
    x, y, _ = check_attack_inputs(model, x, y)
    check_score(score, threshold)
    out, rescued, prev = {}, {}, None
    with torch.no_grad(), frozen(model, module_of(score)):
        for eps in sorted(advs):
            x_adv = advs[eps].detach().to(x)
            if x_adv.shape != x.shape:
                raise ConfigError(f"advs[{eps}] must have the shape of x {tuple(x.shape)}, got {tuple(x_adv.shape)}")
            tier, value = evasion_rank(log_margin(model(x_adv), y), scores_of(score, x_adv), threshold)
            rescued[eps] = torch.zeros(len(x), dtype=torch.bool, device=x.device)
            if prev is not None:  # a budget keeps its own result unless the smaller budget's ranks strictly higher
                smaller = lexi_better(prev[1], prev[2], tier, value)
                rescued[eps] = smaller & (prev[1] == 2) & (tier < 2)
                x_adv, tier, value = select(smaller, prev[0], x_adv), torch.where(smaller, prev[1], tier), torch.where(smaller, prev[2], value)
            out[eps], prev = x_adv, (x_adv, tier, value)
    return out, rescued


def donor_start(model, x, y, pool_x, pool_y, *, score=None, threshold=None):
    """Per image, the nearest (L2) image of `pool_x` with another label that the model classifies as its label and, given a
    score and threshold, that is unflagged: an evading point under an unbounded budget, and, projected into a smaller
    ball (as `detector_aware_pgd` does with its starts), a start toward a likely image of another class. Where the pool
    holds no such image for a class, the image itself is returned."""
    x, y, _ = check_attack_inputs(model, x, y)
    pool_x, pool_y = pool_x.to(x), pool_y.to(y)
    with torch.no_grad(), frozen(model, module_of(score)):
        ok = torch.cat([model(b).argmax(1) for b in pool_x.split(512)]) == pool_y
        if score is not None:
            check_score(score, threshold)
            ok &= torch.cat([scores_of(score, b) for b in pool_x.split(512)]) <= threshold
    pool_x, pool_y = pool_x[ok], pool_y[ok]
    if not len(pool_x):
        return x.clone()
    dist = torch.cdist(x.flatten(1), pool_x.flatten(1))
    dist[pool_y[None, :] == y[:, None]] = torch.inf
    nearest = dist.argmin(1)
    return torch.where(per_example(torch.isfinite(dist.min(1).values), x), pool_x[nearest], x)


def bpda(exact_fn, surrogate_fn):
    """x -> exact_fn(x), with the gradient of surrogate_fn (BPDA, Athalye et al. 2018): attack a score that is not
    differentiable, e.g. the complexity score with its compressed length held fixed, through a smooth part of it."""

    class _BPDA(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.as_tensor(exact_fn(x)).to(x)

        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved_tensors
            with torch.enable_grad():
                x_in = x.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(surrogate_fn(x_in), x_in, grad_out)
            return grad

    return _BPDA.apply
