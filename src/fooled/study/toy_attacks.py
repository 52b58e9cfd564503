"""The toy's attacks, each beside its known answer: PGD (multitargeted: toward each wrong class in turn; plain
untargeted margin PGD is kept as a column, since the known answer shows where it stops short) and the detector-aware attack against `attacks.grid_search`
over the same balls, random noise of the same size as the control, fooling search from noise, and points off the data.

Each classifier is attacked on correctly classified test points; its guard is the density model whose -log p(x) the
detector thresholds (the flow guards the MLP and itself, the hybrid guards itself). A point counts as a miss of an
attack only where the grid finds an adversarial within eps minus the grid's resolution, and as beyond the grid where
the attack succeeds but the grid finds nothing within eps plus the resolution (which a correct grid search never
allows): "up to the grid's resolution" in numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import attacks
from ..attacks.grid_search import found_within, grid_search
from . import toy_world as world


@dataclass(frozen=True)
class AttackPlan:
    points: int = 40  # correctly classified test points attacked per model
    linf_eps: tuple[float, ...] = (0.05, 0.1, 0.2)  # budgets on the unit square; the blobs' std is 0.05-0.07
    l2_eps: tuple[float, ...] = (0.05, 0.1, 0.2)
    points_per_side: int = 51  # grid of the largest ball: spacing 0.008 at eps 0.2
    steps: int = 30
    restarts: int = 2  # of the detector-aware attack and the untargeted PGD column
    pgd_restarts: int = 8  # of the multitargeted PGD: the flow's wrong-class regions include islands off the data that
    # no gradient path from the clean point reaches, so random starts must land in them (2 restarts missed 1-3 of 40
    # points the grid found at eps 0.1-0.2 on the flow; 8 miss none, at about 2 s per model and norm)
    fooling: int = 24  # fooling searches from uniform noise per model
    ood: int = 1000  # uniform points of the square off the data's support
    path_points: int = 3  # points whose adversarial is drawn as the budget grows (figure d)
    path_budgets: int = 8


def _rate(mask: torch.Tensor) -> float:
    return float(mask.float().mean()) if len(mask) else float("nan")


def _share(part: torch.Tensor, of: torch.Tensor) -> float | None:
    return float((part & of).sum() / of.sum()) if of.any() else None


def attacked_points(model, test, n):
    """The first n test points the model classifies correctly."""
    with torch.no_grad():
        right = model(test.x).argmax(1) == test.y
    return test.x[right][:n], test.y[right][:n]


def _stacked_budgets(x, y, budgets):
    """x and y repeated once per budget, with the per-example budget tensor: every budget attacked in one batch."""
    k = len(budgets)
    eps = torch.tensor(budgets, dtype=x.dtype).repeat_interleave(len(x))
    return attacks.stacked(x, k), attacks.stacked(y, k), eps


def _attack_budgets(model, x, y, budgets, norm, detector, plan, g) -> dict[str, torch.Tensor]:
    """Untargeted and multitargeted margin PGD, the detector-aware attack and noise at every budget (stacked)."""
    score, threshold = detector
    xs, ys, eps = _stacked_budgets(x, y, budgets)
    common = {"eps": eps, "norm": norm, "steps": plan.steps, "restarts": plan.restarts, "generator": g}
    out = {"untargeted": attacks.pgd(model, xs, ys, loss="margin", **common).x_adv}
    out["pgd"] = attacks.multitarget_pgd(model, xs, ys, targets=None, **(common | {"restarts": plan.pgd_restarts})).x_adv
    out["aware"] = attacks.strongest_aware_attack(model, xs, ys, score=score, threshold=threshold, starts=[out["pgd"]],
                                                  **common)
    out["noise"] = torch.cat([attacks.random_perturbation(x, eps=e, norm=norm, generator=g) for e in budgets])
    return out


def _budget_row(model, x, y, answer, eps, found, detector) -> dict:
    """One budget's numbers: the attacks' points `found` (untargeted, pgd, aware, noise) beside the grid's answer."""
    score, threshold = detector
    with torch.no_grad():
        fooled, untargeted = attacks.attack_success(model, found["pgd"], y), attacks.attack_success(model, found["untargeted"], y)
        aware_wrong = attacks.attack_success(model, found["aware"], y)
        evaded = aware_wrong & (score(found["aware"]) <= threshold)
        pgd_flagged, noise_flagged = score(found["pgd"]) > threshold, score(found["noise"]) > threshold
    res = answer.resolution
    inner_wrong, inner_evading = found_within(answer.misclassified, eps - res), found_within(answer.evading, eps - res)
    return {
        "eps": eps, "n": len(x), "resolution": res,
        "exact_misclassified": _rate(found_within(answer.misclassified, eps)), "pgd_misclassified": _rate(fooled),
        "pgd_missed": int((inner_wrong & ~fooled).sum()),
        "pgd_beyond_grid": int((fooled & ~found_within(answer.misclassified, eps + res)).sum()),
        "untargeted_misclassified": _rate(untargeted), "untargeted_missed": int((inner_wrong & ~untargeted).sum()),
        "any_attack_missed": int((inner_wrong & ~(fooled | untargeted | aware_wrong)).sum()),
        "exact_evading": _rate(found_within(answer.evading, eps)), "aware_evading": _rate(evaded),
        "aware_missed": int((inner_evading & ~evaded).sum()),
        "aware_beyond_grid": int((evaded & ~found_within(answer.evading, eps + res)).sum()),
        "pgd_flagged": _share(pgd_flagged, fooled), "noise_flagged": _rate(noise_flagged), "pgd_fooled_n": int(fooled.sum()),
    }


