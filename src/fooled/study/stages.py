"""The per-seed attack stages: plain, detector-aware, transfer, CW, fooling images. Each returns what it made.

Each attack's output is a cached stage (see `rundir.cached`), so a rerun only scores.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import attacks
from ..attacks import stacked
from ..config import NORM_OF
from ..detection import auroc, differentiable_score, flagged, tpr_at_threshold
from ..detection.detectors import complexity_score
from ..detection.guard import MEMO
from ..models import predict
from ..rundir import Key, set_name
from .context import Made, SeedContext


def pgd_settings(a) -> dict:
    """The keyword arguments of `attacks.pgd_worst_case` set by the config (besides eps and norm); part of its stages' keys."""
    return {"steps": a.steps, "step_size": a.step_size, "restarts": a.restarts, "losses": a.losses, "targets": a.targets}


def study_pgd(ctx: SeedContext, model, x, y, *, eps: float, norm: str, generator, **override) -> torch.Tensor:
    """`attacks.pgd_worst_case` with the study's settings; `override` changes some of them (steps, restarts, early_stop)."""
    return study_pgd_with_losses(ctx, model, x, y, eps=eps, norm=norm, generator=generator, **override)[0]


def study_pgd_with_losses(ctx: SeedContext, model, x, y, *, eps, norm: str, generator, **override) -> tuple[torch.Tensor, torch.Tensor]:
    """`study_pgd` and, per image, the position in `attacks.losses` of the loss that fooled it (-1: none did)."""
    kwargs = {**pgd_settings(ctx.cfg.attacks), **{k: v for k, v in override.items() if v is not None}}
    return attacks.worst_case_with_losses(model, x, y, eps=eps, norm=norm, generator=generator, **kwargs)


def _counts(pred: np.ndarray, y: np.ndarray, clean_pred: np.ndarray, flags: np.ndarray) -> dict:
    """Detection over the successful adversarials (clean-correct images the attack made wrong), evasion over the clean-correct
    images (made wrong and not flagged), and the all-image rates beside them."""
    correct, wrong = clean_pred == y, pred != y
    success = correct & wrong
    n_correct, n_success = int(correct.sum()), int(success.sum())
    detected, evaded = int((success & flags).sum()), int((success & ~flags).sum())
    return {"n_detected": detected, "tpr_at_fpr": detected / n_success if n_success else None, "tpr_all": float(flags.mean()),
            "n_evaded": evaded, "evasion_rate": evaded / n_correct if n_correct else None,
            "evasion_all": float((wrong & ~flags).mean())}


