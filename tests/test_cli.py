import subprocess
import sys

import pytest

from fooled.analysis.answer_tables import label_of


def fooled(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fooled.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("toml, message", [
    ("[atacks]\n", "unknown key 'atacks'; did you mean 'attacks'?"),
    ("[attacks]\nsteps = 'ten'\n", "attacks.steps: expected int"),
    ("[detect]\nfpr = 2.0\n", "detect.fpr must lie in (0, 1)"),
    ("[data]\nname = 'mnist'\n", "--set data.root=DIR"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path, cli_error, toml, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    assert message in cli_error("study", cfg, "--out", tmp_path / "run")


@pytest.mark.slow
def test_unwritable_out_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = fooled("study", "--quick", "--out", str(blocker / "run"))
    assert proc.returncode == 2 and "cannot write to output directory" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_figures_report_and_ablate_of_a_missing_run_are_clear_errors(tmp_path, cli_error):
    for cmd in ("figures", "report", "ablate"):
        assert "results.json" in cli_error(cmd, tmp_path)


def test_figures_and_report_redraw_a_finished_run_without_models(quick_run, tmp_path):
    import shutil

    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("checkpoints", "stages", "figures", "report.md"))
    assert fooled("figures", str(copy)).returncode == 0
    for name in ("headline", "accuracy_vs_eps", "detector_roc", "transfer", "threshold_ablation", "log_prob_hist", "likelihood_failures",
                 "examples", "fooling", "ood_examples", "convergence", "samples"):
        assert (copy / "figures" / f"{name}.png").stat().st_size > 10_000, name
        assert (copy / "figures" / f"{name}.pdf").exists(), name
    assert fooled("report", str(copy)).returncode == 0
    report = (copy / "report.md").read_text()
    results = __import__("json").loads((copy / "results.json").read_text())
    assert "## Verdict" in report and "## Gradient-masking audit" in report and results["config_hash"] in report
    for answer in results["verdict"]["answers"]:  # each question as a table (or a line), a row per model
        assert f"**{label_of(answer)}**" in report
    for link in ("attacks.csv", "detectors.csv", "figures/headline.png"):
        assert link in report and (copy / link).exists()
    drawn = {png.name for png in (copy / "figures").glob("*.png")}
    assert {name for name in drawn if f"](figures/{name})" not in report} == set()  # every figure drawn is shown


def test_ablate_recomputes_detection_rates_from_saved_scores(quick_run, tmp_path):
    import shutil

    import pandas as pd

    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("checkpoints", "stages"))
    proc = fooled("ablate", str(copy), "--fpr", "0.01", "0.05", "0.2")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(copy / "ablation.csv")
    assert sorted(table["fpr"].unique()) == [0.01, 0.05, 0.2]
    results = __import__("json").loads((copy / "results.json").read_text())
    at5 = table[(table["fpr"] == 0.05) & (table["detector"] == "nll")]
    for r in results["attacks"]:  # the 5% column reproduces the study's own detection rates
        row = at5[(at5["seed"] == r["seed"]) & (at5["target"] == r["target"]) & (at5["attack"] == r["attack"]) & (at5["eps"] == r["eps"])
                  & (at5["grid"] == r["grid"]) & (at5["attacked_detector"] == (r["attacked_detector"] or "-"))]
        assert len(row) == 1
        expected = r["tpr_all"] if r["attack"].startswith("noise_") else r["tpr_at_fpr"]
        if expected is None:  # no successful adversarial to count
            assert pd.isna(row["tpr"].iloc[0])
        else:
            assert abs(float(row["tpr"].iloc[0]) - expected) < 1e-9
    for _, group in table.dropna(subset=["tpr"]).groupby(["seed", "target", "attack", "eps", "grid", "attacked_detector", "detector"]):
        assert group.sort_values("fpr")["tpr"].is_monotonic_increasing  # detection grows with the FPR
    assert (copy / "figures" / "threshold_ablation.png").exists()
    assert fooled("ablate", str(copy), "--fpr", "1.5").returncode == 2


def test_version_prints_the_package_version(capsys):
    from fooled._version import __version__
    from fooled.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"fooled {__version__}"


@pytest.mark.parametrize("flags, quiet, figures", [([], False, True), (["--quiet", "--no-figures"], True, False)])
def test_tradeoff_quiet_and_no_figures_reach_run_tradeoff(tmp_path, monkeypatch, capsys, flags, quiet, figures):
    import fooled.study.tradeoff
    from fooled.cli import main
    from fooled.study import silent, stderr_log

    calls = []

    def fake(cfg, out, **kwargs):
        calls.append((cfg, out, kwargs))
        return {"chosen": {}, "configured": {}, "scale_bound": None}

    monkeypatch.setattr(fooled.study.tradeoff, "run_tradeoff", fake)
    assert main(["tradeoff", "--quick", "--out", str(tmp_path / "t"), "--device", "cpu", *flags]) == 0
    (cfg, out, kwargs), = calls
    assert cfg.name.endswith("-quick") and out == tmp_path / "t" and kwargs["device"] == "cpu"
    assert kwargs["figures"] is figures and kwargs["log"] is (silent if quiet else stderr_log)
    assert ("figure:" in capsys.readouterr().out) is figures
