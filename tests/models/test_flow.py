import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fooled.models.flow import FlowClassifier, FlowConfig, bits_per_dim, bpd_from_log_prob
from model_helpers import assert_trains_and_samples


def _flow(shape=(1, 4, 4), levels=17, noise=0.3, **kw):
    cfg = FlowConfig(**{"blocks": 3, "hidden": 16, **kw})
    flow = FlowClassifier(shape, 3, levels, cfg, seed=0).eval()
    flow.log_prob(torch.rand(256, *shape, generator=torch.Generator().manual_seed(0)))  # ActNorm's data-dependent init
    # move away from the identity init so the tests exercise real couplings
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(noise * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return flow


def test_every_layer_is_invertible_and_log_dets_cancel():
    flow = _flow()
    z = torch.randn(5, 16)
    for layer in flow.flows:
        x, ld_fwd = layer(z)
        z_back, ld_inv = layer.inverse(x)
        assert torch.allclose(z_back, z, atol=1e-4)
        assert torch.allclose(ld_fwd + ld_inv, torch.zeros(5), atol=1e-4)
        z = x


def test_log_prob_is_logsumexp_of_log_joint_and_logits_are_bayes():
    flow = _flow()
    x = torch.rand(6, 1, 4, 4)
    lj = flow.log_joint(x)
    assert lj.shape == (6, 3)
    assert torch.allclose(flow.log_prob(x), torch.logsumexp(lj, 1), atol=1e-5)
    assert torch.allclose(flow(x).exp().sum(1), torch.ones(6), atol=1e-5)
    assert torch.allclose(flow(x), lj - torch.logsumexp(lj, 1, keepdim=True), atol=1e-5)


def test_density_of_x_integrates_to_about_one():
    # A 2-pixel image with many grey levels: exp(log_prob) over [0, 1]^2 must integrate to ~1,
    # which checks every Jacobian (dequantisation, logit, couplings) at once. (Small weights keep
    # the mass away from the edge strips of width 1/(2L) that mid-bin evaluation leaves out.)
    flow = _flow(shape=(1, 1, 2), levels=256, noise=0.1, mean_norm=0.0)
    g = torch.linspace(0, 1, 401)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    x = torch.stack([xx, yy], -1).view(-1, 1, 1, 2)
    with torch.no_grad():
        p = flow.log_prob(x).exp().view(401, 401).numpy()
    integral = np.trapezoid(np.trapezoid(p, g.numpy(), axis=1), g.numpy())
    assert integral == pytest.approx(1.0, abs=0.03)


def test_scores_are_deterministic_in_eval_mode():
    flow = _flow()
    x = torch.rand(4, 1, 4, 4)
    assert torch.equal(flow.log_prob(x), flow.log_prob(x))
    assert torch.equal(flow.log_joint(x), flow.log_joint(x))


@pytest.mark.parametrize("bad, match", [
    (torch.full((2, 1, 4, 4), float("nan")), "NaN"),
    (torch.full((2, 1, 4, 4), 1.5), r"\[0, 1\]"),
    (torch.full((2, 1, 4, 4), -0.1), r"\[0, 1\]"),
    (torch.rand(2, 16), "shape"),
    (torch.rand(2, 1, 5, 4), "shape"),
])
def test_bad_input_raises_value_error_saying_what_was_expected(bad, match):
    with pytest.raises(ValueError, match=match):
        _flow().log_prob(bad)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, 0.5, 1e-7, 1 - 1e-7, 0.3]), min_size=16, max_size=16))
def test_log_prob_and_its_gradient_are_finite_everywhere_in_the_box(pixels):
    flow = _flow(scale_bound=2.0)
    x = torch.tensor(pixels).view(1, 1, 4, 4).requires_grad_(True)
    lp = flow.log_prob(x)
    (grad,) = torch.autograd.grad(lp.sum(), x)
    assert torch.isfinite(lp).all() and torch.isfinite(grad).all()


def test_bits_per_dim_conventions_agree():
    # uniform density on [0, 1]^D: log p(y) = 0, so one bin of width 1/L has probability L^-D: log2(L) bits/dim
    assert bits_per_dim(torch.tensor([0.0]), 64, 17).item() == pytest.approx(math.log2(17))
    # log_prob(x) of x in [0, 1] relates to y through dy/dx = (L-1)/L
    lp_y = torch.tensor([-30.0])
    lp_x = lp_y + 64 * math.log(16 / 17)
    assert bpd_from_log_prob(lp_x, 64, 17).item() == pytest.approx(bits_per_dim(lp_y, 64, 17).item())


def test_training_loss_decreases_and_samples_are_images():
    torch.manual_seed(0)
    flow = FlowClassifier((1, 4, 4), 2, 17, FlowConfig(blocks=2, hidden=16, mean_norm=4.0))
    x = (torch.rand(64, 1, 4, 4) * 16).round() / 16
    assert_trains_and_samples(flow, x, (x.mean((1, 2, 3)) > 0.5).long(), steps=60)


def test_lu_permutation_caches_its_weight_in_eval_mode_and_follows_parameter_updates():
    from fooled.models.flow import LUPermute

    flow = _flow(permutation="lu", noise=0.05)
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(1))

    def scores(training):
        flow.train(training)  # train mode rebuilds W = LU every call; eval mode uses the cache
        xa = x.clone().requires_grad_(True)
        log_p = flow._log_prob_y(xa, None)  # mid-bin in both modes
        (grad,) = torch.autograd.grad(log_p.sum(), xa)
        return log_p.detach(), grad

    (a, grad_a), (b, grad_b) = scores(False), scores(True)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-4) and torch.allclose(grad_a, grad_b, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # an in-place update, as an optimiser step or load_state_dict makes
        for layer in flow.flows:
            if isinstance(layer, LUPermute):
                layer.linear.upper_entries.add_(0.05)
    c, d = scores(False)[0], scores(True)[0]
    assert not torch.allclose(c, a, atol=1e-3), "the eval cache must see the new parameters"
    assert torch.allclose(c, d, rtol=1e-5, atol=1e-4)


def test_the_library_internals_the_flows_rely_on_still_hold():
    """LUPermute's cache is keyed by torch's in-place version counter, and the Glow wraps normflows' coupling: if either
    changes in a new release, this fails loudly (pyproject.toml pins the normflows range tested)."""
    import normflows as nf

    p = torch.nn.Parameter(torch.zeros(3))
    before = p._version
    p.grad = torch.ones(3)
    torch.optim.SGD([p], lr=0.1).step()
    assert p._version > before, "torch no longer bumps a parameter's _version on an optimiser step"
    lu = nf.flows.LULinearPermute(4)
    lower, upper = lu.linear._create_lower_upper()
    torch.testing.assert_close(lu.linear.weight(), lower @ upper)
    block = nf.flows.GlowBlock(4, 8, scale=True, scale_map="exp", split_mode="channel", init_zeros=True, use_lu=True)
    coupling = block.flows[0].flows[1]
    assert isinstance(coupling, nf.flows.AffineCoupling) and isinstance(coupling.param_map, torch.nn.Module)
