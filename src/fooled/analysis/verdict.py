"""The verdict: the study's questions answered per budget on interval bounds, from results rows alone.

Every answer keeps, per eps, the number and 95% interval that decided it; how budgets combine (YES, NO, PARTLY, and
UNCLEAR where a borderline budget could overturn the others) is in rules.py, and CRITERIA states each rule once. With the
run's scores.npz the accuracy gaps are paired on the same images and the detection and evasion intervals carry the
threshold's own variance; `sensitivity` says how the answers move if every cut-off moves by five points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import run_config
from ..records import ANY, AttackRow, budgets, model_names, rows
from .per_image import paired_counts, threshold_spread, with_threshold
from .rules import CUTOFFS, Cutoffs, answer_of, control_rule, evasion_rule, flagged_rule, gap_rule
from .stats import diff_ci, paired_diff_ci, rate_ci
from .tables import rate_counts

FLAG_YES, FLAG_NO = CUTOFFS.flag_yes, CUTOFFS.flag_no  # kept for readers of the old names
EVADE_YES, EVADE_NO = CUTOFFS.evade_yes, CUTOFFS.evade_no
SHALLOW_MARGIN, HIGHER_P = CUTOFFS.shallow_margin, CUTOFFS.higher_p
FLOOR = 0.01  # accuracy gaps: a budget where both models keep at most 1 % of the images (or lose at most 1 %) says nothing
SHIFT = 0.05  # the cut-off sensitivity moves every cut-off by this much, both ways


def criteria(c: Cutoffs = CUTOFFS) -> dict:
    """Each rule in words, with the cut-offs it used."""
    return {
        "flagged": f"per eps, YES if the 95% interval of the rate flagged lies at or above {c.flag_yes:.0%}, NO if it lies below "
                   f"{c.flag_no:.0%}, PARTLY if it lies wholly between, else borderline (rates over the successful adversarials "
                   "only: images the model got right and the attack made wrong; with scores.npz the interval includes the "
                   "threshold's own variance, recalibrated on bootstrap resamples of the validation scores)",
        "control": "per eps, YES if the interval of the detection rate of successful adversarials lies wholly above the interval of "
                   "the flag rate of random perturbations of the same budget (sign noise at the linf eps), NO if the detection "
                   "rate is not above the noise's, else borderline",
        "evasion": f"per eps, YES if the interval of the evasion rate (of the images the model got right, the share the attack made "
                   f"wrong without being flagged) lies at or below {c.evade_yes:.0%}, NO if it lies above {c.evade_no:.0%}, PARTLY "
                   "if wholly between, else borderline",
        "robust": "per eps, YES if the interval of (flow accuracy - CNN accuracy) under PGD lies above 0, NO if it lies at or below "
                  f"0, else borderline; paired on the same images where scores.npz has them; a budget where both models are within "
                  f"{FLOOR:.0%} of 0% (or 100%) accuracy says nothing",
        "shallow": f"per eps, YES if the interval of (shallow accuracy - CNN accuracy) under PGD lies at or below "
                   f"+{c.shallow_margin * 100:.0f} points, NO if it lies above, else borderline; paired as above",
        "support": f"YES if some set off the data's support has the lower bound of its share more likely than the median clean test "
                   f"image at or above {c.higher_p:.0%}; UNCLEAR if none does but the likeliest set's interval reaches it; else NO",
        "typical": "n/a unless most images of the max-likelihood search are likelier than the median test image (else they are not "
                   f"the most likely images); then NO if the typicality detector flags them (interval's lower bound >= "
                   f"{c.flag_yes:.0%}), YES if it flags below {c.flag_no:.0%}, else PARTLY",
        "overall": "over the budgets: YES if every eps says yes, NO if every eps says no, else PARTLY; a borderline budget (its "
                   "interval across a cut-off) may take any answer on either side, and where that could change the combined "
                   "answer it reads UNCLEAR, leaning the way the point estimates go",
    }


CRITERIA = criteria()


@dataclass(frozen=True)
class _Ask:
    """What every question reads: the results, the run's per-image scores (or None) and the cut-offs."""

    results: dict
    scores: dict | None
    cut: Cutoffs
    spreads: dict = field(default_factory=dict)  # threshold spreads by (rate, rows), shared by the cut-off sensitivity's runs

    @property
    def fpr(self) -> float:
        return run_config(self.results).detect.fpr


