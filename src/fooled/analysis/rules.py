"""The verdict's cut-offs and how one budget's interval, then a question's budgets, become an answer.

Per budget an interval is decided only where it lies wholly on one side of every cut-off; an interval that straddles a
cut-off is *borderline* (another machine's rerun could land on either side). Over the budgets: YES or NO where every
budget says so, PARTLY where the decided budgets disagree, and UNCLEAR where they agree but a borderline budget could
overturn them (the cell then says which way it leans). So a cell near a cut-off reads as such instead of flipping.
"""

from __future__ import annotations

import dataclasses
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

    def shifted(self, points: float) -> "Cutoffs":
        """Every cut-off moved by `points` (a fraction: 0.05 is five points), kept inside [0, 1] (the margin in [-1, 1])."""
        moved = {f.name: getattr(self, f.name) + points for f in dataclasses.fields(self)}
        return Cutoffs(**{k: min(1.0, max(-1.0 if k == "shallow_margin" else 0.0, v)) for k, v in moved.items()})


CUTOFFS = Cutoffs()


def flagged_answer(ci: dict, c: Cutoffs) -> str:
    """YES at or above flag_yes, NO below flag_no, PARTLY wholly between them, else borderline."""
    if ci["mean"] is None:
        return "n/a"
    if ci["lo"] >= c.flag_yes:
        return "yes"
    if ci["hi"] < c.flag_no:
        return "no"
    return "partly" if ci["lo"] >= c.flag_no and ci["hi"] < c.flag_yes else BORDERLINE


def evasion_answer(ci: dict, c: Cutoffs) -> str:
    """YES (still flagged) if evasion lies at or below evade_yes, NO above evade_no, PARTLY wholly between, else borderline."""
    if ci["mean"] is None:
        return "n/a"
    if ci["hi"] <= c.evade_yes:
        return "yes"
    if ci["lo"] > c.evade_no:
        return "no"
    return "partly" if ci["lo"] > c.evade_yes and ci["hi"] <= c.evade_no else BORDERLINE


def control_answer(adv: dict, noise: dict) -> str:
    """YES if the adversarials' interval lies wholly above the noise's, NO if their rate is not above it, else borderline."""
    if adv["mean"] is None or noise["mean"] is None:
        return "n/a"
    if adv["lo"] > noise["hi"]:
        return "yes"
    return "no" if adv["mean"] <= noise["mean"] else BORDERLINE


def gap_answer(ci: dict, margin: float, yes_above: bool) -> str:
    """An accuracy gap against `margin`: YES if the interval lies above it (yes_above) or at or below it (not yes_above),
    NO if on the other side, else borderline."""
    if ci["mean"] is None:
        return "n/a"
    above, below = ci["lo"] > margin, ci["hi"] <= margin
    if not (above or below):
        return BORDERLINE
    return "yes" if above == yes_above else "no"


def overall(per_eps: list[dict]) -> tuple[str, str | None]:
    """(answer, leaning) over the budgets: leaning is the decided budgets' common answer where borderline budgets make the
    answer UNCLEAR, else None. Budgets without a number (n/a) do not count."""
    said = [p["answer"] for p in per_eps if p["answer"] != "n/a"]
    decided = set(said) - {BORDERLINE}
    if not said:
        return "n/a", None
    if decided - {"yes", "no"} or len(decided) > 1:
        return "partly", None
    if BORDERLINE in said:
        return "unclear", next(iter(decided), None)
    return decided.pop(), None


def deciding_budget(per_eps: list[dict], answer: str, against_yes) -> dict:
    """The budget a cell shows: for UNCLEAR the borderline budget that decides most against a yes; otherwise the budget
    that decides most against a yes (`against_yes`: smaller is worse), among those that gave the answer where possible."""
    usable = [p for p in per_eps if p["value"]["mean"] is not None]
    if not usable:
        return per_eps[0] if per_eps else {"value": {"mean": None, "lo": None, "hi": None}}
    want = BORDERLINE if answer == "unclear" else answer
    same = [p for p in usable if p["answer"] == want]
    return min(same or usable, key=against_yes)
