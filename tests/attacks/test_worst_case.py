import torch
from torch import nn

import fooled.attacks.worst_case
from fooled.attacks import pgd_worst_case


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

    def fake_pgd(model, x, y, *, loss, **kw):
        """Each run misclassifies the first third of the images it is given and moves the rest a little."""
        calls.append((len(x), loss))
        x_adv = x.clone()
        x_adv.view(len(x), -1)[:, 0] = 0.3 + torch.arange(len(x)) % 2 * 0.01 * len(calls)
        x_adv.view(len(x), -1)[: len(x) // 3, 0] = 0.9
        return x_adv

    monkeypatch.setattr(fooled.attacks.worst_case, "pgd", fake_pgd)
    x = torch.full((60, 1, 2, 2), 0.2)
    y = torch.zeros(60, dtype=torch.long)
    x_adv = pgd_worst_case(Threshold(), x, y, eps=0.8, norm="linf", losses=("ce", "margin"), restarts=2, generator=None)

    # restart x loss, each on the images that no earlier run misclassified: 60, then 40, 27, 18
    assert calls == [(60, "ce"), (40, "margin"), (27, "ce"), (18, "margin")]
    first = x_adv.view(60, -1)[:, 0]
    assert int((first == 0.9).sum()) == 20 + 13 + 9 + 6  # every run's successes are kept
    # where every run failed, the first run's result stands (0.30 or 0.31), not a later one's
    failed = first[first != 0.9]
    assert len(failed) == 12 and set(failed.tolist()) <= {0.30000001192092896, 0.3100000023841858}
