import pytest
import torch

from fooled.config import ModelsConfig, TrainConfig
from fooled.data import load
from fooled.errors import CheckpointError
from fooled.models import build_model
from fooled.train import fit, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def digits():
    return load("digits", seed=0)


def test_cnn_learns_digits_and_best_weights_are_restored(digits, tmp_path):
    model = build_model("cnn", digits.info, ModelsConfig(), seed=0)
    result = fit(model, digits.train, digits.val, TrainConfig(epochs=6, patience=2), seed=0)
    assert not model.training
    acc = (model(digits.test.x).argmax(1) == digits.test.y).float().mean().item()
    assert acc > 0.9
    assert result.best_val_loss == min(result.val_losses)
    path = tmp_path / "cnn.pt"
    save_checkpoint(path, model, "abc", {"epochs": result.epochs})
    fresh = build_model("cnn", digits.info, ModelsConfig(), seed=1)
    assert load_checkpoint(path, fresh, "abc") == {"epochs": result.epochs}
    assert torch.equal(fresh(digits.test.x[:5]), model(digits.test.x[:5]))
    with pytest.raises(CheckpointError, match="trained with config abc, not xyz"):
        load_checkpoint(path, fresh, "xyz")
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(path, fresh, "abc")


def test_training_is_deterministic(digits):
    outs = []
    for _ in range(2):
        model = build_model("flow", digits.info, ModelsConfig(flow=ModelsConfig().flow.__class__(blocks=1, hidden=8)), seed=0)
        fit(model, digits.train, digits.val, TrainConfig(epochs=2), seed=0)
        outs.append(model.log_prob(digits.test.x[:8]))
    assert torch.equal(outs[0], outs[1])


def test_learning_curve_has_a_point_per_epoch_with_accuracy_and_bits_per_dim(digits):
    from fooled.config import FlowConfig

    model = build_model("flow", digits.info, ModelsConfig(flow=FlowConfig(blocks=1, hidden=16)), seed=0)
    result = fit(model, digits.train, digits.val, TrainConfig(epochs=3, patience=5, curve_images=100), seed=0)
    assert [p["epoch"] for p in result.curve] == [0, 1, 2]
    assert [p["val_loss"] for p in result.curve] == result.val_losses
    first, last = result.curve[0], result.curve[-1]
    assert last["train_bpd"] < first["train_bpd"] and last["val_bpd"] < first["val_bpd"]  # a flow learning digits
    assert all(0 <= p[k] <= 1 for p in result.curve for k in ("train_acc", "val_acc"))
    cnn = build_model("cnn", digits.info, ModelsConfig(), seed=0)
    point = fit(cnn, digits.train, digits.val, TrainConfig(epochs=1, curve_images=100), seed=0).curve[0]
    assert "val_acc" in point and "val_bpd" not in point  # no density, no bits/dim
    assert not fit(cnn, digits.train, digits.val, TrainConfig(epochs=1, curve_images=0), seed=0).curve


def test_monitoring_keys_leave_the_trained_models_cache_keys_alone():
    import dataclasses

    from fooled.config import StudyConfig, trained_hash
    from fooled.train import model_key

    cfg = StudyConfig()
    watched = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, curve_images=0))
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=cfg.train.lr / 2))
    assert model_key(watched, "flow", 0) == model_key(cfg, "flow", 0) != model_key(other, "flow", 0)
    assert trained_hash(watched) == trained_hash(cfg) != trained_hash(other)


def test_lr_drop_multiplies_the_learning_rate_after_each_epoch_without_a_better_validation_loss(digits):
    import dataclasses

    noisy = dataclasses.replace(digits.val, y=digits.val.y[torch.randperm(len(digits.val.y), generator=torch.Generator().manual_seed(0))])
    model = build_model("cnn", digits.info, ModelsConfig(), seed=0)
    result = fit(model, digits.train, noisy, TrainConfig(epochs=6, patience=4, lr=1e-3, lr_drop=0.5, curve_images=50), seed=0)
    lrs, losses = [p["lr"] for p in result.curve], result.val_losses
    best, drops = float("inf"), 0
    for i in range(len(lrs) - 1):
        stale = not losses[i] < best - 1e-5
        best = min(best, losses[i])
        assert lrs[i + 1] == pytest.approx(lrs[i] * (0.5 if stale else 1.0))
        drops += stale
    assert drops >= 1 and lrs[0] == 1e-3  # labels shuffled: the validation loss stops improving early


def test_head_dropout_is_a_module_only_when_asked_for():
    from fooled.config import FlowConfig
    from fooled.data import dataset_info
    from fooled.models.glow import GlowConfig

    info = dataset_info("digits")
    small = dict(scales=1, blocks_per_scale=1, hidden_channels=8, head="mlp", head_hidden=16)
    plain = build_model("flow", info, ModelsConfig(flow=FlowConfig(kind="glow"), glow=GlowConfig(**small)), seed=0)
    dropped = build_model("flow", info, ModelsConfig(flow=FlowConfig(kind="glow"), glow=GlowConfig(**small, head_dropout=0.5)), seed=0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.head.modules())  # old checkpoints keep their keys
    assert sum(isinstance(m, torch.nn.Dropout) for m in dropped.head.modules()) == 1
    dropped.eval()
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(dropped.log_joint(x), dropped.log_joint(x))  # no dropout when scoring


def test_neutral_new_settings_leave_the_cache_keys_alone():
    import dataclasses

    from fooled.config import StudyConfig, trained_hash
    from fooled.train import model_key

    cfg = StudyConfig()
    dropped = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr_drop=0.2))
    assert model_key(dropped, "flow", 0) != model_key(cfg, "flow", 0) and trained_hash(dropped) != trained_hash(cfg)
    from fooled.config import key_dict

    assert "lr_drop" not in key_dict(cfg.train) and key_dict(dropped.train)["lr_drop"] == 0.2
