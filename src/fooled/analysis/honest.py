"""The verdict's answers under one threat model, from results.json's "honest" rows (see `study.stages.honest`).

  - the noise control on the grid, matched: plain PGD rounded to the grid against sign noise and its own perturbation shuffled,
    counted on exactly the images PGD fooled;
  - valid evasion: of the images the model got right, the share the detector-aware attack on the grid made misclassified,
    unflagged AND still of their original class by the independent oracle; quoted at the largest budget at which most
    successful images keep their class by the oracle (beyond it the attack mostly changes the digit);
  - the combined defence against the attack that knows every member, beside each detector alone.

Every answer is decided by the verdict's own rules (`rules.control_rule`, `rules.evasion_rule`, `rules.overall`), so a
budget whose interval straddles a cut-off is borderline and a cell it could overturn reads UNCLEAR here as everywhere.
"""

from __future__ import annotations

from ..records import model_names
from ..stage_rows import HonestRow, committee_rows, honest_rows
from .rules import CUTOFFS, Cutoffs, answer_of, control_rule, evasion_rule
from .stats import rate_ci
from .tables import fmt, md_table

KEPT = 0.5  # a budget counts while more than half of the attack's successful images keep their class by the oracle
CONTROLS = ("sign_noise", "shuffled")  # the controls PGD must beat; "background" (changed pixels that were 0) is shown beside


def _targets(results: dict, **match) -> list[str]:
    return model_names(results, among={r.target for r in honest_rows(results, **match)})


def _control_per_eps(rs: list[HonestRow], eps: float) -> dict:
    """One budget of the matched control: PGD's flag rate against both controls' (rules.control_rule: YES only if its
    interval lies above both, NO if its rate is not above one of them, else borderline)."""
    ci = {k: rate_ci([(getattr(r, f"flagged_{k}"), r.n) for r in rs]) for k in ("attack",) + CONTROLS + ("background",)}
    controls = [ci[k] for k in CONTROLS]
    strongest = max(controls, key=lambda c: -1 if c["mean"] is None else c["mean"])
    return {"eps": eps, "value": ci["attack"], "control": strongest, "controls": ci, **control_rule(ci["attack"], *controls)}


def matched_control(results: dict) -> list[dict]:
    """Per model, 'control' answers on the grid, counted on exactly the images PGD fooled."""
    out = []
    for target in _targets(results, kind="matched_control"):
        per_eps = []
        for eps in sorted({r.eps for r in honest_rows(results, kind="matched_control", target=target) if r.eps > 0}):
            rs = honest_rows(results, kind="matched_control", target=target, eps=eps)
            if sum(r.n for r in rs):  # else PGD fooled no image at this budget: nothing to compare
                per_eps.append(_control_per_eps(rs, eps))
        if per_eps:
            out.append(answer_of(f"Does low p(x) flag PGD adversarial examples against the {target}, on the grid, more often than the "
                                 "same images perturbed at random (sign noise of the budget, and PGD's own perturbation with its "
                                 "pixels shuffled)?", target, "control", per_eps,
                                 lambda p: p["value"]["lo"] - (p["control"]["hi"] or 0), measure="detection rate", grid="rounded",
                                 matched=True))
    return out


def _valid_per_eps(results: dict, target: str, attacked: str, detector: str, cut: Cutoffs = CUTOFFS) -> list[dict]:
    per_eps = []
    for eps in sorted({r.eps for r in honest_rows(results, kind="evasion", target=target, attacked=attacked, grid="on_grid")}):
        rs = honest_rows(results, kind="evasion", target=target, attacked=attacked, grid="on_grid", eps=eps)
        off = honest_rows(results, kind="evasion", target=target, attacked=attacked, grid="off_grid", eps=eps)
        ci = rate_ci([(r.detectors[detector].n_valid, r.n_correct) for r in rs])
        kept = rate_ci([(r.n_oracle_kept, r.n_success) for r in rs])
        per_eps.append({"eps": eps, "value": ci, **evasion_rule(ci, cut), "kept": kept,
                        "evasion": rate_ci([(r.detectors[detector].n_evaded, r.n_correct) for r in rs]),
                        "off_grid": rate_ci([(r.detectors[detector].n_evaded, r.n_correct) for r in off]) if off else None})
    return per_eps


