"""The per-seed attack stages: plain, detector-aware, transfer, CW, fooling images. Each returns what it made.

Each attack's output is a cached stage (see `rundir.cached`), so a rerun only scores.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import attacks
from ..config import NORM_OF
from ..detection import auroc, flagged, tpr_at_threshold
from ..models import predict
from ..rundir import Key, set_name
from .context import Made, SeedContext


def pgd_settings(a) -> dict:
    """The keyword arguments of `attacks.pgd_worst_case` set by the config (besides eps and norm); part of its stages' keys."""
    return {"steps": a.steps, "step_size": a.step_size, "restarts": a.restarts, "losses": a.losses, "targets": a.targets}


def study_pgd(ctx: SeedContext, model, x, y, *, eps: float, norm: str, generator, **override) -> torch.Tensor:
    """`attacks.pgd_worst_case` with the study's settings; `override` changes some of them (steps, restarts, early_stop)."""
    kwargs = {**pgd_settings(ctx.cfg.attacks), **{k: v for k, v in override.items() if v is not None}}
    return attacks.pgd_worst_case(model, x, y, eps=eps, norm=norm, generator=generator, **kwargs)


def _run_attack(name: str, model, x, y, eps: float, ctx: SeedContext) -> torch.Tensor:
    if name == "fgsm":
        return attacks.fgsm(model, x, y, eps=eps)
    return study_pgd(ctx, model, x, y, eps=eps, norm=NORM_OF[name], generator=ctx.generator(name, eps))


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
         rounded: bool = False, norm: str | None = None) -> Made:
    """The row of one attacked (or control) set: accuracy, and every detector's detection and evasion rates."""
    det, model = ctx.guards[target], ctx.models[target]
    pred, clean_pred, y = predict(model, x_adv).numpy(), ctx.clean_pred[target], ctx.y.numpy()
    all_scores = det.score_all(x_adv)
    flags = det.flags(all_scores)
    name = set_name(attack, rounded)
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
        "grid": "rounded" if rounded else "continuous", "detector": det.name, "n": len(ctx.x),
        "clean_acc": float((clean_pred == y).mean()), "adv_acc": float((pred == y).mean()),
        "n_correct": int((clean_pred == y).sum()), "n_success": int(success.sum()),
        **{k: v for k, v in detectors["nll"].items() if k != "test_fpr"},
        "detectors": detectors, "fpr": ctx.cfg.detect.fpr, "threshold": det.threshold,
        "mean_bpd": float(ctx.bpd(all_scores["nll"]).mean()),
        "success_mean_bpd": float(ctx.bpd(all_scores["nll"][success]).mean()) if success.any() else None,
        "max_perturbation": float((d.abs().amax(1) if norm == "linf" else d.norm(dim=1)).max()) if len(d) else 0.0,
        "seconds": seconds,
    })
    return made


def _rows(ctx: SeedContext, target: str, attack: str, eps: float, x_adv: torch.Tensor, seconds: float, adaptive: bool,
          norm: str | None = None) -> Made:
    """The set as the attack made it, and rounded to the data's grey levels (inside the same budget)."""
    norm = norm or NORM_OF.get(attack, "linf")
    made = _row(ctx, target, attack, eps, x_adv, seconds, adaptive, norm=norm)
    on_grid = attacks.round_to_grid(x_adv, ctx.x, levels=ctx.info.levels, eps=eps, norm=norm)
    made += _row(ctx, target, attack, eps, on_grid, seconds, adaptive, rounded=True, norm=norm)
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


def plain_key(ctx: SeedContext, target: str, name: str, eps: float) -> dict:
    return {"model": ctx.keys[target], "attack": name, "eps": eps, **pgd_settings(ctx.cfg.attacks)}