def _rate(ask: _Ask, selected: list[AttackRow], rate: str) -> dict:
    """A rate pooled over seeds with its interval, widened by the threshold's variance where scores.npz allows."""
    key = (rate, tuple((r.seed, r.target, r.attack, r.eps, r.grid, r.attacked_detector) for r in selected))
    if key not in ask.spreads:  # the threshold's spread does not depend on the cut-offs: computed once per verdict
        ask.spreads[key] = threshold_spread(ask.scores, selected, ask.fpr, rate)
    return with_threshold(rate_ci(rate_counts(selected, rate)), ask.spreads[key])


def _detection(ask: _Ask, attack: str) -> list[dict]:
    out = []
    for target in _targets(ask.results, attack):
        per_eps = []
        for eps in _eps(ask.results, attack, target):
            ci = _rate(ask, rows(ask.results, target=target, attack=attack, eps=eps), "tpr_at_fpr")
            per_eps.append({"eps": eps, "value": ci, **flagged_rule(ci, ask.cut)})
        out.append(answer_of(f"Does low p(x) flag {attack.upper()} adversarial examples against the {target}?", target, "flagged",
                           per_eps, lambda p: p["value"]["lo"], measure="detection rate"))
    return out


def _control(ask: _Ask, grid: str) -> list[dict]:
    out = []
    where = "on the grid" if grid == "rounded" else "off the grid"
    for target in _targets(ask.results, "pgd"):
        per_eps = []
        for eps in _eps(ask.results, "pgd", target, grid):
            adv = rate_ci(rate_counts(rows(ask.results, target=target, attack="pgd", eps=eps, grid=grid), "tpr_at_fpr"))
            noise = rate_ci(rate_counts(rows(ask.results, target=target, attack="noise_linf", eps=eps, grid=grid), "tpr_all"))
            per_eps.append({"eps": eps, "value": adv, "control": noise, **control_rule(adv, noise)})
        if any(p["control"]["mean"] is not None for p in per_eps):
            out.append(answer_of(f"Does low p(x) flag PGD adversarial examples against the {target} more often than random perturbations "
                               f"of the same size, {where}?", target, "control", per_eps,
                               lambda p: p["value"]["lo"] - (p["control"]["hi"] or 0), measure="detection rate", grid=grid))
    return out


def _adaptive(ask: _Ask) -> list[dict]:
    out = []
    for target in _targets(ask.results, "adaptive_pgd"):
        per_eps = []
        for eps in _eps(ask.results, "adaptive_pgd", target):
            ci = _rate(ask, rows(ask.results, target=target, attack="adaptive_pgd", eps=eps, attacked_detector="nll"), "evasion_rate")
            per_eps.append({"eps": eps, "value": ci, **evasion_rule(ci, ask.cut)})
        out.append(answer_of(f"Does low p(x) still flag adversarial examples against the {target} when the attacker knows the detector?",
                           target, "evasion", per_eps, lambda p: -p["value"]["hi"], measure="evasion rate"))
    return out


def _gap_ci(ask: _Ask, model: str, reference: str, eps: float) -> dict:
    """PGD accuracy of `model` minus `reference`'s: paired on the same images where scores.npz has them, else unpaired."""
    rows_m, rows_r = (rows(ask.results, target=t, attack="pgd", eps=eps) for t in (model, reference))
    pairs = paired_counts(ask.scores, rows_m, rows_r)
    return paired_diff_ci(pairs) if pairs else diff_ci(rate_counts(rows_m, "adv_acc"), rate_counts(rows_r, "adv_acc"))


