"""The verdict's rules on constructed intervals and rows: borderline budgets, the combination over budgets, the cut-off
sensitivity, paired gaps and the threshold's variance from per-image scores."""

import numpy as np
import pytest
from record_factory import attack_row, results_of

from fooled.analysis.per_image import paired_counts, threshold_spread, with_threshold
from fooled.analysis.rules import (
    CUTOFFS,
    Cutoffs,
    deciding_budget,
    evasion_answer,
    flagged_answer,
    flagged_rule,
    gap_answer,
    gap_rule,
    overall,
)
from fooled.analysis.verdict import compute_verdict
from fooled.rundir import Key


def ci(mean, lo, hi):
    return {"mean": mean, "lo": lo, "hi": hi}


@pytest.mark.parametrize("interval, expected", [
    (ci(0.97, 0.93, 1.0), "yes"), (ci(0.2, 0.1, 0.3), "no"), (ci(0.7, 0.6, 0.8), "partly"),
    (ci(0.95, 0.86, 1.0), "borderline"),  # straddles 90 %: another machine could land on either side
    (ci(0.5, 0.45, 0.55), "borderline"), (ci(None, None, None), "n/a"),
])
def test_flagged_rule_per_budget(interval, expected):
    assert flagged_answer(interval, CUTOFFS) == expected


def test_a_borderline_budget_knows_what_it_could_be():
    assert flagged_rule(ci(0.95, 0.86, 1.0), CUTOFFS) == {"answer": "borderline", "could": ["yes", "partly"], "leaning": "yes"}
    assert flagged_rule(ci(0.6, 0.3, 0.95), CUTOFFS)["could"] == ["yes", "partly", "no"]  # across both cut-offs
    assert gap_rule(ci(0.05, -0.01, 0.11), 0.05, yes_above=False)["could"] == ["yes", "no"]  # a gap has no middle answer


def test_evasion_and_gap_rules_per_budget():
    assert evasion_answer(ci(0.05, 0.0, 0.1), CUTOFFS) == "yes" and evasion_answer(ci(0.9, 0.8, 1.0), CUTOFFS) == "no"
    assert evasion_answer(ci(0.3, 0.2, 0.4), CUTOFFS) == "partly" and evasion_answer(ci(0.1, 0.05, 0.2), CUTOFFS) == "borderline"
    # the shallow model's old cell: 5.2 [-2.6, 12.8] points against a +5 point margin decides nothing
    assert gap_answer(ci(0.052, -0.026, 0.128), 0.05, yes_above=False) == "borderline"
    assert gap_answer(ci(0.0, -0.01, 0.01), 0.05, yes_above=False) == "yes"
    assert gap_answer(ci(-0.5, -0.6, -0.4), 0.0, yes_above=True) == "no"


def per(*answers):
    """Budgets with these answers; 'yes|partly' is a borderline budget that could be either (leaning the first)."""
    out = []
    for i, a in enumerate(answers):
        could = a.split("|")
        p = {"eps": 0.1 * (i + 1), "answer": a, "value": ci(0.5, 0.4, 0.6)}
        out.append({**p, "answer": "borderline", "could": could, "leaning": could[0]} if len(could) > 1 else p)
    return out


def test_budgets_combine_into_yes_no_partly_and_unclear():
    assert overall(per("yes", "yes")) == ("yes", None) and overall(per("no", "no", "n/a")) == ("no", None)
    assert overall(per("yes", "no"))[0] == "partly" and overall(per("yes", "partly"))[0] == "partly"
    assert overall(per("yes", "yes|partly", "yes")) == ("unclear", "yes")  # the borderline budget could overturn the rest
    assert overall(per("yes", "no", "yes|no")) == ("partly", None)  # already mixed: the borderline budget changes nothing
    assert overall(per("no", "partly|no")) == ("unclear", "partly")
    assert overall(per("partly|no", "no")) == ("unclear", "partly")  # leaning: the point estimates' answer


def test_an_unclear_cell_shows_its_borderline_budget():
    budgets = per("yes", "yes|partly", "yes")
    assert deciding_budget(budgets, "unclear", lambda p: p["eps"])["eps"] == pytest.approx(0.2)
    assert deciding_budget(per("yes", "yes"), "yes", lambda p: -p["eps"])["eps"] == pytest.approx(0.2)


