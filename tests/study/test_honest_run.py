"""The quick study under one threat model: its oracle, valid evasion, combined defence and matched controls."""

import json

MODELS = ("cnn", "cnn_adv", "flow", "hybrid", "logreg", "gaussian")


def test_quick_study_reports_one_threat_model(quick_run):
    out, _ = quick_run
    results = json.loads((out / "results.json").read_text())
    committee = results["committee"]
    assert all(c["members"][-1] == c["robust_member"] == "robust_cnn_adv" and c["n_fit"] > 100 for c in committee)
    assert all(0.5 < c["self_agreement"] <= 1 and c["majority_acc"] > 0.8 for c in committee)
    rows = results["honest"]
    evasion = [r for r in rows if r["kind"] == "evasion"]
    assert {(r["target"], r["grid"]) for r in evasion if r["attacked"] == "nll"} == {(t, g) for t in MODELS for g in ("on_grid", "off_grid")}
    assert {r["target"] for r in evasion if r["attacked"] == "combined"} == {"cnn"}  # the aware targets of --quick
    for r in evasion:
        assert r["n_oracle_kept"] <= r["n_success"] <= r["n_correct"] <= r["n"]
        for d in r["detectors"].values():
            assert d["n_valid"] <= d["n_evaded"] <= r["n_success"]
        if r["grid"] == "on_grid":
            assert r["detectors"]["off_grid"]["n_evaded"] == r["n_success"]  # valid images: the off-grid detector flags none
    for r in (r for r in rows if r["kind"] == "defence"):
        assert r["val_fpr"] <= 0.05 and r["member_rate"] < 0.05 and set(r["members"]) >= {"nll", "label_agreement", "off_grid"}
    for r in (r for r in rows if r["kind"] == "matched_control"):
        assert max(r["flagged_attack"], r["flagged_sign_noise"], r["flagged_shuffled"], r["flagged_background"]) <= r["n"]
    verdict = {(a["criterion"], a.get("grid"), a["model"]): a for a in results["verdict"]["answers"]}
    assert all(verdict[("evasion", "on_grid", t)]["quoted_eps"] in verdict[("evasion", "on_grid", t)]["counted_eps"] for t in MODELS)
    assert all(verdict[("control", "rounded", t)]["matched"] for t in MODELS)
    assert ("combined", "on_grid", "cnn") in verdict
