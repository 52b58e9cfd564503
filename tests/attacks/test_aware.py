"""detector_aware_pgd, detector_class_pgd, strongest_aware_attack and bpda on the trained digits MLP with a Gaussian detector."""

import copy

import pytest
import torch

from attack_helpers import assert_in_budget, assert_unchanged, gen, snapshot
from fooled.attacks import (
    attack_success,
    best_over_budgets,
    bpda,
    detector_aware_pgd,
    detector_class_logits,
    detector_class_pgd,
    donor_start,
    evasion_margin,
    penalty_aware_pgd,
    strongest_aware_attack,
)
from fooled.attacks.aware import apgd_checkpoints
from fooled.errors import ConfigError

AWARE = (detector_aware_pgd, detector_class_pgd, strongest_aware_attack)


@pytest.fixture(scope="module")
def detector(batch, gaussian_log_prob):
    """(score, threshold): -log N(x) flagging 5% of clean test digits."""
    threshold = -gaussian_log_prob(batch[0]).quantile(0.05).item()
    return (lambda x: -gaussian_log_prob(x)), threshold


def evaded(model, x_adv, y, score, threshold):
    return attack_success(model, x_adv, y) & (score(x_adv) <= threshold)


def test_never_weaker_than_the_penalty_reference(model, batch, detector):
    """The study's attack holds a lean penalty run: it evades on at least as many images as a longer penalty reference, and
    given that reference's output as a start it is never ranked below it on any image."""
    x, y = batch[0][:100], batch[1][:100]
    score, threshold = detector
    reference = penalty_aware_pgd(model, x, y, score=score, threshold=threshold, eps=0.1, steps=100, restarts=2, generator=gen(1))
    ref = evaded(model, reference, y, score, threshold)
    new = evaded(model, strongest_aware_attack(model, x, y, score=score, threshold=threshold, eps=0.1, steps=20, lambdas=(1.0,),
                                               generator=gen()), y, score, threshold)
    assert new.sum() >= ref.sum() and 0.5 < ref.float().mean() < 0.95  # a budget where the detector matters
    with_ref = evaded(model, detector_aware_pgd(model, x, y, score=score, threshold=threshold, eps=0.1, steps=5, starts=[reference],
                                                generator=gen()), y, score, threshold)
    assert (with_ref >= ref).all()


def test_donor_start_is_the_nearest_likely_image_of_another_class(model, digits, batch, detector):
    x, y = batch[0][:40], batch[1][:40]
    pool_x, pool_y = digits[0][:300], digits[1][:300]
    score, threshold = detector
    donors = donor_start(model, x, y, pool_x, pool_y, score=score, threshold=threshold)
    with torch.no_grad():
        eligible = (model(pool_x).argmax(1) == pool_y) & (score(pool_x) <= threshold)
    for i in range(len(x)):  # brute force, image by image
        others = eligible & (pool_y != y[i])
        dist = (pool_x[others] - x[i]).flatten(1).norm(dim=1)
        assert torch.equal(donors[i], pool_x[others][dist.argmin()])
    # a class the pool lacks leaves the image itself
    assert torch.equal(donor_start(model, x[:3], y[:3], pool_x[pool_y == y[0]], pool_y[pool_y == y[0]])[y[:3] == y[0]],
                       x[:3][y[:3] == y[0]])


def test_unbounded_budget_from_donors_evades_on_every_correct_image(model, digits, batch, detector):
    """linf eps 1 reaches any image: started from likely images of other classes, the attack must evade wherever the
    model is right (the audit's unbounded check, on the test MLP)."""
    x, y = batch[0][:60], batch[1][:60]
    score, threshold = detector
    donors = donor_start(model, x, y, digits[0][:500], digits[1][:500], score=score, threshold=threshold)
    x_adv = strongest_aware_attack(model, x, y, score=score, threshold=threshold, eps=1.0, steps=10, lambdas=(1.0,),
                                   starts=[donors], random_start=False, generator=gen())
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    assert torch.equal(evaded(model, x_adv, y, score, threshold) & correct, correct)
    with pytest.raises(ConfigError, match="needs a start"):
        detector_aware_pgd(model, x, y, score=score, threshold=threshold, eps=0.1, random_start=False)


def test_strongest_is_the_best_of_both(model, batch, detector):
    x, y = batch[0][:100], batch[1][:100]
    score, threshold = detector
    kwargs = dict(score=score, threshold=threshold, eps=0.06, steps=20, generator=gen())
    by_class = evaded(model, detector_class_pgd(model, x, y, **kwargs), y, score, threshold)
    best = evaded(model, strongest_aware_attack(model, x, y, **kwargs), y, score, threshold)
    assert (best >= by_class).all()
    assert best.sum() >= evaded(model, detector_aware_pgd(model, x, y, **kwargs), y, score, threshold).sum()


