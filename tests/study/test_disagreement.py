"""The disagreement bookkeeping (spreads, intervals, verdict) on made-up scores, and one tiny real run."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.analysis.disagreement import agreement_verdict, input_spread, set_spread, summarise, verdict_line


def _scores(spreads: dict[str, float], n_inputs=40, sizes=("a", "b"), seeds=(0, 1, 2), seed=0) -> pd.DataFrame:
    """Bits/dim = 2 + the input's own offset + noise of the given std per model (a model's offset differs per input)."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, sd in spreads.items():
        base = 2 + rng.normal(size=n_inputs)
        for size in sizes:
            for s in seeds:
                noise = rng.normal(scale=sd, size=n_inputs)
                rows += [{"set": name, "input": i, "size": size, "seed": s, "model": f"{size}/{s}", "bpd": base[i] + noise[i]}
                         for i in range(n_inputs)]
    return pd.DataFrame(rows)


def test_spread_of_an_input_is_the_std_across_seeds_averaged_over_sizes():
    scores = pd.DataFrame({"set": "test", "input": 0, "size": ["a"] * 3 + ["b"] * 3, "seed": [0, 1, 2] * 2,
                           "model": list("uvwxyz"), "bpd": [1.0, 2.0, 3.0, 5.0, 5.0, 5.0]})
    row = input_spread(scores).iloc[0]
    assert row["spread_seeds"] == pytest.approx((1.0 + 0.0) / 2)  # std 1 within size a, 0 within size b
    assert row["spread_all"] == pytest.approx(np.std([1, 2, 3, 5, 5, 5], ddof=1))
    assert row["mean_bpd"] == pytest.approx(21 / 6)


def test_verdict_yes_when_models_agree_on_test_and_disagree_on_every_other_set():
    summary = summarise(_scores({"test": 0.01, "noise": 0.5, "fooling": 0.3}))
    v = summary["verdict"]
    assert v["answer"] == "YES" and sorted(v["wider"]) == ["fooling", "noise"]
    s = summary["sets"]["test"]["spread_seeds"]
    assert s["lo"] <= s["median"] <= s["hi"] and s["hi"] < 0.02 and s["n"] == 40
    assert "**YES**" in verdict_line(v) and "not clearly wider" not in verdict_line(v)


def test_verdict_partly_names_the_set_where_models_agree_too_and_no_when_they_agree_everywhere():
    v = summarise(_scores({"test": 0.1, "noise": 1.0, "blurred": 0.1}))["verdict"]
    assert v["answer"] == "PARTLY" and v["not_wider"] == ["blurred"] and "blurred" in verdict_line(v)
    assert summarise(_scores({"test": 0.5, "noise": 0.05}))["verdict"]["answer"] == "NO"


@settings(max_examples=15, deadline=None)
@given(shift=st.floats(-5, 5), seed=st.integers(0, 100))
def test_spreads_ignore_a_shift_shared_by_every_model(shift, seed):
    scores = _scores({"test": 0.1, "noise": 0.4}, n_inputs=10, seed=seed)
    moved = scores.assign(bpd=scores["bpd"] + shift)
    a, b = set_spread(input_spread(scores)), set_spread(input_spread(moved))
    for name in a:
        assert a[name]["spread_seeds"]["median"] == pytest.approx(b[name]["spread_seeds"]["median"], abs=1e-9)
        assert b[name]["bpd"] == pytest.approx(a[name]["bpd"] + shift, abs=1e-9)
    va, vb = agreement_verdict(a), agreement_verdict(b)
    assert (va["answer"], va["wider"]) == (vb["answer"], vb["wider"])


