import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.detection import auroc, calibrate_threshold, flagged, roc, tpr_at_threshold


def test_threshold_flags_the_requested_fraction_of_validation_scores():
    val = np.random.default_rng(0).normal(size=10_000)
    thr = calibrate_threshold(val, 0.05)
    assert flagged(val, thr).mean() == pytest.approx(0.05, abs=0.002)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=200), st.floats(0.001, 0.5))
def test_threshold_never_flags_more_than_fpr_of_validation(val, fpr):
    val = np.array(val)
    assert flagged(val, calibrate_threshold(val, fpr)).mean() <= fpr + 1e-12


def test_auroc_and_tpr_on_separated_and_identical_scores():
    clean = np.zeros(50) + np.linspace(0, 1, 50)
    assert auroc(clean, clean + 10) == 1.0
    assert auroc(clean, clean) == pytest.approx(0.5)
    assert tpr_at_threshold(clean + 10, calibrate_threshold(clean, 0.05)) == 1.0
    fpr, tpr = roc(clean, clean + 10)
    assert fpr[0] == 0 and tpr[-1] == 1


@pytest.mark.parametrize("fpr", [0, 1, -0.1, 1.5])
def test_bad_fpr_is_refused(fpr):
    with pytest.raises(ValueError, match="fpr"):
        calibrate_threshold(np.ones(10), fpr)