def plain_attacks(ctx: SeedContext) -> tuple[Made, dict]:
    """FGSM and PGD (linf, L2) at every budget against every classifier; returns what it made and the adversarials."""
    a, made, advs = ctx.cfg.attacks, Made(), {}
    for target, model in ctx.models.items():
        start = time.perf_counter()
        jobs = [(name, eps) for name in a.names for eps in (a.l2_eps if NORM_OF[name] == "l2" else a.eps)]
        for name, eps in tqdm(jobs, desc=f"attacks on {target} (seed {ctx.seed})", disable=not ctx.progress, leave=False):
            dev_x, dev_y = ctx.x.to(ctx.device), ctx.y.to(ctx.device)
            stage = ctx.stage(f"{target}-{name}-eps{eps:g}", plain_key(ctx, target, name, eps),
                              lambda: {"x_adv": _run_attack(name, model, dev_x, dev_y, eps, ctx).cpu().numpy()})
            x_adv = torch.from_numpy(stage["x_adv"])
            advs[(target, name, eps)] = x_adv
            made += _rows(ctx, target, name, eps, x_adv, float(stage["seconds"]), adaptive=False)
        ctx.log(f"  seed {ctx.seed}: attacks on {target}: {len(jobs)} budgets in {time.perf_counter() - start:.1f} s")
    return made, advs


def adaptive_attacks(ctx: SeedContext, advs: dict) -> Made:
    """Detector-aware PGD: from the plain PGD adversarials, raise log p(x) above the threshold while staying misclassified."""
    a, made = ctx.cfg.attacks, Made()
    for target, model in ctx.models.items():
        det = ctx.guards[target]
        for eps in a.eps:
            key = {"model": ctx.keys[target], "detector": ctx.keys[det.name], "threshold": det.threshold, "eps": eps,
                   "steps": a.adaptive_steps, "restarts": a.restarts, "start": plain_key(ctx, target, "pgd", eps)}

            def compute():
                x_adv = attacks.adaptive_pgd(model, ctx.x.to(ctx.device), ctx.y.to(ctx.device), log_prob=det.model.log_prob,
                                             threshold=-det.threshold, eps=eps, steps=a.adaptive_steps, restarts=a.restarts,
                                             generator=ctx.generator("adaptive", target, eps),
                                             x_start=advs[(target, "pgd", eps)].to(ctx.device))
                return {"x_adv": x_adv.cpu().numpy()}

            stage = ctx.stage(f"{target}-adaptive-eps{eps:g}", key, compute)
            made += _rows(ctx, target, "adaptive_pgd", eps, torch.from_numpy(stage["x_adv"]), float(stage["seconds"]), adaptive=True)
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


def fooling_images(ctx: SeedContext) -> Made:
    """Images grown from noise until a classifier is confident (Nguyen et al. 2015), scored by its detector."""
    f, made = ctx.cfg.fooling, Made()
    K = ctx.info.num_classes
    targets = torch.arange(K).repeat_interleave(f.per_class)
    for target, model in ctx.models.items():
        det = ctx.guards[target]
        for method in ("gradient", "evolution"):
            def compute():
                common = dict(shape=ctx.info.shape, confidence=f.confidence, generator=ctx.generator("fooling", method, target))
                if method == "gradient":
                    imgs, conf = attacks.fooling_gradient(model, targets.to(ctx.device), len(targets), steps=f.steps, **common)
                else:
                    imgs, conf = attacks.fooling_evolution(model, targets.to(ctx.device), len(targets), generations=f.generations,
                                                           population=f.population, **common)
                return {"images": imgs.cpu().numpy(), "confidence": conf.cpu().numpy()}

            key = {"model": ctx.keys[target], "method": method, **vars(f)}
            stage = ctx.stage(f"{target}-fooling-{method}", key, compute)
            imgs, conf = torch.from_numpy(stage["images"]), stage["confidence"]
            s = det.score(imgs)
            bpd = ctx.bpd(s)
            made.score(Key(ctx.seed, target, f"fooling_{method}"), s)
            if ctx.first_seed:
                made.example(Key(ctx.seed, target, f"fooling_{method}", column="images"), imgs.numpy())
                made.example(Key(ctx.seed, target, f"fooling_{method}", column="confidence"), conf)
            for k in range(K):
                m = (targets == k).numpy()
                made.rows.append({
                    "seed": ctx.seed, "target": target, "method": method, "class": k, "n": int(m.sum()), "detector": det.name,
                    "success_rate": float((conf[m] >= f.confidence).mean()), "mean_confidence": float(conf[m].mean()),
                    "mean_bpd": float(bpd[m].mean()), "clean_mean_bpd": float(ctx.bpd(det.clean_test["nll"]).mean()),
                    "flagged_rate": float(flagged(s[m], det.threshold).mean()),
                    "seconds": float(stage["seconds"]),
                })
    return made