def _valid_answer(question: str, target: str, criterion: str, per_eps: list[dict], **extra) -> dict:
    """Decided (rules.overall) over the budgets at which most successful images keep their class (all budgets if none
    does), quoted at the largest of them."""
    counted = [p for p in per_eps if p["kept"]["mean"] is not None and p["kept"]["mean"] > KEPT] or per_eps
    quoted = max(counted, key=lambda p: p["eps"])
    return answer_of(question, target, criterion, per_eps, None, counted=counted, shown=quoted, measure="valid evasion rate",
                     counted_eps=[p["eps"] for p in counted], quoted_eps=quoted["eps"], grid="on_grid", **extra)


def valid_evasion(results: dict, cut: Cutoffs = CUTOFFS) -> list[dict]:
    """Per model, the 'evasion' answer from valid evasions of -log p(x) by its own detector-aware attack on the grid."""
    return [_valid_answer(f"Does low p(x) still flag adversarial examples against the {t} when the attacker knows the detector "
                          "(valid images on the grid; an evasion counts only if the oracle keeps the original class)?", t, "evasion",
                          _valid_per_eps(results, t, "nll", "nll", cut)) for t in _targets(results, kind="evasion", attacked="nll")]


def combined_evasion(results: dict, cut: Cutoffs = CUTOFFS) -> list[dict]:
    """Per model attacked through the combined defence: its valid evasion (criterion 'combined')."""
    out = []
    for t in _targets(results, kind="evasion", attacked="combined"):
        fpr = [r.val_fpr for r in honest_rows(results, kind="defence", target=t)]
        out.append(_valid_answer(f"Does the combined defence (any of its detectors, {max(fpr, default=0):.1%} total validation FPR) "
                                 f"still flag adversarial examples against the {t} when the attacker knows every member?", t, "combined",
                                 _valid_per_eps(results, t, "combined", "combined", cut), val_fpr=fpr))
    return out


def defence_table(results: dict) -> list[str]:
    """Per model attacked through the combined defence: each detector alone and the defence, against the attack it faced."""
    out = []
    for t in _targets(results, kind="evasion", attacked="combined"):
        eps_all = sorted({r.eps for r in honest_rows(results, kind="evasion", target=t, attacked="combined")})
        dets = list(honest_rows(results, kind="evasion", target=t, attacked="combined")[0].detectors)
        body = []
        for attacked, label in (("nll", "-log p(x)-aware"), ("combined", "aware of every member")):
            for d in dets if attacked == "combined" else ("nll", "combined"):
                cells = [fmt(p["value"], pct=True) for p in _valid_per_eps(results, t, attacked, d)]
                alone = "the defence (jointly calibrated)" if d == "combined" else f"{d} alone (its own {results['config']['detect']['fpr']:.0%} FPR)"
                body.append([alone, label + " on the grid"] + cells)
        out += ["", f"### The combined defence of the {t}: valid evasion % (of the images it got right) by budget", "",
                "The attack aware of every member descends the largest member score above its threshold (in units of that "
                "member's clean spread); its images are exactly on the grid, where the off-grid member is 0 and never flags, "
                "so it descends the other members.", "",
                md_table(["detector", "attack it faced"] + [f"eps {e:g}" for e in eps_all], body)]
    return out


def oracle_lines(results: dict) -> list[str]:
    """The committee that stands in for a human: its members, what it was fitted on, and its self-agreement."""
    rows = [r for r in committee_rows(results) if r.self_agreement is not None]  # older runs did not keep it
    if not rows:
        return []
    agree = sum(r.self_agreement for r in rows) / len(rows)
    acc = {m: sum(r.test_acc[m] for r in rows) / len(rows) for m in rows[0].test_acc}
    majority = sum(r.majority_acc for r in rows) / len(rows)
    return [f"The label oracle stands in for a human: a committee ({', '.join(rows[0].members)}; the last adversarially trained, "
            f"its robust member) fitted on {rows[0].n_fit} training images held out before any model was trained, so neither "
            f"the models nor the attack's donors saw them. Its members agree with each other on {100 * agree:.0f}% of the clean "
            f"test images, and its majority label is right on {100 * majority:.0f}% (members: "
            + ", ".join(f"{m} {100 * a:.0f}%" for m, a in acc.items()) + ")."]
