"""The verdict: the study's questions answered per budget on interval bounds, from results rows alone.

Every answer keeps, per eps, the number and 95% interval that decided it; a question's answer over all budgets
is YES where every budget says yes, NO where every budget says no, else PARTLY. CRITERIA states each rule once.
"""

from __future__ import annotations

from .stats import diff_ci, rate_ci
from .tables import rate_counts

FLAG_YES, FLAG_NO = 0.9, 0.5  # flagged: yes if the interval's lower bound >= 90 %, no if its upper bound < 50 %
EVADE_YES, EVADE_NO = 0.1, 0.5  # still flagged under attack: yes if evasion's upper bound <= 10 %, no if its lower bound > 50 %
SHALLOW_MARGIN = 0.05  # "fooled at least as easily": accuracy under PGD at most 5 points above the CNN's
HIGHER_P = 0.5  # an input set gets a higher likelihood than the data if the lower bound of its share above the median >= 50 %

CRITERIA = {
    "flagged": f"per eps, YES if the 95% interval of the rate flagged lies at or above {FLAG_YES:.0%}, NO if it lies below "
               f"{FLAG_NO:.0%}, else PARTLY (rates over the successful adversarials only: images the model got right and the "
               "attack made wrong)",
    "control": "per eps, YES if the interval of the detection rate of successful adversarials lies wholly above the interval of "
               "the flag rate of random perturbations of the same budget (sign noise at the linf eps), else NO",
    "evasion": f"per eps, YES if the interval of the evasion rate (of the images the model got right, the share the attack made "
               f"wrong without being flagged) lies at or below {EVADE_YES:.0%}, NO if it lies above {EVADE_NO:.0%}, else PARTLY",
    "robust": "per eps, YES if the interval of (flow accuracy - CNN accuracy) under PGD lies above 0, NO if it lies at or below 0, "
              "else UNCLEAR; over the budgets, the budgets that decide (YES if all of them say yes, NO if all say no)",
    "shallow": f"per eps, YES if the interval of (shallow accuracy - CNN accuracy) under PGD lies at or below +{SHALLOW_MARGIN * 100:.0f} "
               f"points, NO if it lies above, else UNCLEAR; over the budgets, the budgets that decide",
    "support": f"YES if some set off the data's support has the lower bound of its share more likely than the median clean test "
               f"image at or above {HIGHER_P:.0%}",
    "typical": "n/a unless most images of the max-likelihood search are likelier than the median test image (else they are not "
               f"the most likely images); then NO if the typicality detector flags them (interval's lower bound >= {FLAG_YES:.0%}), "
               f"YES if it flags below {FLAG_NO:.0%}, else PARTLY",
    "overall": "over the budgets: YES if every eps says yes, NO if every eps says no, else PARTLY",
}


def _rows(results: dict, **match) -> list[dict]:
    """Attack rows matching `match`; as the attacks made them (grid 'continuous') unless `grid` says otherwise."""
    match = {"grid": "continuous", **match}
    return [r for r in results["attacks"] if all(r.get(k) == v for k, v in match.items())]


def _overall(per_eps: list[dict], yes: str = "yes", no: str = "no") -> str:
    answers = {p["answer"] for p in per_eps}
    return yes if answers == {yes} else no if answers == {no} else "partly"


def _flag_answer(ci: dict) -> str:
    if ci["mean"] is None:
        return "n/a"
    return "yes" if ci["lo"] >= FLAG_YES else "no" if ci["hi"] < FLAG_NO else "partly"


def _weakest(per_eps: list[dict], key=lambda p: p["value"]["lo"]) -> dict:
    """The budget whose number decides most against a yes (the lowest lower bound by default)."""
    usable = [p for p in per_eps if p["value"]["mean"] is not None]
    return min(usable, key=key) if usable else per_eps[0] if per_eps else {"value": {"mean": None, "lo": None, "hi": None}}


def _answer(question: str, model: str, kind: str, per_eps: list[dict], headline: dict, **extra) -> dict:
    return {"question": question, "model": model, "criterion": kind, "answer": extra.pop("answer", None) or _overall(per_eps),
            "per_eps": per_eps, "value": headline["value"], "eps": headline.get("eps"), **extra}


