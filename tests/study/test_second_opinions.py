"""The audit's second opinions: independent penalty-method attacks beside the study's detector-aware attack."""


import pytest
import torch
from torch import nn

from fooled.attacks import pgd
from fooled.config import StudyConfig, override, quick
from fooled.detection import Guard
from fooled.models import predict
from fooled.study.context import SeedContext
from fooled.study.stages.aware import study_aware_stages
from fooled.study.stages.second_opinions import OPINIONS, opinion_counts, second_opinion_checks


def mlp(train):
    """A small MLP on the digits, trained full-batch in about a second."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(train.x), train.y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def world(digits, flow):
    """(context maker, plain PGD adversarials): an MLP guarded by the tiny flow's -log p(x), 24 attacked test images."""
    x, y = digits.test.x[:24], digits.test.y[:24]
    model = mlp(digits.train)
    guard, _ = Guard.fit("flow", flow, digits.val.x, x, digits.info, 0.05)
    eps = (0.0625, 0.125)
    advs = {("cnn", "pgd", e): pgd(model, x, y, eps=e, steps=10, generator=torch.Generator().manual_seed(0)).x_adv for e in eps}

    def context(run_dir, steps):
        cfg = override(quick(StudyConfig()), [f"attacks.eps={list(eps)}", f"attacks.adaptive_steps={steps}",
                                              'attacks.aware_detectors=["nll"]', "attacks.expensive_examples=24"])
        return SeedContext(cfg, 0, run_dir, torch.device("cpu"), digits.info, x, y, {"cnn": model}, {"cnn": "mlp", "flow": "flow"},
                           {"cnn": guard}, {"cnn": predict(model, x).numpy()}, log=lambda m: None)

    return context, advs


def test_a_crippled_study_attack_fails_the_check_and_the_detail_gives_both_numbers(world, tmp_path):
    context, advs = world
    crippled = context(tmp_path / "crippled", steps=1)
    aware = {("cnn", "nll"): study_aware_stages(crippled, "cnn", "nll", advs)}
    (check,) = second_opinion_checks(crippled, aware)
    counts = opinion_counts(crippled, aware)
    gap = max(r[o] for r in counts for o in OPINIONS)  # evasions only an opinion finds
    assert gap > 0.05 * 24 and not check["passed"]  # the 1-step attack misses evasions the opinions find
    assert check["target"] == "cnn" and check["check"].startswith("second opinions")
    for r in counts:  # every budget's study number and every opinion's number are in the detail
        assert f"eps {r['eps']:g}: study {r['study']}, " + ", ".join(f"{o} +{r[o]}" for o in OPINIONS) in check["detail"]
        assert r["study"] + max(r[o] for o in OPINIONS) <= int((crippled.clean_pred["cnn"] == crippled.y.numpy()).sum())
    full_ctx = context(tmp_path / "full", steps=8)
    full = opinion_counts(full_ctx, {("cnn", "nll"): study_aware_stages(full_ctx, "cnn", "nll", advs)})
    assert max(r[o] for r in full for o in OPINIONS) < gap  # the study's own attack closes the gap


def test_on_the_grid_a_crippled_study_set_fails_and_the_opinions_images_are_valid(world, tmp_path):
    from fooled.attacks import penalty_aware_pgd, through_grid
    from fooled.attacks.grid import on_grid
    from fooled.study.stages.aware import aware_score
    from fooled.study.stages.grid_opinions import grid_opinion_checks
    from fooled.study.stages.honest import GridAttack, GridSet

    context, _ = world
    ctx = context(tmp_path / "grid", steps=8)
    guard, levels = ctx.guards["cnn"], ctx.info.levels
    attack = GridAttack("nll", aware_score(guard, "nll"), guard.threshold, 8, donors=False)
    flags = lambda x: guard.score(x) > guard.threshold  # noqa: E731
    crippled = GridSet(attack, {"crippled": True}, {e: ctx.x for e in ctx.cfg.attacks.eps}, flags)  # the clean images: no evasion
    (check,) = grid_opinion_checks(ctx, {("cnn", "nll"): crippled})
    numbers = check["numbers"]
    assert check["check"].startswith("second opinions on the grid") and not check["passed"]
    assert all(r["study"] == 0 for r in numbers["per_eps"]) and max(r[o] for r in numbers["per_eps"] for o in OPINIONS) > 0.05 * 24
    # what the opinions run: penalty-method PGD through the rounding, on the grid and inside the budget
    x_adv = through_grid(penalty_aware_pgd, ctx.models["cnn"], ctx.x, ctx.y, score=attack.score, threshold=attack.threshold,
                         eps=0.125, levels=levels, steps=5)
    assert bool(on_grid(x_adv, levels).all()) and float((x_adv - ctx.x).abs().max()) <= 0.125 + 1e-6
