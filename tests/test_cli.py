import subprocess
import sys

import pytest


def fooled(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fooled.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("toml, message", [
    ("[atacks]\n", "unknown key 'atacks'; did you mean 'attacks'?"),
    ("[attacks]\nsteps = 'ten'\n", "attacks.steps: expected int"),
    ("[detect]\nfpr = 2.0\n", "detect.fpr must lie in (0, 1)"),
    ("[data]\nname = 'mnist'\n", "--data-root"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path, toml, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    proc = fooled("study", str(cfg), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unwritable_out_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = fooled("study", "--quick", "--out", str(blocker / "run"))
    assert proc.returncode == 2 and "cannot write to output directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_figures_and_report_of_a_missing_run_are_clear_errors(tmp_path):
    for cmd in ("figures", "report"):
        proc = fooled(cmd, str(tmp_path))
        assert proc.returncode == 2 and "results.json" in proc.stderr and "Traceback" not in proc.stderr


def test_figures_and_report_redraw_a_finished_run_without_models(quick_run, tmp_path):
    import shutil

    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("checkpoints", "stages", "figures", "report.md"))
    assert fooled("figures", str(copy)).returncode == 0
    assert (copy / "figures" / "detector_roc.png").exists()
    assert fooled("report", str(copy)).returncode == 0
    assert "## Verdict" in (copy / "report.md").read_text()