def _row(ctx: SeedContext, target: str, attack: str, eps: float, x_adv: torch.Tensor, seconds: float, adaptive: bool,
         rounded: bool = False, norm: str | None = None, attacked: str | None = None, fooled_by: np.ndarray | None = None) -> Made:
    """The row of one attacked (or control) set: accuracy, and every detector's detection and evasion rates; for the study's
    PGD, how many of its successful adversarials each loss made (`fooled_by`: per image the loss's position, -1: none)."""
    det, model = ctx.guards[target], ctx.models[target]
    pred, clean_pred, y = predict(model, x_adv).numpy(), ctx.clean_pred[target], ctx.y.numpy()
    all_scores = det.score_all(x_adv)
    flags = det.flags(all_scores)
    name = set_name(attack, rounded, attacked)
    success = (clean_pred == y) & (pred != y)
    made = Made()
    for d, v in all_scores.items():
        made.score(Key(ctx.seed, target, name, eps, d), v)
    made.score(Key(ctx.seed, target, name, eps, "success"), success)  # the images an adversarial detection rate counts
    if ctx.first_seed and not rounded:
        made.example(Key(ctx.seed, target, name, eps, "images"), x_adv[:10].numpy())
        made.example(Key(ctx.seed, target, name, eps, "pred"), pred[:10])
    norm = norm or NORM_OF.get(attack, "linf")
    d = (x_adv - ctx.x).flatten(1)

    counted = np.ones_like(success) if attack.startswith("noise_") else success  # a control: every perturbed image counts

    def detector(name: str) -> dict:
        v, clean = all_scores[name], det.clean_test[name]
        return {"auroc": auroc(clean, v[counted]) if counted.any() else None, **_counts(pred, y, clean_pred, flags[name]),
                "test_fpr": float((clean > det.thresholds[name]).mean())}

    detectors = {name: detector(name) for name in all_scores}
    made.rows.append({
        "seed": ctx.seed, "target": target, "attack": attack, "norm": norm, "eps": eps, "adaptive": adaptive,
        "attacked_detector": attacked if adaptive else None,
        "grid": "rounded" if rounded else "continuous", "detector": det.name, "n": len(ctx.x),
        "clean_acc": float((clean_pred == y).mean()), "adv_acc": float((pred == y).mean()),
        "n_correct": int((clean_pred == y).sum()), "n_success": int(success.sum()),
        **{k: v for k, v in detectors["nll"].items() if k != "test_fpr"},
        "detectors": detectors, "fpr": ctx.cfg.detect.fpr, "threshold": det.threshold,
        "mean_bpd": float(ctx.bpd(all_scores["nll"]).mean()),
        "success_mean_bpd": float(ctx.bpd(all_scores["nll"][success]).mean()) if success.any() else None,
        "max_perturbation": float((d.abs().amax(1) if norm == "linf" else d.norm(dim=1)).max()) if len(d) else 0.0,
        "seconds": seconds,
        **({} if fooled_by is None else {"fooled_by": {loss: int((success & (fooled_by == i)).sum())
                                                        for i, loss in enumerate(ctx.cfg.attacks.losses)}}),
    })
    return made


def _rows(ctx: SeedContext, target: str, attack: str, eps: float, x_adv: torch.Tensor, seconds: float, adaptive: bool,
          norm: str | None = None, attacked: str | None = None, fooled_by: np.ndarray | None = None) -> Made:
    """The set as the attack made it, and rounded to the data's grey levels (inside the same budget)."""
    norm = norm or NORM_OF.get(attack, "linf")
    made = _row(ctx, target, attack, eps, x_adv, seconds, adaptive, norm=norm, attacked=attacked, fooled_by=fooled_by)
    on_grid = attacks.round_to_grid(x_adv, ctx.x, levels=ctx.info.levels, eps=eps, norm=norm)
    made += _row(ctx, target, attack, eps, on_grid, seconds, adaptive, rounded=True, norm=norm, attacked=attacked)
    return made


def controls(ctx: SeedContext) -> Made:
    """Random perturbations of every budget (sign noise in linf, Gaussian directions in L2) on the attacked images, scored by
    every detector of every target: the flag rate an adversarial detection rate must beat."""
    a, made = ctx.cfg.attacks, Made()
    for norm, budgets in (("linf", a.eps), ("l2", a.l2_eps if any(NORM_OF[n] == "l2" for n in a.names) else ())):
        for eps in budgets:
            x_noise = attacks.random_perturbation(ctx.x.to(ctx.device), eps=eps, norm=norm, generator=ctx.generator("control", norm, eps)).cpu()
            for target in ctx.models:
                made += _rows(ctx, target, f"noise_{norm}", eps, x_noise, 0.0, adaptive=False, norm=norm)
    return made


def budgets_of(ctx: SeedContext, name: str) -> list[float]:
    """The budgets at which the study runs attack `name` (linf or L2), in the order of one batch."""
    a = ctx.cfg.attacks
    return sorted(a.l2_eps if NORM_OF[name] == "l2" else a.eps)


def plain_key(ctx: SeedContext, target: str, name: str, eps: float) -> dict:
    batch = {} if name == "fgsm" else {"batch": budgets_of(ctx, name)}  # PGD runs every budget in one batch
    return {"model": ctx.keys[target], "attack": name, "eps": eps, **pgd_settings(ctx.cfg.attacks), **batch}