def attack_all(models, guards, detectors, test, plan: AttackPlan, log) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Rows of every model, norm and budget, and the points the figures draw (clean, PGD and aware at the largest linf
    budget, and budget paths of the MLP)."""
    rows, arrays = [], {}
    for name, model in models.items():
        detector = detectors[guards[name]]
        x, y = attacked_points(model, test, plan.points)
        g = torch.Generator().manual_seed(0)
        for norm, budgets in (("linf", plan.linf_eps), ("l2", plan.l2_eps)):
            answer = grid_search(model, x, y, eps=max(budgets), norm=norm, score=detector[0], threshold=detector[1],
                                 points_per_side=plan.points_per_side)
            found = _attack_budgets(model, x, y, budgets, norm, detector, plan, g)
            for i, eps in enumerate(budgets):
                block = {k: v[i * len(x): (i + 1) * len(x)] for k, v in found.items()}
                row = _budget_row(model, x, y, answer, eps, block, detector)
                rows.append({"model": name, "guard": guards[name], "norm": norm, **row})
                log(f"  {name} {norm} eps {eps:g}: misclassified exact {100 * row['exact_misclassified']:.0f} % / PGD "
                    f"{100 * row['pgd_misclassified']:.0f} %; evading exact {100 * row['exact_evading']:.0f} % / aware "
                    f"{100 * row['aware_evading']:.0f} %")
            if norm == "linf":
                arrays |= {f"{name}_clean": _flat(x), f"{name}_pgd": _flat(block["pgd"]), f"{name}_aware": _flat(block["aware"])}
            arrays[f"{name}_{norm}_exact_misclassified"] = answer.misclassified.numpy()
    arrays |= budget_paths(models["mlp"], *attacked_points(models["mlp"], test, plan.points), detectors[guards["mlp"]], plan)
    return rows, arrays


def budget_paths(model, x, y, detector, plan: AttackPlan) -> dict[str, np.ndarray]:
    """The L2 adversarial of the unflagged points nearest the decision boundary at growing budgets, plain and
    detector-aware: (P, B + 1, 2) each, the clean point first. No random start, so each path is one attack per budget."""
    score, threshold = detector
    eps_max = max(plan.l2_eps)
    with torch.no_grad():
        keep = score(x) <= threshold
    x, y = x[keep], y[keep]
    reach = attacks.reachable_margins(model, x, y, eps=eps_max, norm="l2").amax(1)
    pick = reach.argsort(descending=True)[: plan.path_points]
    x, y = x[pick], y[pick]
    budgets = [float(e) for e in np.linspace(eps_max / plan.path_budgets, eps_max, plan.path_budgets)]
    xs, ys, eps = _stacked_budgets(x, y, budgets)
    x_pgd = attacks.pgd(model, xs, ys, eps=eps, norm="l2", steps=plan.steps, random_start=False, loss="margin").x_adv
    x_aware = attacks.strongest_aware_attack(model, xs, ys, score=score, threshold=threshold, eps=eps, norm="l2",
                                             steps=plan.steps, random_start=False, starts=[x_pgd])
    plain = [_flat(x)] + [_flat(b) for b in x_pgd.split(len(x))]
    aware = [_flat(x)] + [_flat(b) for b in x_aware.split(len(x))]
    return {"path_pgd": np.stack(plain, 1), "path_aware": np.stack(aware, 1)}


def fooling_and_ood(models, guards, detectors, test, off_level: float, plan: AttackPlan) -> tuple[dict, dict]:
    """Fooling points grown from noise (flagged? and the unflagged search's success) per model, and points of the
    square off the data (log p_data below `off_level`): how many each density model finds more likely than the data."""
    fooling, arrays = {}, {}
    for name, model in models.items():
        score, threshold = detectors[guards[name]]
        g = torch.Generator().manual_seed(1)
        target = torch.arange(plan.fooling) % world.NUM_CLASSES
        search = {"shape": world.SHAPE, "steps": 100, "step_size": 0.02, "generator": g}  # 2 units of travel: the square
        images, conf = attacks.fooling_gradient(model, target, plan.fooling, **search)
        _, conf_u, score_u = attacks.fooling_gradient_unflagged(model, target, plan.fooling, score=score,
                                                                threshold=threshold, **search)
        with torch.no_grad():
            s = score(images)
        confident = conf >= 0.99
        fooling[name] = {"n": plan.fooling, "confident": _rate(confident), "flagged": _share(s > threshold, confident),
                         "unflagged_search_success": _rate((conf_u >= 0.99) & (score_u <= threshold))}
        arrays |= {f"fooling_{name}": _flat(images), f"fooling_{name}_log_p": -s.numpy(), f"fooling_{name}_target": target.numpy()}
    return {"fooling": fooling, "ood": off_data_likelihood(models, detectors, test, off_level, plan.ood)}, arrays


@torch.no_grad()
def off_data_likelihood(models, detectors, test, off_level: float, n: int) -> dict:
    """Per density model, the share of uniform points off the data's support more likely than the median test point,
    and the share its detector lets through."""
    g = torch.Generator().manual_seed(2)
    pts = torch.rand(20 * n, 2, generator=g).double().numpy()
    off = pts[world.log_density(pts) < off_level][:n]
    x = world.as_images(off)
    out = {}
    for name in ("flow", "hybrid"):
        model, (score, threshold) = models[name], detectors[name]
        log_p, log_p_test = model.log_prob(x), model.log_prob(test.x)
        out[name] = {"n": len(off), "more_likely_than_median_test": _rate(log_p > log_p_test.median()),
                     "unflagged": _rate(score(x) <= threshold)}
    return out


def _flat(x: torch.Tensor) -> np.ndarray:
    return x.detach().reshape(len(x), -1).numpy()