@pytest.mark.parametrize("attack", AWARE)
@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_budget_box_and_purity(trained, batch, detector, attack, norm, eps):
    model = copy.deepcopy(trained).train()
    before = snapshot(model)
    x, y = batch[0][:30], batch[1][:30]
    score, threshold = detector
    kwargs = dict(score=score, threshold=threshold, norm=norm, steps=5)
    a = attack(model, x, y, eps=eps, generator=gen(3), **kwargs)
    assert_in_budget(a, x, eps, norm)
    assert torch.equal(a, attack(model, x, y, eps=eps, generator=gen(3), **kwargs))
    assert torch.equal(attack(model, x, y, eps=0.0, generator=gen(3), **kwargs), x)
    assert_unchanged(model, before)


def test_detector_class_wins_iff_flagged_and_margin_sign():
    g = gen(1)
    logits, score, y = torch.randn(500, 4, generator=g) * 3, torch.randn(500, generator=g), torch.randint(4, (500,), generator=g)
    aug = detector_class_logits(logits, score, 0.2, c=2.0)
    assert torch.equal(aug.argmax(1) == 4, score > 0.2)
    assert torch.equal(evasion_margin(aug, y) > 0, (logits.argmax(1) != y) & (score < 0.2))


def test_restarts_and_lambdas_change_the_runs(model, batch, detector):
    x, y = batch[0][:50], batch[1][:50]
    score, threshold = detector
    one = detector_aware_pgd(model, x, y, score=score, threshold=threshold, eps=0.06, steps=10, lambdas=(1.0,), generator=gen())
    more = detector_aware_pgd(model, x, y, score=score, threshold=threshold, eps=0.06, steps=10, lambdas=(1.0,), restarts=3,
                              generator=gen())
    assert not torch.equal(one, more)
    assert evaded(model, more, y, score, threshold).sum() >= evaded(model, one, y, score, threshold).sum()


def test_apgd_checkpoints():
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert all(0 < c < 5 for c in apgd_checkpoints(5))


def test_bpda_forward_exact_backward_surrogate(model, batch, detector):
    score, threshold = detector
    quantised = bpda(lambda x: score(torch.round(x * 4) / 4), score)  # piecewise constant: no gradient of its own
    x = batch[0][:10].clone().requires_grad_(True)
    out = quantised(x)
    assert torch.equal(out.detach(), score(torch.round(x.detach() * 4) / 4))
    (g,) = torch.autograd.grad(out.sum(), x)
    x2 = x.detach().requires_grad_(True)
    (g2,) = torch.autograd.grad(score(x2).sum(), x2)
    assert torch.allclose(g, g2)
    # and an attack through it lowers the exact (quantised) score on misclassified images
    xb, yb = batch[0][:40], batch[1][:40]
    exact_threshold = quantised(xb).quantile(0.5).item()
    x_adv = detector_aware_pgd(model, xb, yb, score=quantised, threshold=exact_threshold, eps=0.15, steps=20, generator=gen())
    assert evaded(model, x_adv, yb, quantised, exact_threshold).float().mean() > 0.3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(score=None), r"score must be a callable"),
        (dict(threshold="high"), r"threshold must be a float"),
        (dict(lambdas=()), r"lambdas must contain at least one"),
        (dict(initial_step=0), r"initial_step must be a finite number > 0"),
        (dict(starts=[torch.zeros(3, 1, 8, 8)]), r"starts\[0\] must be a tensor of the shape of x \(2, 1, 8, 8\)"),
        (dict(score=lambda x: torch.zeros(len(x), 2)), r"score must return a tensor of shape \(2,\)"),
    ],
)
def test_bad_arguments(model, batch, kwargs, match):
    args = dict(score=lambda x: x.flatten(1).sum(1), threshold=1.0, eps=0.1, steps=2) | kwargs
    with pytest.raises(ConfigError, match=match):
        detector_aware_pgd(model, batch[0][:2], batch[1][:2], **args)


