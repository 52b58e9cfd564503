"""Typed records: any row the study writes reads back and writes out unchanged; the selectors and budget rules."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.records import (ANY, AttackRow, AuditCheck, BudgetAnswer, DetectorRates, ModelRow, VerdictCell, attack_rows, budgets,
                            middle_budget, model_names, rows, shown_budgets, verdict_cells)
from fooled.stage_rows import committee_rows
from record_factory import committee_row

names = st.sampled_from(["cnn", "cnn_adv", "flow", "hybrid", "logreg", "gaussian"])
maybe_float = st.none() | st.floats(allow_nan=False, allow_infinity=False)
maybe_int = st.none() | st.integers(0, 10_000)
unknown = st.dictionaries(st.text("xyz_", min_size=1, max_size=6).map(lambda k: "new_" + k), st.integers() | st.text(max_size=5),
                          max_size=2)


@st.composite
def detector_rates(draw) -> dict:
    return {"auroc": draw(maybe_float), "n_detected": draw(maybe_int), "tpr_at_fpr": draw(maybe_float), "tpr_all": draw(maybe_float),
            "n_evaded": draw(maybe_int), "evasion_rate": draw(maybe_float), "evasion_all": draw(maybe_float),
            "test_fpr": draw(maybe_float)}


@st.composite
def attack_row(draw) -> dict:
    """A row as study/stages/scoring.py writes it, in its key order, with keys of a later version at the end."""
    nll = draw(detector_rates())
    row = {"seed": draw(st.integers(0, 9)), "target": draw(names), "attack": draw(st.sampled_from(["pgd", "fgsm", "adaptive_pgd", "noise_linf"])),
           "norm": draw(st.sampled_from(["linf", "l2"])), "eps": draw(st.floats(0, 1)), "adaptive": draw(st.booleans()),
           "attacked_detector": draw(st.none() | st.sampled_from(["nll", "typicality"])),
           "grid": draw(st.sampled_from(["continuous", "rounded"])), "detector": draw(names), "n": draw(st.integers(0, 500)),
           "clean_acc": draw(maybe_float), "adv_acc": draw(maybe_float), "n_correct": draw(maybe_int), "n_success": draw(maybe_int),
           **{k: v for k, v in nll.items() if k != "test_fpr"},
           "detectors": draw(st.dictionaries(st.sampled_from(["nll", "typicality", "complexity"]), detector_rates(), max_size=3)),
           "fpr": draw(maybe_float), "threshold": draw(maybe_float), "mean_bpd": draw(maybe_float), "success_mean_bpd": draw(maybe_float),
           "max_perturbation": draw(maybe_float), "seconds": draw(maybe_float)}
    fooled_by = draw(st.none() | st.dictionaries(st.sampled_from(["ce", "margin", "dlr"]), st.integers(0, 100), min_size=1))
    return {**row, **({} if fooled_by is None else {"fooled_by": fooled_by}), **draw(unknown)}


@settings(max_examples=60, deadline=None)
@given(attack_row())
def test_any_attack_row_round_trips_keys_and_order(row):
    back = AttackRow.from_dict(row).to_dict()
    assert back == row and list(back) == list(row)


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({"seed": st.integers(0, 9)}, optional={
    "test_acc": st.floats(0, 1), "train_seconds": st.floats(0, 100), "epochs": st.integers(1, 99), "best_epoch": st.integers(-1, 99),
    "best_val_loss": st.floats(-5, 5), "base": st.fixed_dictionaries({"covariance": st.just("per_class")}), "n_params": st.integers(1),
    "test_bpd": st.floats(0, 8), "chosen": st.fixed_dictionaries({"k": st.integers(1, 9)})}), unknown)
def test_any_model_row_round_trips(row, extra):
    assert ModelRow.from_dict({**row, **extra}).to_dict() == {**row, **extra}


@settings(max_examples=40, deadline=None)
@given(st.fixed_dictionaries({"seed": st.integers(0, 9), "check": st.text(max_size=20), "target": names, "passed": st.booleans(),
                              "detail": st.text(max_size=20)},
                             optional={"numbers": st.dictionaries(st.text(max_size=5), st.floats(allow_nan=False), max_size=3)}))
def test_any_audit_check_round_trips(row):
    check = AuditCheck.from_dict(row)
    assert check.to_dict() == row and check.text() == f"seed {row['seed']}: {row['detail']}"


INTERVAL = {"mean": 0.5, "lo": 0.4, "hi": 0.6, "n": 3}


@settings(max_examples=40, deadline=None)
@given(st.fixed_dictionaries({"question": st.text(max_size=20), "model": names, "criterion": st.sampled_from(["flagged", "control"]),
                              "answer": st.sampled_from(["yes", "no", "unclear"]), "leaning": st.none() | st.just("yes"),
                              "per_eps": st.lists(st.fixed_dictionaries({"eps": st.floats(0, 1), "value": st.just(INTERVAL),
                                                                         "answer": st.just("yes")}), max_size=3),
                              "value": st.just(INTERVAL), "eps": st.none() | st.floats(0, 1), "measure": st.text(max_size=9)},
                             optional={"grid": st.just("rounded"), "matched": st.just(True), "quoted_eps": st.floats(0, 1),
                                       "sets": st.lists(st.text(max_size=4)), "success": st.just(INTERVAL)}), unknown)
def test_any_verdict_cell_round_trips(cell, extra):
    assert VerdictCell.from_dict({**cell, **extra}).to_dict() == {**cell, **extra}


def test_an_old_row_reads_with_its_missing_keys_as_none():
    row = AttackRow.from_dict({"seed": 0, "target": "cnn", "attack": "pgd", "eps": 0.1})
    assert row.grid is None and row.fooled_by is None and row.detectors == {} and row.extra == {}
    assert "fooled_by" not in row.to_dict() and row.to_dict()["grid"] is None


def test_detectors_are_typed():
    row = AttackRow.from_dict({"attack": "noise_linf", "detectors": {"nll": {"auroc": 0.9, "tpr_all": 0.2}}})
    assert row.detectors["nll"] == DetectorRates(auroc=0.9, tpr_all=0.2)
    assert row.is_control and row.flag_rate == "tpr_all"


def _results(*made: AttackRow) -> dict:
    return {"attacks": [r.to_dict() for r in made]}


def test_rows_selects_on_every_field_given_and_the_continuous_grid_by_default():
    made = [AttackRow(seed=s, target=t, attack=a, eps=e, grid=g, norm="linf", attacked_detector=d)
            for s in (0, 1) for t in ("cnn", "flow") for a in ("pgd", "adaptive_pgd") for e in (0.1, 0.2)
            for g in ("continuous", "rounded") for d in ((None,) if a == "pgd" else ("nll", "typicality"))]
    res = _results(*made)
    picked = rows(res, target="cnn", attack="pgd", seed=1)
    assert len(picked) == 2 and {r.grid for r in picked} == {"continuous"} and all(isinstance(r, AttackRow) for r in picked)
    assert len(rows(res, target="cnn", attack="pgd", seed=1, grid=ANY)) == 4
    assert len(rows(res, target="flow", attack="adaptive_pgd", eps=0.1, attacked_detector="nll")) == 2
    assert {r.attacked_detector for r in rows(res, attack=("pgd", "adaptive_pgd"), attacked_detector=(None, "nll"))} == {None, "nll"}
    assert rows(res, target="logreg") == []
    assert [r.to_dict() for r in attack_rows(res)] == res["attacks"]


def test_budget_rules():
    made = [AttackRow(eps=e, norm=n) for e, n in ((0.0, "linf"), (0.3, "linf"), (0.1, "linf"), (0.2, "linf"), (2.0, "l2"), (0.1, "linf"))]
    assert budgets(made) == [0.0, 0.1, 0.2, 0.3, 2.0]
    assert budgets(made, linf=True, positive=True) == [0.1, 0.2, 0.3]
    assert middle_budget([0.1, 0.2, 0.3]) == 0.2 and middle_budget([0.4, 0.1, 0.2, 0.3]) == 0.2  # the lower of two middles
    assert shown_budgets([0.3, 0.1, 0.2, 0.4]) == [0.2, 0.4] and shown_budgets([0.5]) == [0.5]


def test_verdict_cells_read_the_verdict():
    cell = {"question": "Does low p(x) flag PGD", "model": "cnn", "criterion": "control", "answer": "yes", "leaning": None,
            "per_eps": [{"eps": 0.1, "value": INTERVAL, "answer": "yes", "control": INTERVAL}], "value": INTERVAL, "eps": 0.1,
            "measure": "detection rate", "grid": "rounded", "matched": True}
    (read,) = verdict_cells({"verdict": {"answers": [cell]}})
    assert read.matched and read.grid == "rounded" and read.budget(0.1)["control"] == INTERVAL and read.budget(0.2) is None
    assert not read.is_fooling and read.to_dict() == cell


def test_stage_rows_round_trip_keys_and_order_and_select_by_kind():
    from fooled.stage_rows import CWRow, EvasionCounts, FoolingRow, HonestRow, cw_rows, fooling_rows, honest_rows

    evasion = {"seed": 1, "target": "cnn", "kind": "evasion", "attacked": "nll", "grid": "on_grid", "eps": 0.125, "seconds": 2.0,
               "n": 16, "n_correct": 15, "n_success": 12, "n_oracle_kept": 9, "detectors": {"nll": {"n_evaded": 7, "n_valid": 5}}}
    control = {"seed": 0, "target": "cnn", "kind": "matched_control", "attack": "pgd", "grid": "rounded", "eps": 0.125,
               "detector": "flow", "n": 12, "flagged_attack": 12, "flagged_sign_noise": 11, "flagged_shuffled": 12, "flagged_background": 3}
    cw = {"seed": 0, "target": "cnn", "attack": "cw_l2", "detector": "flow", "n": 16, "success_rate": 0.75, "median_l2": 1.2,
          "auroc": 0.8, "tpr_at_fpr": 0.5, "mean_bpd": 2.5, "seconds": 3.0}
    fooling = {"seed": 0, "target": "cnn", "method": "gradient", "constrained": True, "class": 3, "n": 1, "success_rate": 1.0,
               "unflagged_success_rate": 0.0, "mean_bpd": 9.0}
    results = {"honest": [evasion, control], "cw": [cw], "fooling": [fooling]}
    for cls, row in ((HonestRow, evasion), (HonestRow, control), (CWRow, cw)):
        assert list(cls.from_dict(row).to_dict().items()) == list(row.items())  # only the keys the stage wrote, in its order
    assert FoolingRow.from_dict(fooling).to_dict() == fooling  # "class" is no field name: kept in `extra`, written last
    (got,) = honest_rows(results, kind="evasion", grid="on_grid")
    assert got.detectors["nll"] == EvasionCounts(n_evaded=7, n_valid=5) and got.flagged_attack is None
    assert [r.kind for r in honest_rows(results, target="cnn")] == ["matched_control", "evasion"]  # by seed
    assert cw_rows(results, "cnn")[0].n_success == 12 and not cw_rows(results, "flow")
    assert fooling_rows(results)[0].extra == {"class": 3, "mean_bpd": 9.0}


def test_a_verdict_cells_budgets_read_as_typed_answers():
    borderline = {"eps": 0.2, "value": INTERVAL, "controls": {}, "answer": "borderline", "could": ["yes", "no"], "leaning": "yes"}
    cell = VerdictCell(per_eps=[{"eps": 0.1, "value": INTERVAL, "answer": "yes", "control": INTERVAL}, borderline])
    first, second = cell.per_budget
    assert first == BudgetAnswer(eps=0.1, value=INTERVAL, answer="yes", control=INTERVAL) and first.could is None
    assert second.could == ["yes", "no"] and second.leaning == "yes" and second.extra == {"controls": {}}
    assert second.to_dict() == borderline and "control" not in second.to_dict()


def test_committee_rows_read_back_through_json_in_the_stages_key_order():
    made = [committee_row(0), committee_row(1, agreement=0.7, acc={"svc": 0.9, "robust_cnn_adv": 0.8})]
    results = json.loads(json.dumps({"committee": [r.to_dict() for r in made]}))
    assert committee_rows(results) == made and committee_rows(results)[1].members == ["svc", "robust_cnn_adv"]
    assert list(results["committee"][0]) == ["seed", "members", "chosen", "robust_member", "n_fit", "test_acc", "self_agreement",
                                             "majority_acc", "seconds"]  # as study/stages/honest_oracle.py writes it
    assert committee_rows({}) == [] and committee_rows({"committee": None}) == []


def test_nested_rows_may_be_absent():
    assert AttackRow.from_dict({"detectors": None}).to_dict()["detectors"] is None


def test_model_names_keep_the_configs_order():
    results = {"config": {"models": {"names": ["cnn", "flow", "logreg"]}}}
    assert model_names(results) == ["cnn", "flow", "logreg"]
    assert model_names(results, among={"logreg", "cnn", "mlp"}) == ["cnn", "logreg"] and model_names(results, among=[]) == []


def test_ood_and_oracle_rows_round_trip_in_the_stages_key_order_and_select():
    from fooled.stage_rows import OODRow, OracleRow, SetDetection, ood_rows, oracle_rows

    ood = {"set": "constant", "n": 20, "mean_bpd": 0.4, "test_mean_bpd": 2.1, "frac_in_distribution": 1.0, "auroc": 0.1,
           "higher_likelihood_than_test": 1.0, "seed": 1, "model": "flow", "detectors": {"nll": {"auroc": 0.1, "tpr_at_fpr": 0.0}}}
    other = {**ood, "seed": 0, "model": "gaussian"}
    oracle = {"seed": 0, "target": "cnn", "set": "adaptive_pgd", "eps": 0.125, "n": 9, "members": 3, "original": 6,
              "original_rate": 6 / 9, "changed": 2, "changed_rate": 2 / 9, "disagree": 1, "disagree_rate": 1 / 9}
    results = json.loads(json.dumps({"ood": [ood, other], "oracle": [oracle]}))
    for cls, row in ((OODRow, ood), (OracleRow, oracle)):
        assert list(cls.from_dict(row).to_dict().items()) == list(row.items())  # only the keys the stage wrote, in its order
    (flow,) = ood_rows(results, model="flow")
    assert flow.detectors["nll"] == SetDetection(auroc=0.1, tpr_at_fpr=0.0) and flow.higher_likelihood_than_test == 1.0
    assert [r.model for r in ood_rows(results, seed=0)] == ["gaussian"] and ood_rows({}) == []
    assert oracle_rows(results)[0].changed == 2 and oracle_rows({"oracle": None}) == []
