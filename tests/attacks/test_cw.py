import copy
import math

import torch

from attack_helpers import assert_unchanged, gen, snapshot
from fooled.attacks import attack_success, cw_l2, median_l2, pgd


def test_cw_finds_small_l2_adversarials(model, batch):
    x, y = batch[0][:100], batch[1][:100]
    x_adv = cw_l2(model, x, y)
    success = attack_success(model, x_adv, y)
    assert success.float().mean() > 0.9
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and not x_adv.requires_grad
    linf = pgd(model, x, y, eps=0.3, generator=gen()).x_adv
    typical_linf_l2 = (linf - x).flatten(1).norm(dim=1).median()
    assert median_l2(x, x_adv, success) < typical_linf_l2 / 2


def test_cw_failures_are_returned_unchanged(model, batch):
    x, y = batch[0][:50], batch[1][:50]
    x_adv = cw_l2(model, x, y, binary_steps=1, steps=3, c_init=1e-3)  # too weak to succeed everywhere
    success = attack_success(model, x_adv, y)
    clean_wrong = model(x).argmax(1) != y
    failed = ~success & ~clean_wrong
    assert failed.any()
    assert torch.equal(x_adv[failed], x[failed])


def test_cw_targeted(model, batch):
    x, y = batch[0][:50], batch[1][:50]
    target = (y + 1) % 10
    x_adv = cw_l2(model, x, y, target=target, binary_steps=4, steps=50)
    assert attack_success(model, x_adv, y, target).float().mean() > 0.9


def test_cw_handles_pixels_at_the_bounds_and_leaves_model_alone(trained, batch):
    model = copy.deepcopy(trained).train()
    before = snapshot(model)
    x = batch[0][:20].round()  # every pixel exactly 0 or 1
    x_adv = cw_l2(model, x, batch[1][:20], binary_steps=2, steps=20)
    assert torch.isfinite(x_adv).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    assert_unchanged(model, before)


def test_median_l2_ignores_failures():
    x = torch.zeros(3, 1, 2, 2)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0], x_adv[1, 0, 0, 0], x_adv[2, 0, 0, 0] = 0.1, 0.2, 0.9
    assert abs(median_l2(x, x_adv, torch.tensor([True, True, False])) - 0.1) < 1e-6
    assert math.isnan(median_l2(x, x_adv, torch.zeros(3, dtype=torch.bool)))


class FirstPixelAboveHalf(torch.nn.Module):
    """Class 1 iff the first pixel is above 1/2: a model whose only adversarial moves a pixel from 0 to 0.5."""

    def forward(self, x):
        p = x.flatten(1)[:, :1]
        return torch.cat([10 * (0.5 - p), 10 * (p - 0.5)], dim=1)


def test_cw_moves_a_saturated_pixel_from_0_to_one_half():
    x = torch.zeros(4, 1, 8, 8)  # every pixel at 0 (tanh space used to start such a pixel at w = -7.25)
    x[:, 0, 4, 4] = 1.0
    y = torch.zeros(4, dtype=torch.long)
    # 50 Adam steps at one weight c: from the old start the pixel needed 100 steps to cross 1/2; from the clamped one, 45
    x_adv = cw_l2(FirstPixelAboveHalf(), x, y, binary_steps=1, steps=50, c_init=1.0)
    moved = x_adv.flatten(1)[:, 0]
    assert (moved > 0.5).all() and (moved < 0.6).all()  # just across the boundary: the minimal L2 is 0.5
    assert median_l2(x, x_adv, torch.ones(4, dtype=torch.bool)) < 0.6  # the other pixels stay (close to) where they were
