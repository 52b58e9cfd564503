"""`fooled toy --quick` end to end, then its numbers: the attacks against the exact grid search on the trained models,
the seed-disagreement bookkeeping, the verdict lines, and the figures drawn from the run directory alone."""

import json

import numpy as np
import pytest
import torch

from fooled.analysis.toy_plots import draw_toy
from fooled.analysis.toy_report import toy_audit, toy_verdict
from fooled.cli import main
from fooled.study import toy_world as world
from fooled.study.toy import seed_spread, support_masks

FIGURES = ("toy_a_data", "toy_b_log_p", "toy_c_decisions", "toy_d_paths", "toy_e_fooling", "toy_f_seeds")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    assert main(["toy", "--quick", "--quiet", "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow  # runs `fooled toy --quick` once for the module (about 20 s of one core)
def test_the_run_writes_its_files_and_the_models_learn(toy_run):
    out, results = toy_run
    for name in ("results.json", "maps.npz", "points.npz", "report.md"):
        assert (out / name).stat().st_size > 0
    assert all((out / "figures" / f"{f}.png").exists() for f in FIGURES)
    assert {"mlp", "hybrid", "flow_seed0", "flow_seed1"} <= set(results["models"])
    assert all(row["test_acc"] > 0.9 for row in results["models"].values())
    assert "The mechanism in two dimensions" in (out / "report.md").read_text()


@pytest.mark.slow  # runs `fooled toy --quick` once for the module (about 20 s of one core)
def test_attacks_find_what_the_exact_search_finds_within_its_resolution(toy_run):
    _, results = toy_run
    rows = results["attacks"]
    assert len(rows) == 3 * 2 * 3  # models x norms x budgets
    for r in rows:
        where = f"{r['model']} {r['norm']} eps {r['eps']}"
        # where the grid finds an adversarial within eps minus its resolution, the package's attacks find one too, but for
        # at most one point in ten (one restart in the quick setting; the miss seen there is a sliver of another class at the
        # square's edge, where the flow's logit transform squeezes, that a gradient step does not enter); multitargeted
        # PGD alone, with its own random restarts that reach the islands of a wrong class off the data, within the same
        assert r["any_attack_missed"] <= max(1, r["n"] // 10), where
        assert r["pgd_missed"] <= max(1, r["n"] // 10), where
        assert r["aware_missed"] <= max(1, r["n"] // 10), where
        assert r["pgd_beyond_grid"] == 0, where  # a misclassified region wider than the grid spacing is never missed by it
        assert r["exact_evading"] <= r["exact_misclassified"], where
    for model in ("mlp", "flow", "hybrid"):  # the known answer grows with the budget
        exact = [r["exact_misclassified"] for r in rows if r["model"] == model and r["norm"] == "linf"]
        assert exact == sorted(exact) and exact[-1] > 0


def test_seed_spread_bookkeeping():
    # three seeds at four points: the first two points are "on the data" (spread 1), the last two off it (spread 2, 4)
    log_probs = np.array([[0.0, 5.0, 0.0, 10.0], [1.0, 6.0, 2.0, 14.0], [2.0, 7.0, 4.0, 18.0]])
    on, off = np.array([True, True, False, False]), np.array([False, False, True, True])
    s = seed_spread(log_probs, on, off)
    assert s["on_median"] == pytest.approx(1.0) and s["off_median"] == pytest.approx(3.0)
    assert s["ratio_median"] == pytest.approx(3.0) and s["off_p90"] == pytest.approx(3.8)
    assert (s["on_points"], s["off_points"], s["seeds"]) == (2, 2, 3)
    with pytest.raises(ValueError, match="two seeds"):
        seed_spread(log_probs[:1], on, off)


def test_support_masks_split_the_square_by_the_data_density():
    _, points = world.grid(41)
    data_log_p = world.log_density(world.sample(2000, torch.Generator().manual_seed(0))[0].view(-1, 2).numpy())
    on, off, _ = support_masks(world.log_density(points), data_log_p, 0.9, 0.999)
    assert not (on & off).any()
    centre, middle = np.argmin(((points - [0.25, 0.25]) ** 2).sum(1)), np.argmin(((points - [0.5, 0.5]) ** 2).sum(1))
    assert on[centre] and off[middle]


@pytest.mark.slow  # runs `fooled toy --quick` once for the module (about 20 s of one core)
def test_the_run_reports_spread_larger_off_the_data(toy_run):
    _, results = toy_run
    s = results["seed_spread"]
    assert s["off_median"] > s["on_median"] > 0


@pytest.mark.slow  # runs `fooled toy --quick` once for the module (about 20 s of one core)
def test_verdict_lines_come_from_the_numbers(toy_run):
    _, results = toy_run
    assert toy_verdict(results) == results["verdict"] and toy_audit(results) == results["audit"]
    changed = json.loads(json.dumps(results))
    for r in changed["attacks"]:
        r["aware_evading"] = 0.0
    lines = [v for v in toy_verdict(changed) if v["question"].startswith("low p(x) still flags")]
    assert lines and all(v["answer"] == "yes" for v in lines)


@pytest.mark.slow  # runs `fooled toy --quick` once for the module (about 20 s of one core)
def test_figures_redraw_from_the_run_directory_alone(toy_run):
    out, _ = toy_run
    paths = draw_toy(out)
    assert sorted(p.stem for p in paths if p.suffix == ".png") == sorted(FIGURES)
    assert main(["figures", str(out)]) == 0  # `fooled figures` knows a toy run directory


def test_audit_checks_fail_on_a_miss_beyond_the_slack():
    rows = [{"model": "mlp", "norm": norm, "eps": 0.1, "n": 40, "pgd_missed": missed, "any_attack_missed": 0,
             "aware_missed": 0} for norm, missed in (("linf", 1), ("l2", 2))]
    checks = toy_audit({"attacks": rows}, tolerance=0.01)
    pgd = {c["check"].rsplit("(", 1)[1]: c["passed"] for c in checks if c["check"].startswith("PGD")}
    assert pgd == {"linf)": True, "l2)": False}  # one miss of 40 points is allowed, two are not
    assert all(c["passed"] for c in checks if not c["check"].startswith("PGD")) and len(checks) == 6
