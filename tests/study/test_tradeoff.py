import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from fooled.cli import main
from fooled.config import StudyConfig, quick
from fooled.errors import FooledError
from fooled.analysis.tradeoff import choose, cost_of_classification
from fooled.study.tradeoff import run_tradeoff


def _row(seed, value, val_acc, val_bpd, test_acc, test_bpd):
    return {"seed": seed, "model": "flow", "knob": "models.flow.mean_norm", "value": value, "val_acc": val_acc,
            "val_bpd": val_bpd, "test_acc": test_acc, "test_bpd": test_bpd}


def test_choice_uses_validation_only_best_accuracy_then_fewest_bits():
    table = pd.DataFrame([
        _row(0, 0.0, 0.40, 2.20, 0.40, 2.20),
        _row(0, 6.0, 0.970, 2.25, 0.99, 2.21),  # within half a point of the best validation accuracy, fewer bits
        _row(0, 12.0, 0.974, 2.30, 0.90, 2.40),
        _row(0, 20.0, 0.960, 2.40, 0.99, 2.10),  # best on test: must not matter
    ])
    assert choose(table)["flow"]["value"] == 6.0
    assert choose(table, tolerance=0.0)["flow"]["value"] == 12.0
    cost = cost_of_classification(table)["flow"]
    assert cost["6"]["extra_bpd"] == pytest.approx(0.01) and cost["20"]["test_acc"] == 0.99


def test_tradeoff_trains_each_value_and_writes_table_choice_and_figure(tmp_path):
    cfg = quick(StudyConfig())
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2))
    knobs = {"flow": ("models.flow.mean_norm", (0.0, 12.0)), "hybrid": ("models.hybrid.lam", (0.0, 64.0))}
    summary = run_tradeoff(cfg, tmp_path, device="cpu", log=lambda m: None, jobs=1, knobs=knobs)
    table = pd.read_csv(tmp_path / "tradeoff.csv")
    assert len(table) == 6 and set(table["model"]) == {"flow", "hybrid"}  # 2 values per head, and the flow with and without its bound
    assert table["val_bpd"].between(1, 6).all() and table["test_acc"].between(0, 1).all()
    # the class term buys accuracy: an unconditional flow (mean norm 0) or hybrid (lam 0) classifies worse
    for name in ("flow", "hybrid"):
        rows = table[table["model"] == name].set_index("value")
        assert rows["val_acc"].iloc[-1] > rows["val_acc"].iloc[0]
    # mean norm 0 is an unconditional flow: every class has the same p(x, k), so it classifies at chance (first class)
    assert table.query("model == 'flow' and value == 0.0")["val_acc"].iloc[0] < 0.2
    assert summary["chosen"]["flow"]["value"] in (0.0, 12.0) and summary["configured"] == {"flow": 12.0, "hybrid": 64.0}
    assert json.loads((tmp_path / "tradeoff.json").read_text())["chosen"] == summary["chosen"]
    assert (tmp_path / "figures" / "tradeoff.png").stat().st_size > 10_000
    (tmp_path / "figures" / "tradeoff.png").unlink()  # `fooled figures` redraws it from the table alone
    assert main(["figures", str(tmp_path)]) == 0 and (tmp_path / "figures" / "tradeoff.png").stat().st_size > 10_000
    bound = summary["scale_bound"]
    assert bound["bound"] == 2.0 and bound["extra_bpd"] == pytest.approx(bound["bounded_bpd"] - bound["unbounded_bpd"])
    # the bounded flow is the knob's diagonal-base flow of mean norm 12 (same checkpoint, though the configured flow starts at
    # the Gaussian): 5 models trained, and a rerun loads them
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 5


def test_tradeoff_needs_a_density_head_and_says_which(tmp_path):
    cfg = dataclasses.replace(StudyConfig(), models=dataclasses.replace(StudyConfig().models, names=("cnn", "logreg")))
    with pytest.raises(FooledError, match="'flow', 'hybrid'"):
        run_tradeoff(cfg, tmp_path, device="cpu")


def test_report_says_what_classification_costs_when_given_the_configs_tradeoff(quick_run, tmp_path):
    import shutil

    from fooled.analysis.report import write_report
    from fooled.analysis.tradeoff import describe
    from fooled.rundir import write_json

    out, _ = quick_run
    results = json.loads((out / "results.json").read_text())
    run = tmp_path / results["config"]["name"]
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("checkpoints", "stages"))
    table = pd.DataFrame([_row(0, 0.0, 0.40, 2.20, 0.41, 2.21), _row(0, 12.0, 0.97, 2.28, 0.975, 2.29)])
    summary = {"config_hash": results["config_hash"], "seeds": [0], "chosen": choose(table), "cost": cost_of_classification(table),
               "configured": {"flow": 12.0}, "scale_bound": None}
    lines = describe(summary)
    assert len(lines) == 1 and "+0.080 bits/dim" in lines[0] and "97.5 %" in lines[0] and "Validation chooses the same value" in lines[0]
    tradeoff = tmp_path / f"{run.name}-tradeoff"
    write_json(tradeoff / "tradeoff.json", summary)
    assert lines[0] in write_report(run, tradeoff).read_text()
    assert "Run `fooled tradeoff`" in write_report(run).read_text()  # none given: none cited
    write_json(tradeoff / "tradeoff.json", {**summary, "config_hash": "another"})
    with pytest.raises(FooledError, match="made for config another"):  # a trade-off made for another config is refused
        write_report(run, tradeoff)


def test_glow_configs_vary_the_glow_flows_own_mean_norm_and_bound():
    from fooled.config import load_config
    from fooled.study.tradeoff import BOUND_KEY, for_flow_kind

    glow = load_config(Path(__file__).parents[2] / "experiments" / "mnist.toml")
    assert glow.models.flow.kind == "glow"
    assert for_flow_kind(glow, "models.flow.mean_norm") == "models.glow.mean_norm"
    assert for_flow_kind(glow, BOUND_KEY) == "models.glow.scale_bound"
    assert for_flow_kind(StudyConfig(), "models.flow.mean_norm") == "models.flow.mean_norm"
    assert for_flow_kind(glow, "models.hybrid.lam") == "models.hybrid.lam"
