"""An interrupted study resumes without redoing finished stages, and gives the numbers of an uninterrupted run."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest



def _numbers(results: dict) -> dict:
    """Everything in results.json except timings and paths."""
    drop = {"seconds", "train_seconds"}

    def clean(obj):
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items() if k not in drop}
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return obj

    return clean({k: v for k, v in results.items() if k not in ("seconds", "device")})


def _study(out, *extra):
    return [sys.executable, "-m", "fooled.cli", "study", "--quick", "--quiet", "--out", str(out), *extra]


def _interrupt(out, sig, stages_done):
    """Start a quick study, send `sig` once `stages_done` finished stages (checkpoints or attack stages) exist."""
    # SIGINT back to its default in the child: a shell starts background jobs (a CI script run with `&`) with SIGINT
    # ignored, and a Python started with SIGINT ignored never raises KeyboardInterrupt
    proc = subprocess.Popen(_study(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    stages = out / "stages"
    while time.monotonic() < deadline and len(list(stages.glob("*.npz")) + list((out / "checkpoints").glob("*.pt"))) < stages_done:
        time.sleep(0.1)
    proc.send_signal(sig)
    stderr = proc.communicate(timeout=120)[1]
    assert not (out / "results.json").exists(), "the study finished before it could be interrupted"
    assert not list(out.rglob("*.tmp")), "an interrupted write left a temporary file"
    return proc.returncode, stderr


@pytest.mark.slow
def test_ctrl_c_is_one_clear_line_and_exit_130(tmp_path):
    code, stderr = _interrupt(tmp_path / "run", signal.SIGINT, 1)
    assert code == 130 and "rerun the same command to resume" in stderr and "Traceback" not in stderr


def test_killed_study_resumes_to_the_same_numbers(quick_run, tmp_path):
    reference, _ = quick_run
    out = tmp_path / "run"
    stages = out / "stages"
    _interrupt(out, signal.SIGKILL, 10)
    done = {p.name: p.stat().st_mtime_ns for p in list(stages.glob("*.npz")) + list((out / "checkpoints").glob("*.pt"))}

    assert subprocess.run(_study(out, "--no-figures"), capture_output=True, timeout=600).returncode == 0
    for name, mtime in done.items():  # finished stages were loaded, not redone
        path = stages / name if name.endswith(".npz") else out / "checkpoints" / name
        assert path.stat().st_mtime_ns == mtime, f"{name} was recomputed"
    # deterministic: the resumed run gives exactly the numbers of the uninterrupted one
    assert _numbers(json.loads((out / "results.json").read_text())) == _numbers(json.loads((reference / "results.json").read_text()))


def test_rerun_redoes_only_what_changed_and_recomputes_damaged_files(quick_run, tmp_path):
    reference, _ = quick_run
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    stage = sorted((out / "stages").glob("cnn-pgd-eps0.125-*.npz"))[0]
    stage.write_bytes(stage.read_bytes()[:100])  # as a full disk or a killed copy would leave it
    checkpoint = sorted((out / "checkpoints").glob("logreg-*.pt"))[0]
    checkpoint.write_bytes(checkpoint.read_bytes()[:50])
    before = {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.npz")}
    cmd = [arg for arg in _study(out, "--set", "attacks.cw_steps=21", "--no-figures") if arg != "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    # the damaged files: each named in one line, and computed again
    damaged = [line for line in proc.stderr.splitlines() if stage.name in line]
    assert len(damaged) == 1 and "damaged" in damaged[0] and "recomputing" in damaged[0], damaged
    assert any(checkpoint.name in line and "retraining" in line for line in proc.stderr.splitlines())
    # one summary line per stage with its time; the other trained models are loaded, not retrained
    for line in ("attacks on cnn: 10 budgets", "transfer: ", "adaptive attacks: ", "Carlini-Wagner: 6 rows", "fooling images: ",
                 "likelihood failures: ", "audit: "):
        assert re.search(rf"^  seed 0: {re.escape(line)}.* in \d+\.\d s$", proc.stderr, flags=re.M), line
    assert "flow: loaded checkpoint" in proc.stderr and "flow: trained in" not in proc.stderr
    after = {p.name: p.stat().st_mtime_ns for p in (out / "stages").glob("*.npz")}
    new = sorted(set(after) - set(before))
    assert new and all("-cw-" in name for name in new), new
    assert all(after[name] == mtime for name, mtime in before.items() if name != stage.name)
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["attacks"]["cw_steps"] == 21
    # the recomputed stage gives the numbers it gave before it was damaged
    same = lambda rows: [r for r in rows if r["attack"] == "pgd" and r["target"] == "cnn"]  # noqa: E731
    assert _numbers({"a": same(results["attacks"])}) == _numbers({"a": same(json.loads((reference / "results.json").read_text())["attacks"])})


@pytest.mark.slow
def test_second_study_on_a_directory_being_written_stops_at_once_naming_the_first(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(_study(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = out / ".study.lock"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
            time.sleep(0.05)
        start = time.monotonic()
        second = subprocess.run(_study(out), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and time.monotonic() - start < 60
        assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert f"process {first.pid}" in second.stderr and "is being written by" in second.stderr
        assert first.poll() is None  # the first study was left alone
    finally:
        first.kill()
        first.wait()