def test_cutoffs_shift_together_and_stay_in_range():
    moved = CUTOFFS.shifted(0.05)
    assert moved.flag_yes == pytest.approx(0.95) and moved.evade_yes == pytest.approx(0.15)
    assert Cutoffs(flag_yes=0.98).shifted(0.05).flag_yes == 1.0


row = attack_row
results = results_of


def test_cutoff_sensitivity_shows_the_answers_that_move():
    # 600 of 1000 successful adversarials flagged at both budgets: PARTLY (between 50 and 90 %), and NO only if the
    # 50 % cut-off rose past the interval's lower bound (it does not at +5); the 97 % budget moves with the 90 % cut-off
    rows = [row("cnn", "pgd", 0.1, n=1000, success=1000, detected=930), row("cnn", "pgd", 0.2, n=1000, success=1000, detected=930)]
    verdict = compute_verdict(results(rows))
    moves = {s["criterion"]: s["answers"] for s in verdict["sensitivity"]}
    assert verdict["shift"] == 0.05 and moves["flagged"] == ["yes", "yes", "partly"]  # 93 [91, 94] % vs 85 / 90 / 95 %
    steady = compute_verdict(results([row("cnn", "pgd", 0.1, n=1000, success=1000, detected=700)]))
    assert {s["criterion"]: s["answers"] for s in steady["sensitivity"]}["flagged"] == ["partly"] * 3


def _scores(seed, target, eps, correct, *, nll=None, success=None, val=None):
    out = {str(Key(seed, target, "pgd", eps, "correct")): np.asarray(correct, dtype=bool)}
    if nll is not None:
        out[str(Key(seed, target, "pgd", eps, "nll"))] = np.asarray(nll, dtype=float)
        out[str(Key(seed, target, "pgd", eps, "success"))] = np.asarray(success, dtype=bool)
        out[str(Key(seed, target, "clean_val", column="nll"))] = np.asarray(val, dtype=float)
    return out


def test_paired_counts_from_per_image_correctness_and_the_verdict_uses_them():
    cnn = np.zeros(200, bool)
    cnn[:100] = True
    logreg = cnn.copy()
    logreg[100:104] = True  # logreg right on 4 more images than the cnn, the same 100 otherwise: +2 points
    scores = {**_scores(0, "cnn", 0.1, cnn), **_scores(0, "logreg", 0.1, logreg)}
    rows = [row("cnn", "pgd", 0.1, acc=0.5), row("logreg", "pgd", 0.1, acc=0.52)]
    assert paired_counts(scores, rows[1:], rows[:1]) == [(4, 0, 200)]
    assert paired_counts({}, rows[1:], rows[:1]) is None  # an old run without the arrays: unpaired
    paired = next(a for a in compute_verdict(results(rows), scores)["answers"] if a["criterion"] == "shallow")
    unpaired = next(a for a in compute_verdict(results(rows))["answers"] if a["criterion"] == "shallow")
    assert paired["value"].get("paired") and paired["answer"] == "yes"  # +2 [0, 4] points: within the 5 point margin
    assert unpaired["answer"] == "unclear"  # the same accuracies on different images would not decide


def test_threshold_variance_widens_the_detection_interval():
    rng = np.random.default_rng(0)
    val = rng.normal(0, 1, 100)  # a small validation set: its 95 % quantile is uncertain
    adv = np.full(100, np.quantile(val, 0.95, method="higher") + 0.05)  # adversarials just above the threshold
    scores = {**_scores(0, "cnn", 0.1, np.zeros(100), nll=adv, success=np.ones(100), val=val)}
    rows = [row("cnn", "pgd", 0.1, n=100, success=100, detected=100)]
    spread = threshold_spread(scores, rows, 0.05, "tpr_at_fpr")
    assert spread is not None and spread[0] == 0.0 and spread[2] == 1.0  # a threshold slightly higher flags none of them
    widened = with_threshold({"mean": 1.0, "lo": 0.96, "hi": 1.0}, spread)
    assert widened["lo"] < 0.5 and widened["hi"] == 1.0
    assert threshold_spread(None, rows, 0.05, "tpr_at_fpr") is None