def _at_floor(ask: _Ask, model: str, reference: str, eps: float) -> bool:
    """Both models keep at most FLOOR of the images (or lose at most FLOOR): the budget cannot tell them apart."""
    accs = [sum(r.adv_acc * r.n for r in rs) / sum(r.n for r in rs)
            for rs in (rows(ask.results, target=t, attack="pgd", eps=eps) for t in (model, reference)) if rs]
    return len(accs) == 2 and (max(accs) <= FLOOR or min(accs) >= 1 - FLOOR)


def _gap(ask: _Ask, model: str, reference: str, kind: str, question: str) -> dict | None:
    if not rows(ask.results, target=model, attack="pgd") or not rows(ask.results, target=reference, attack="pgd"):
        return None
    margin, yes_above = (0.0, True) if kind == "robust" else (ask.cut.shallow_margin, False)
    per_eps = []
    for eps in _eps(ask.results, "pgd", model):
        ci = _gap_ci(ask, model, reference, eps)
        rule = {"answer": "n/a"} if _at_floor(ask, model, reference, eps) else gap_rule(ci, margin, yes_above)
        per_eps.append({"eps": eps, "value": ci, **rule})
    # the budget that decides most against a yes: the lowest lower bound for "harder to fool", the highest upper bound for
    # "fooled at least as easily"
    decisive = (lambda p: p["value"]["lo"]) if kind == "robust" else (lambda p: -p["value"]["hi"])
    return answer_of(question, model, kind, per_eps, decisive, measure="accuracy gap")


def _robustness(ask: _Ask) -> list[dict]:
    out = []
    flow = _gap(ask, "flow", "cnn", "robust", "Is the generative (flow) classifier itself harder to fool than the CNN?")
    if flow:
        out.append(flow)
    for t in ("logreg", "gaussian"):
        gap = _gap(ask, t, "cnn", "shallow", f"Is the shallow model '{t}' fooled at least as easily as the CNN "
                   f"(accuracy under PGD at most {ask.cut.shallow_margin * 100:.0f} points above the CNN's)?")
        if gap:
            out.append(gap)
    return out


def _fooling(ask: _Ask) -> list[dict]:
    searches = ask.results.get("fooling", [])
    out = []
    for target in sorted({r["target"] for r in searches}):
        sel = [r for r in searches if r["target"] == target and r.get("constrained", False) is False]
        by_seed = {}
        for r in sel:
            k, n = by_seed.get(r["seed"], (0, 0))
            by_seed[r["seed"]] = (k + round(r["flagged_rate"] * r["n"]), n + r["n"])
        ci = rate_ci([by_seed[s] for s in sorted(by_seed)])
        succ = rate_ci([(round(r["success_rate"] * r["n"]), r["n"]) for r in sel])
        per = [{"eps": None, "value": ci, **flagged_rule(ci, ask.cut)}]
        out.append(answer_of(f"Are fooling images grown from noise against the {target} (unconstrained searches) flagged by low p(x)?",
                           target, "flagged", per, lambda p: p["value"]["lo"], measure="flagged", success=succ))
    return out


