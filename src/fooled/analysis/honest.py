"""The verdict's answers under one threat model, from results.json's "honest" rows (see `study.stages.honest`).

  - the noise control on the grid, matched: plain PGD rounded to the grid against sign noise and its own perturbation shuffled,
    counted on exactly the images PGD fooled;
  - valid evasion: of the images the model got right, the share the detector-aware attack on the grid made misclassified,
    unflagged AND still of their original class by the independent oracle; quoted at the largest budget at which most
    successful images keep their class by the oracle (beyond it the attack mostly changes the digit);
  - the combined defence against the attack that knows every member, beside each detector alone.
"""

from __future__ import annotations

from .stats import rate_ci
from .tables import fmt, md_table

KEPT = 0.5  # a budget counts while more than half of the attack's successful images keep their class by the oracle
# the evasion cut-offs are the verdict's (`rules.Cutoffs.evade_yes`, `evade_no`), passed in by it: analysis.verdict imports this module


def _overall(per_eps: list[dict]) -> str:
    answers = {p["answer"] for p in per_eps}
    return "yes" if answers == {"yes"} else "no" if answers == {"no"} else "partly"


def _answer(question: str, model: str, kind: str, per_eps: list[dict], headline: dict, **extra) -> dict:
    """An answer in the verdict's format (`verdict._answer`)."""
    return {"question": question, "model": model, "criterion": kind, "answer": extra.pop("answer", None) or _overall(per_eps),
            "per_eps": per_eps, "value": headline["value"], "eps": headline.get("eps"), **extra}


def _rows(results: dict, **match) -> list[dict]:
    return sorted([r for r in results.get("honest", []) if all(r.get(k) == v for k, v in match.items())], key=lambda r: r["seed"])


def _targets(results: dict, **match) -> list[str]:
    present = {r["target"] for r in _rows(results, **match)}
    return [t for t in results["config"]["models"]["names"] if t in present]


def _evasion_answer(ci: dict, cuts: tuple[float, float]) -> str:
    return "n/a" if ci["mean"] is None else "yes" if ci["hi"] <= cuts[0] else "no" if ci["lo"] > cuts[1] else "partly"


def matched_control(results: dict) -> list[dict]:
    """Per model, 'control' answers on the grid: YES at a budget if PGD's flag rate lies wholly above both controls'."""
    out = []
    for target in _targets(results, kind="matched_control"):
        per_eps = []
        for eps in sorted({r["eps"] for r in _rows(results, kind="matched_control", target=target) if r["eps"] > 0}):
            rs = _rows(results, kind="matched_control", target=target, eps=eps)
            if not sum(r["n"] for r in rs):
                continue  # PGD fooled no image at this budget: nothing to compare
            ci = {k: rate_ci([(r[f"flagged_{k}"], r["n"]) for r in rs]) for k in ("attack", "sign_noise", "shuffled", "background")}
            controls = [ci["sign_noise"], ci["shuffled"]]
            beats = ci["attack"]["mean"] is not None and all(c["mean"] is not None and ci["attack"]["lo"] > c["hi"] for c in controls)
            strongest = max(controls, key=lambda c: -1 if c["mean"] is None else c["mean"])
            per_eps.append({"eps": eps, "value": ci["attack"], "control": strongest, "controls": ci, "answer": "yes" if beats else "no"})
        if per_eps:
            out.append(_answer(f"Does low p(x) flag PGD adversarial examples against the {target}, on the grid, more often than the same "
                               "images perturbed at random (sign noise of the budget, and PGD's own perturbation with its pixels "
                               "shuffled)?", target, "control", per_eps,
                               min(per_eps, key=lambda p: p["value"]["lo"] - (p["control"]["hi"] or 0)), measure="detection rate",
                               grid="rounded", matched=True))
    return out


def _valid_per_eps(results: dict, target: str, attacked: str, detector: str, cuts=(0.0, 1.0)) -> list[dict]:
    per_eps = []
    for eps in sorted({r["eps"] for r in _rows(results, kind="evasion", target=target, attacked=attacked, grid="on_grid")}):
        rs = _rows(results, kind="evasion", target=target, attacked=attacked, grid="on_grid", eps=eps)
        off = _rows(results, kind="evasion", target=target, attacked=attacked, grid="off_grid", eps=eps)
        ci = rate_ci([(r["detectors"][detector]["n_valid"], r["n_correct"]) for r in rs])
        kept = rate_ci([(r["n_oracle_kept"], r["n_success"]) for r in rs])
        per_eps.append({"eps": eps, "value": ci, "answer": _evasion_answer(ci, cuts), "kept": kept,
                        "evasion": rate_ci([(r["detectors"][detector]["n_evaded"], r["n_correct"]) for r in rs]),
                        "off_grid": rate_ci([(r["detectors"][detector]["n_evaded"], r["n_correct"]) for r in off]) if off else None})
    return per_eps


