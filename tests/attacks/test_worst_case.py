import pytest
import torch
from torch import nn

import fooled.attacks.gradient
import fooled.attacks.worst_case
from attack_helpers import gen
from fooled.attacks import Attacked, PGDSettings, attack_success, multitarget_pgd, pgd, pgd_worst_case
from fooled.errors import ConfigError


class Threshold(nn.Module):
    """Class 1 when the first pixel is above 1/2, else class 0."""

    def __init__(self):
        super().__init__()
        self.threshold = nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        p = x.flatten(1)[:, :1]
        return torch.cat([self.threshold - p, p - self.threshold], dim=1)


def test_worst_case_pgd_runs_each_later_loss_and_restart_only_on_images_still_classified_right(monkeypatch):
    calls = []

    def fake_pgd(model, x, y, *, loss, early_stop, **kw):
        """Each run misclassifies the first third of the images it is given and moves the rest a little."""
        calls.append((len(x), loss, early_stop))
        x_adv = x.clone()
        x_adv.view(len(x), -1)[:, 0] = 0.3 + torch.arange(len(x)) % 2 * 0.01 * len(calls)
        x_adv.view(len(x), -1)[: len(x) // 3, 0] = 0.9
        return Attacked(x_adv, model(x_adv).argmax(1) != y)

    monkeypatch.setattr(fooled.attacks.worst_case, "pgd", fake_pgd)
    x = torch.full((60, 1, 2, 2), 0.2)
    y = torch.zeros(60, dtype=torch.long)
    x_adv = pgd_worst_case(Threshold(), x, y, eps=0.8, norm="linf", settings=PGDSettings(losses=("ce", "margin"), restarts=2)).x_adv

    # restart x loss, each on the images that no earlier run misclassified: 60, then 40, 27, 18; the later runs
    # stop early, since only their misclassified results are kept
    assert calls == [(60, "ce", False), (40, "margin", True), (27, "ce", True), (18, "margin", True)]
    first = x_adv.view(60, -1)[:, 0]
    assert int((first == 0.9).sum()) == 20 + 13 + 9 + 6  # every run's successes are kept
    # where every run failed, the first run's result stands (0.30 or 0.31), not a later one's
    failed = first[first != 0.9]
    assert len(failed) == 12 and set(failed.tolist()) <= {0.30000001192092896, 0.3100000023841858}


def test_worst_case_says_which_loss_fooled_each_image_whatever_the_restart(monkeypatch):
    def fake_pgd(model, x, y, *, loss, early_stop, **kw):
        """Each run misclassifies the first third of the images it is given."""
        x_adv = x.clone()
        x_adv.view(len(x), -1)[: len(x) // 3, 0] = 0.9
        return Attacked(x_adv, model(x_adv).argmax(1) != y)

    monkeypatch.setattr(fooled.attacks.worst_case, "pgd", fake_pgd)
    x, y = torch.full((60, 1, 2, 2), 0.2), torch.zeros(60, dtype=torch.long)
    x_adv, success, fooled_by = pgd_worst_case(Threshold(), x, y, eps=0.8, settings=PGDSettings(losses=("ce", "margin"), restarts=2))
    # the runs fool 20 (ce), 13 (margin), 9 (ce, second restart) and 6 (margin) images: by loss, 29 and 19; 12 never
    assert fooled_by.tolist().count(0) == 29 and fooled_by.tolist().count(1) == 19
    assert torch.equal(fooled_by == -1, Threshold()(x_adv).argmax(1) == y) and torch.equal(success, fooled_by >= 0)


def test_images_the_first_loss_fooled_are_those_a_pgd_of_it_alone_fools(model, batch):
    x, y = batch[0][:100], batch[1][:100]
    args = dict(eps=0.08, steps=10)
    x_adv, success, fooled_by = pgd_worst_case(model, x, y, eps=0.08, settings=PGDSettings(steps=10, losses=("ce", "margin", "multitarget")),
                                               generator=gen())
    _, ce_alone, _ = pgd(model, x, y, loss="ce", generator=gen(), **args)  # the same first run: the same random start
    assert torch.equal(fooled_by == 0, ce_alone)
    assert torch.equal(fooled_by >= 0, attack_success(model, x_adv, y)) and torch.equal(success, fooled_by >= 0)
    assert (fooled_by > 0).any()  # the later losses fool images the first one missed


@pytest.mark.parametrize("kwargs", [dict(), dict(norm="l2", eps=1.0), dict(target=3), dict(early_stop=True)])
def test_reported_success_is_the_models_verdict_on_the_returned_points(model, batch, kwargs):
    x, y = batch[0][:60], batch[1][:60]
    args = dict(eps=0.1, steps=10, generator=gen()) | kwargs
    x_adv, success, won = pgd(model, x, y, **args)
    assert torch.equal(success, attack_success(model, x_adv, y, args.get("target")))
    assert 0 < success.sum() < 60 and won is None


def test_multitarget_reports_misclassification(model, batch):
    x, y = batch[0][:60], batch[1][:60]
    x_adv, wrong, rank = multitarget_pgd(model, x, y, eps=0.08, steps=10, targets=3, generator=gen())
    assert torch.equal(wrong, attack_success(model, x_adv, y)) and 0 < wrong.sum() < 60
    assert torch.equal(rank >= 0, wrong) and rank.max() <= 2  # which of the 3 targets fooled each image


@pytest.mark.parametrize("norm,budgets", [("linf", (0.0, 0.05, 0.15)), ("l2", (0.0, 0.5, 1.5))])
def test_worst_case_with_one_budget_per_image_matches_each_budget_alone(model, batch, norm, budgets):
    """The study attacks every budget in one batch (eps a tensor, one budget per image), through every loss, the early
    stop's narrowing and multitarget's per-target subsets: each image stays in its own ball and [0, 1], a budget of 0 leaves
    its image alone, and each budget's accuracy is that of the budget attacked alone (up to an image or two of noise)."""
    x, y = batch[0][:60], batch[1][:60]
    k = len(budgets)
    eps = torch.tensor(budgets).repeat_interleave(len(x))
    kwargs = dict(norm=norm, settings=PGDSettings(steps=10, losses=("ce", "margin", "multitarget"), targets=2))
    together = pgd_worst_case(model, x.repeat(k, 1, 1, 1), y.repeat(k), eps=eps, generator=gen(), **kwargs).x_adv.split(len(x))
    for e, x_adv in zip(budgets, together):
        delta = (x_adv - x).flatten(1)
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        assert size.max() <= e + 1e-5 and x_adv.min() >= 0 and x_adv.max() <= 1
        alone = pgd_worst_case(model, x, y, eps=e, generator=gen(), **kwargs).x_adv
        fooled_together, fooled_alone = int(attack_success(model, x_adv, y).sum()), int(attack_success(model, alone, y).sum())
        assert abs(fooled_together - fooled_alone) <= 2, (e, fooled_together, fooled_alone)
    assert torch.equal(together[0], x)
    assert int(attack_success(model, together[-1], y).sum()) > int(attack_success(model, together[1], y).sum())


def test_decay_schedule_starts_at_two_eps_shrinks_to_eps_over_40_and_stays_in_the_budget(model, batch, monkeypatch):
    sizes = []
    real_step = fooled.attacks.gradient.ascent_step
    monkeypatch.setattr(fooled.attacks.gradient, "ascent_step", lambda x, g, size, norm: sizes.append(float(size)) or real_step(x, g, size, norm))
    x, y = batch[0][:32], batch[1][:32]
    x_adv, _, _ = pgd(model, x, y, eps=0.1, steps=10, schedule="decay", generator=gen())
    assert sizes[0] == pytest.approx(0.2) and sizes[-1] == pytest.approx(0.1 / 40, rel=1e-4) and len(sizes) == 10
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with pytest.raises(ConfigError, match="step_size"):
        pgd(model, x, y, eps=0.1, step_size=0.01, schedule="decay")
    with pytest.raises(ConfigError, match="'cosine'"):
        pgd(model, x, y, eps=0.1, schedule="cosine")


def test_worst_case_decay_losses_add_to_the_plain_ones(model, batch):
    x, y = batch[0][:64], batch[1][:64]
    plain = pgd_worst_case(model, x, y, eps=0.08, settings=PGDSettings(losses=("ce", "margin")), generator=gen()).success
    both = pgd_worst_case(model, x, y, eps=0.08, settings=PGDSettings(losses=("ce", "margin", "margin_decay")), generator=gen()).success
    assert 0 < int(plain.sum()) < len(y)
    assert bool((both >= plain).all())  # the later run attacks only the images the first two left correct
    x_adv, _, fooled_by = pgd_worst_case(model, x, y, eps=torch.full((64,), 0.08), settings=PGDSettings(losses=("margin_decay",)),
                                         generator=gen())
    assert torch.equal(fooled_by == 0, attack_success(model, x_adv, y))  # per-image budgets work with the schedule too


def test_decay_losses_run_decay_steps_and_the_others_run_steps(monkeypatch):
    seen = []

    def fake_pgd(model, x, y, *, loss, early_stop, steps, schedule="constant", **kw):
        seen.append((loss, schedule, steps))
        return Attacked(x.clone(), torch.zeros(len(x), dtype=torch.bool))  # fools nothing: every loss runs

    monkeypatch.setattr(fooled.attacks.worst_case, "pgd", fake_pgd)
    x, y = torch.full((4, 1, 2, 2), 0.2), torch.zeros(4, dtype=torch.long)
    pgd_worst_case(Threshold(), x, y, eps=0.1, settings=PGDSettings(losses=("ce", "margin_decay"), steps=7, decay_steps=25))
    assert seen == [("ce", "constant", 7), ("margin", "decay", 25)]
    seen.clear()
    pgd_worst_case(Threshold(), x, y, eps=0.1, settings=PGDSettings(losses=("ce_decay",), steps=7))  # None: the decay loss runs `steps`
    assert seen == [("ce", "decay", 7)]


def test_decay_restarts_rerun_only_the_decay_losses_last_and_name_them(monkeypatch):
    seen = []

    def fake_pgd(model, x, y, *, loss, early_stop, steps, schedule="constant", **kw):
        """Fools nothing except the third decaying run, which fools the first image it is given."""
        seen.append((loss, schedule))
        wrong = torch.zeros(len(x), dtype=torch.bool)
        x_adv = x.clone()
        if seen.count(("margin", "decay")) == 3:
            wrong[0] = True
            x_adv.view(len(x), -1)[0, 0] = 0.9
        return Attacked(x_adv, wrong)

    monkeypatch.setattr(fooled.attacks.worst_case, "pgd", fake_pgd)
    x, y = torch.full((4, 1, 2, 2), 0.2), torch.zeros(4, dtype=torch.long)
    _, _, fooled_by = pgd_worst_case(Threshold(), x, y, eps=0.1, settings=PGDSettings(losses=("ce", "margin_decay"), decay_restarts=3))
    assert seen == [("ce", "constant"), ("margin", "decay"), ("margin", "decay"), ("margin", "decay")]
    assert fooled_by.tolist() == [1, -1, -1, -1]  # the loss's position in `losses`, whichever of its runs fooled it
    seen.clear()
    pgd_worst_case(Threshold(), x, y, eps=0.1, settings=PGDSettings(losses=("ce", "margin_decay"), restarts=2, decay_restarts=2))
    assert seen == [("ce", "constant"), ("margin", "decay")] * 2  # restarts already run the decay loss twice