def batched_stages(ctx: SeedContext, budgets: list[float], stage_of: Callable[[float], tuple[str, dict]],
                   batch: Callable[[], dict]) -> dict:
    """{eps: stage} of an attack run at every budget in one batch (one pass through the models per step for all of them: on
    8x8 images a pass costs about as much for 4 x 48 images as for 48), each budget cached as its own stage (`stage_of(eps)`
    gives its label and key). The first budget not cached computes them all: `batch()` returns {eps: images} or
    {eps: {"x_adv": images, name: tensor, ...}}; a stage holds those arrays and "share_seconds", the batch's time shared
    evenly (`images_and_seconds` reads the two)."""
    made = {}

    def compute(eps: float) -> dict:
        if not made:
            start = time.perf_counter()
            made.update(batch())
            made["seconds"] = (time.perf_counter() - start) / len(budgets)
        arrays = made[eps] if isinstance(made[eps], dict) else {"x_adv": made[eps]}
        return {**{k: v.cpu().numpy() for k, v in arrays.items()}, "share_seconds": made["seconds"]}

    return {eps: ctx.stage(*stage_of(eps), lambda eps=eps: compute(eps)) for eps in budgets}


def images_and_seconds(stage: dict) -> tuple[torch.Tensor, float]:
    """The adversarials of a `batched_stages` stage and the seconds they took."""
    return torch.from_numpy(stage["x_adv"]), float(stage["share_seconds"])


def per_image_budgets(budgets: list[float], x: torch.Tensor) -> torch.Tensor:
    """The budget of each image of `stacked(x, len(budgets))`: budgets[0] for the first copy, and so on."""
    return torch.tensor(budgets, dtype=x.dtype, device=x.device).repeat_interleave(len(x))


def plain_attacks(ctx: SeedContext) -> tuple[Made, dict]:
    """FGSM and PGD (linf, L2) at every budget against every classifier; returns what it made and the adversarials."""
    a, made, advs = ctx.cfg.attacks, Made(), {}
    for target, model in ctx.models.items():
        start = time.perf_counter()
        dev_x, dev_y = ctx.x.to(ctx.device), ctx.y.to(ctx.device)
        for name in tqdm(a.names, desc=f"attacks on {target} (seed {ctx.seed})", disable=not ctx.progress, leave=False):
            budgets = budgets_of(ctx, name)

            def batch(name=name, budgets=budgets) -> dict:
                if name == "fgsm":
                    return {eps: attacks.fgsm(model, dev_x, dev_y, eps=eps) for eps in budgets}
                x_adv, fooled_by = study_pgd_with_losses(
                    ctx, model, stacked(dev_x, len(budgets)), stacked(dev_y, len(budgets)), eps=per_image_budgets(budgets, dev_x),
                    norm=NORM_OF[name], generator=ctx.generator(name, tuple(budgets)))
                return {eps: {"x_adv": x, "fooled_by": f} for eps, x, f in zip(budgets, x_adv.split(len(dev_x)), fooled_by.split(len(dev_x)))}

            def stage_of(eps, name=name) -> tuple[str, dict]:
                # PGD's stages also hold which loss fooled each image (stages written before they did are recomputed)
                return f"{target}-{name}-eps{eps:g}", {**plain_key(ctx, target, name, eps), **({} if name == "fgsm" else {"fooled_by": True})}

            for eps, stage in batched_stages(ctx, budgets, stage_of, batch).items():
                x_adv, seconds = images_and_seconds(stage)
                advs[(target, name, eps)] = x_adv
                made += _rows(ctx, target, name, eps, x_adv, seconds, adaptive=False, fooled_by=stage.get("fooled_by"))
        ctx.log(f"  seed {ctx.seed}: attacks on {target}: {sum(len(budgets_of(ctx, n)) for n in a.names)} budgets "
                f"in {time.perf_counter() - start:.1f} s")
    return made, advs


