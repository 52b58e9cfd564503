"""Intervals stay in range, cover what they should, and are reproducible."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.analysis.stats import diff_ci, mean_ci, rate_ci, wilson

counts = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 300)).map(lambda kn: (min(kn), kn[1])), min_size=1, max_size=6)


def test_wilson_matches_the_textbook_values():
    # Newcombe (1998), table I: 81 of 263 -> 0.2553 to 0.3662; 0 of 10 -> 0 to 0.2775
    lo, hi = wilson(81, 263)
    assert math.isclose(lo, 0.2553, abs_tol=5e-4) and math.isclose(hi, 0.3662, abs_tol=5e-4)
    assert wilson(0, 10)[0] == 0 and math.isclose(wilson(0, 10)[1], 0.2775, abs_tol=5e-4)
    assert wilson(0, 0) == (0.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(counts)
def test_rate_interval_lies_in_0_1_around_the_pooled_rate(c):
    ci = rate_ci(c)
    assert 0 <= ci["lo"] <= ci["mean"] <= ci["hi"] <= 1
    assert ci["mean"] == sum(k for k, _ in c) / sum(n for _, n in c)
    assert rate_ci(c) == ci  # reproducible: the bootstrap is seeded by its input


@settings(max_examples=40, deadline=None)
@given(counts, counts)
def test_difference_interval_lies_in_minus_1_1_around_the_difference(a, b):
    b = (b * len(a))[: len(a)]
    ci = diff_ci(a, b)
    assert -1 <= ci["lo"] <= ci["mean"] <= ci["hi"] <= 1


def test_seed_variation_widens_a_rate_interval_beyond_wilson():
    steady, varied = [(150, 200)] * 3, [(100, 200), (150, 200), (200, 200)]
    assert rate_ci(steady)["mean"] == rate_ci(varied)["mean"] == 0.75
    width = lambda ci: ci["hi"] - ci["lo"]  # noqa: E731
    assert width(rate_ci(varied)) > 1.5 * width(rate_ci(steady))
    assert width(rate_ci(steady)) >= width({"lo": wilson(450, 600)[0], "hi": wilson(450, 600)[1]}) - 1e-12


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=7))
def test_mean_interval_stays_within_the_seeds_range(v):
    ci = mean_ci(v)
    assert min(v) - 1e-9 <= ci["lo"] <= ci["mean"] + 1e-9 and ci["mean"] - 1e-9 <= ci["hi"] <= max(v) + 1e-9
    assert math.isclose(ci["mean"], float(np.mean(v)), rel_tol=1e-9, abs_tol=1e-9)
