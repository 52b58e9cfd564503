"""The plain answer and the verdict table say what the numbers say, and change when they change."""

from fooled.analysis.answer import evidence
from fooled.analysis.summary import plain_answer, verdict_table
from fooled.analysis.verdict import compute_verdict
from record_factory import attack_row, results_of

EPS = (0.0625, 0.125)


row = attack_row


def results(detected=99, evaded=150, noise=0.2, logreg_acc=0.3, cw=None, likely=None):
    rows = []
    for g in ("continuous", "rounded"):
        rows += [row("cnn", "pgd", e, detected=detected, grid=g) for e in EPS]
        rows += [row("cnn", "noise_linf", e, flagged=noise, grid=g) for e in EPS]
    rows += [row("cnn", "adaptive_pgd", e, evaded=evaded, attacked="nll") for e in EPS]
    rows += [row("logreg", "pgd", e, acc=logreg_acc) for e in EPS]
    res = results_of(rows)
    if cw is not None:  # Carlini-Wagner: 100 of 100 images fooled, a share `cw` of them flagged
        res["cw"] = [{"seed": 0, "target": "cnn", "n": 100, "success_rate": 1.0, "tpr_at_fpr": cw}]
    if likely is not None:  # density-aware fooling searches: a share `likely` confident and unflagged
        res["fooling"] = [{"seed": 0, "target": "cnn", "method": "gradient_unflagged", "constrained": True, "n": 20,
                           "unflagged_success_rate": likely, "success_rate": 1.0, "flagged_rate": 0.0}]
    res["verdict"] = compute_verdict(res)
    return res


def first(res) -> str:
    return plain_answer(res)[0]


def test_first_sentence_reads_yes_when_every_check_agrees():
    # flagged, far above noise, an aware attacker evades on 2 of 200 images, CW flagged, no likely fooling image
    text = first(results(detected=99, evaded=2, noise=0.2, cw=0.97, likely=0.0))
    assert text.startswith("Yes: a model of p(x, y) notices the inputs that fool the cnn")
    assert "99% [" in text and "more often than random noise" in text


def test_first_sentence_reads_no_when_noise_is_flagged_as_often_and_the_aware_attacker_gets_past():
    text = first(results(detected=99, evaded=190, noise=1.0))
    assert text.startswith("No: low p(x) flags 99% [") and "random noise of the same size about as often at 2 of 2 budgets" in text
    assert "an attacker who knows the detector makes 95% [" in text and "perturbed, not that it fools" in text
    assert first(results(detected=10)).startswith("No: low p(x) flags 10% [")  # the plain attack itself goes unnoticed


def test_first_sentence_reads_partly_or_mostly_no_as_the_checks_turn_against():
    one = first(results(detected=99, evaded=2, noise=0.2, cw=0.4, likely=0.0))  # only Carlini-Wagner gets through
    assert one.startswith("Only partly: low p(x) flags 99% [") and "only 40% [" in one and "Carlini-Wagner" in one
    three = first(results(detected=99, evaded=150, noise=0.2, cw=0.4, likely=0.8))  # CW, the aware attack and likely images
    assert three.startswith("Mostly no:") and "succeeds in 80% of its tries" in three


def test_evidence_says_which_checks_count_against_and_leaves_out_those_the_run_lacks():
    ev = evidence(results(detected=99, evaded=2, noise=0.2, cw=0.4), "cnn")
    assert ev.against() == ["cw"] and ev.cw["mean"] == 0.4
    assert ev.sides == {"control": "for", "aware": "for", "cw": "against", "likely_fooling": None} and ev.fool is None
    assert (ev.control_cell.criterion, ev.control_cell.grid) == ("control", "rounded") and ev.aware_cell.criterion == "evasion"
    worse = evidence(results(detected=99, evaded=190, noise=1.0, likely=0.8), "cnn")
    assert worse.against() == ["control", "aware", "likely_fooling"] and worse.sides["cw"] is None


def test_sentences_carry_the_verdicts_numbers():
    res = results()
    text = " ".join(plain_answer(res))
    assert "99% [" in text and "at linf eps 0.0625" in text
    assert "20% of random perturbations" in text and "notices adversarial, not just perturbed" in text
    assert "at eps 0.125, 75% [" in text  # 150 of 200 correctly classified images evaded
    assert "logistic regression is fooled at least as easily as the CNN" in text


def test_sentences_follow_the_numbers_when_they_change():
    text = " ".join(plain_answer(results(detected=30, noise=0.9, logreg_acc=0.9)))
    assert text.startswith("No:") and "30% [" in text and "cannot tell them from random noise" in text
    assert "fooled less easily than the CNN (PGD accuracy 40 points above" in text


def test_verdict_table_has_a_row_per_question_and_a_cell_per_model():
    lines = verdict_table(results())
    assert lines[0] == "| question | cnn | logreg |"
    flagged = next(line for line in lines if line.startswith("| low p(x) flags plain PGD"))
    assert "**YES** 99 [" in flagged and "@0.0625" in flagged
    control = next(line for line in lines if "on the grid" in line)
    assert "vs noise 20%" in control
    shallow = next(line for line in lines if line.startswith("| the shallow model"))
    assert shallow.split("|")[2].strip() == "" and "**YES** -20 [" in shallow.split("|")[3]
