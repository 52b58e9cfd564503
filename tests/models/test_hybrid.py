import numpy as np
import pytest
import torch

from fooled.config import TrainConfig
from fooled.data import load
from fooled.errors import ModelError
from fooled.models.flow import FlowClassifier, FlowConfig
from fooled.models.hybrid import HybridFlow
from fooled.train import fit


def _hybrid(shape=(1, 4, 4), levels=17, noise=0.3, lam=1.0, **kw):
    cfg = FlowConfig(**{"blocks": 3, "hidden": 16, **kw})
    model = HybridFlow(shape, 3, levels, cfg, lam=lam, seed=0).eval()
    model.log_prob(torch.rand(256, *shape, generator=torch.Generator().manual_seed(0)))  # ActNorm's data-dependent init
    with torch.no_grad():  # away from the identity init, so the tests exercise real couplings and a real head
        for p in model.parameters():
            p.add_(noise * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return model


def test_log_prob_is_logsumexp_of_log_joint_and_logits_are_the_heads_posterior():
    model = _hybrid()
    x = torch.rand(6, 1, 4, 4)
    lj = model.log_joint(x)
    assert lj.shape == (6, 3)
    assert torch.allclose(torch.logsumexp(lj, 1), model.log_prob(x), atol=1e-4)
    assert torch.allclose(model(x), lj - torch.logsumexp(lj, 1, keepdim=True), atol=1e-5 * lj.abs().max().item())  # float32 round-off
    assert torch.allclose(model(x).exp().sum(1), torch.ones(6), atol=1e-5)


def test_body_is_shared_with_the_flow_classifier_and_invertible():
    cfg = FlowConfig(blocks=3, hidden=16)
    hybrid, flow = HybridFlow((1, 4, 4), 3, 17, cfg, lam=1.0, seed=5), FlowClassifier((1, 4, 4), 3, 17, cfg, seed=5)
    body = {k: v for k, v in hybrid.state_dict().items() if k.startswith("flows.")}
    assert body and all(torch.equal(v, flow.state_dict()[k]) for k, v in body.items())

    model = _hybrid()
    z = torch.randn(5, 16)
    for layer in model.flows:  # each layer: inverse(forward(z)) == z and the log-determinants cancel
        out, ld_fwd = layer(z)
        back, ld_inv = layer.inverse(out)
        assert torch.allclose(back, z, atol=1e-4) and torch.allclose(ld_fwd + ld_inv, torch.zeros(5), atol=1e-4)
        z = out
    x = torch.randint(0, 17, (8, 1, 4, 4)).float() / 16  # grey levels survive encode -> decode exactly
    latent, _ = model.encode(x)
    assert torch.allclose(model.decode(latent), x, atol=1e-4)


def test_density_of_x_integrates_to_about_one():
    model = _hybrid(shape=(1, 1, 2), levels=256, noise=0.1)
    g = torch.linspace(0, 1, 401)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    with torch.no_grad():
        p = model.log_prob(torch.stack([xx, yy], -1).view(-1, 1, 1, 2)).exp().view(401, 401).numpy()
    assert np.trapezoid(np.trapezoid(p, g.numpy(), axis=1), g.numpy()) == pytest.approx(1.0, abs=0.03)


def test_eval_scores_are_deterministic_and_training_loss_is_noisy_only_in_train_mode():
    model = _hybrid()
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    assert torch.equal(model.log_joint(x), model.log_joint(x))
    assert model.training_loss(x, y).item() == model.training_loss(x, y).item()
    model.train()
    assert model.training_loss(x, y).item() != model.training_loss(x, y).item()


def test_lam_weights_the_classification_term():
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    lo, hi = _hybrid(lam=0.0), _hybrid(lam=10.0)
    ce = torch.nn.functional.cross_entropy(lo(x), y)
    assert hi.training_loss(x, y).item() - lo.training_loss(x, y).item() == pytest.approx(10 * ce.item() / 16, rel=1e-4)
    with pytest.raises(ValueError, match="lam"):
        HybridFlow((1, 4, 4), 3, 17, FlowConfig(blocks=1, hidden=8), lam=-1.0)


@pytest.mark.parametrize("bad", [torch.full((2, 1, 4, 4), float("nan")), torch.full((2, 1, 4, 4), 1.5), torch.rand(2, 16)])
def test_bad_input_raises_value_error(bad):
    model = _hybrid()
    for fn in (model.log_prob, model.log_joint, model):
        with pytest.raises(ValueError):
            fn(bad)


def test_training_raises_accuracy_on_a_digits_subset():
    splits = load("digits", seed=0, limit=300)
    model = HybridFlow((1, 8, 8), 10, 17, FlowConfig(blocks=2, hidden=32), lam=64.0, seed=0)
    with torch.no_grad():
        # ActNorm initialises itself on the first batch it sees: make that dequantised training data, as in
        # `fit` (mid-bin digits have constant pixels, whose zero spread would blow its scales up)
        model.train().training_loss(splits.train.x, splits.train.y)
        before = (model.eval()(splits.test.x).argmax(1) == splits.test.y).float().mean().item()
    fit(model, splits.train, splits.val, TrainConfig(epochs=15, batch_size=64, lr=3e-3, patience=15), seed=0)
    with torch.no_grad():
        after = (model(splits.test.x).argmax(1) == splits.test.y).float().mean().item()
        bpd = model.dequantised_bpd(splits.test.x, torch.Generator().manual_seed(0)).mean().item()
    assert after > 0.8 and after > before + 0.4
    assert 1.5 < bpd < 4.09  # log2(17) = 4.09 bits/dim is the uniform density


def test_samples_follow_p_x_given_y_by_rejection_on_the_heads_posterior():
    model = _hybrid(noise=0.0)
    with torch.no_grad():  # p(y|z) depends on z_0 only: class 0 likes z_0 > 0, class 1 z_0 < 0, class 2 indifferent
        model.head.weight.zero_()
        model.head.weight[0, 0], model.head.weight[1, 0] = 8.0, -8.0
        model.head.bias.copy_(torch.tensor([0.0, 0.0, -20.0]))  # class 2 is (almost) never accepted...
    model.decode = lambda z: z  # look at the latent draws themselves
    y = torch.tensor([0] * 400 + [1] * 400)
    z = model.sample(y, torch.Generator().manual_seed(0))
    assert z.shape == (800, 16)
    # p(z | y=0) is N(0, I) reweighted by sigmoid(8 z_0) * ...: E[z_0 | y=0] is about E|z_0| = 0.8, and symmetric for y=1
    assert 0.6 < z[:400, 0].mean() < 1.0 and -1.0 < z[400:, 0].mean() < -0.6
    assert abs(z[:, 1:].mean()) < 0.05  # the other coordinates are untouched
    with pytest.raises(ModelError, match="rejection sampling"):  # ...so asking for it fails loudly instead of looping
        model.sample(torch.tensor([2]), torch.Generator().manual_seed(0), max_rounds=5)
