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
from ..rundir import Key
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


def _row(ctx: SeedContext, target: str, attack: str, eps: float, x_adv: torch.Tensor, seconds: float, adaptive: bool) -> Made:
    det = ctx.guards[target]
    pred = predict(ctx.models[target], x_adv)
    all_scores = det.score_all(x_adv)
    s = all_scores["nll"]
    made = Made()
    for name, v in all_scores.items():
        made.score(Key(ctx.seed, target, attack, eps, name), v)
    if ctx.first_seed:
        made.example(Key(ctx.seed, target, attack, eps, "images"), x_adv[:10].numpy())
        made.example(Key(ctx.seed, target, attack, eps, "pred"), pred[:10].numpy())
    wrong = (pred != ctx.y).numpy()
    flags = flagged(s, det.threshold)
    d = (x_adv - ctx.x).flatten(1)
    norm = NORM_OF.get(attack, "linf")
    made.rows.append({
        "seed": ctx.seed, "target": target, "attack": attack, "norm": norm, "eps": eps, "adaptive": adaptive,
        "detector": det.name, "n": len(ctx.x),
        "clean_acc": float((predict(ctx.models[target], ctx.x) == ctx.y).float().mean()),
        "adv_acc": float(1 - wrong.mean()),
        "auroc": auroc(det.clean_test["nll"], s), "tpr_at_fpr": tpr_at_threshold(s, det.threshold),
        "detectors": {name: {"auroc": auroc(det.clean_test[name], v), "tpr_at_fpr": tpr_at_threshold(v, det.thresholds[name])}
                      for name, v in all_scores.items()},
        "fpr": ctx.cfg.detect.fpr, "threshold": det.threshold,
        "evasion_rate": float((wrong & ~flags).mean()),
        "mean_bpd": float(ctx.bpd(s).mean()),
        "max_perturbation": float((d.abs().amax(1) if norm == "linf" else d.norm(dim=1)).max()) if len(d) else 0.0,
        "seconds": seconds,
    })
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
            made += _row(ctx, target, name, eps, x_adv, float(stage["seconds"]), adaptive=False)
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
            made += _row(ctx, target, "adaptive_pgd", eps, torch.from_numpy(stage["x_adv"]), float(stage["seconds"]), adaptive=True)
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