def _ood(ask: _Ask) -> list[dict]:
    flow_rows = [r for r in ask.results.get("ood", []) if r["model"] == "flow"]
    if not flow_rows:
        return []

    def share(name: str) -> dict:
        return rate_ci([(round(r["higher_likelihood_than_test"] * r["n"]), r["n"]) for r in flow_rows if r["set"] == name])

    sets = sorted({r["set"] for r in flow_rows} - {"max-likelihood"})
    shares = {name: share(name) for name in sets}
    higher = [name for name in sets if shares[name]["lo"] >= ask.cut.higher_p]
    best = max(sets, key=lambda n: shares[n]["mean"])
    # an interval across the cut-off (a set likelier than the data on some seeds, not on others) is not a no
    straddles = not higher and shares[best]["hi"] >= ask.cut.higher_p
    answer = "yes" if higher else "unclear" if straddles else "no"
    leaning = ("yes" if shares[best]["mean"] >= ask.cut.higher_p else "no") if straddles else None
    out = [{"question": "Do inputs off the data's support get a higher likelihood than the data?", "model": "flow",
            "criterion": "support", "answer": answer, "leaning": leaning, "per_eps": [], "eps": None,
            "value": shares[best], "measure": f"share more likely than the median test image ({best})", "sets": higher,
            "shares": {n: shares[n] for n in sets}}]
    ml = [r for r in flow_rows if r["set"] == "max-likelihood" and "typicality" in r.get("detectors", {})]
    if ml:
        ci = rate_ci([(round(r["detectors"]["typicality"]["tpr_at_fpr"] * r["n"]), r["n"]) for r in ml])
        likelier = share("max-likelihood")
        reached = likelier["mean"] is not None and likelier["mean"] >= 0.5  # the search found images likelier than the data
        c = ask.cut
        answer = "n/a" if ci["mean"] is None or not reached else "no" if ci["lo"] >= c.flag_yes else "yes" if ci["hi"] < c.flag_no else "partly"
        out.append({"question": "Is the most likely image a typical one?", "model": "flow", "criterion": "typical", "answer": answer,
                    "leaning": None, "per_eps": [], "eps": None, "value": ci, "likelier": likelier,
                    "measure": "flagged as atypical" if reached else "n/a: the search from noise did not reach the data's likelihood "
                    f"(likelier than the median test image: {likelier['mean'] or 0:.0%})"})
    return out


def _targets(results: dict, attack: str) -> list[str]:
    return model_names(results, among={r.target for r in rows(results, attack=attack, grid=ANY)})


def _eps(results: dict, attack: str, target: str, grid: str = "continuous") -> list[float]:
    return budgets(rows(results, target=target, attack=attack, grid=grid), linf=True, positive=True)


def answers(results: dict, scores: dict | None = None, cutoffs: Cutoffs = CUTOFFS, spreads: dict | None = None) -> list[dict]:
    """Every answer under `cutoffs`, with the numbers behind it (`spreads`: threshold spreads already computed)."""
    from .honest import combined_evasion, matched_control, valid_evasion  # one threat model, where the study made its rows

    ask = _Ask(results, scores, cutoffs, {} if spreads is None else spreads)
    found = (_detection(ask, "pgd") + (matched_control(results) or _control(ask, "rounded")) + _control(ask, "continuous")
             + (valid_evasion(results, cutoffs) or _adaptive(ask)) + combined_evasion(results, cutoffs)
             + _robustness(ask) + _fooling(ask) + _ood(ask))
    return [a for a in found if a["per_eps"] or a["criterion"] in ("support", "typical") or a["value"]["mean"] is not None]


def sensitivity(results: dict, scores: dict | None = None, shift: float = SHIFT) -> list[dict]:
    """Per question and model, the answer with every cut-off moved down by `shift`, as set, and moved up by `shift`."""
    spreads: dict = {}
    runs = [answers(results, scores, CUTOFFS.shifted(d), spreads) for d in (-shift, 0.0, shift)]
    return _moves(*runs)


def _moves(down: list[dict], as_set: list[dict], up: list[dict]) -> list[dict]:
    return [{"question": a["question"], "model": a["model"], "criterion": a["criterion"], "grid": a.get("grid"),
             "answers": [run[i]["answer"] for run in (down, as_set, up)]} for i, a in enumerate(as_set)]


def compute_verdict(results: dict, scores: dict | None = None) -> dict:
    """Answers with the numbers and criteria behind them, and how they move with the cut-offs; nothing typed by hand.
    `scores`: the run's scores.npz arrays, for paired gaps and the threshold's variance (None: from results.json alone)."""
    spreads: dict = {}
    runs = {d: answers(results, scores, CUTOFFS.shifted(d), spreads) for d in (-SHIFT, 0.0, SHIFT)}
    return {"answers": runs[0.0], "criteria": CRITERIA, "fpr": run_config(results).detect.fpr,
            "sensitivity": _moves(runs[-SHIFT], runs[0.0], runs[SHIFT]), "shift": SHIFT, "per_image": scores is not None}
