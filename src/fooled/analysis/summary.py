"""The answer in plain words and the verdict as one table, both written from results.json (never typed)."""

from __future__ import annotations

from ..records import VerdictCell, verdict_cells
from .answer import first_sentence, main_target
from .style import model_order

ROWS = [  # (criterion, grid or None, the row's label in the verdict table)
    ("flagged", None, "low p(x) flags plain PGD adversarial examples"),
    ("control", "rounded", "... more often than the same images perturbed at random (sign noise, PGD's perturbation shuffled), on the grid"),
    ("control", "continuous", "... more often than random noise of the same size, off the grid (secondary)"),
    ("evasion", "on_grid", "low p(x) still flags them when the attacker knows the detector (number: valid evasion on the grid)"),
    ("evasion", None, "low p(x) still flags them when the attacker knows the detector (number: evasion)"),
    ("combined", "on_grid", "a combined defence still flags them when the attacker knows all of it (number: valid evasion on the grid)"),
    ("fooling", None, "fooling images grown from noise are flagged"),
    ("robust", None, "the flow classifier is harder to fool than the CNN"),
    ("shallow", None, "the shallow model is fooled at least as easily as the CNN"),
]


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}"


def cell(a: VerdictCell) -> str:
    """YES/PARTLY/NO/UNCLEAR (with the way an unclear answer leans) and the deciding number with its 95% interval."""
    v = a.value
    word = a.answer.upper() + (f" (leans {a.leaning})" if a.leaning else "")
    if v.get("mean") is None:
        return word
    unit = " pts" if a.criterion in ("robust", "shallow") else "%"
    at = f" @{a.eps:g}" if a.eps is not None else ""
    control = ""
    if a.criterion == "control":
        c = (a.budget(a.eps) or {}).get("control")
        what = "controls" if a.matched else "noise"  # matched: the stronger of its two controls on the same images
        control = f" vs {what} {_pct(c['mean'])}%" if c and c.get("mean") is not None else ""
    return f"**{word}** {_pct(v['mean'])} [{_pct(v['lo'])}, {_pct(v['hi'])}]{unit}{control}{at}"


