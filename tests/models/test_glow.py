import dataclasses
import math

import normflows as nf
import pytest
import torch

from fooled.models.glow import GlowClassifier, GlowConfig, GlowHybrid, build_glow
from model_helpers import assert_trains_and_samples

TINY = GlowConfig(scales=2, blocks_per_scale=1, hidden_channels=8)
SHAPES = [(1, 8, 8), (3, 8, 8), (1, 28, 28)]


def _glow(shape=(1, 8, 8), num_classes=3, levels=256, noise=0.05, **kw):
    cfg = dataclasses.replace(TINY, **kw)
    glow = GlowClassifier(shape, num_classes, levels, cfg, seed=0).eval()
    glow.log_prob(torch.rand(16, *shape, generator=torch.Generator().manual_seed(0)))  # ActNorm's data-dependent init
    # move away from the identity init so the tests exercise real couplings
    with torch.no_grad():
        for p in glow.parameters():
            p.add_(noise * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return glow


def _images(n, shape, seed=0, levels=256):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g) * (levels - 1)).round() / (levels - 1)


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_and_bayes_rule(shape):
    glow = _glow(shape)
    x = _images(3, shape)
    lj, lp, logits = glow.log_joint(x), glow.log_prob(x), glow(x)
    assert lj.shape == (3, 3) and lp.shape == (3,) and logits.shape == (3, 3)
    assert glow.encode(x)[0].shape == (3, math.prod(shape))
    assert torch.allclose(lp, torch.logsumexp(lj, 1), atol=1e-4)
    assert torch.allclose(logits, torch.log_softmax(lj, 1), atol=1e-5)
    assert torch.isfinite(lj).all()
    both = glow.log_prob_and_joint(x)  # one pass, the same numbers as the two calls
    assert torch.equal(both[0], lp) and torch.equal(both[1], lj)


def test_scores_are_deterministic_in_eval_mode():
    glow = _glow()
    x = _images(4, (1, 8, 8))
    assert torch.equal(glow.log_prob(x), glow.log_prob(x))
    assert torch.equal(glow.log_joint(x), glow.log_joint(x))


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8)])
def test_every_layer_is_invertible_and_log_dets_cancel(shape):
    glow = _glow(shape, noise=0.2)
    z = torch.randn(4, *shape)
    for s, layers in enumerate(glow.scale_layers):
        for layer in layers:  # data -> latent is `inverse`, as in normflows
            out, ld_inv = layer.inverse(z)
            back, ld_fwd = layer(out)
            assert torch.allclose(back, z, atol=1e-4)
            assert torch.allclose(torch.as_tensor(ld_fwd + ld_inv, dtype=torch.float32).expand(4), torch.zeros(4), atol=1e-3)
            z = out
        if s < len(glow.scale_layers) - 1:
            z = z.chunk(2, dim=1)[0]


@pytest.mark.parametrize("shape", SHAPES)
def test_decode_inverts_encode_on_grey_levels(shape):
    glow = _glow(shape, noise=0.2)
    x = _images(2, shape)
    assert torch.allclose(glow.decode(glow.encode(x)[0]), x, atol=1e-4)


def test_log_det_matches_the_jacobian_of_the_whole_map():
    # log|det dz/dx| by autograd over all D inputs checks the logit transform, squeezes, splits and
    # every block at once; log_prob then adds only the base density.
    glow = _glow((1, 4, 4), noise=0.2).double()
    x = _images(1, (1, 4, 4), levels=256).double()
    z, log_det = glow.encode(x)
    jac = torch.autograd.functional.jacobian(lambda v: glow.encode(v.view(1, 1, 4, 4))[0][0], x.flatten())
    assert torch.linalg.slogdet(jac)[1].item() == pytest.approx((log_det + glow.log_dy_dx).item(), abs=1e-6)
    assert glow.log_prob(x).item() == pytest.approx(
        (torch.logsumexp(glow.base.log_joint(z), 1) + log_det + glow.log_dy_dx).item(), abs=1e-8)


@pytest.mark.parametrize("fill", ["zeros", "ones", "noise", "half"])
def test_log_prob_and_its_gradient_are_finite_on_odd_inputs(fill):
    glow = _glow((1, 8, 8), noise=0.5)
    x = {"zeros": torch.zeros(2, 1, 8, 8), "ones": torch.ones(2, 1, 8, 8),
         "noise": torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)),
         "half": torch.full((2, 1, 8, 8), 0.5)}[fill].requires_grad_(True)
    lp = glow.log_prob(x)
    (grad,) = torch.autograd.grad(lp.sum(), x)
    assert torch.isfinite(lp).all() and torch.isfinite(grad).all()


