"""The plain answer and the verdict table say what the numbers say, and change when they change."""

from fooled.analysis.summary import plain_answer, verdict_table
from fooled.analysis.verdict import compute_verdict

EPS = (0.0625, 0.125)


def row(target, attack, eps, *, seed=0, n=200, success=100, detected=0, evaded=0, acc=0.5, flagged=0.0, grid="continuous",
        attacked=None):
    return {"seed": seed, "target": target, "attack": attack, "eps": eps, "norm": "linf", "grid": grid, "n": n, "n_correct": n,
            "n_success": success, "n_detected": detected, "n_evaded": evaded, "adv_acc": acc, "tpr_all": flagged,
            "adaptive": attack == "adaptive_pgd", "attacked_detector": attacked}


def results(detected=99, evaded=150, noise=0.2, logreg_acc=0.3):
    rows = []
    for g in ("continuous", "rounded"):
        rows += [row("cnn", "pgd", e, detected=detected, grid=g) for e in EPS]
        rows += [row("cnn", "noise_linf", e, flagged=noise, grid=g) for e in EPS]
    rows += [row("cnn", "adaptive_pgd", e, evaded=evaded, attacked="nll") for e in EPS]
    rows += [row("logreg", "pgd", e, acc=logreg_acc) for e in EPS]
    res = {"attacks": rows, "config": {"models": {"names": ["cnn", "logreg"]}, "detect": {"fpr": 0.05}}, "ood": [], "fooling": []}
    res["verdict"] = compute_verdict(res)
    return res


def test_sentences_carry_the_verdicts_numbers():
    res = results()
    text = " ".join(plain_answer(res))
    assert text.startswith("Yes, mostly") and "99% [" in text and "at linf eps 0.0625" in text
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
