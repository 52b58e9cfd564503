"""Intervals stay in range, cover what they should, and are reproducible."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.analysis.stats import diff_ci, dispersion, mean_ci, paired_diff_ci, rate_ci, wilson

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


def test_mean_interval_is_students_t_over_seeds():
    ci = mean_ci([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2 df) = 4.303: 2 -+ 4.303 / sqrt(3)
    assert math.isclose(ci["lo"], 2 - 2.4843, abs_tol=1e-3) and math.isclose(ci["hi"], 2 + 2.4843, abs_tol=1e-3)
    assert mean_ci([5.0]) == {"mean": 5.0, "lo": 5.0, "hi": 5.0, "n": 1}


def test_intervals_over_two_or_three_seeds_do_not_collapse():
    # the Fashion-MNIST flow's test accuracy over two seeds: a bootstrap over seed means gave 62.2 [62.2, 62.3]
    ci = mean_ci([0.623, 0.622])
    assert ci["hi"] - ci["lo"] > 0.01  # t with 1 degree of freedom: 12.7 standard errors each side
    assert mean_ci([0.9, 1.0, 1.0], bounds=(0, 1))["hi"] == 1.0  # clipped to the range of a rate
    # two seeds that disagree far beyond binomial noise: the pooled rate's interval widens with the dispersion
    agree, disagree = rate_ci([(90, 100), (90, 100)]), rate_ci([(80, 100), (100, 100)])
    assert dispersion([(80, 100), (100, 100)]) > 5 and dispersion([(90, 100), (90, 100)]) == 1
    assert disagree["hi"] - disagree["lo"] > 2 * (agree["hi"] - agree["lo"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=7))
def test_mean_interval_contains_the_mean_and_is_symmetric(v):
    ci = mean_ci(v)
    assert ci["lo"] <= ci["mean"] + 1e-9 <= ci["hi"] + 2e-9
    assert math.isclose(ci["mean"] - ci["lo"], ci["hi"] - ci["mean"], rel_tol=1e-6, abs_tol=1e-6)
    assert math.isclose(ci["mean"], float(np.mean(v)), rel_tol=1e-9, abs_tol=1e-9)


def test_paired_gap_on_the_same_images_is_narrower_than_unpaired():
    # 200 images, two models that agree on all but 12: a got 8 right that b missed, b 4 that a missed
    paired = paired_diff_ci([(8, 4, 200)])
    assert math.isclose(paired["mean"], 0.02) and paired["lo"] < 0.02 < paired["hi"]
    unpaired = diff_ci([(104, 200)], [(100, 200)])  # the same accuracies (52 % and 50 %) as if on different images
    assert paired["hi"] - paired["lo"] < 0.5 * (unpaired["hi"] - unpaired["lo"])
    assert paired_diff_ci([(0, 0, 100)])["hi"] - paired_diff_ci([(0, 0, 100)])["lo"] > 0  # identical models: still an interval


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 100)), min_size=1, max_size=4))
def test_paired_gap_interval_lies_in_minus_1_1_around_the_gap(raw):
    pairs = [(a, b, a + b + n) for a, b, n in raw if a + b + n]
    ci = paired_diff_ci(pairs)
    if pairs:
        assert -1 <= ci["lo"] <= ci["mean"] <= ci["hi"] <= 1
