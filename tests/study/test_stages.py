"""Stage keys and the convergence grid, checked directly on configs, without running a study."""

import dataclasses
import functools
from types import SimpleNamespace

import pytest

from fooled.config import load_config, override
from fooled.study.stages import convergence_grid
from fooled.study.stages.batching import budgets_of
from fooled.study.context import SeedContext
from fooled.study.stages.plain import VERSION, plain_key


def _ctx(cfg):
    ctx = SimpleNamespace(cfg=cfg, keys={"cnn": "model-hash"})
    ctx.key = functools.partial(SeedContext.key, ctx)  # the real key derivation, on a context without models
    return ctx


@pytest.mark.parametrize("setting, value", [("steps", 7), ("step_size", 0.01), ("restarts", 3), ("losses", ["ce"]), ("targets", 2)])
def test_every_pgd_setting_changes_the_plain_stage_key(setting, value):
    cfg = load_config()
    changed = override(cfg, [f"attacks.{setting}={value}"])
    assert getattr(changed.attacks, setting) != getattr(cfg.attacks, setting)
    assert plain_key(_ctx(changed), "cnn", "pgd", 0.125) != plain_key(_ctx(cfg), "cnn", "pgd", 0.125)


def test_a_plain_stage_key_holds_the_model_the_budget_and_the_batch():
    cfg = load_config()
    key = plain_key(_ctx(cfg), "cnn", "pgd", 0.125)
    assert key["model"] == "model-hash" and key["eps"] == 0.125 and key["batch"] == sorted(cfg.attacks.eps)
    assert plain_key(_ctx(cfg), "cnn", "pgd", 0.0625) != key
    assert "batch" not in plain_key(_ctx(cfg), "cnn", "fgsm", 0.125)  # FGSM runs one budget at a time
    assert key["version"] == VERSION and {k: key[k] for k in cfg.attacks.pgd.key()} == cfg.attacks.pgd.key()


def test_fgsms_key_ignores_the_pgd_settings():
    cfg = load_config()
    changed = override(cfg, ["attacks.steps=7"])
    assert plain_key(_ctx(changed), "cnn", "fgsm", 0.125) == plain_key(_ctx(cfg), "cnn", "fgsm", 0.125) == {
        "model": "model-hash", "eps": 0.125, "attack": "fgsm"}
    assert budgets_of(_ctx(cfg), "pgd_l2") == sorted(cfg.attacks.l2_eps)


def test_a_setting_pgd_does_not_read_leaves_its_key_alone():
    cfg = load_config()
    changed = dataclasses.replace(cfg, attacks=dataclasses.replace(cfg.attacks, cw_steps=cfg.attacks.cw_steps + 1))
    assert plain_key(_ctx(changed), "cnn", "pgd", 0.125) == plain_key(_ctx(cfg), "cnn", "pgd", 0.125)


@pytest.mark.parametrize("steps, grid", [(40, (1, 3, 10, 20, 40)), (100, (1, 3, 10, 20, 40, 100)), (5, (1, 3, 5, 10, 20, 40))])
def test_the_convergence_curve_reaches_the_studys_own_steps(steps, grid):
    assert convergence_grid(steps) == grid