@pytest.mark.parametrize("bad, match", [
    (torch.full((2, 1, 8, 8), float("nan")), "NaN"),
    (torch.full((2, 1, 8, 8), 1.5), r"\[0, 1\]"),
    (torch.full((2, 1, 8, 8), -0.1), r"\[0, 1\]"),
    (torch.rand(2, 64), "shape"),
    (torch.rand(2, 3, 8, 8), "shape"),
])
def test_bad_input_raises_value_error_saying_what_was_expected(bad, match):
    glow = _glow()
    with pytest.raises(ValueError, match=match):
        glow.log_prob(bad)
    with pytest.raises(ValueError, match=match):
        glow.log_joint(bad)


def test_image_sizes_the_squeezes_cannot_halve_are_refused():
    with pytest.raises(ValueError, match="scales <= 2"):
        GlowClassifier((1, 28, 28), 10, 256, GlowConfig(scales=3, blocks_per_scale=1, hidden_channels=8))


@pytest.mark.parametrize("num_classes", [2, 10])
def test_log_joint_runs_the_flow_once_whatever_the_number_of_classes(num_classes):
    glow = _glow(num_classes=num_classes)
    blocks = [m for m in glow.modules() if isinstance(m, nf.flows.GlowBlock)]
    calls = []
    for block in blocks:
        inverse = block.inverse
        block.inverse = lambda z, _inv=inverse: (calls.append(1), _inv(z))[1]
    x = _images(3, (1, 8, 8))
    for score in (glow.log_joint, glow.log_prob, glow.forward):
        calls.clear()
        assert score(x).shape[0] == 3
        assert len(calls) == len(blocks)


def test_training_loss_decreases_and_samples_are_images():
    torch.manual_seed(0)
    glow = GlowClassifier((1, 8, 8), 2, 17, GlowConfig(scales=2, blocks_per_scale=1, hidden_channels=16, mean_norm=4.0))
    x = _images(64, (1, 8, 8), levels=17)
    assert_trains_and_samples(glow, x, (x.mean((1, 2, 3)) > 0.5).long(), steps=30)
    bpd = glow.dequantised_bpd(x[:8], torch.Generator().manual_seed(0))
    assert bpd.shape == (8,) and torch.isfinite(bpd).all()


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_glow_hybrid_is_a_density_with_a_softmax_head_on_its_latent(head):
    cfg = dataclasses.replace(TINY, head=head, head_hidden=16, lam=4.0)
    glow = build_glow((1, 8, 8), 3, 256, cfg, seed=0).eval()
    assert isinstance(glow, GlowHybrid) and (head == "linear") == isinstance(glow.head, torch.nn.Linear)
    x = _images(5, (1, 8, 8))
    lj, lp = glow.log_joint(x), glow.log_prob(x)
    z, log_det = glow.encode(x)
    # log p(x, k) = log p(x) + log p(k|x): Bayes' rule holds, and the density does not depend on the head
    assert torch.allclose(torch.logsumexp(lj, 1), lp, atol=1e-4)
    assert torch.allclose(lp, glow.base.log_prob(z) + log_det + glow.log_dy_dx, atol=1e-4)
    assert torch.allclose(glow(x), torch.log_softmax(glow.head(z), 1), atol=1e-5)
    assert torch.allclose(glow.decode(z), x, atol=1e-4)
    both = glow.log_prob_and_joint(x)  # one pass, the same numbers as the two calls
    assert torch.equal(both[0], lp) and torch.equal(both[1], lj)
    with torch.no_grad():  # a head that only sees z cannot change p(x)
        for p in glow.head.parameters():
            p.add_(1.0)
    assert torch.allclose(glow.log_prob(x), lp)


def test_glow_hybrid_trains_and_samples_and_the_head_is_chosen_by_config():
    torch.manual_seed(0)
    glow = build_glow((1, 8, 8), 2, 17, dataclasses.replace(TINY, hidden_channels=16, head="linear", lam=8.0), seed=0)
    x = _images(64, (1, 8, 8), levels=17)
    assert_trains_and_samples(glow, x, (x.mean((1, 2, 3)) > 0.5).long(), steps=30)
    assert isinstance(build_glow((1, 8, 8), 2, 17, TINY), GlowClassifier)
    with pytest.raises(ValueError, match="glow head must be one of"):
        build_glow((1, 8, 8), 2, 17, dataclasses.replace(TINY, head="svm"))