def _detection(results: dict, attack: str) -> list[dict]:
    out = []
    for target in _targets(results, attack):
        per_eps = []
        for eps in _eps(results, attack, target):
            ci = rate_ci(rate_counts(_rows(results, target=target, attack=attack, eps=eps), "tpr_at_fpr"))
            per_eps.append({"eps": eps, "value": ci, "answer": _flag_answer(ci)})
        out.append(_answer(f"Does low p(x) flag {attack.upper()} adversarial examples against the {target}?", target, "flagged",
                           per_eps, _weakest(per_eps), measure="detection rate"))
    return out


def _control(results: dict, grid: str) -> list[dict]:
    out = []
    where = "on the grid" if grid == "rounded" else "off the grid"
    for target in _targets(results, "pgd"):
        per_eps = []
        for eps in _eps(results, "pgd", target, grid):
            adv = rate_ci(rate_counts(_rows(results, target=target, attack="pgd", eps=eps, grid=grid), "tpr_at_fpr"))
            noise = rate_ci(rate_counts(_rows(results, target=target, attack="noise_linf", eps=eps, grid=grid), "tpr_all"))
            beats = adv["mean"] is not None and noise["mean"] is not None and adv["lo"] > noise["hi"]
            per_eps.append({"eps": eps, "value": adv, "control": noise, "answer": "yes" if beats else "no"})
        if any(p["control"]["mean"] is not None for p in per_eps):
            out.append(_answer(f"Does low p(x) flag PGD adversarial examples against the {target} more often than random perturbations "
                               f"of the same size, {where}?", target, "control", per_eps,
                               _weakest(per_eps, key=lambda p: p["value"]["lo"] - (p["control"]["hi"] or 0)),
                               measure="detection rate", grid=grid))
    return out


def _adaptive(results: dict) -> list[dict]:
    out = []
    for target in _targets(results, "adaptive_pgd"):
        per_eps = []
        for eps in _eps(results, "adaptive_pgd", target):
            ci = rate_ci(rate_counts(_rows(results, target=target, attack="adaptive_pgd", eps=eps, attacked_detector="nll"),
                                     "evasion_rate"))
            answer = "n/a" if ci["mean"] is None else "yes" if ci["hi"] <= EVADE_YES else "no" if ci["lo"] > EVADE_NO else "partly"
            per_eps.append({"eps": eps, "value": ci, "answer": answer})
        out.append(_answer(f"Does low p(x) still flag adversarial examples against the {target} when the attacker knows the detector?",
                           target, "evasion", per_eps, _weakest(per_eps, key=lambda p: -p["value"]["hi"]), measure="evasion rate"))
    return out


def _gap(results: dict, model: str, reference: str, kind: str, question: str, decide) -> dict | None:
    if not _rows(results, target=model, attack="pgd") or not _rows(results, target=reference, attack="pgd"):
        return None
    per_eps = []
    for eps in _eps(results, "pgd", model):
        ci = diff_ci(rate_counts(_rows(results, target=model, attack="pgd", eps=eps), "adv_acc"),
                     rate_counts(_rows(results, target=reference, attack="pgd", eps=eps), "adv_acc"))
        per_eps.append({"eps": eps, "value": ci, "answer": decide(ci)})
    said = {p["answer"] for p in per_eps}  # a budget where the interval does not decide does not count against the others
    answer = ("yes" if "yes" in said and "no" not in said else "no" if "no" in said and "yes" not in said
              else "unclear" if said <= {"unclear"} else "partly")
    # the budget that decides most against a yes: the lowest lower bound for "harder to fool", the highest upper bound for
    # "fooled at least as easily"
    decisive = (lambda p: p["value"]["lo"]) if kind == "robust" else (lambda p: -p["value"]["hi"])
    return _answer(question, model, kind, per_eps, _weakest(per_eps, key=decisive), measure="accuracy gap", answer=answer)


def _robustness(results: dict) -> list[dict]:
    out = []
    flow = _gap(results, "flow", "cnn", "robust", "Is the generative (flow) classifier itself harder to fool than the CNN?",
                lambda ci: "yes" if ci["lo"] > 0 else "no" if ci["hi"] <= 0 else "unclear")
    if flow:
        out.append(flow)
    for t in ("logreg", "gaussian"):
        gap = _gap(results, t, "cnn", "shallow", f"Is the shallow model '{t}' fooled at least as easily as the CNN "
                   f"(accuracy under PGD at most {SHALLOW_MARGIN * 100:.0f} points above the CNN's)?",
                   lambda ci: "yes" if ci["hi"] <= SHALLOW_MARGIN else "no" if ci["lo"] > SHALLOW_MARGIN else "unclear")
        if gap:
            out.append(gap)
    return out


