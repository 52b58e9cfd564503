import dataclasses
from pathlib import Path

import pytest

from fooled.config import StudyConfig, config_hash, from_dict, load_config, quick, to_dict, trained_hash, with_seeds
from fooled.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_default_experiment_file_is_the_built_in_default():
    assert load_config(ROOT / "experiments" / "digits.toml") == StudyConfig()


def test_the_published_digits_study_trains_the_default_models_and_attacks_them_harder():
    default, full = StudyConfig(), load_config(ROOT / "experiments" / "digits_full.toml")
    assert trained_hash(full) == trained_hash(default) and config_hash(full) != config_hash(default)  # one trade-off run serves both
    a, b = default.attacks, full.attacks
    assert b.max_examples > a.max_examples and b.expensive_examples > a.expensive_examples and b.adaptive_steps > a.adaptive_steps
    assert b.steps >= a.steps and set(a.losses) < set(b.losses)
    assert trained_hash(dataclasses.replace(default, seeds=(0,))) != trained_hash(default)


def test_the_many_seed_study_is_the_published_one_on_more_seeds_for_the_models_the_plain_answer_quotes():
    full, seeds = load_config(ROOT / "experiments" / "digits_full.toml"), load_config(ROOT / "experiments" / "digits_seeds.toml")
    assert seeds.seeds == tuple(range(24)) and set(full.seeds) < set(seeds.seeds)
    assert set(seeds.models.names) == {"cnn", "flow", "logreg"} < set(full.models.names)
    for name in seeds.models.names:  # the same models, trained alike
        assert getattr(seeds.models, name) == getattr(full.models, name)
    assert seeds.train == full.train and seeds.data == full.data and seeds.detect == full.detect
    assert seeds.attacks.expensive_examples > full.attacks.expensive_examples  # more images for the expensive attacks too
    assert dataclasses.replace(seeds.attacks, aware_detectors=full.attacks.aware_detectors,
                               expensive_examples=full.attacks.expensive_examples) == full.attacks
    assert seeds.fooling == full.fooling and seeds.audit == full.audit


def test_the_pgd_settings_are_the_configs_and_make_the_stage_key():
    a = load_config(ROOT / "experiments" / "digits_full.toml").attacks
    s = a.pgd
    assert (s.steps, s.restarts, s.losses, s.targets, s.decay_steps, s.decay_restarts) == (
        a.steps, a.restarts, tuple(a.losses), a.targets, a.decay_steps, a.decay_restarts)
    assert s.key() == {"steps": 40, "step_size": None, "restarts": 1, "losses": list(a.losses), "targets": 3, "decay_steps": 100,
                       "decay_restarts": 2}
    assert "decay_restarts" not in dataclasses.replace(s, decay_restarts=1).key()  # keys of runs from before it existed
    half = s.scaled(steps=20)
    assert (half.steps, half.decay_steps, half.restarts) == (20, 50, 1) and s.scaled() == s
    assert s.scaled(restarts=3).decay_steps == 100


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "fashion_mnist_cpu", "cifar10"])
def test_every_28x28_and_32x32_config_is_valid_and_says_which_machine_it_is_for(name):
    path = ROOT / "experiments" / f"{name}.toml"
    cfg = load_config(path)
    assert cfg.data.root is None and cfg.ood.fashion_root is None  # no machine paths in configs
    assert path.read_text().startswith("# CPU CONFIG" if name.endswith("_cpu") else "# GPU CONFIG")


def test_the_fashion_files_for_the_digits_ood_set_are_a_key():
    assert load_config(overrides=["ood.fashion_root=some/dir"]).ood.fashion_root == "some/dir"