def aware_score(guard, name: str):
    """The differentiable score a detector-aware attack descends for detector `name` of a guard. The complexity score is
    attacked through BPDA with the compressed length held fixed: its torch form already takes L(x) as a constant, so its
    gradient is that of -log2 p(x) alone, the same as `attacks.bpda` around it (tested) at one flow pass per step."""
    if name != "complexity":
        return differentiable_score(name, guard.model, guard.context)
    levels = guard.context.levels
    return lambda x: complexity_score(guard.model, x, levels)


def aware_attack(ctx: SeedContext, target: str, name: str, eps: float, x_start: torch.Tensor, *, steps=None, restarts=None,
                 label: str = "aware") -> tuple[torch.Tensor, float]:
    """The strongest detector-aware attack on `target` against its guard's detector `name` at linf `eps` (see `aware_stages`),
    cached as a stage. Returns (adversarials, seconds)."""
    return images_and_seconds(aware_stages(ctx, target, name, {eps: x_start}, steps=steps, restarts=restarts, label=label)[eps])


def aware_stages(ctx: SeedContext, target: str, name: str, starts_by_eps: dict, *, steps=None, restarts=None,
                 label: str = "aware") -> dict:
    """The strongest detector-aware attack on `target` against its guard's detector `name` at every linf budget of
    `starts_by_eps` (eps -> plain PGD's output there), all budgets in one batch (one pass through the models per step
    for all of them: on 8x8 images a pass costs about as much for 4 x 48 images as for 48); each budget cached as a stage.
    Per image the best of the detector-as-extra-class PGD and the Lagrangian PGD from plain PGD's output, the nearest
    likely training image of another class (`attacks.donor_start`; a random start when the context has no donors) and, for
    a flow classifier, the latent-space attack; then each budget takes a smaller budget's point where that ranks higher
    (`attacks.best_over_budgets`). Returns {eps: stage}: "x_adv", "rescued" (the images that evade only through a smaller
    budget's point) and "share_seconds", the batch's time shared evenly."""
    a, model, guard = ctx.cfg.attacks, ctx.models[target], ctx.guards[target]
    steps, restarts = steps or a.adaptive_steps, restarts or a.restarts
    budgets = sorted(starts_by_eps)
    common = {"model": ctx.keys[target], "detector": ctx.keys[guard.name], "attacked": name, "threshold": guard.thresholds[name],
              "steps": steps, "restarts": restarts, "lambdas": a.aware_lambdas, "batch": budgets,
              "donors": len(ctx.donors[0]) if ctx.donors else 0, "initial_step": attacks.aware.INITIAL_STEP, "over_budgets": True}

    def batch() -> dict:
        x, y = ctx.x.to(ctx.device), ctx.y.to(ctx.device)
        n, k = len(x), len(budgets)
        score, threshold = aware_score(guard, name), guard.thresholds[name]
        starts = [torch.cat([starts_by_eps[e].to(ctx.device) for e in budgets])]
        if ctx.donors:  # the nearest likely image of another class, instead of a random start; the same for every eps and the
            # audit's reruns on these images, so scored once per seed (MEMO is cleared per seed)
            donor = MEMO(("donors", target, name, threshold), x, lambda: attacks.donor_start(
                model, x, y, *(t.to(ctx.device) for t in ctx.donors), score=score, threshold=threshold))
            starts.append(stacked(donor, k))
        if target == guard.name and hasattr(model, "encode"):  # a flow classifier guarded by its own density
            starts.append(torch.cat([attacks.latent_attack(model, x, y, eps=e, class_means=ctx.latent_means.get(target), score=score,
                                                           threshold=threshold) for e in budgets]))
        x_adv = attacks.strongest_aware_attack(model, stacked(x, k), stacked(y, k), score=score, threshold=threshold,
                                               eps=per_image_budgets(budgets, x),
                                               steps=steps, starts=starts, lambdas=a.aware_lambdas, restarts=restarts,
                                               random_start=not ctx.donors, generator=ctx.generator(label, target, name, tuple(budgets)))
        advs, rescued = attacks.best_over_budgets(model, x, y, dict(zip(budgets, x_adv.split(n))), score=score, threshold=threshold)
        return {eps: {"x_adv": advs[eps], "rescued": rescued[eps]} for eps in budgets}

    return batched_stages(ctx, budgets, lambda eps: (f"{target}-{label}-{name}-eps{eps:g}",
                                                      {**common, "eps": eps, "start": plain_key(ctx, target, "pgd", eps)}), batch)


