"""The verdict per budget as one small table per question (models as rows, budgets as columns), the cut-off
sensitivity, and the criteria: the report's answers, read across rather than down a list."""

from __future__ import annotations

from ..records import VerdictCell, verdict_cells
from .style import model_order
from .summary import ROWS
from .tables import md_table, percent

BUDGETLESS = ("support", "typical")


def _number(a: VerdictCell, v: dict) -> str:
    if v.get("mean") is None:
        return "n/a"
    if a.criterion in ("robust", "shallow"):
        return f"{100 * v['mean']:+.0f} [{100 * v['lo']:+.0f}, {100 * v['hi']:+.0f}] pts"
    return f"{percent(v['mean'])} [{100 * v['lo']:.0f}, {100 * v['hi']:.0f}]%"


def _cell(a: VerdictCell, p: dict) -> str:
    word = f"{p['answer']} ({'/'.join(p['could'])})" if p.get("could") else p["answer"]
    text = f"{word} {_number(a, p['value'])}"
    if a.criterion == "control" and p.get("control", {}).get("mean") is not None:
        text += f" vs noise {percent(p['control']['mean'])}%"
    return text


def _overall(a: VerdictCell) -> str:
    return f"**{a.answer.upper()}**" + (f" (leans {a.leaning})" if a.leaning else "")


def question_table(answers: list[VerdictCell], label: str) -> list[str]:
    """One question: a row per model, a column per budget (that budget's answer, number and 95% interval), then the answer."""
    budgets = sorted({p["eps"] for a in answers for p in a.per_eps if p["eps"] is not None})
    header = ["model"] + ([f"eps {e:g}" for e in budgets] if budgets else ["all images"]) + ["answer"]
    rows = []
    for a in answers:
        at = {p["eps"]: p for p in a.per_eps}
        cells = [_cell(a, at[e]) if e in at else "-" for e in budgets] if budgets else [_cell(a, a.per_eps[0])]
        rows.append([a.model] + cells + [_overall(a)])
    measure = answers[0].measure if answers[0].measure is not None else ""
    return [f"**{label}** ({measure})", "", md_table(header, rows), ""]


def answer_tables(results: dict) -> list[str]:
    """Every question of the verdict as its own table, the questions without budgets as lines, the cut-off sensitivity and the
    criteria."""
    answers = verdict_cells(results)
    order = {m: i for i, m in enumerate(model_order({a.model for a in answers}))}
    out = [("Each question per budget: the budget's answer (yes, no, partly, or borderline, with the answers it could take, "
            "where its interval straddles a cut-off), the number that decides it and its 95% interval; the last column combines "
            "the budgets."), ""]
    for criterion, grid, label in ROWS:
        these = sorted((a for a in answers if a.kind == (criterion, grid)), key=lambda a: order.get(a.model, 99))
        if these:
            out += question_table(these, label)
    for a in answers:
        if a.criterion in BUDGETLESS:
            line = f"- **{a.question}** {_overall(a)}. {a.measure}: {_number(a, a.value)}"
            if a.shares:
                line += "; sets: " + ", ".join(f"{n} {_number(a, c)}" for n, c in a.shares.items())
            out.append(line + ".")
    return out + [""] + sensitivity_table(results) + criteria_lines(results)


def sensitivity_table(results: dict) -> list[str]:
    """How the answers move if every cut-off (90/50/10 % and the 5-point margin) moves down or up by the verdict's shift."""
    rows = results["verdict"].get("sensitivity")
    if not rows:
        return []
    shift = 100 * results["verdict"].get("shift", 0.05)
    moved = [r for r in rows if len(set(r["answers"])) > 1]
    out = [f"**If the cut-offs moved.** Every cut-off moved down or up by {shift:.0f} points at once (e.g. flagged: YES at "
           f"{90 - shift:.0f}% or {90 + shift:.0f}% instead of 90%): {len(rows) - len(moved)} of {len(rows)} answers stay as they "
           "are" + (", and these move:" if moved else "."), ""]
    if moved:
        out += [md_table(["question", "model", f"-{shift:.0f} pts", "as set", f"+{shift:.0f} pts"],
                         [[label_of(r), r["model"]] + [x.upper() for x in r["answers"]] for r in moved]), ""]
    return out


def label_of(r: dict) -> str:
    """The verdict table's label of an answer's (or a sensitivity row's) question; the question itself where it has none."""
    kind = ("fooling", None) if r["question"].startswith("Are fooling images") else (r["criterion"], r.get("grid"))
    return next((label for c, g, label in ROWS if (c, g) == kind), r["question"])


def criteria_lines(results: dict) -> list[str]:
    criteria = results["verdict"].get("criteria", {})
    used = list(dict.fromkeys(a["criterion"] for a in results["verdict"]["answers"]))
    out = ["Criteria (95% intervals: rates pooled over seeds and images, see Methods):", ""]
    return out + [f"- *{kind}*: {criteria[kind]}." for kind in used + ["overall"] if kind in criteria]