def test_tiny_run_scores_every_common_input_under_every_flow(tmp_path, monkeypatch):
    from fooled.config import StudyConfig, quick
    from fooled.study import tradeoff
    from fooled.study.disagreement import DisagreementConfig, run_disagreement

    monkeypatch.setattr(tradeoff, "KNOBS", {"flow": ("models.flow.mean_norm", (0.0, 6.0)), "hybrid": ("models.hybrid.lam", (0.0, 8.0))})
    cfg = quick(StudyConfig())
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2, patience=1),
                              attacks=dataclasses.replace(cfg.attacks, steps=3), fooling=dataclasses.replace(cfg.fooling, steps=3))
    dcfg = DisagreementConfig(seeds=(0, 1), sizes=((1, 8), (2, 8)), attacked=6, aware_steps=3, fooling=4, ood_n=5)
    summary = run_disagreement(cfg, tmp_path, dcfg=dcfg, log=lambda m: None)
    scores = pd.read_csv(tmp_path / "disagreement_scores.csv")
    assert scores["model"].nunique() == 4 and np.isfinite(scores["bpd"]).all()
    counts = scores.groupby("set")["input"].nunique()
    assert counts["test"] == 360 and counts["PGD adversarial"] == 6 and counts["detector-aware adversarial"] == 6
    assert counts["fooling"] == 4 and counts["uniform noise"] == 5
    assert (scores.groupby(["set", "input"]).size() == 4).all()  # every input scored by every flow
    saved = json.loads((tmp_path / "disagreement.json").read_text())
    assert saved["summary"]["verdict"]["answer"] == summary["verdict"]["answer"] in ("YES", "PARTLY", "NO")
    assert (tmp_path / "figures" / "disagreement.png").stat().st_size > 10_000
    report = (tmp_path / "report.md").read_text()
    assert "Models agree on the data" in report and "**A better density" in report
    # the 4 flows, the CNN, the Gaussian classifier, the study's flow, the oracle's robust CNN and the 4 knob flows
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 12
    sweep = json.loads((tmp_path / "density_sweep.json").read_text())
    names = [r["density"] for r in sweep["rows"]]
    assert names[:4] == ["KDE", "GMM", "Gaussian", "study flow"] and len(names) == 12
    assert names[8:] == ["flow mean_norm=0", "flow mean_norm=6", "hybrid lam=0", "hybrid lam=8"]
    assert [r.get("knob") for r in sweep["rows"][7:9]] == [None, "models.flow.mean_norm"]
    assert set(sweep["summary"]["knobs"]) == {"models.flow.mean_norm", "models.hybrid.lam"}
    assert "Along the trade-off knob `models.hybrid.lam`" in report
    for r in sweep["rows"]:
        correct, evaded, valid = (np.array(r[k]) for k in ("correct", "evaded", "valid"))
        assert len(correct) == 6 and not (valid & ~evaded).any() and not (evaded & ~correct).any()
        assert np.isfinite(r["test_bpd"]) and np.isfinite(r["threshold"])
    assert [d["test_bpd"] for d in sweep["summary"]["densities"]] == sorted(r["test_bpd"] for r in sweep["rows"] if not r.get("knob"))
    assert sweep["summary"]["answer"] in ("flags more", "flags no more")
    assert (tmp_path / "figures" / "density_sweep.png").stat().st_size > 10_000
    # without the scikit-learn baselines and the knob flows (28x28 data): the same models, from their checkpoints
    run_disagreement(cfg, tmp_path, dcfg=dataclasses.replace(dcfg, baselines=False, knobs=False), log=lambda m: None)
    names = [r["density"] for r in json.loads((tmp_path / "density_sweep.json").read_text())["rows"]]
    assert names[:2] == ["Gaussian", "study flow"] and len(names) == 6 and "KDE and GMM are left out" in (tmp_path / "report.md").read_text()


def test_sizes_parse_and_a_bad_one_is_named():
    from fooled.errors import ConfigError
    from fooled.study.disagreement import parse_sizes

    assert parse_sizes("6x128, 4x64") == ((6, 128), (4, 64))
    with pytest.raises(ConfigError, match="'4x' is not BLOCKSxHIDDEN"):
        parse_sizes("6x128,4x")
