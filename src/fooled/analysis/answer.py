"""The plain answer's first sentence, drawn from the whole verdict: would a model of p(x, y) notice the inputs that fool a
classifier because their p(x) is low?

Low p(x) flagging plain PGD examples is necessary, not sufficient. The answer weighs what a reviewer would check next:
does it flag them more often than random noise of the same size (the control), does it still flag them when the
attacker knows the detector (evasion), does it flag minimal Carlini-Wagner adversarials, and do fooling images that keep
p(x) above the threshold get through. Where a run has them, the combined defence's and the valid-evasion answers (an
evasion the oracle still gives its original class) take the place of the single detector's evasion.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records import BudgetAnswer, VerdictCell, model_names, verdict_cells
from ..stage_rows import cw_rows, fooling_rows, honest_rows
from .rules import CUTOFFS, flagged_answer
from .stats import rate_ci
from .style import model_order

CHECKS = ("control", "aware", "cw", "likely_fooling")  # what can count against a yes, beside plain detection
EVASION_CRITERIA = ("valid_evasion", "combined", "evasion")  # the most demanding evasion answer present wins


def find(results: dict, criterion: str, model: str | None = None, grid: str | None = None) -> VerdictCell | None:
    """The verdict's answer of `criterion` (for `model`, on `grid`); fooling images' answers are not plain detection."""
    return next((a for a in verdict_cells(results) if a.criterion == criterion and model in (None, a.model)
                 and grid in (None, a.grid) and not a.is_fooling), None)


def main_target(results: dict) -> str:
    names = model_names(results)
    return next((m for m in model_order(names) if m.startswith("cnn")), names[0])


def cw_flagged(results: dict, target: str) -> dict | None:
    """Successful Carlini-Wagner L2 adversarials against `target` flagged by low p(x), pooled over seeds, with its interval."""
    counts = [(round(r.tpr_at_fpr * r.n_success), r.n_success) for r in cw_rows(results, target) if r.tpr_at_fpr is not None]
    ci = rate_ci(sorted(counts)) if counts else None
    return ci if ci and ci["mean"] is not None else None


def likely_fooling(results: dict, target: str) -> float | None:
    """Share of the density-aware fooling searches against `target` that found a confident image the detector accepts and,
    where the run has the independent oracle's rows, that the oracle does not give the target class (else it is no fooling
    image: a committee that also calls it a 7 says it is a 7)."""
    valid = honest_rows(results, kind="fooling", target=target)
    if valid:
        n = sum(r.n for r in valid)
        return sum(r.n_valid for r in valid) / n if n else None
    rows = [r for r in fooling_rows(results, target) if r.constrained]
    n = sum(r.n for r in rows)
    return sum(r.unflagged_success_rate * r.n for r in rows) / n if n else None


def _side(good: bool | None) -> str | None:
    return None if good is None else "for" if good else "against"


@dataclass(frozen=True)
class Evidence:
    """What each check of CHECKS says about one target, and the numbers behind it (None: not in the run)."""

    sides: dict[str, str | None]  # per check: 'for', 'against' or None
    control_cell: VerdictCell | None  # the noise control (on the grid where the run has it)
    aware_cell: VerdictCell | None  # the most demanding evasion answer (EVASION_CRITERIA)
    cw: dict | None  # Carlini-Wagner adversarials flagged: an interval
    fool: float | None  # the share of fooling searches that got a likely image through

    def against(self) -> list[str]:
        return [k for k in CHECKS if self.sides[k] == "against"]


def evidence(results: dict, target: str) -> Evidence:
    """What each check says about `target`."""
    ctrl = find(results, "control", target, "rounded") or find(results, "control", target)
    aware = next((a for c in EVASION_CRITERIA if (a := find(results, c, target))), None)
    cw, fool = cw_flagged(results, target), likely_fooling(results, target)
    sides = {"control": _side(None if ctrl is None else ctrl.answer == "yes"),
             "aware": _side(None if aware is None else aware.answer == "yes"),
             "cw": _side(None if cw is None else flagged_answer(cw, CUTOFFS) == "yes"),
             "likely_fooling": _side(None if fool is None else fool < CUTOFFS.evade_yes)}
    return Evidence(sides, ctrl, aware, cw, fool)


def overall_answer(results: dict) -> str:
    """'yes', 'mostly no', 'no' or 'partly' for the question as asked, from the main target's answers."""
    target = main_target(results)
    plain = find(results, "flagged", target)
    if plain is None:
        return "n/a"
    if plain.answer == "no":
        return "no"
    ev = evidence(results, target)
    against, weighed = ev.against(), [k for k in CHECKS if ev.sides[k] is not None]
    if plain.answer == "yes" and not against:
        return "yes"
    if {"control", "aware"} <= set(against) and ev.control_cell.answer == "no" and ev.aware_cell.answer == "no":
        return "no"  # flagged no more often than noise, and evaded by an attacker who knows the detector
    return "mostly no" if weighed and len(against) >= max(2, len(weighed) - 1) else "partly"


