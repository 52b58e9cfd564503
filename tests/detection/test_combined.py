"""The combined defence: jointly calibrated members at one total validation FPR, and a score > 0 iff some member flags."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.detection.combined import MEMBERS, CombinedDefence, calibrate_jointly, evaluate, member_scores, union_flags
from fooled.errors import ConfigError


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), members=st.integers(1, 6), n=st.integers(200, 2000), fpr=st.sampled_from([0.01, 0.05, 0.1]),
       correlated=st.booleans())
def test_total_validation_fpr_is_at_most_fpr_and_close_to_it(seed, members, n, fpr, correlated):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n)
    val = {f"m{i}": (base if correlated else 0) + rng.normal(size=n) for i in range(members)}
    thresholds, q = calibrate_jointly(val, fpr)
    total = union_flags(val, thresholds).mean()
    assert total <= fpr
    assert total >= fpr - (members + 1) / n  # one more image per member would pass fpr
    rates = [np.mean(val[k] > t) for k, t in thresholds.items()]
    assert max(rates) - min(rates) <= 1.5 / n  # the same share per member, up to one image
    assert q <= fpr and (members == 1 or q < fpr or correlated)


def test_a_member_that_never_fires_on_clean_data_costs_nothing():
    rng = np.random.default_rng(0)
    val = {"nll": rng.normal(size=1000), "off_grid": np.zeros(1000)}
    thresholds, _ = calibrate_jointly(val, 0.05)
    assert thresholds["off_grid"] == 0.0
    assert union_flags(val, thresholds).mean() == pytest.approx(0.05, abs=0.002)


def test_bad_members_are_named():
    with pytest.raises(ConfigError, match="same validation images"):
        calibrate_jointly({"a": np.zeros(10), "b": np.zeros(11)}, 0.05)
    with pytest.raises(ConfigError, match="member"):
        union_flags({"a": np.zeros(3)}, {"a": 0.0, "typicality": 1.0})


def test_fitted_defence_flags_five_percent_of_validation_and_its_score_says_so(flow, digits):
    cnn = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.manual_seed(0)
    for _ in range(200):  # a logistic regression: enough to disagree with the flow on some images
        loss = torch.nn.functional.cross_entropy(cnn(digits.train.x), digits.train.y)
        cnn.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in cnn.parameters():
                p -= 0.5 * p.grad
    cnn.zero_grad(set_to_none=True)
    flow.eval()
    with torch.no_grad():
        ref = float(-flow.log_prob(digits.val.x).mean())
    scores = member_scores(cnn, flow, reference_nll_mean=ref, levels=17)
    assert tuple(scores) == MEMBERS
    defence = CombinedDefence.fit(scores, digits.val.x, 0.05)
    assert defence.val_fpr <= 0.05 and defence.val_fpr >= 0.05 - 7 / len(digits.val.x)
    assert defence.flags(digits.val.x).mean() == pytest.approx(defence.val_fpr)
    x = torch.cat([digits.test.x[:100], (digits.test.x[:100] + 0.02).clamp(0, 1)])  # the second half off the grid
    with torch.no_grad():
        positive = (defence.score(x) > 0).numpy()
    assert np.array_equal(positive, defence.flags(x))
    assert defence.member_flags(x)["off_grid"][100:].all() and not defence.member_flags(x)["off_grid"][:100].any()
    with torch.no_grad():  # on the grid: the same sign without the off-grid member, which floors `score` at 0 there
        on_grid, floored = defence.score_on_grid(x[:100]), defence.score(x[:100])
    assert np.array_equal((on_grid > 0).numpy(), defence.flags(x[:100]))
    assert bool((floored >= 0).all()) and bool((on_grid < 0).any())
    s = evaluate(scores, digits.test.x[:50])
    agree = cnn(digits.test.x[:50]).argmax(1) == flow.log_joint(digits.test.x[:50]).argmax(1)
    assert np.array_equal(s["label_agreement"] > 0, ~agree.numpy())  # > 0 iff the two labels differ
    with torch.no_grad():  # the attack's one-pass scores are the members' own, bit for bit
        together = scores.together(digits.test.x[:50])
    one_by_one = evaluate(dict(scores), digits.test.x[:50])
    assert all(np.array_equal(together[k].double().numpy(), one_by_one[k]) for k in MEMBERS)