@pytest.mark.parametrize("raw, message", [
    ({"atacks": {}}, "unknown key 'atacks'; did you mean 'attacks'"),
    ({"attacks": {"stpes": 3}}, "unknown key 'attacks.stpes'; did you mean 'attacks.steps'"),
    ({"models": {"flow": {"blokcs": 3}}}, "models.flow.blokcs"),
    ({"attacks": {"steps": "many"}}, "attacks.steps: expected int"),
    ({"attacks": {"steps": 0}}, "attacks.steps, adaptive_steps, cw_steps and cw_binary_steps must be >= 1"),
    ({"attacks": {"eps": [0.1, -0.2]}}, "attacks.eps"),
    ({"attacks": {"names": ["fgsm", "bim"]}}, "unknown attack 'bim'"),
    ({"attacks": {"losses": ["ce", "hinge"]}}, "unknown loss 'hinge'"),
    ({"detect": {"fpr": 1.5}}, "detect.fpr"),
    ({"data": {"name": "imagenet"}}, "unknown dataset 'imagenet'"),
    ({"seeds": 3}, "seeds: expected a list"),
    ({"train": {"lr": "fast"}}, "train.lr: expected float"),
    ({"train": {"lr_drop": 1.5}}, "train.lr_drop must lie in"),
    ({"models": {"glow": {"head_dropout": 1.0}}}, "models.glow.head_dropout must lie in"),
])
def test_bad_config_names_the_problem(raw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        from_dict(raw)


def test_types_are_coerced_and_hash_tracks_content():
    cfg = from_dict({"attacks": {"eps": [0, 1]}, "seeds": [5]})
    assert cfg.attacks.eps == (0.0, 1.0) and cfg.seeds == (5,)
    assert config_hash(cfg) == config_hash(from_dict({"attacks": {"eps": [0.0, 1.0]}, "seeds": [5]}))
    assert config_hash(cfg) != config_hash(dataclasses.replace(cfg, seeds=(6,)))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[attacks\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_quick_and_seed_overrides():
    q = quick(StudyConfig())
    assert len(q.seeds) == 1 and q.train.epochs <= 8 and q.attacks.max_examples == 64
    assert with_seeds(StudyConfig(), 2).seeds == (0, 1)
    with pytest.raises(ConfigError, match="--seeds"):
        with_seeds(StudyConfig(), 0)


def test_set_overrides_any_key_and_names_bad_ones(tmp_path):
    cfg = load_config(None, ["attacks.steps=100", "attacks.eps=[0.1, 0.2]", "data.name=digits", "seeds=[4]"])
    assert cfg.attacks.steps == 100 and cfg.attacks.eps == (0.1, 0.2) and cfg.seeds == (4,)
    with pytest.raises(ConfigError, match="unknown key 'attacks.stpes'"):
        load_config(None, ["attacks.stpes=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["attacks.steps"])
    f = tmp_path / "e.toml"
    f.write_text("[attacks]\nsteps = 5\n")
    assert load_config(f, ["attacks.steps=7"]).attacks.steps == 7


def test_cnn_adv_is_in_the_default_study_and_its_table_round_trips(tmp_path):
    assert "cnn_adv" in StudyConfig().models.names  # the robust reference of every table
    f = tmp_path / "adv.toml"
    f.write_text('[models]\nnames = ["cnn", "flow", "cnn_adv"]\n\n[models.cnn_adv]\n'
                 'channels = [8, 16]\nhidden = 64\ndropout = 0.0\neps = 0.0625\nsteps = 5\nstep_size = 0.02\n')
    cfg = load_config(f)
    a = cfg.models.cnn_adv
    assert cfg.models.names == ("cnn", "flow", "cnn_adv")
    assert (a.channels, a.hidden, a.dropout, a.eps, a.steps, a.step_size) == ((8, 16), 64, 0.0, 0.0625, 5, 0.02)
    assert from_dict(to_dict(cfg)) == cfg  # round trip through plain data
    assert config_hash(cfg.models.cnn_adv) != config_hash(StudyConfig().models.cnn_adv)
    assert StudyConfig().models.cnn_adv.eps == 2 / 16 and StudyConfig().models.cnn_adv.step_size == 1.25 * 2 / 16


@pytest.mark.parametrize("raw, message", [
    ({"models": {"names": ["cnn", "flow", "cnn_adversarial"]}}, "models.names: unknown model 'cnn_adversarial'"),
    ({"models": {"cnn_adv": {"epss": 0.1}}}, "unknown key 'models.cnn_adv.epss'; did you mean 'models.cnn_adv.eps'"),
    ({"models": {"cnn_adv": {"eps": 0.0}}}, "models.cnn_adv.eps in (0, 1]"),
    ({"models": {"cnn_adv": {"steps": 0}}}, "models.cnn_adv.steps must be >= 1"),
    ({"models": {"cnn_adv": {"step_size": -0.1}}}, "step_size > 0"),
])
def test_bad_cnn_adv_config_is_one_clear_line(raw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")) as info:
        from_dict(raw)
    assert "\n" not in str(info.value)


def test_a_runs_config_reads_typed_and_one_this_version_cannot_read_says_to_rerun():
    from fooled.config import run_config, to_dict

    cfg = run_config({"config": to_dict(quick(load_config("experiments/digits.toml")))})
    assert cfg.attacks.expensive_examples >= 1 and cfg.seeds == (0,)
    with pytest.raises(ConfigError, match=r"this run's config does not read .*attacks\.stepz.*rerun the study"):
        run_config({"config": {"attacks": {"stepz": 3}}})


def test_the_aware_and_cw_settings_stand_for_the_attacks_own_defaults_and_the_configs_values():
    import inspect

    from fooled.attacks import cw_l2, strongest_aware_attack
    from fooled.settings import AwareSettings, CWSettings

    aware = inspect.signature(strongest_aware_attack).parameters
    for name, value in AwareSettings().kwargs().items():
        if name != "penalty_steps":  # None there: PENALTY_PER_STEP * steps, which kwargs() computes
            assert aware[name].default == value, name
    assert AwareSettings(steps=40).kwargs()["penalty_steps"] == 100
    cw = inspect.signature(cw_l2).parameters
    assert all(cw[name].default == value for name, value in CWSettings().kwargs().items())
    a = load_config(ROOT / "experiments" / "digits_full.toml").attacks
    assert (a.aware.steps, a.aware.restarts, a.aware.lambdas) == (a.adaptive_steps, a.restarts, tuple(a.aware_lambdas))
    assert (a.carlini_wagner.steps, a.carlini_wagner.binary_steps) == (a.cw_steps, a.cw_binary_steps)
    assert a.aware.scaled(steps=80, restarts=2).key() == {**a.aware.key(), "steps": 80, "restarts": 2}
    assert AwareSettings(penalty_targets=2).kwargs()["penalty_targets"] == 2  # handed to the attack, not fixed there
