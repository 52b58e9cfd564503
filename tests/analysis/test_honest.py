"""The verdict under one threat model, on hand-made 'honest' rows: matched controls, valid evasion and its quoted budget,
the combined defence."""

from fooled.analysis.honest import combined_evasion, defence_table, matched_control, oracle_lines, valid_evasion
from fooled.analysis.summary import verdict_table
from fooled.analysis.rules import CUTOFFS
from fooled.analysis.verdict import compute_verdict
from record_factory import committee_row

CUTS = CUTOFFS

EPS = (0.0625, 0.125, 0.3125)


def control(eps, attack, noise, shuffled, *, seed=0, n=100):
    return {"seed": seed, "target": "cnn", "kind": "matched_control", "attack": "pgd", "grid": "on_grid", "eps": eps, "detector": "nll",
            "n": n, "flagged_attack": attack, "flagged_sign_noise": noise, "flagged_shuffled": shuffled, "flagged_background": n}


def evasion(eps, valid, evaded, kept, *, attacked="nll", grid="on_grid", seed=0, correct=100, success=100):
    dets = {"nll": {"n_evaded": evaded, "n_valid": valid}, "combined": {"n_evaded": evaded, "n_valid": valid}}
    return {"seed": seed, "target": "cnn", "kind": "evasion", "attacked": attacked, "grid": grid, "eps": eps, "n": correct,
            "n_correct": correct, "n_success": success, "n_oracle_kept": kept, "detectors": dets}


def results(honest):
    return {"attacks": [], "honest": honest, "config": {"models": {"names": ["cnn"]}, "detect": {"fpr": 0.05}}, "ood": [], "fooling": []}


def test_matched_control_is_yes_only_above_both_controls_on_the_same_images():
    above = [control(e, 95, 20, 30) for e in EPS]
    assert matched_control(results(above))[0]["answer"] == "yes"
    shuffled_as_often = [control(e, 95, 20, 96) for e in EPS]  # sign noise is beaten, the attack's own perturbation shuffled is not
    a = matched_control(results(shuffled_as_often))[0]
    assert a["answer"] == "no" and a["per_eps"][0]["control"]["mean"] == 0.96 and a["grid"] == "rounded"
    assert compute_verdict(results(above))["answers"][0]["matched"]
    none_fooled = above + [control(0.5, 0, 0, 0, n=0)]  # a budget at which PGD fooled no image is left out, not an error
    assert [p["eps"] for p in matched_control(results(none_fooled))[0]["per_eps"]] == list(EPS)  # the verdict takes the matched control when rows exist


def test_valid_evasion_counts_only_images_the_oracle_keeps_and_quotes_the_largest_budget_most_keep():
    # at 0.3125 the attack evades 100 of 100, but the oracle keeps the class of only 20: it changed the digit
    rows = [evasion(0.0625, 5, 10, 90), evasion(0.125, 60, 80, 75), evasion(0.3125, 20, 100, 20)]
    rows += [evasion(e, 0, 100, 100, grid="off_grid") for e in EPS]
    a = valid_evasion(results(rows), CUTS)[0]
    assert a["quoted_eps"] == 0.125 and a["eps"] == 0.125 and a["counted_eps"] == [0.0625, 0.125]
    assert a["value"]["mean"] == 0.6  # valid evasions / images the model got right
    assert a["per_eps"][2]["evasion"]["mean"] == 1.0 and a["per_eps"][0]["off_grid"]["mean"] == 1.0  # secondary numbers kept
    assert a["answer"] == "partly"  # 5 % (yes at that budget would need <= 10 % upper bound) and 60 % (no)
    cells = verdict_table({**results(rows), "verdict": compute_verdict(results(rows))})
    assert any("valid evasion on the grid" in line and "@0.125" in line for line in cells)


def test_when_no_budget_keeps_most_classes_every_budget_counts():
    rows = [evasion(e, 1, 90, 10) for e in EPS]
    a = valid_evasion(results(rows), CUTS)[0]
    assert a["counted_eps"] == list(EPS) and a["quoted_eps"] == 0.3125 and a["answer"] == "yes"


def test_combined_defence_row_and_table_name_the_attack_each_detector_faced():
    rows = [evasion(e, 30, 40, 90, attacked=k) for e in EPS for k in ("nll", "combined")]
    rows.append({"seed": 0, "target": "cnn", "kind": "defence", "val_fpr": 0.05})
    a = combined_evasion(results(rows), CUTS)[0]
    assert a["criterion"] == "combined" and "5.0% total validation FPR" in a["question"]
    table = "\n".join(defence_table(results(rows)))
    assert "-log p(x)-aware on the grid" in table and "aware of every member on the grid" in table


def test_oracle_lines_average_the_committees_of_the_seeds_and_skip_rows_without_self_agreement():
    made = [committee_row(0, agreement=0.8, majority=0.95), committee_row(1, agreement=0.6, majority=0.85,
                                                                            acc={"svc": 0.9, "knn": 0.9, "robust_cnn_adv": 0.7})]
    old = {k: v for k, v in committee_row(2, agreement=0.0).to_dict().items() if k != "self_agreement"}  # before it was kept
    (line,) = oracle_lines({"committee": [r.to_dict() for r in made] + [old]})
    assert "(svc, knn, robust_cnn_adv; the last adversarially trained" in line and "fitted on 270 training images" in line
    assert "agree with each other on 70%" in line and "majority label is right on 90%" in line
    assert "svc 93%, knn 92%, robust_cnn_adv 75%" in line
    assert oracle_lines({"committee": [old]}) == [] and oracle_lines({}) == []


def test_a_matched_control_whose_intervals_overlap_is_borderline_and_can_make_the_cell_unclear():
    # 95 % against 20 % decides yes at two budgets; at the third PGD's 60 % sits just above the shuffled control's 55 %,
    # inside its interval: that budget could say yes or no, so the cell is UNCLEAR (leaning yes), not NO
    rows = [control(e, 95, 20, 30) for e in EPS[:2]] + [control(EPS[2], 60, 20, 55)]
    a = matched_control(results(rows))[0]
    assert a["per_eps"][2]["answer"] == "borderline" and a["answer"] == "unclear" and a["leaning"] == "yes"
    assert a["eps"] == EPS[2]  # the cell shows the budget that left it open


def test_valid_evasion_near_a_cut_off_reads_unclear_rather_than_flipping():
    # 9 of 100 valid evasions: the point estimate says yes (<= 10 %), its interval reaches past 10 %: borderline. With
    # the other budgets at yes the cell could be YES or PARTLY, so it reads UNCLEAR
    rows = [evasion(0.0625, 0, 0, 90), evasion(0.125, 1, 5, 90), evasion(0.3125, 9, 20, 90)]
    a = valid_evasion(results(rows), CUTS)[0]
    assert [p["answer"] for p in a["per_eps"]] == ["yes", "yes", "borderline"]
    assert a["answer"] == "unclear" and a["leaning"] == "yes"
    assert compute_verdict(results(rows))["answers"][0]["answer"] == "unclear"  # the verdict takes the cell as it is
