import json
import math

import numpy as np
import pytest
import torch

import fooled
from fooled.analysis.report import render
from fooled.audit_prose import render as prose
from fooled.rundir import Key, read_npz
from fooled.study.stages import convergence_eps


def test_quick_study_writes_results(quick_run):
    out, proc = quick_run
    results = json.loads((out / "results.json").read_text())
    assert {"config", "config_hash", "versions", "models", "attacks", "verdict"} <= set(results)
    assert {"fooled", "torch", "normflows", "python"} <= set(results["versions"])
    cnn, flow = results["models"]["cnn"][0], results["models"]["flow"][0]
    assert cnn["test_acc"] > 0.8 and flow["test_acc"] > 0.5  # chance is 0.1, and --quick trains 8 epochs
    assert math.isfinite(flow["test_bpd"]) and 1.0 < flow["test_bpd"] < 5.0
    rows = results["attacks"]
    attacks = ("fgsm", "pgd", "pgd_l2", "adaptive_pgd", "noise_linf", "noise_l2")
    models = ("cnn", "cnn_adv", "flow", "hybrid", "logreg", "gaussian")
    assert {(r["target"], r["attack"]) for r in rows} == {(t, a) for t in models for a in attacks}
    assert {r["grid"] for r in rows} == {"continuous", "rounded"}
    assert {r["detector"] for r in rows if r["target"] in ("cnn", "cnn_adv", "logreg")} == {"flow"}
    assert all(r["detector"] == r["target"] for r in rows if r["target"] in ("flow", "hybrid", "gaussian"))
    for name in ("hybrid", "gaussian"):
        assert results["models"][name][0]["test_acc"] > 0.5 and 1.0 < results["models"][name][0]["test_bpd"] < 5.0
    for name in ("gmm", "kde"):
        assert 1.5 < results["models"][name][0]["test_bpd"] < 3.5
    baselines = {"max_softmax", "mahalanobis", "kernel_density", "mc_dropout", "off_grid", "gmm", "kde", "gaussian"}
    for r in rows:
        assert r["auroc"] is None or 0 <= r["auroc"] <= 1
        assert r["tpr_at_fpr"] is None or 0 <= r["tpr_at_fpr"] <= 1
        assert 0 <= r["adv_acc"] <= 1 and r["n_success"] <= r["n_correct"] <= r["n"]
        assert r["max_perturbation"] <= r["eps"] + 1e-6
        assert r["adaptive"] == (r["attack"] == "adaptive_pgd") and r["fpr"] == 0.05
        assert 0 <= r["evasion_rate"] <= 1 and r["n_evaded"] <= r["n_success"]
        assert set(r["detectors"]) == {"nll", "class_conditional", "typicality", "complexity"} | baselines
    aware = {(r["target"], r["attacked_detector"]) for r in rows if r["adaptive"]}
    assert {d for t, d in aware if t == "cnn"} == {"nll", "typicality"}  # --quick attacks two of the four detectors
    assert {d for t, d in aware if t == "logreg"} == {"nll"}
    assert {r["set"] for r in results["oracle"]} == {"adaptive_pgd", "fooling_gradient_unflagged", "fooling_evolution_unflagged"}
    assert all(r["original"] + r["changed"] + r["disagree"] == r["n"] for r in results["oracle"])
    exact = [r for r in results["audit"] if r["check"].startswith("PGD reaches the exact robust accuracy")]
    assert [r["target"] for r in exact] == ["logreg"] and exact[0]["passed"], exact  # MultiTargeted PGD is exact there
    converged = {r["target"]: r for r in results["audit"] if r["check"].startswith("converged:")}
    aware_checks = {(r["target"], r["check"].split(":")[0].split(" (")[0]) for r in results["audit"] if "detector-aware" in r["check"]}
    assert {t for t, _ in aware_checks} == {"cnn"}  # its own audit at the aware targets (--quick skips the known answer)
    # each budget also takes the smaller budgets' points: evasion of the attacked detector never falls as eps grows, and
    # the audit counts, per budget, the images that evade only through a smaller budget's point
    for key in aware:
        per_eps = sorted((r["seed"], r["eps"], r["detectors"][key[1]]["n_evaded"]) for r in rows
                         if r["adaptive"] and (r["target"], r["attacked_detector"]) == key and r["grid"] == "continuous")
        for seed in {p[0] for p in per_eps}:
            evaded = [p[2] for p in per_eps if p[0] == seed]
            assert evaded == sorted(evaded) and len(evaded) == len(results["config"]["attacks"]["eps"]), (key, seed, evaded)
    budget_checks = [r for r in results["audit"] if r["check"].startswith("detector-aware attack converged at every budget")]
    assert [r["target"] for r in budget_checks] == ["cnn"] * len(results["config"]["seeds"])
    for r in budget_checks:  # the numbers behind the prose, and the prose rendered from them
        assert r["kind"] == "aware_budgets" and r["detail"] == prose(r["kind"], r["numbers"])
        n, counts = r["numbers"]["n"], [p["rescued"] for p in r["numbers"]["per_eps"]]
        tol = results["config"]["audit"]["aware_tolerance"]
        assert len(counts) == len(results["config"]["attacks"]["eps"]) and counts[0] == 0 and r["passed"] == (max(counts) < tol * n)
    assert set(converged) == set(models)
    for t in models:  # the check and the curve at the budget where PGD leaves about half the clean accuracy
        eps = convergence_eps(rows, t)
        numbers = converged[t]["numbers"]
        assert numbers["eps"] == eps and converged[t]["detail"] == prose("doubling", numbers)
        n, missed = numbers["n"], numbers["missed"]
        assert converged[t]["passed"] == (missed < 0.01 * n)  # the default tolerance
        assert {c["eps"] for c in results["convergence"] if c["target"] == t} == {eps}
    assert {r["set"] for r in results["ood"]} >= {"natural patches", "uniform noise", "constant", "inverted", "blurred", "max-likelihood"}
    methods = ("gradient", "evolution", "gradient_unflagged", "evolution_unflagged")
    assert {(r["target"], r["method"]) for r in results["fooling"]} == {(t, m) for t in models for m in methods}
    assert all(0 <= r["success_rate"] <= 1 for r in results["fooling"] + results["cw"])
    assert {r["source"] for r in results["transfer"]} == set(models)
    # which loss fooled each successful PGD adversarial: every one counted once; none for FGSM, the controls or the rounded sets
    counted = [r for r in rows if "fooled_by" in r]
    assert {(r["attack"], r["grid"]) for r in counted} == {("pgd", "continuous"), ("pgd_l2", "continuous")}
    losses = results["config"]["attacks"]["losses"]
    assert "margin" in losses and "multitarget" in losses
    assert all(list(r["fooled_by"]) == losses and sum(r["fooled_by"].values()) == r["n_success"] for r in counted)
    assert any(r["fooled_by"]["margin"] + r["fooled_by"]["multitarget"] for r in counted)
    assert "**Which loss fooled the images.**" in render(results)
    pgd_cnn = {r["eps"]: r["adv_acc"] for r in rows if r["target"] == "cnn" and r["attack"] == "pgd" and r["grid"] == "continuous"}
    assert pgd_cnn[0.3125] < 0.1 < pgd_cnn[0.0625] + 0.5  # a strong budget breaks the CNN
    examples = read_npz(out / "examples.npz")
    for name in ("flow", "hybrid", "gaussian"):  # the samples figure: two draws of every class
        s = examples[str(Key(0, name, "samples", column="images"))]
        assert s.shape == (20, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    assert results["verdict"]["answers"], "the verdict must answer something"
    assert "report.md" in proc.stdout


def test_threshold_is_calibrated_on_validation_scores(quick_run):
    out, _ = quick_run
    results = json.loads((out / "results.json").read_text())
    scores = read_npz(out / "scores.npz")
    val = scores[str(Key(0, "flow", "clean_val"))]
    thr = results["attacks"][0]["threshold"]
    assert np.mean(val > thr) <= 0.05 and np.mean(val > thr) > 0.0
    assert thr == np.quantile(val, 0.95, method="higher")


def test_load_run_gives_config_data_and_trained_models(quick_run):
    out, _ = quick_run
    run = fooled.load_run(out)
    assert run.config.name == "digits-quick"
    flow = run.model("flow", seed=0)
    assert not flow.training and next(flow.parameters()).device.type == "cpu"
    test = run.data.test
    acc = (flow(test.x).argmax(1) == test.y).float().mean().item()
    assert acc == torch.tensor(run.results["models"]["flow"][0]["test_acc"]).item() or abs(acc - run.results["models"]["flow"][0]["test_acc"]) < 1e-6
    assert torch.isfinite(flow.log_prob(test.x)).all()


@pytest.mark.slow
def test_seeds_in_parallel_worker_processes_give_the_numbers_of_one_process(tmp_path):
    import dataclasses

    from fooled.config import StudyConfig, override, quick
    from fooled.study import run_study, silent

    cfg = override(quick(StudyConfig()), ['models.names=["cnn", "flow"]', 'attacks.names=["fgsm", "pgd"]', "attacks.adaptive=false",
                                          "attacks.cw=false", "attacks.transfer=false", "fooling.enabled=false", "ood.enabled=false",
                                          "audit.enabled=false", "models.density_baselines=false", "train.epochs=2", "attacks.max_examples=40"])
    cfg = dataclasses.replace(cfg, seeds=(0, 1))

    def numbers(jobs):
        r = run_study(cfg, tmp_path / f"jobs{jobs}", device="cpu", log=silent, figures=False, jobs=jobs)  # workers need a picklable log
        drop = {"seconds", "train_seconds"}
        return ({m: [{k: v for k, v in row.items() if k not in drop} for row in rows] for m, rows in r["models"].items()},
                [{k: v for k, v in row.items() if k not in drop} for row in r["attacks"]])

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each worker: the same float summation order
    try:
        serial = numbers(1)
    finally:
        torch.set_num_threads(threads)
    assert {row["seed"] for row in serial[1]} == {0, 1}
    assert numbers(2) == serial  # two forkserver workers, one intra-op thread each


def test_convergence_eps_is_where_pgd_leaves_half_the_clean_accuracy():
    def row(eps, acc, target="cnn", attack="pgd", grid="continuous"):
        return {"target": target, "attack": attack, "grid": grid, "eps": eps, "adv_acc": acc, "clean_acc": 0.9}

    rows = [row(0.05, 0.8), row(0.1, 0.5), row(0.2, 0.1), row(0.1, 0.45, attack="fgsm"), row(0.05, 0.45, grid="rounded"),
            row(0.05, 0.45, attack="adaptive_pgd"),
            row(0.05, 0.45, target="flow"), row(0.1, 0.0, target="flow")]
    assert convergence_eps(rows, "cnn") == 0.1
    assert convergence_eps(rows, "flow") == 0.05
    assert convergence_eps([row(0.05, 0.6), row(0.1, 0.3)], "cnn") == 0.05  # a tie: the smaller budget
    assert convergence_eps(rows, "logreg") is None


def test_detection_counts_only_successful_adversarials_by_hand():
    import numpy as np

    from fooled.study.stages import counts

    y = np.array([0, 1, 2, 3, 4, 5])
    clean_pred = np.array([0, 1, 2, 3, 0, 0])  # the last two are wrong before any attack
    pred = np.array([9, 9, 2, 9, 9, 5])  # images 0, 1, 3 fooled; 2 not; 4 stays wrong; 5 becomes right
    flags = np.array([True, False, True, True, True, False])
    c = counts(pred, y, clean_pred, flags)
    assert c["n_detected"] == 2 and c["tpr_at_fpr"] == 2 / 3  # of the 3 successful adversarials, 0 and 3 are flagged
    assert c["n_evaded"] == 1 and c["evasion_rate"] == 1 / 4  # of the 4 correct images, image 1 fooled and not flagged
    assert c["tpr_all"] == 4 / 6 and c["evasion_all"] == 1 / 6  # the all-image rates: image 4 counts as flagged, not evaded


def test_every_budget_has_a_control_and_detection_counts_match_the_saved_scores(quick_run):
    out, _ = quick_run
    results = json.loads((out / "results.json").read_text())
    scores = read_npz(out / "scores.npz")
    rows = results["attacks"]
    for target in results["config"]["models"]["names"]:
        for grid in ("continuous", "rounded"):
            linf = {r["eps"] for r in rows if r["target"] == target and r["attack"] == "noise_linf" and r["grid"] == grid}
            l2 = {r["eps"] for r in rows if r["target"] == target and r["attack"] == "noise_l2" and r["grid"] == grid}
            assert linf == set(results["config"]["attacks"]["eps"]) and l2 == set(results["config"]["attacks"]["l2_eps"])
    from fooled.rundir import row_key

    for r in [r for r in rows if r["attack"] in ("pgd", "adaptive_pgd")][:12]:
        success = scores[str(row_key(r, "success"))].astype(bool)
        nll = scores[str(row_key(r))]
        assert r["n_success"] == int(success.sum())
        assert r["n_detected"] == int((nll[success] > r["threshold"]).sum())  # flagged among the successful only
        for name, d in r["detectors"].items():
            assert 0 <= d["test_fpr"] <= 1 and (d["tpr_at_fpr"] is None or 0 <= d["tpr_at_fpr"] <= 1)