def _pct(ci: dict) -> str:
    return f"{100 * ci['mean']:.0f}% [{100 * ci['lo']:.0f}, {100 * ci['hi']:.0f}]"


def _worst_evasion(aware: VerdictCell) -> BudgetAnswer | None:
    return max((p for p in aware.per_budget if p.value["mean"] is not None), key=lambda p: p.value["mean"], default=None)


def _reasons(ev: Evidence) -> list[str]:
    """The checks that count against a yes, each with its number."""
    out, against = [], ev.against()
    if "control" in against:
        budgets = ev.control_cell.per_budget
        not_above = sum(p.answer != "yes" for p in budgets)
        out.append(f"it flags random noise of the same size about as often at {not_above} of {len(budgets)} budgets")
    if "cw" in against:
        out.append(f"it flags only {_pct(ev.cw)} of the minimal Carlini-Wagner adversarials")
    if "aware" in against and (worst := _worst_evasion(ev.aware_cell)):
        kind = {"valid_evasion": "valid evasions (the oracle keeps their class)",
                "combined": "valid evasions of the combined defence (the oracle keeps their class)"}
        out.append(f"an attacker who knows the detector makes {_pct(worst.value)} of the images it got right into "
                   f"{kind.get(ev.aware_cell.criterion, 'unflagged misclassifications')} at eps {worst.eps:g}")
    if "likely_fooling" in against:  # valid fooling images, where the run has the oracle's rows
        out.append(f"a fooling-image search that keeps p(x) high succeeds in {100 * ev.fool:.0f}% of its tries")
    return out


def first_sentence(results: dict) -> str:
    """One sentence that answers the question as asked, with the numbers that decide it."""
    answer, target = overall_answer(results), main_target(results)
    plain = find(results, "flagged", target)
    if plain is None:
        return "The run has no plain attack on a classifier, so it cannot say whether low p(x) flags fooling inputs."
    head = {"yes": "Yes", "no": "No", "mostly no": "Mostly no", "partly": "Only partly"}[answer]
    flags = f"low p(x) flags {_pct(plain.value)} of the PGD examples that fool the {target} (eps {plain.eps:g})"
    reasons = _reasons(evidence(results, target))
    if answer == "yes":
        return (f"{head}: a model of p(x, y) notices the inputs that fool the {target} by their low p(x): {flags}, more often "
                "than random noise of the same size, and still when the attacker knows the detector.")
    if not reasons:
        return f"{head}: {flags}." if answer != "no" else f"{head}: {flags}, so most fooling inputs go unnoticed."
    but = "; ".join(reasons[:-1]) + (" and " if len(reasons) > 1 else "") + reasons[-1]
    if plain.answer == "no":
        return f"{head}: {flags}, but {but}; so most fooling inputs go unnoticed."
    meaning = {"no": "it notices that an input was perturbed, not that it fools the classifier",
               "mostly no": "it notices that an input was perturbed, not that it fools the classifier",
               "partly": "it notices some fooling inputs, not all"}[answer]
    return f"{head}: {flags}, but {but}; so {meaning}."