def study_aware_attacks(sub: SeedContext, target: str, name: str, advs: dict) -> dict:
    """`aware_stages` as the study runs it on the images of `sub` (the first `expensive_examples`): every linf budget,
    started from plain PGD's output there. The audit and the label oracle read the same cached stages through it."""
    return {eps: images_and_seconds(stage) for eps, stage in study_aware_stages(sub, target, name, advs).items()}


def study_aware_stages(sub: SeedContext, target: str, name: str, advs: dict) -> dict:
    """The cached stages behind `study_aware_attacks`: {eps: stage} ("x_adv", "rescued", "share_seconds")."""
    return aware_stages(sub, target, name, {eps: advs[(target, "pgd", eps)][: len(sub.x)] for eps in sub.cfg.attacks.eps})


def adaptive_attacks(ctx: SeedContext, advs: dict) -> Made:
    """Detector-aware attacks at every linf budget, on the first `expensive_examples` images: -log p(x) against every model, and
    each detector of `attacks.aware_detectors` by its own strongest detector-aware attack against the `attacks.aware_targets`."""
    a, made = ctx.cfg.attacks, Made()
    sub = ctx.subset(a.expensive_examples)
    for target in ctx.models:
        names = a.aware_detectors if target in a.aware_targets else ("nll",)
        for name in [d for d in names if d in ctx.guards[target].thresholds]:
            for eps, (x_adv, seconds) in study_aware_attacks(sub, target, name, advs).items():
                made += _rows(sub, target, "adaptive_pgd", eps, x_adv, seconds, adaptive=True, attacked=name)
    return made


def transfer(ctx: SeedContext, advs: dict) -> Made:
    """Accuracy of every classifier on the linf PGD adversarials crafted on every other one."""
    made = Made()
    for (source, attack, eps), x_adv in advs.items():
        if attack != "pgd":
            continue
        for target, model in ctx.models.items():
            if target != source:
                acc = float((predict(model, x_adv) == ctx.y).float().mean())
                made.rows.append({"seed": ctx.seed, "source": source, "target": target, "attack": attack, "eps": eps, "adv_acc": acc})
    return made


def carlini_wagner(ctx: SeedContext) -> Made:
    """Minimal L2 adversarials: success rate, median L2, and how the detector scores the successful ones."""
    ctx = ctx.subset(ctx.cfg.attacks.expensive_examples)
    a, made = ctx.cfg.attacks, Made()
    for target, model in ctx.models.items():
        det = ctx.guards[target]
        key = {"model": ctx.keys[target], "steps": a.cw_steps, "binary_steps": a.cw_binary_steps}
        stage = ctx.stage(f"{target}-cw", key, lambda: {"x_adv": attacks.cw_l2(
            model, ctx.x.to(ctx.device), ctx.y.to(ctx.device), steps=a.cw_steps, binary_steps=a.cw_binary_steps).cpu().numpy()})
        x_adv = torch.from_numpy(stage["x_adv"])
        success = predict(model, x_adv) != ctx.y
        s = det.score(x_adv[success])
        made.rows.append({
            "seed": ctx.seed, "target": target, "attack": "cw_l2", "detector": det.name, "n": len(ctx.x),
            "success_rate": float(success.float().mean()),
            "median_l2": attacks.median_l2(ctx.x, x_adv, success),
            "auroc": auroc(det.clean_test["nll"], s) if len(s) else None,
            "tpr_at_fpr": tpr_at_threshold(s, det.threshold) if len(s) else None,
            "mean_bpd": float(ctx.bpd(s).mean()) if len(s) else None,
            "seconds": float(stage["seconds"]),
        })
    return made


