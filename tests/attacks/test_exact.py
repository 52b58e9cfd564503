"""linear_linf_robust against brute force over the corners of the box, for random linear models and inputs."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.attacks import linear_linf_robust
from fooled.errors import ConfigError


def brute_force(weight, bias, x, y, eps):
    """Robust iff no corner of the box misclassifies: each z_j - z_y is linear, so its largest value is at a corner."""
    flat = x.flatten(1)
    lo, hi = (flat - eps).clamp(0, 1), (flat + eps).clamp(0, 1)
    out = []
    for i in range(len(x)):
        ok = True
        for corner in itertools.product((0, 1), repeat=flat.shape[1]):
            c = torch.tensor(corner, dtype=torch.bool)
            z = torch.where(c, hi[i], lo[i]) @ weight.T + bias
            ok &= bool((torch.cat([z[: y[i]], z[y[i] + 1:]]) < z[y[i]]).all())
        out.append(ok)
    return torch.tensor(out)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), classes=st.integers(2, 4), n=st.integers(1, 5), eps=st.floats(0.0, 0.6))
def test_matches_brute_force(seed, classes, n, eps):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 2, 2, generator=g, dtype=torch.float64)
    weight = torch.randn(classes, 4, generator=g, dtype=torch.float64)
    bias = torch.randn(classes, generator=g, dtype=torch.float64)
    y = torch.randint(classes, (n,), generator=g)
    assert torch.equal(linear_linf_robust(weight, bias, x, y, eps), brute_force(weight, bias, x, y, eps))


def test_eps_zero_is_clean_correctness():
    g = torch.Generator().manual_seed(0)
    x, weight, bias = torch.rand(20, 1, 2, 2, generator=g), torch.randn(3, 4, generator=g), torch.randn(3, generator=g)
    y = torch.randint(3, (20,), generator=g)
    assert torch.equal(linear_linf_robust(weight, bias, x, y, 0.0), (x.flatten(1) @ weight.T + bias).argmax(1) == y)


def test_shape_mismatch_is_named():
    with pytest.raises(ConfigError, match=r"weight must be \(K, 4\) and bias \(K,\), got \(3, 5\) and \(3,\)"):
        linear_linf_robust(torch.zeros(3, 5), torch.zeros(3), torch.rand(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), 0.1)
