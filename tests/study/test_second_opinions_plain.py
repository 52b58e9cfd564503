"""The audit's second opinion on plain robust accuracy: AutoAttack beside the study's PGD, failing when the study's is weak."""

import dataclasses

import torch
from sklearn.datasets import load_digits
from torch import nn

from fooled.attacks import PGDSettings, pgd_worst_case
from fooled.config import StudyConfig
from fooled.data import dataset_info
from fooled.study.context import SeedContext
from fooled.study.stages.autoattack_check import autoattack_checks

EPS = (0.05, 0.1)


def _mlp_and_images():
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):  # full batch: a 96% digits classifier in about a second
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:1297]), y[:1297]).backward()
        opt.step()
    return model.eval(), x[1297:1345], y[1297:1345]


def _context(tmp_path, model, x, y) -> SeedContext:
    cfg = StudyConfig()
    cfg = dataclasses.replace(cfg, attacks=dataclasses.replace(cfg.attacks, eps=EPS, expensive_examples=None),
                              audit=dataclasses.replace(cfg.audit, autoattack=("apgd-ce", "apgd-t"), autoattack_steps=50))
    return SeedContext(cfg=cfg, seed=0, run_dir=tmp_path, device=torch.device("cpu"), info=dataset_info("digits"), x=x, y=y,
                       models={"mlp": model}, keys={"mlp": "mlp-key"}, guards={}, clean_pred={}, log=lambda msg: None)


def _study_advs(model, x, y, **pgd):
    return {("mlp", "pgd", e): pgd_worst_case(model, x, y, eps=e, settings=PGDSettings(**pgd), generator=torch.Generator().manual_seed(0)).x_adv
            for e in EPS}


def test_the_second_opinion_passes_the_study_attack_and_fails_a_crippled_one(tmp_path):
    model, x, y = _mlp_and_images()
    ctx = _context(tmp_path, model, x, y)
    (strong,) = autoattack_checks(ctx, _study_advs(model, x, y, steps=40, losses=("ce", "margin", "multitarget"), targets=3))
    assert strong["passed"] and strong["target"] == "mlp", strong["detail"]
    assert "APGD-CE, APGD-T (3 targets)" in strong["detail"] and "eps 0.05: study" in strong["detail"]
    # one short step from a random start: the study's attack crippled; AutoAttack, run on the images it leaves, fools more
    (weak,) = autoattack_checks(ctx, _study_advs(model, x, y, steps=1, step_size=0.1 * EPS[0], losses=("ce",)))
    assert not weak["passed"], weak["detail"]
    assert "images the study left correct fooled by AutoAttack" in weak["detail"]
    # a cached stage per budget and set of images left standing: the crippled attack leaves others than the strong one
    assert len(list(tmp_path.rglob("*autoattack*"))) == 2 * len(EPS)
    assert autoattack_checks(ctx, _study_advs(model, x, y, steps=1, step_size=0.1 * EPS[0], losses=("ce",)))[0] == weak
    assert len(list(tmp_path.rglob("*autoattack*"))) == 2 * len(EPS)  # a rerun reads them back


def test_no_second_opinion_when_none_is_configured(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x, y = torch.rand(4, 1, 8, 8), torch.arange(4)
    ctx = _context(tmp_path, model, x, y)
    ctx = dataclasses.replace(ctx, cfg=dataclasses.replace(ctx.cfg, audit=dataclasses.replace(ctx.cfg.audit, autoattack=())))
    assert autoattack_checks(ctx, _study_advs(model, x, y, steps=1)) == []