def _fooling(results: dict) -> list[dict]:
    rows = results.get("fooling", [])
    out = []
    for target in sorted({r["target"] for r in rows}):
        sel = [r for r in rows if r["target"] == target and r.get("constrained", False) is False]
        by_seed = {}
        for r in sel:
            k, n = by_seed.get(r["seed"], (0, 0))
            by_seed[r["seed"]] = (k + round(r["flagged_rate"] * r["n"]), n + r["n"])
        ci = rate_ci([by_seed[s] for s in sorted(by_seed)])
        succ = rate_ci([(round(r["success_rate"] * r["n"]), r["n"]) for r in sel])
        per = [{"eps": None, "value": ci, "answer": _flag_answer(ci)}]
        out.append(_answer(f"Are fooling images grown from noise against the {target} (unconstrained searches) flagged by low p(x)?",
                           target, "flagged", per, per[0], measure="flagged", success=succ))
    return out


def _ood(results: dict) -> list[dict]:
    rows = [r for r in results.get("ood", []) if r["model"] == "flow"]
    if not rows:
        return []

    def share(name: str) -> dict:
        return rate_ci([(round(r["higher_likelihood_than_test"] * r["n"]), r["n"]) for r in rows if r["set"] == name])

    sets = sorted({r["set"] for r in rows} - {"max-likelihood"})
    shares = {name: share(name) for name in sets}
    higher = [name for name in sets if shares[name]["lo"] >= HIGHER_P]
    best = max(sets, key=lambda n: shares[n]["mean"])
    out = [{"question": "Do inputs off the data's support get a higher likelihood than the data?", "model": "flow",
            "criterion": "support", "answer": "yes" if higher else "no", "per_eps": [], "eps": None, "value": shares[best],
            "measure": f"share more likely than the median test image ({best})", "sets": higher,
            "shares": {n: shares[n] for n in sets}}]
    ml = [r for r in rows if r["set"] == "max-likelihood" and "typicality" in r.get("detectors", {})]
    if ml:
        ci = rate_ci([(round(r["detectors"]["typicality"]["tpr_at_fpr"] * r["n"]), r["n"]) for r in ml])
        likelier = share("max-likelihood")
        reached = likelier["mean"] is not None and likelier["mean"] >= 0.5  # the search found images likelier than the data
        answer = "n/a" if ci["mean"] is None or not reached else "no" if ci["lo"] >= FLAG_YES else "yes" if ci["hi"] < FLAG_NO else "partly"
        out.append({"question": "Is the most likely image a typical one?", "model": "flow", "criterion": "typical", "answer": answer,
                    "per_eps": [], "eps": None, "value": ci, "likelier": likelier,
                    "measure": "flagged as atypical" if reached else "n/a: the search from noise did not reach the data's likelihood "
                    f"(likelier than the median test image: {likelier['mean'] or 0:.0%})"})
    return out


def _targets(results: dict, attack: str) -> list[str]:
    names = results["config"]["models"]["names"]
    present = {r["target"] for r in results["attacks"] if r["attack"] == attack}
    return [t for t in names if t in present]


def _eps(results: dict, attack: str, target: str, grid: str = "continuous") -> list[float]:
    return sorted({r["eps"] for r in _rows(results, target=target, attack=attack, grid=grid) if r["eps"] > 0 and r["norm"] == "linf"})


def compute_verdict(results: dict) -> dict:
    """Answers with the numbers and criteria behind them; nothing typed by hand."""
    from .honest import combined_evasion, matched_control, valid_evasion  # one threat model, where the study made its rows

    answers = (_detection(results, "pgd") + (matched_control(results) or _control(results, "rounded")) + _control(results, "continuous")
               + (valid_evasion(results, (EVADE_YES, EVADE_NO)) or _adaptive(results)) + combined_evasion(results, (EVADE_YES, EVADE_NO))
               + _robustness(results) + _fooling(results) + _ood(results))
    answers = [a for a in answers if a["per_eps"] or a["criterion"] in ("support", "typical") or a["value"]["mean"] is not None]
    return {"answers": answers, "criteria": CRITERIA, "fpr": results["config"]["detect"]["fpr"]}
