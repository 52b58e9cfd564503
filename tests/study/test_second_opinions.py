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
    advs = {("cnn", "pgd", e): pgd(model, x, y, eps=e, steps=10, generator=torch.Generator().manual_seed(0)) for e in eps}

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
