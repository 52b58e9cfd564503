"""The density-quality sweep's bookkeeping and verdict on constructed rows."""

import numpy as np
import pytest

from fooled.analysis.density_sweep import density_numbers, describe_sweep, summarise_sweep


def _row(name, bpd, *, pgd, noise, valid, n=40):
    """A density's row on n images, all classified right and all fooled by PGD: the first `pgd` flagged under PGD, the
    first `noise` under noise, the first `valid` images valid evasions."""
    idx = np.arange(n)
    return {"density": name, "family": name.split()[0], "test_bpd": bpd, "threshold": 0.0, "correct": [True] * n,
            "fooled": [True] * n, "pgd_flagged": (idx < pgd).tolist(), "noise_flagged": (idx < noise).tolist(),
            "evaded": (idx < valid).tolist(), "valid": (idx < valid).tolist()}


def test_numbers_count_flags_on_the_images_pgd_fooled_and_evasion_on_those_classified_right():
    row = _row("flow a", 2.1, pgd=30, noise=10, valid=8)
    row["fooled"] = [True] * 20 + [False] * 20  # PGD fooled only the first 20: flags count there
    row["correct"] = [True] * 32 + [False] * 8
    n = density_numbers(row)
    assert n["pgd_flagged"]["mean"] == 1.0 and n["noise_flagged"]["mean"] == 0.5
    assert n["gap"]["mean"] == pytest.approx(0.5) and n["gap"]["lo"] > 0
    assert n["valid_evasion"]["mean"] == pytest.approx(8 / 32)


def test_a_better_density_flags_more_when_its_gap_is_larger_on_the_same_images():
    rows = [_row("KDE", 2.4, pgd=20, noise=20, valid=20), _row("flow x", 2.1, pgd=38, noise=10, valid=20),
            _row("GMM", 2.2, pgd=25, noise=20, valid=20)]
    s = summarise_sweep(rows)
    assert [d["density"] for d in s["densities"]] == ["flow x", "GMM", "KDE"]  # by bits/dim
    assert (s["best"], s["worst"]) == ("flow x", "KDE")
    assert s["gap_difference"]["mean"] == pytest.approx(0.7) and s["gap_difference"]["lo"] > 0
    assert s["answer"] == "flags more" and s["spearman_bpd"]["gap"] == pytest.approx(-1.0)
    assert describe_sweep(s)[0].startswith("**A better density flags more**")


def test_a_better_density_flags_more_when_the_aware_attacker_evades_it_less():
    s = summarise_sweep([_row("KDE", 2.4, pgd=40, noise=40, valid=30), _row("flow x", 2.1, pgd=40, noise=40, valid=5)])
    assert s["gap_difference"]["mean"] == 0 and s["evasion_difference"]["lo"] > 0 and s["answer"] == "flags more"


def test_no_more_when_the_best_and_worst_densities_do_the_same():
    s = summarise_sweep([_row("KDE", 2.4, pgd=40, noise=39, valid=12), _row("flow x", 2.1, pgd=40, noise=39, valid=12),
                         _row("GMM", 2.2, pgd=40, noise=39, valid=12)])
    assert s["answer"] == "flags no more" and s["spearman_bpd"]["gap"] is None  # a constant gap has no rank correlation
    assert "**A better density flags no more**" in describe_sweep(s)[0]


def test_flows_along_a_knob_are_judged_among_themselves_not_with_the_other_densities():
    knob = [{**_row(f"flow mean_norm={v}", bpd, pgd=40, noise=39, valid=valid), "knob": "models.flow.mean_norm", "value": v}
            for v, bpd, valid in ((0, 2.10, 30), (6, 2.15, 20), (12, 2.30, 5))]
    s = summarise_sweep([_row("KDE", 2.4, pgd=40, noise=39, valid=12), _row("flow x", 2.1, pgd=40, noise=39, valid=12)] + knob)
    assert [d["density"] for d in s["densities"]] == ["flow x", "KDE"] and s["answer"] == "flags no more"
    part = s["knobs"]["models.flow.mean_norm"]
    assert (part["best"], part["worst"]) == ("flow mean_norm=0", "flow mean_norm=12")
    assert part["evasion_difference"]["mean"] == pytest.approx(-25 / 40) and part["answer"] == "flags no more"  # the best lets more through
    text = describe_sweep(s)
    assert any(line.startswith("Along the trade-off knob `models.flow.mean_norm`") and "flags no more" in line for line in text)
    assert sum(line.startswith("| flow mean_norm=") for line in text) == 3


def test_a_difference_only_the_worst_density_makes_is_no_trend():
    # one broken baseline (it flags noise more than PGD) at the bottom; every other density the same: no trend in quality
    rows = [_row("KDE", 5.7, pgd=20, noise=36, valid=20)] + [_row(f"flow {i}", 3.5 + 0.1 * i, pgd=38 + 2 * (i % 2), noise=40,
                                                                   valid=20 + i % 2) for i in range(6)]
    s = summarise_sweep(rows)
    assert s["gap_difference"]["lo"] > 0 and abs(s["spearman_bpd"]["gap"]) < 0.5
    assert s["answer"] == "flags no more" and s["endpoints_only"]
    assert "the difference is the worst density's, not a trend in density quality" in describe_sweep(s)[0]
