import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fooled.cli import main
from fooled.config import load_config
from fooled.errors import ConfigError
from fooled.study.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = ROOT / "experiments" / "sweeps"
# digits_small --quick, shrunk further so that each cell takes seconds
TINY = ["--quick", "--no-cell-figures", "--set", "data.limit=300", "--set", "train.epochs=4", "--set", "attacks.max_examples=30",
        "--set", "attacks.eps=[0.1, 0.3]", "--set", "attacks.l2_eps=[1.0]"]
NUMBERS = ["clean_acc", "adv_acc", "auroc", "tpr_at_fpr", "threshold", "evasion_rate", "mean_bpd", "max_perturbation"]


def sweep(*args):
    return subprocess.run([sys.executable, "-m", "fooled.cli", "sweep", *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def local_sweep(tmp_path_factory):
    """digits_small with the local engine, run once for the tests below (in this process: torch is imported already)."""
    out = tmp_path_factory.mktemp("sweep") / "local"
    assert main(["sweep", str(SWEEPS / "digits_small.toml"), *TINY, "--out", str(out)]) == 0
    return out


def table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "sweep.csv").sort_values(["cell", "seed", "target", "attack", "eps"]).reset_index(drop=True)


@pytest.mark.slow
def test_local_sweep_runs_each_cell_as_a_study_and_gathers_them(local_sweep):
    manifest = json.loads((local_sweep / "sweep.json").read_text())
    cells = manifest["cells"]
    assert [c["axes"]["detect.fpr"] for c in cells] == [0.01, 0.05] and {c["status"] for c in cells} == {"done"}
    df = table(local_sweep)
    for c in cells:
        results = json.loads((local_sweep / c["dir"] / "results.json").read_text())
        assert c["name"] == f"fpr{c['axes']['detect.fpr']:g}-{results['config_hash']}"
        assert results["config"]["detect"]["fpr"] == c["axes"]["detect.fpr"] and results["config"]["attacks"]["max_examples"] == 30
        rows = df[df["cell"] == c["name"]]
        assert len(rows) == len(results["attacks"]) and (rows["fpr"] == c["axes"]["detect.fpr"]).all()
        assert (rows["detect.fpr"] == c["axes"]["detect.fpr"]).all() and (rows["dataset"] == "digits").all()
        key = lambda r: (r["seed"], r["target"], r["attack"], r["eps"], r["grid"], r["attacked_detector"] or "-")  # noqa: E731
        expected = sorted(results["attacks"], key=key)
        got = sorted(rows.to_dict("records"), key=lambda r: key({**r, "attacked_detector": r["attacked_detector"]
                                                                 if isinstance(r["attacked_detector"], str) else None}))
        assert [r["auroc"] for r in got] == pytest.approx([r["auroc"] if r["auroc"] is not None else float("nan") for r in expected],
                                                         nan_ok=True)
    # the threshold moves with the calibration FPR; AUROC does not depend on it (as long as the same images are counted)
    index = ["target", "attack", "eps", "grid", "attacked_detector"]
    lo, hi = (df[df["fpr"] == f].fillna({"attacked_detector": "-"}).set_index(index).sort_index() for f in (0.01, 0.05))
    assert (lo["threshold"] >= hi["threshold"]).all()
    assert {"adaptive_pgd", "pgd"} <= set(df["attack"])
    pgd = df[df["attack"].isin(["pgd", "pgd_l2"]) & (df["grid"] == "continuous")]  # which loss fooled each image: a column per loss
    assert (pgd[[f"fooled_by_{loss}" for loss in ("ce", "margin", "multitarget")]].sum(axis=1) == pgd["n_success"]).all()
    assert json.loads((local_sweep / "failures.json").read_text()) == []
    for name in ("sweep_auroc_vs_eps", "sweep_adaptive_evasion"):
        assert (local_sweep / "figures" / f"{name}.png").stat().st_size > 10_000 and (local_sweep / "figures" / f"{name}.pdf").exists()


@pytest.mark.slow
def test_rerun_skips_finished_cells_and_figures_redraw(local_sweep, capsys):
    results = sorted((local_sweep / "cells").glob("*/results.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    before = table(local_sweep)
    assert main(["sweep", str(SWEEPS / "digits_small.toml"), *TINY, "--out", str(local_sweep)]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped (finished)") == 2 and "0 of 2 cells to run" in err
    assert [p.stat().st_mtime_ns for p in results] == stamps
    pd.testing.assert_frame_equal(table(local_sweep), before)
    assert main(["figures", str(local_sweep)]) == 0
    assert "sweep_auroc_vs_eps.png" in capsys.readouterr().out


@pytest.mark.slow
def test_ray_engine_gives_the_same_table(local_sweep, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]'); CI installs it")
    proc = sweep(SWEEPS / "digits_small.toml", *TINY, "--engine", "ray", "--jobs", "2", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted 2 cells to Ray" in proc.stderr
    local, ray = table(local_sweep), table(tmp_path)
    assert ray["cell"].tolist() == local["cell"].tolist()  # same configs, same hashes, same run directory names
    pd.testing.assert_frame_equal(ray[NUMBERS], local[NUMBERS], check_exact=False, rtol=1e-9)


def test_failed_cell_is_reported_the_others_finish_and_a_rerun_retries_only_it(tmp_path, capsys):
    spec = tmp_path / "mixed.toml"
    spec.write_text("""
[set]
"data.limit" = 100
"train.epochs" = 2
"attacks.names" = ["fgsm"]
"attacks.eps" = [0.1]
"attacks.max_examples" = 20
"attacks.adaptive" = false
"attacks.transfer" = false
"attacks.cw" = false
"fooling.enabled" = false
"ood.enabled" = false
"audit.enabled" = false

[axes]
"data.name" = ["digits", "mnist"]
""")
    out = tmp_path / "out"
    args = ["sweep", str(spec), "--quick", "--no-cell-figures", "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if "failed:" in line]
    assert len(failed) == 1 and "cell mnist-" in failed[0] and "needs a data directory" in failed[0]
    failures = json.loads((out / "failures.json").read_text())
    assert [f["axes"] for f in failures] == [{"data.name": "mnist"}] and "needs a data directory" in failures[0]["error"]
    assert "traceback" not in failures[0]  # a user error, not a bug: its message is enough
    digits = next((out / "cells").glob("digits-*/results.json"))
    assert set(table(out)["dataset"]) == {"digits"}
    stamp = digits.stat().st_mtime_ns
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "1 of 2 cells to run" in err and "digits-" in err and "skipped (finished)" in err
    assert digits.stat().st_mtime_ns == stamp and len(json.loads((out / "failures.json").read_text())) == 1


@pytest.mark.parametrize("text, message", [
    ("[axis]\n'detect.fpr' = [0.01]\n", "unknown key 'axis'; did you mean 'axes'?"),
    ("[axes]\n'detect.fp' = [0.01, 0.05]\n", "unknown key 'detect.fp'; did you mean 'detect.fpr'?"),
    ("[axes]\ndetect.fpr = [0.01, 2.0]\n", "detect.fpr must lie in (0, 1)"),
    ("[set]\n'attacks.stepz' = 3\n[axes]\nseeds = [[0], [1]]\n", "did you mean 'attacks.steps'?"),
    ("[axes]\n'detect.fpr' = 0.05\n", "axis 'detect.fpr' must be a non-empty list"),
    ("name = 'x'\n", "[axes] needs at least one axis"),
    ("base = 'missing.toml'\n[axes]\nseeds = [[0]]\n", "config file not found"),
    ("[axes]\nseeds = [[0], [0]]\n", "have the same config"),
    ("[axes\n", "invalid TOML"),
])
def test_bad_sweep_file_is_one_line_and_exit_2(tmp_path, cli_error, text, message):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    assert message in cli_error("sweep", spec, "--out", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # validated before anything ran


def test_ray_engine_without_ray_says_how_to_install_it(tmp_path, cli_error, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert 'pip install -e ".[ray]"' in cli_error("sweep", SWEEPS / "digits_small.toml", "--engine", "ray", "--out", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_quick_cells_keep_what_the_sweep_file_sets_and_base_can_be_an_axis(tmp_path):
    (tmp_path / "a.toml").write_text("[detect]\nfpr = 0.02\n")
    (tmp_path / "b.toml").write_text("[detect]\nfpr = 0.03\n")
    spec = tmp_path / "s.toml"
    spec.write_text("[set]\n'attacks.max_examples' = 7\n[axes]\nbase = ['a.toml', 'b.toml']\nseeds = [[0], [1, 2]]\n")
    s = load_sweep(spec, ["attacks.steps=3"], quick_cells=True)
    assert [c.name.rsplit("-", 1)[0] for c in s.cells] == ["a_seeds0", "a_seeds1,2", "b_seeds0", "b_seeds1,2"]
    assert [c.config.detect.fpr for c in s.cells] == [0.02, 0.02, 0.03, 0.03]
    assert [c.config.seeds for c in s.cells] == [(0,), (1, 2), (0,), (1, 2)]  # the axis wins over --quick's one seed
    assert {(c.config.attacks.max_examples, c.config.attacks.steps, c.config.models.flow.blocks) for c in s.cells} == {(7, 3, 2)}


def test_mnist_family_sweep_builds_nine_cells():
    bases = [ROOT / "experiments" / f for f in ("mnist.toml", "fashion_mnist.toml", "cifar10.toml")]
    if not all(p.exists() for p in bases):
        pytest.skip("experiments/mnist.toml, fashion_mnist.toml or cifar10.toml not written yet")
    for p in bases:  # another file's bug is not the sweep's: check the sweep only over bases that load alone
        try:
            load_config(p)
        except ConfigError as e:
            pytest.skip(f"base experiment {p.name} does not load: {e}")
    s = load_sweep(SWEEPS / "mnist_family.toml", ["data.root=/nowhere"])
    assert len(s.cells) == 9 and {c.config.data.name for c in s.cells} == {"mnist", "fashion-mnist", "cifar10"}
    assert {c.config.data.root for c in s.cells} == {"/nowhere"}
