"""The verdict's rules on hand-made results: each answer decided per eps on the interval's bounds."""

from fooled.analysis.verdict import compute_verdict
from record_factory import attack_row, results_of

EPS = (0.0625, 0.125)


row = attack_row


def results(rows, names=("cnn", "logreg", "gaussian", "flow"), ood=()):
    return results_of(rows, names, ood=list(ood))


def answer(res, start):
    return next(a for a in compute_verdict(res)["answers"] if a["question"].startswith(start) and a["model"] == "cnn"
                or a["question"].startswith(start) and "cnn" not in a["question"])


def test_detection_is_yes_only_where_every_budget_is_confidently_above_90_percent():
    seeds = (0, 1, 2)
    sure = [row("cnn", "pgd", e, seed=s, detected=99) for e in EPS for s in seeds]
    assert answer(results(sure), "Does low p(x) flag PGD")["answer"] == "yes"
    mixed = [row("cnn", "pgd", EPS[0], seed=s, detected=99) for s in seeds] + [row("cnn", "pgd", EPS[1], seed=s, detected=30) for s in seeds]
    a = answer(results(mixed), "Does low p(x) flag PGD")
    assert a["answer"] == "partly" and [p["answer"] for p in a["per_eps"]] == ["yes", "no"]
    assert a["eps"] == EPS[1]  # the headline number is the budget that decides against yes
    near = [row("cnn", "pgd", e, seed=s, detected=91) for e in EPS for s in seeds]  # mean 91 %, lower bound below 90 %
    assert answer(results(near), "Does low p(x) flag PGD")["answer"] == "unclear"  # every budget straddles 90 %


def test_detection_counts_only_successful_adversarials():
    rows = [row("cnn", "pgd", e, success=10, detected=10, correct=200) for e in EPS]  # 10 of 10 fooled images flagged
    a = answer(results(rows), "Does low p(x) flag PGD")
    assert a["value"]["mean"] == 1.0 and a["value"]["trials"] == 10


def test_beating_the_random_control_needs_intervals_apart():
    rows = [row("cnn", "pgd", e, detected=80, grid="rounded") for e in EPS]
    close = rows + [row("cnn", "noise_linf", e, flagged=0.75, grid="rounded") for e in EPS]  # 80 % vs 75 %: overlapping
    level = rows + [row("cnn", "noise_linf", e, flagged=0.85, grid="rounded") for e in EPS]  # noise flagged more often
    apart = rows + [row("cnn", "noise_linf", e, flagged=0.2, grid="rounded") for e in EPS]
    q = "Does low p(x) flag PGD adversarial examples against the cnn more often than random perturbations of the same size, on the grid?"
    pick = lambda res: next(a for a in compute_verdict(res)["answers"] if a["question"] == q)  # noqa: E731
    assert pick(results(apart))["answer"] == "yes" and pick(results(level))["answer"] == "no"
    # above the noise but inside its interval: borderline at every budget, so the answer says so instead of a firm NO
    assert pick(results(close))["answer"] == "unclear" and {p["answer"] for p in pick(results(close))["per_eps"]} == {"borderline"}


def test_evasion_under_a_detector_aware_attack():
    low = [row("cnn", "adaptive_pgd", e, evaded=4, attacked="nll") for e in EPS]
    high = [row("cnn", "adaptive_pgd", e, evaded=150, attacked="nll") for e in EPS]
    other = [row("cnn", "adaptive_pgd", e, evaded=190, attacked="typicality") for e in EPS]  # another detector's attack: not counted
    q = "Does low p(x) still flag"
    assert answer(results(low + other), q)["answer"] == "yes"
    assert answer(results(high), q)["answer"] == "no"


def test_shallow_model_fooled_more_easily_is_yes_and_a_robuster_one_is_no():
    cnn = [row("cnn", "pgd", e, acc=0.5) for e in EPS]
    gaussian = [row("gaussian", "pgd", e, acc=0.32) for e in EPS]  # 18 points below the CNN: fooled more easily
    logreg = [row("logreg", "pgd", e, acc=0.8) for e in EPS]  # 30 points above: harder to fool
    verdict = compute_verdict(results(cnn + gaussian + logreg))["answers"]
    by_model = {a["model"]: a for a in verdict if a["criterion"] == "shallow"}
    assert by_model["gaussian"]["answer"] == "yes" and by_model["gaussian"]["value"]["mean"] < -0.15
    assert by_model["logreg"]["answer"] == "no"


def test_off_support_sets_and_the_most_likely_image_are_answered_apart():
    def ood(name, higher, typ=0.0):
        return {"model": "flow", "set": name, "n": 100, "higher_likelihood_than_test": higher,
                "detectors": {"typicality": {"tpr_at_fpr": typ}}}

    res = results([row("cnn", "pgd", e) for e in EPS], ood=[ood("uniform noise", 0.0), ood("blank", 0.9), ood("max-likelihood", 1.0, 1.0)])
    answers = {a["criterion"]: a for a in compute_verdict(res)["answers"]}
    assert answers["support"]["answer"] == "yes" and answers["support"]["sets"] == ["blank"]
    assert answers["typical"]["answer"] == "no"  # the most likely images are flagged as atypical
    res["ood"] = [ood("uniform noise", 0.0), ood("max-likelihood", 1.0, 1.0)]
    assert {a["criterion"]: a for a in compute_verdict(res)["answers"]}["support"]["answer"] == "no"


def test_a_set_likelier_than_the_data_on_some_seeds_only_is_unclear_not_no():
    def ood(seed, name, higher, n=1):
        return {"seed": seed, "model": "flow", "set": name, "n": n, "higher_likelihood_than_test": higher}

    # one blank image per seed: likelier than the median test image on two seeds of three (the Gaussian-start flow's case)
    res = results([row("cnn", "pgd", e) for e in EPS], ood=[ood(0, "blank", 1.0), ood(1, "blank", 1.0), ood(2, "blank", 0.0),
                                                           *(ood(s, "uniform noise", 0.0, 100) for s in range(3))])
    support = {a["criterion"]: a for a in compute_verdict(res)["answers"]}["support"]
    assert support["answer"] == "unclear" and support["leaning"] == "yes" and support["value"]["lo"] < 0.5 <= support["value"]["hi"]
    res["ood"] = [ood(s, "uniform noise", 0.0, 100) for s in range(3)]  # 300 images, none likelier: a firm no
    assert {a["criterion"]: a for a in compute_verdict(res)["answers"]}["support"]["answer"] == "no"
    res["ood"] = [ood(s, "blank", 0.0) for s in range(3)]  # three images cannot rule out one in two
    assert {a["criterion"]: a for a in compute_verdict(res)["answers"]}["support"]["answer"] == "unclear"