def test_complexity_score_torch_form_equals_its_bpda(tiny_flow, batch):
    """The study attacks the complexity score in its torch form: value and gradient equal BPDA's with L(x) held fixed."""
    import math

    from fooled.detection.detectors import complexity_score

    x = batch[0][:16]
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    direct = complexity_score(tiny_flow, a, 17)
    through = bpda(lambda v: complexity_score(tiny_flow, v, 17), lambda v: -tiny_flow.log_prob(v) / math.log(2))(b)
    (g_direct,), (g_through,) = torch.autograd.grad(direct.sum(), a), torch.autograd.grad(through.sum(), b)
    assert torch.allclose(direct, through) and torch.allclose(g_direct, g_through, atol=1e-5)
    assert g_direct.abs().sum() > 0


def test_no_images_is_no_images(model, detector):
    score, threshold = detector
    empty_x, empty_y = torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)
    out = detector_aware_pgd(model, empty_x, empty_y, score=score, threshold=threshold, eps=0.1, steps=3, generator=gen())
    assert out.shape == empty_x.shape


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_per_example_budgets_in_one_batch(model, batch, detector, norm):
    """eps as a tensor of one budget per image (the study attacks every budget in one batch): each image stays in its own
    ball, a budget of 0 leaves its image alone, and a tensor of one value gives the scalar budget's result."""
    x, y = batch[0][:40], batch[1][:40]
    score, threshold = detector
    eps = torch.tensor([0.0, 0.05, 0.1, 0.3]).repeat_interleave(10) * (1 if norm == "linf" else 8)
    kwargs = dict(score=score, threshold=threshold, steps=10, norm=norm)
    x_adv = strongest_aware_attack(model, x, y, eps=eps, generator=gen(), **kwargs)
    for e in eps.unique():
        at = eps == e
        assert_in_budget(x_adv[at], x[at], float(e), norm)
    assert torch.equal(x_adv[:10], x[:10])
    same = strongest_aware_attack(model, x, y, eps=torch.full((40,), 0.1), generator=gen(), **kwargs)
    atol = 1e-6 if norm == "linf" else 1e-2  # float32 budgets against float64 numbers: L2 steps round differently
    torch.testing.assert_close(same, strongest_aware_attack(model, x, y, eps=0.1, generator=gen(), **kwargs), rtol=0, atol=atol)
    with pytest.raises(ConfigError, match="one finite budget >= 0 per example"):
        strongest_aware_attack(model, x, y, eps=torch.full((39,), 0.1), **kwargs)


def test_best_over_budgets_never_falls_as_eps_grows(model, batch, detector):
    """Each budget keeps its own result unless a smaller budget's ranks strictly higher, stays in its own ball, and so
    evades at least as often as every smaller budget; a larger budget given the clean images takes the smaller's evasions."""
    x, y = batch[0][:60], batch[1][:60]
    score, threshold = detector
    kwargs = dict(score=score, threshold=threshold, steps=10, lambdas=(1.0,))
    advs = {e: detector_aware_pgd(model, x, y, eps=e, generator=gen(int(e * 100)), **kwargs) for e in (0.1, 0.05)}
    advs[0.2] = x.clone()  # a "result" that evades nowhere: the 0.2 budget must take the smaller budgets' points
    out, rescued = best_over_budgets(model, x, y, advs, score=score, threshold=threshold)
    assert list(out) == [0.05, 0.1, 0.2] and torch.equal(out[0.05], advs[0.05]) and not rescued[0.05].any()
    counts = [int(evaded(model, out[e], y, score, threshold).sum()) for e in out]
    assert counts == sorted(counts) and counts[0] > 0
    own = [evaded(model, advs[e], y, score, threshold) for e in out]
    for e, mine in zip(out, own):
        assert_in_budget(out[e], x, e, "linf")
        assert (evaded(model, out[e], y, score, threshold) >= mine).all()
    # per image, a budget's point is its own or, whole, the smaller budget's (never a mix); some of each here
    own_point = (out[0.1] == advs[0.1]).flatten(1).all(1)
    assert torch.equal(out[0.1][~own_point], out[0.05][~own_point]) and 0 < int(own_point.sum()) < len(x)
    assert (evaded(model, out[0.2], y, score, threshold) >= evaded(model, out[0.1], y, score, threshold)).all()
    # rescued: exactly the images that evade now but did not with the budget's own point
    for e, mine in zip(out, own):
        assert torch.equal(rescued[e], evaded(model, out[e], y, score, threshold) & ~mine)
    assert int(rescued[0.2].sum()) == counts[-1] - int(own[2].sum()) > 0
    with pytest.raises(ConfigError, match=r"advs\[0.3\] must have the shape of x"):
        best_over_budgets(model, x, y, {0.3: x[:5]}, score=score, threshold=threshold)