def _valid_answer(question: str, target: str, criterion: str, per_eps: list[dict], **extra) -> dict:
    """Decided over the budgets at which most successful images keep their class (all budgets if none does), quoted at the
    largest of them."""
    counted = [p for p in per_eps if p["kept"]["mean"] is not None and p["kept"]["mean"] > KEPT] or per_eps
    quoted = max(counted, key=lambda p: p["eps"])
    return _answer(question, target, criterion, per_eps, quoted, answer=_overall(counted), measure="valid evasion rate",
                   counted_eps=[p["eps"] for p in counted], quoted_eps=quoted["eps"], grid="on_grid", **extra)


def valid_evasion(results: dict, cuts: tuple[float, float]) -> list[dict]:
    """Per model, the 'evasion' answer from valid evasions of -log p(x) by its own detector-aware attack on the grid; cuts: the
    verdict's (yes if the upper bound <= cuts[0], no if the lower bound > cuts[1])."""
    return [_valid_answer(f"Does low p(x) still flag adversarial examples against the {t} when the attacker knows the detector "
                          "(valid images on the grid; an evasion counts only if the oracle keeps the original class)?", t, "evasion",
                          _valid_per_eps(results, t, "nll", "nll", cuts)) for t in _targets(results, kind="evasion", attacked="nll")]


def combined_evasion(results: dict, cuts: tuple[float, float]) -> list[dict]:
    """Per model attacked through the combined defence: its valid evasion (criterion 'combined')."""
    out = []
    for t in _targets(results, kind="evasion", attacked="combined"):
        fpr = [r["val_fpr"] for r in _rows(results, kind="defence", target=t)]
        out.append(_valid_answer(f"Does the combined defence (any of its detectors, {max(fpr, default=0):.1%} total validation FPR) "
                                 f"still flag adversarial examples against the {t} when the attacker knows every member?", t, "combined",
                                 _valid_per_eps(results, t, "combined", "combined", cuts), val_fpr=fpr))
    return out


def defence_table(results: dict) -> list[str]:
    """Per model attacked through the combined defence: each detector alone and the defence, against the attack it faced."""
    out = []
    for t in _targets(results, kind="evasion", attacked="combined"):
        eps_all = sorted({r["eps"] for r in _rows(results, kind="evasion", target=t, attacked="combined")})
        dets = list(_rows(results, kind="evasion", target=t, attacked="combined")[0]["detectors"])
        body = []
        for attacked, label in (("nll", "-log p(x)-aware"), ("combined", "aware of every member")):
            for d in dets if attacked == "combined" else ("nll", "combined"):
                cells = [fmt(p["value"], pct=True) for p in _valid_per_eps(results, t, attacked, d)]
                alone = "the defence (jointly calibrated)" if d == "combined" else f"{d} alone (its own {results['config']['detect']['fpr']:.0%} FPR)"
                body.append([alone, label + " on the grid"] + cells)
        out += ["", f"### The combined defence of the {t}: valid evasion % (of the images it got right) by budget", "",
                md_table(["detector", "attack it faced"] + [f"eps {e:g}" for e in eps_all], body)]
    return out


def oracle_lines(results: dict) -> list[str]:
    """The committee that stands in for a human: its members, what it was fitted on, and its self-agreement."""
    rows = [r for r in results.get("committee", []) if "self_agreement" in r]
    if not rows:
        return []
    agree = sum(r["self_agreement"] for r in rows) / len(rows)
    acc = {m: sum(r["test_acc"][m] for r in rows) / len(rows) for m in rows[0]["test_acc"]}
    majority = sum(r["majority_acc"] for r in rows) / len(rows)
    return [f"The label oracle stands in for a human: a committee ({', '.join(rows[0]['members'])}; the last adversarially trained, "
            f"its robust member) fitted on {rows[0]['n_fit']} training images held out before any model was trained, so neither "
            f"the models nor the attack's donors saw them. Its members agree with each other on {100 * agree:.0f}% of the clean "
            f"test images, and its majority label is right on {100 * majority:.0f}% (members: "
            + ", ".join(f"{m} {100 * a:.0f}%" for m, a in acc.items()) + ")."]
