"""The verdict's cut-offs and how one budget's interval, then a question's budgets, become an answer.

Per budget an interval is decided only where it lies wholly on one side of every cut-off; an interval that straddles a
cut-off is *borderline* (another machine's rerun could land on either side). Over the budgets: YES or NO where every
budget says so, PARTLY where the decided budgets disagree, and UNCLEAR where they agree but a borderline budget could
overturn them (the cell then says which way it leans). So a cell near a cut-off reads as such instead of flipping.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

BORDERLINE = "borderline"


@dataclass(frozen=True)
class Cutoffs:
    """Where the verdict's rules draw their lines (rates and accuracy gaps as fractions)."""

    flag_yes: float = 0.9  # flagged: yes if the interval lies at or above this
    flag_no: float = 0.5  # flagged: no if the interval lies below this
    evade_yes: float = 0.1  # still flagged under attack: yes if evasion's interval lies at or below this
    evade_no: float = 0.5  # no if evasion's interval lies above this
    shallow_margin: float = 0.05  # "fooled at least as easily": PGD accuracy at most this far above the CNN's
    higher_p: float = 0.5  # off-support sets: "higher likelihood" if the share above the median test image reaches this

    def shifted(self, points: float) -> Cutoffs:
        """Every cut-off moved by `points` (a fraction: 0.05 is five points), kept inside [0, 1] (the margin in [-1, 1])."""
        moved = {f.name: getattr(self, f.name) + points for f in dataclasses.fields(self)}
        return Cutoffs(**{k: min(1.0, max(-1.0 if k == "shallow_margin" else 0.0, v)) for k, v in moved.items()})


CUTOFFS = Cutoffs()


ORDER = ("yes", "partly", "no")  # the answers a rate can give, in the order its value crosses the cut-offs


def _between(a: str, b: str, order: tuple[str, ...] = ORDER) -> list[str]:
    i, j = sorted((order.index(a), order.index(b)))
    return list(order[i : j + 1])


def _interval(ci: dict, point, order: tuple[str, ...] = ORDER) -> dict:
    """The answer of an interval under a monotone rule `point` (value -> answer): the answer where both ends agree, else
    borderline, with the answers it could take (`could`) and the one its point estimate gives (`leaning`)."""
    if ci["mean"] is None:
        return {"answer": "n/a"}
    lo, hi = point(ci["lo"]), point(ci["hi"])
    if lo == hi:
        return {"answer": lo}
    return {"answer": BORDERLINE, "could": _between(lo, hi, order), "leaning": point(ci["mean"])}


def flagged_rule(ci: dict, c: Cutoffs) -> dict:
    """YES at or above flag_yes, NO below flag_no, PARTLY between; an interval across a cut-off is borderline."""
    return _interval(ci, lambda v: "yes" if v >= c.flag_yes else "no" if v < c.flag_no else "partly")


def evasion_rule(ci: dict, c: Cutoffs) -> dict:
    """YES (still flagged) if evasion is at or below evade_yes, NO above evade_no, PARTLY between; across a cut-off: borderline."""
    return _interval(ci, lambda v: "yes" if v <= c.evade_yes else "no" if v > c.evade_no else "partly")


def gap_rule(ci: dict, margin: float, yes_above: bool) -> dict:
    """An accuracy gap against `margin`: YES above it (yes_above) or at or below it (not yes_above), NO on the other side."""
    return _interval(ci, lambda v: "yes" if (v > margin) == yes_above else "no", order=("yes", "no"))


def control_rule(adv: dict, *controls: dict) -> dict:
    """YES if the adversarials' interval lies wholly above every control's, NO if their rate is not above some control's,
    else borderline (an interval overlap that more images or another machine could resolve either way)."""
    if adv["mean"] is None or any(c["mean"] is None for c in controls):
        return {"answer": "n/a"}
    if all(adv["lo"] > c["hi"] for c in controls):
        return {"answer": "yes"}
    if any(adv["mean"] <= c["mean"] for c in controls):
        return {"answer": "no"}
    return {"answer": BORDERLINE, "could": ["yes", "no"], "leaning": "yes"}


def flagged_answer(ci: dict, c: Cutoffs) -> str:
    return flagged_rule(ci, c)["answer"]


def evasion_answer(ci: dict, c: Cutoffs) -> str:
    return evasion_rule(ci, c)["answer"]


def gap_answer(ci: dict, margin: float, yes_above: bool) -> str:
    return gap_rule(ci, margin, yes_above)["answer"]


def control_answer(adv: dict, *controls: dict) -> str:
    return control_rule(adv, *controls)["answer"]


def combine(answers: list[str]) -> str:
    """Decided budgets over a question: YES or NO where all agree, else PARTLY."""
    said = set(answers)
    return said.pop() if len(said) == 1 and said <= {"yes", "no"} else "partly"


def overall(per_eps: list[dict]) -> tuple[str, str | None]:
    """(answer, leaning) over the budgets. Each borderline budget may take any answer it `could`; where every choice gives
    the same combined answer, that is the answer (the borderline budget cannot change it); else UNCLEAR, leaning the way
    the point estimates go. Budgets without a number (n/a) do not count."""
    said = [p for p in per_eps if p["answer"] != "n/a"]
    if not said:
        return "n/a", None
    options = [p.get("could", [p["answer"]]) if p["answer"] == BORDERLINE else [p["answer"]] for p in said]
    outcomes = {combine(list(choice)) for choice in itertools.product(*options)}
    if len(outcomes) == 1:
        return outcomes.pop(), None
    return "unclear", combine([p.get("leaning", p["answer"]) for p in said])


def deciding_budget(per_eps: list[dict], answer: str, against_yes) -> dict:
    """The budget a cell shows: the one that decides most against a yes (`against_yes`: smaller is worse); for YES and NO
    among the budgets that said so (not an n/a one), for UNCLEAR among the borderline ones, for PARTLY among all."""
    usable = [p for p in per_eps if p["value"]["mean"] is not None]
    if not usable:
        return per_eps[0] if per_eps else {"value": {"mean": None, "lo": None, "hi": None}}
    if answer in ("yes", "no", "unclear"):  # a budget that gave the answer (for UNCLEAR: a borderline one)
        usable = [p for p in usable if p["answer"] == (BORDERLINE if answer == "unclear" else answer)] or usable
    return min(usable, key=against_yes)


def answer_of(question: str, model: str, kind: str, per_eps: list[dict], against_yes, counted: list[dict] | None = None,
              **extra) -> dict:
    """One verdict cell: its budgets combined by `overall` (over `counted`, a subset of per_eps, where given), with the
    budget the cell shows (`deciding_budget`, or `shown` where given) and the numbers behind it."""
    answer, leaning = overall(per_eps if counted is None else counted)
    shown = extra.pop("shown", None) or deciding_budget(per_eps if counted is None else counted, answer, against_yes)
    return {"question": question, "model": model, "criterion": kind, "answer": answer, "leaning": leaning,
            "per_eps": per_eps, "value": shown["value"], "eps": shown.get("eps"), **extra}