def _fooling_search(ctx: SeedContext, target: str, method: str, targets: torch.Tensor) -> dict:
    """One search from noise, cached: images, the classifier's confidence in the target class and, for the density-aware
    searches (method ending in '_unflagged'), their -log p(x) must also stay at or below the detector's threshold."""
    f, model, guard = ctx.cfg.fooling, ctx.models[target], ctx.guards[target]
    common = dict(shape=ctx.info.shape, confidence=f.confidence, generator=ctx.generator("fooling", method, target))
    unflagged = method.endswith("_unflagged")
    if unflagged:
        common.update(score=differentiable_score("nll", guard.model, guard.context), threshold=guard.threshold)
    search = {"gradient": attacks.fooling_gradient, "evolution": attacks.fooling_evolution,
              "gradient_unflagged": attacks.fooling_gradient_unflagged, "evolution_unflagged": attacks.fooling_evolution_unflagged}[method]
    budget = {"steps": f.steps} if method.startswith("gradient") else {"generations": f.generations, "population": f.population}

    def compute():
        imgs, conf, *_ = search(model, targets.to(ctx.device), len(targets), **budget, **common)
        return {"images": imgs.cpu().numpy(), "confidence": conf.cpu().numpy()}

    key = {"model": ctx.keys[target], "method": method, **vars(f)}
    if unflagged:
        key.update(detector=ctx.keys[guard.name], threshold=guard.threshold)
    return ctx.stage(f"{target}-fooling-{method}", key, compute)


def fooling_images(ctx: SeedContext) -> Made:
    """Images grown from noise until a classifier is confident (Nguyen et al. 2015), scored by its detector; the density-aware
    searches also keep -log p(x) under the detector's threshold: can a model of p(x, y) be fooled by an image it finds likely?"""
    f, made = ctx.cfg.fooling, Made()
    K = ctx.info.num_classes
    targets = torch.arange(K).repeat_interleave(f.per_class)
    for target in ctx.models:
        det = ctx.guards[target]
        for method in ("gradient", "evolution", "gradient_unflagged", "evolution_unflagged"):
            stage = _fooling_search(ctx, target, method, targets)
            imgs, conf = torch.from_numpy(stage["images"]), stage["confidence"]
            s = det.score(imgs)
            bpd, flags = ctx.bpd(s), flagged(s, det.threshold)
            made.score(Key(ctx.seed, target, f"fooling_{method}"), s)
            if ctx.first_seed:
                made.example(Key(ctx.seed, target, f"fooling_{method}", column="images"), imgs.numpy())
                made.example(Key(ctx.seed, target, f"fooling_{method}", column="confidence"), conf)
            for k in range(K):
                m = (targets == k).numpy()
                made.rows.append({
                    "seed": ctx.seed, "target": target, "method": method, "constrained": method.endswith("_unflagged"), "class": k,
                    "n": int(m.sum()), "detector": det.name,
                    "success_rate": float((conf[m] >= f.confidence).mean()), "mean_confidence": float(conf[m].mean()),
                    "unflagged_success_rate": float(((conf[m] >= f.confidence) & ~flags[m]).mean()),
                    "mean_bpd": float(bpd[m].mean()), "clean_mean_bpd": float(ctx.bpd(det.clean_test["nll"]).mean()),
                    "flagged_rate": float(flags[m].mean()),
                    "seconds": float(stage["seconds"]),
                })
    return made
