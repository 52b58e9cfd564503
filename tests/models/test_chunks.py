import torch
from hypothesis import given, settings, strategies as st

from fooled.models import CNN, CNNConfig
from fooled.models.chunks import CPU_CHUNK, in_chunks
from fooled.models.glow import GlowConfig, GlowHybrid


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3 * CPU_CHUNK + 7), with_noise=st.booleans())
def test_every_image_is_passed_once_in_order_in_chunks_of_at_most_cpu_chunk(n, with_noise):
    x, noise = torch.arange(n, dtype=torch.float32), (torch.arange(n) * 10.0 if with_noise else None)
    sizes = []

    def fn(a, b):
        sizes.append(len(a))
        return a + (0 if b is None else b), -a

    out, neg = in_chunks(fn, x, noise)
    assert torch.equal(out, x + (0 if noise is None else noise)) and torch.equal(neg, -x)
    assert max(sizes) <= CPU_CHUNK and sum(sizes) == n
    assert len(sizes) == -(-n // CPU_CHUNK)


def _x(n, shape, seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def test_a_cnn_gives_each_image_the_same_logits_and_input_gradient_whatever_the_batch():
    torch.manual_seed(0)
    cnn = CNN((1, 12, 12), 4, CNNConfig(channels=(4, 8), hidden=16)).eval()
    x = _x(CPU_CHUNK + 40, (1, 12, 12)).requires_grad_(True)
    logits = cnn(x)  # chunked: more images than CPU_CHUNK
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), x)
    for part in (slice(0, 3), slice(CPU_CHUNK - 2, CPU_CHUNK + 5)):
        xs = x[part].detach().requires_grad_(True)
        one = cnn(xs)
        (g,) = torch.autograd.grad(one[:, 1].sum(), xs)
        torch.testing.assert_close(one, logits[part], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g, grad[part], rtol=1e-5, atol=1e-7)


def test_a_glow_in_eval_mode_scores_in_chunks_and_trains_on_whole_batches():
    cfg = GlowConfig(scales=2, blocks_per_scale=1, hidden_channels=8)
    glow = GlowHybrid((1, 8, 8), 3, 256, cfg, seed=0)
    calls = []
    original = glow._encode
    glow._encode = lambda x, noise: calls.append(len(x)) or original(x, noise)
    glow.train()
    glow.encode(_x(CPU_CHUNK + 10, (1, 8, 8)))  # ActNorm's data-dependent initialisation sees this whole batch
    assert calls == [CPU_CHUNK + 10]
    glow.eval()
    calls.clear()
    x = _x(CPU_CHUNK + 10, (1, 8, 8), seed=1)
    z, log_det = glow.encode(x)
    assert calls == [CPU_CHUNK, 10]
    z_head, log_det_head = glow.encode(x[:5])
    torch.testing.assert_close(z_head, z[:5], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log_det_head, log_det[:5], rtol=1e-5, atol=1e-4)
    lp = glow.log_prob(x)
    torch.testing.assert_close(glow.log_prob(x[-5:]), lp[-5:], rtol=1e-5, atol=1e-4)
