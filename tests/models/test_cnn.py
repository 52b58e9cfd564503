import torch

from fooled.models import build_model, is_density_model
from fooled.config import ModelsConfig
from fooled.data import dataset_info


def test_cnn_maps_images_of_any_supported_size_to_logits():
    for name in ("digits", "mnist", "cifar10"):
        info = dataset_info(name)
        model = build_model("cnn", info, ModelsConfig(), seed=0).eval()
        out = model(torch.rand(3, *info.shape))
        assert out.shape == (3, info.num_classes)
        assert not is_density_model(model)


def test_same_seed_same_initial_weights():
    info = dataset_info("digits")
    a = build_model("flow", info, ModelsConfig(), seed=3)
    b = build_model("flow", info, ModelsConfig(), seed=3)
    c = build_model("flow", info, ModelsConfig(), seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert is_density_model(a)


def test_pool_to_4_is_adaptive_average_pooling_without_the_identity_case():
    from fooled.models.cnn import PoolTo4

    torch.manual_seed(0)
    for size in (4, 7, 8, 14):
        x = torch.randn(3, 5, size, size, requires_grad=True)
        ours, reference = PoolTo4()(x), torch.nn.AdaptiveAvgPool2d(4)(x)
        assert ours.shape == (3, 5, 4, 4) and torch.equal(ours, reference)
        g_ours, = torch.autograd.grad(ours.square().sum(), x)
        g_ref, = torch.autograd.grad(reference.square().sum(), x)
        assert torch.allclose(g_ours, g_ref)