def verdict_table(results: dict) -> list[str]:
    """Questions x models; each cell the answer, the number that decides it (at the budget that decides most against a yes)
    and its 95% interval; the questions about the data's support below the table."""
    answers = verdict_cells(results)
    models = model_order({a.model for a in answers if a.criterion not in ("support", "typical")})
    by = {(a.kind, a.model): a for a in answers}
    lines = ["| question | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for criterion, grid, label in ROWS:
        cells = [cell(by[((criterion, grid), m)]) if ((criterion, grid), m) in by else "" for m in models]
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for a in answers:
        if a.criterion in ("support", "typical"):
            lines += ["", f"- {a.question} {cell(a)} ({a.measure})."]
    return lines


def _get(answers: list[VerdictCell], criterion: str, model: str | None = None, grid: str | None = None,
         fooling: bool = False) -> VerdictCell | None:
    for a in answers:
        if a.criterion == criterion and (model is None or a.model == model) and (grid is None or a.grid == grid) \
                and a.question.startswith("Are fooling images") == fooling:
            return a
    return None


def _control_words(answer: str) -> str:
    return {"yes": "so it notices adversarial, not just perturbed, images", "partly": "so part of what it flags is any perturbation",
            "unclear": "too close to call against noise at some budget"}.get(answer, "so it cannot tell them from random noise")


def _ci(v: dict, scale: float = 100) -> str:
    """An interval {mean, lo, hi} in percent."""
    return f"{scale * v['mean']:.0f}% [{scale * v['lo']:.0f}, {scale * v['hi']:.0f}]"


def plain_answer(results: dict) -> list[str]:
    """The answer to the question as asked (answer.first_sentence, from the whole verdict), then plain attacks against the
    noise control, the attacker who knows the detector, fooling images, shallow and generative models, and where
    likelihood fails. Each says what the numbers say; a sentence whose numbers are missing is left out."""
    answers = verdict_cells(results)
    target = main_target(results)
    said = [_detection(answers, target), _evasion(answers, target), _fooling(results, answers, target), _models(answers),
            _support(answers)]
    return [first_sentence(results)] + [s for s in said if s]


def _detection(answers: list[VerdictCell], target: str) -> str | None:
    """Plain PGD flagged, against random perturbations of the same size on the grid."""
    det, ctrl = _get(answers, "flagged", target), _get(answers, "control", target, "rounded")
    if not det:
        return None
    s = (f"In detail: the flow flags {_ci(det.value)} of the PGD examples that fool the {target} (at linf eps {det.eps:g}, the "
         f"budget that decides most against a yes; verdict {det.answer.upper()})")
    if ctrl and ctrl.per_eps:
        p = ctrl.budget(det.eps) or ctrl.per_eps[0]
        s += (f", against {100 * p['control']['mean']:.0f}% of random perturbations of the same size on the grey-level grid"
              f" ({_control_words(ctrl.answer)})")
    return s + "."


def _evasion(answers: list[VerdictCell], target: str) -> str | None:
    """The attacker who knows the detector, at the largest budget quoted (valid evasion: where most images keep their class)."""
    ev = _get(answers, "evasion", target)
    if not ev:
        return None
    quoted = ev.quoted_eps
    worst = max((p for p in ev.per_eps if p["value"]["mean"] is not None and p["eps"] <= (p["eps"] if quoted is None else quoted)),
                key=lambda p: p["eps"], default=None)
    if not worst:
        return None
    lead = "An attacker who knows the detector does not get past it" if ev.answer == "yes" else \
        "An attacker who knows the detector gets past it"
    valid = " valid images on the grid that the oracle still calls by their class," if quoted is not None else ""
    return (f"{lead}: at eps {worst['eps']:g}, {_ci(worst['value'])} of the images the {target} classified correctly become "
            f"misclassified{valid} images that low p(x) does not flag.")


def _fooling(results: dict, answers: list[VerdictCell], target: str) -> str | None:
    """Fooling images flagged, and what a search that keeps p(x) high finds (valid ones, where the oracle judged them)."""
    fool = _get(answers, "flagged", target, fooling=True)
    if not fool or fool.value["mean"] is None:
        return None
    constrained = [r for r in results.get("fooling", []) if r["target"] == target and r.get("constrained")]
    s = f"Fooling images grown from noise are flagged ({_ci(fool.value)})"
    valid = [r for r in results.get("honest", []) if r.get("kind") == "fooling" and r["target"] == target]
    if valid:  # counted as fooling only where the oracle does not give the image the target class
        u = sum(r["n_valid"] for r in valid) / sum(r["n"] for r in valid)
        s += (f"; a search that also keeps p(x) above the threshold finds confident images the detector accepts and the oracle "
              f"does not call the target class in {100 * u:.0f}% of its tries against the {target}")
    elif constrained:
        u = sum(r["unflagged_success_rate"] * r["n"] for r in constrained) / sum(r["n"] for r in constrained)
        s += (f"; a search that also keeps p(x) above the threshold finds confident images the detector accepts in {100 * u:.0f}% "
              f"of its tries against the {target}")
    return s + "."


def _models(answers: list[VerdictCell]) -> str | None:
    """The flow classifier and logistic regression against the CNN under PGD."""
    shallow, robust = _get(answers, "shallow", "logreg"), _get(answers, "robust", "flow")
    parts = []
    if robust:
        d = robust.value["mean"]
        how = {"yes": "harder", "no": "not harder"}.get(robust.answer, "not clearly harder")
        parts.append(f"the flow classifier is {how} to fool than the CNN "
                     f"(PGD accuracy {abs(100 * d):.0f} points {'above' if d > 0 else 'below'} it at eps {robust.eps:g})")
    if shallow:
        d = shallow.value["mean"]
        how = {"yes": "at least as easily as", "no": "less easily than"}.get(shallow.answer, "about as easily as")
        undecided = "" if shallow.answer in ("yes", "no") else ", an interval that does not decide against the 5-point margin"
        parts.append(f"logistic regression is fooled {how} the CNN (PGD accuracy {abs(100 * d):.0f} points {'above' if d > 0 else 'below'} it at "
                     f"eps {shallow.eps:g}{undecided})" + (", as Goodfellow et al.'s linearity explanation predicts" if shallow.answer == "yes" else ""))
    if not parts:
        return None
    lead = "Modelling p(x, y) makes this classifier harder to fool" if robust and robust.answer == "yes" else \
        "Modelling p(x, y) does not make a classifier robust"
    return f"{lead}: " + "; ".join(parts) + "."


def _support(answers: list[VerdictCell]) -> str | None:
    """Where likelihood fails: inputs off the data's support, and whether the most likely images are typical."""
    support, typical = _get(answers, "support"), _get(answers, "typical")
    if not support:
        return None
    v = support.value
    s = ("Inputs off the data's support (" + ", ".join(support.sets) + ") get a higher likelihood than the data"
         if support.answer == "yes" else
         f"Whether inputs off the data's support get a higher likelihood than the data is unclear: {support.measure} is "
         f"{_pct(v['mean'])}% [{_pct(v['lo'])}, {_pct(v['hi'])}] over the seeds"
         if support.answer == "unclear" else
         "None of the inputs off the data's support that we tried gets a higher likelihood than the data")
    if typical and typical.answer == "no":
        s += ", and the most likely images are not typical ones: maximum likelihood says little about p(x) where the data has no mass"
    return s + "."
