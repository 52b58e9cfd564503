"""Experiment configuration: dataclasses read from TOML, every key and type validated with a clear error."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass
from collections.abc import Mapping
from pathlib import Path

from ._version import __version__
from .errors import ConfigError, suggest
from .settings import AwareSettings, CWSettings, PGDSettings
from .data import dataset_info
from .models.baselines import GaussianConfig, LogisticRegressionConfig
from .models.cnn import AdversarialCNNConfig, CNNConfig
from .models.flow import FlowConfig
from .models.glow import HEADS as GLOW_HEADS, GlowConfig
from .models.hybrid import HybridConfig

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
ATTACKS = ("fgsm", "pgd", "pgd_l2")
NORM_OF = {"fgsm": "linf", "pgd": "linf", "pgd_l2": "l2"}
LOSSES = ("ce", "margin", "multitarget", "multitarget_dlr", "ce_decay", "margin_decay", "multitarget_decay", "multitarget_dlr_decay")
# multitarget: targeted margin PGD; multitarget_dlr: targeted DLR (Croce & Hein 2020); _decay: APGD-like steps
AUTOATTACK_PARTS = ("apgd-ce", "apgd-t", "fab-t", "square")  # AutoAttack standard's attacks, in its order
AWARE_DETECTORS = ("nll", "class_conditional", "typicality", "complexity")  # the density's detectors an attack can know
FLOW_KINDS = ("realnvp", "glow")
MODELS = ("cnn", "flow", "hybrid", "logreg", "gaussian", "cnn_adv")
DEFAULT_MODELS = ("cnn", "cnn_adv", "flow", "hybrid", "logreg", "gaussian")


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"  # one of DATASETS
    root: str | None = None  # torchvision's files for the datasets other than digits
    download: bool = False  # let torchvision download missing files (never in tests)
    val_fraction: float = 0.2  # early stopping and threshold calibration
    test_fraction: float = 0.2  # reporting only (digits; torchvision sets have their own test split)
    limit: int | None = None  # keep at most this many examples per split (quick runs)
    oracle_fraction: float = 0.25  # of the training split, held out for the label oracle: no model trains on it, no attack sees it


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200  # upper bound; early stopping usually ends sooner
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10  # epochs without a better validation loss before stopping
    lr_drop: float = 0.0  # on an epoch without a better validation loss, the learning rate is multiplied by this (0: kept)
    curve_images: int = 512  # learning curves: accuracy (and bits/dim) per epoch on this many train and validation images


@dataclass(frozen=True)
class AttackConfig:
    names: tuple[str, ...] = ATTACKS  # budgeted attacks run against every classifier
    eps: tuple[float, ...] = (0.0625, 0.125, 0.1875, 0.3125)  # linf budgets (fgsm, pgd, adaptive), pixel scale [0, 1]: 1, 2, 3, 5 grey levels of digits
    l2_eps: tuple[float, ...] = (0.5, 1.0, 2.0)  # L2 budgets (pgd_l2)
    steps: int = 40  # PGD iterations (20 left the doubling check failing on one image of the CNN)
    step_size: float | None = None  # None: 2.5 * eps / steps (Madry et al.)
    restarts: int = 1  # PGD random restarts, worst case kept
    # PGD runs each loss and keeps the worst case per example; "_decay": that loss with APGD-like steps (2 eps shrinking to
    # eps / 40), run on the images the others leave correct, which brings it within a point of AutoAttack on cnn_adv
    losses: tuple[str, ...] = ("ce", "margin", "multitarget", "margin_decay", "multitarget_dlr", "multitarget_dlr_decay")  # digits_full: every loss
    decay_restarts: int = 2  # runs of each "_decay" loss in all (at least `restarts`), from fresh random starts
    decay_steps: int | None = 100  # steps of the "_decay" losses (None: `steps`; 100: AutoAttack's APGD); only on the
    # images the other losses left correct, so the extra steps cost little except on robust models, where they count
    targets: int | None = 3  # "multitarget": targeted margin PGD toward this many wrong classes, most promising first (None: all)
    max_examples: int | None = 64  # attack the first this many test images (None: all): 64 keeps the default study within 5 min on
    # 2 cores; the published study (experiments/digits_full.toml) attacks 128
    expensive_examples: int | None = 24  # detector-aware attacks, CW, the audit's extra attacks and the convergence curve use this many
    # (None: all; digits_full: 48)
    adaptive: bool = True  # detector-aware attacks: misclassified and not flagged (attacks.strongest_aware_attack)
    adaptive_steps: int = 32  # (digits_full: 40) steps of each detector-aware run (one run per start and Lagrange weight; 4 runs per attack)
    aware_lambdas: tuple[float, ...] = (1.0,)  # initial Lagrange weights of the detector-aware runs (each adapts per image: on
    # digits seed 0, weights (1, 10) found the same evasions as 1 alone, at twice the cost)
    aware_donors: int = 1000  # training images from which each attacked image's nearest likely image of another class is a start
    # (replacing the random start; 0: a random start instead)
    aware_detectors: tuple[str, ...] = ("nll",)  # each attacked by its own (digits_full: every density detector)
    # detector-aware attack (on the first `expensive_examples` images), against the models in aware_targets; nll against every model
    aware_targets: tuple[str, ...] = ("cnn",)  # the CNN only keeps the default study near its time budget
    transfer: bool = True  # evaluate every model on the PGD adversarials of every other model
    cw: bool = True  # Carlini-Wagner L2, minimal perturbation
    cw_steps: int = 50  # (digits_full: 100)
    cw_binary_steps: int = 3  # (digits_full: 4)

    @property
    def pgd(self) -> PGDSettings:
        """The study's worst-case PGD, as `attacks.pgd_worst_case` takes it."""
        return PGDSettings(steps=self.steps, step_size=self.step_size, restarts=self.restarts, losses=tuple(self.losses),
                           targets=self.targets, decay_steps=self.decay_steps, decay_restarts=self.decay_restarts)

    @property
    def aware(self) -> AwareSettings:
        """The study's detector-aware attack (`attacks.strongest_aware_attack`)."""
        return AwareSettings(steps=self.adaptive_steps, restarts=self.restarts, lambdas=tuple(self.aware_lambdas))

    @property
    def carlini_wagner(self) -> CWSettings:
        """The study's Carlini-Wagner L2 (`attacks.cw_l2`)."""
        return CWSettings(steps=self.cw_steps, binary_steps=self.cw_binary_steps)


@dataclass(frozen=True)
class FoolingConfig:
    enabled: bool = True  # fooling images grown from noise (Nguyen et al. 2015)
    per_class: int = 1  # images per target class and method (digits_full: 2)
    steps: int = 80  # gradient-ascent iterations (digits_full: 150)
    generations: int = 60  # evolutionary search generations (digits_full: 200)
    population: int = 16  # candidates per image in the evolutionary search (digits_full: 32)
    confidence: float = 0.99  # stop once p(target | x) reaches this


@dataclass(frozen=True)
class OODConfig:
    enabled: bool = True  # out-of-distribution sets made without download, and images of maximal likelihood
    n: int = 180  # images per OOD set (digits_full: 360)
    max_likelihood_images: int = 16  # grown from noise by gradient ascent on log p(x) (digits_full: 40)
    max_likelihood_steps: int = 100  # (digits_full: 300)
    fashion_root: str | None = None  # Fashion-MNIST's files (either data.root layout) for the digits' 'Fashion-MNIST 8x8' set; None: that set is skipped


@dataclass(frozen=True)
class AuditConfig:
    enabled: bool = True  # gradient-masking checks (Carlini et al. 2019) in every study
    large_eps: float = 0.5  # linf budget at which accuracy must fall to chance
    tolerance: float = 0.01  # doubling steps and restarts may fool fewer than this share of the images PGD left correct
    aware_tolerance: float = 0.05  # doubling the detector-aware attack's steps and restarts may raise its evasion by less than this
    known_answer_images: int = 16  # the detector-aware attack against an exact convex solve: 0 skips it (digits_full: 32)
    known_answer_eps: float = 0.5  # its L2 budget: at 0.5 about half the digits are evadable (at 1 all are, a check that cannot fail)
    # the second opinion on plain robust accuracy (study/stages/autoattack_check.py): AutoAttack's parts ("apgd-ce", "apgd-t",
    # "fab-t", "square"; empty: none) on the first attacks.expensive_examples images, at every linf budget
    autoattack: tuple[str, ...] = ("apgd-ce", "apgd-t")
    autoattack_steps: int = 30  # per APGD / FAB run (digits_full: 100, as the original AutoAttack; torchattacks' own runs 10)
    autoattack_targets: int | None = 3  # wrong classes each targeted part aims at (None: all K - 1, as AutoAttack standard;
                                        # 3, the study's own multitarget count, keeps the default study within 5 minutes)
    second_opinion_steps: int = 50  # (digits_full: 200) steps of the penalty-method second opinions (study/stages/second_opinions.py): 0 skips them


@dataclass(frozen=True)
class DetectConfig:
    fpr: float = 0.05  # false-positive rate on clean validation data that sets the threshold


@dataclass(frozen=True)
class ModelsConfig:
    names: tuple[str, ...] = DEFAULT_MODELS  # classifiers trained, attacked and scored (the flow is always trained: it is the detector)
    cnn: CNNConfig = CNNConfig()
    cnn_adv: AdversarialCNNConfig = AdversarialCNNConfig()  # the CNN adversarially trained (Madry et al. 2018), a robust reference
    flow: FlowConfig = FlowConfig(blocks=6, hidden=128, alpha=0.01, permutation="lu", base="gaussian")  # starts at (and keeps) the Gaussian classifier: 2.084 bits/dim, 98.8% on digits
    glow: GlowConfig = GlowConfig()  # used when flow.kind == "glow"
    hybrid: HybridConfig = HybridConfig()
    logreg: LogisticRegressionConfig = LogisticRegressionConfig()
    gaussian: GaussianConfig = GaussianConfig()
    density_baselines: bool = True  # scikit-learn GaussianMixture and KernelDensity, bits/dim only


@dataclass(frozen=True)
class StudyConfig:
    name: str = "digits"  # run directory name under runs/
    seeds: tuple[int, ...] = (0, 1, 2)
    data: DataConfig = DataConfig()
    models: ModelsConfig = ModelsConfig()
    train: TrainConfig = TrainConfig()
    attacks: AttackConfig = AttackConfig()
    fooling: FoolingConfig = FoolingConfig()
    ood: OODConfig = OODConfig()
    audit: AuditConfig = AuditConfig()
    detect: DetectConfig = DetectConfig()


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value, tp, key: str):
    """Check `value` against the annotation `tp`; return it converted (lists -> tuples, ints -> floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return _build(tp, value, key + ".")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _build(cls, raw: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(f"unknown key '{prefix}{key}'{suggest(key, names, prefix=prefix)}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in raw.items()}
    return dataclasses.replace(cls(), **kwargs)


def need(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def _check_range(cfg: StudyConfig) -> None:
    """Every value in its range; the first out of range raises a ConfigError that names its key."""
    for check in (_check_data, _check_attacks, _check_searches, _check_train, _check_flow, _check_models):
        check(cfg)


def _check_data(cfg: StudyConfig) -> None:
    need(cfg.data.name in DATASETS, f"data.name: unknown dataset '{cfg.data.name}'; expected one of {', '.join(DATASETS)}")
    need(0 < cfg.data.val_fraction < 1 and 0 < cfg.data.test_fraction < 1 and cfg.data.val_fraction + cfg.data.test_fraction < 1,
         "data.val_fraction and data.test_fraction must lie in (0, 1) and sum to less than 1")
    need(cfg.data.limit is None or cfg.data.limit >= 10, "data.limit must be at least 10")
    need(0 < cfg.data.oracle_fraction < 1, "data.oracle_fraction must lie in (0, 1): the label oracle's share of the training split")
    need(len(cfg.seeds) >= 1, "seeds: need at least one seed")


def _check_attacks(cfg: StudyConfig) -> None:
    for a in cfg.attacks.names:
        need(a in ATTACKS, f"attacks.names: unknown attack '{a}'; expected one of {', '.join(ATTACKS)}")
    for loss in cfg.attacks.losses:
        need(loss in LOSSES, f"attacks.losses: unknown loss '{loss}'; expected one of {', '.join(LOSSES)}")
    need(len(cfg.attacks.losses) > 0, "attacks.losses: need at least one loss")
    need(cfg.attacks.targets is None or cfg.attacks.targets >= 1, "attacks.targets must be >= 1 (or left out: every other class)")
    need(all(e >= 0 for e in cfg.attacks.eps) and len(cfg.attacks.eps) > 0, "attacks.eps: need at least one budget, each >= 0")
    need(all(e >= 0 for e in cfg.attacks.l2_eps) and len(cfg.attacks.l2_eps) > 0, "attacks.l2_eps: need at least one budget, each >= 0")
    need(min(cfg.attacks.steps, cfg.attacks.adaptive_steps, cfg.attacks.cw_steps, cfg.attacks.cw_binary_steps) >= 1,
         "attacks.steps, adaptive_steps, cw_steps and cw_binary_steps must be >= 1")
    need(cfg.attacks.decay_steps is None or cfg.attacks.decay_steps >= 1, "attacks.decay_steps must be >= 1 (or left out)")
    need(cfg.attacks.decay_restarts >= 1, "attacks.decay_restarts must be >= 1")
    need(cfg.attacks.max_examples is None or cfg.attacks.max_examples >= 1, "attacks.max_examples must be >= 1")
    need("pgd" in cfg.attacks.names or not (cfg.attacks.adaptive or cfg.attacks.transfer),
         "attacks.adaptive and attacks.transfer start from the PGD adversarials: add 'pgd' to attacks.names or set them to false")
    need(cfg.attacks.expensive_examples is None or cfg.attacks.expensive_examples >= 1, "attacks.expensive_examples must be >= 1")
    for d in cfg.attacks.aware_detectors:
        need(d in AWARE_DETECTORS, f"attacks.aware_detectors: unknown detector '{d}'{suggest(d, AWARE_DETECTORS)}")
    for t in cfg.attacks.aware_targets:
        need(t in MODELS, f"attacks.aware_targets: unknown model '{t}'{suggest(t, MODELS)}")
    need(len(cfg.attacks.aware_lambdas) > 0 and all(v > 0 for v in cfg.attacks.aware_lambdas),
         "attacks.aware_lambdas: need at least one Lagrange weight, each > 0")
    need(cfg.attacks.aware_donors >= 0, "attacks.aware_donors must be >= 0 (0: a random start instead)")
    need(cfg.attacks.restarts >= 1, "attacks.restarts must be >= 1")
    need(cfg.attacks.step_size is None or cfg.attacks.step_size > 0, "attacks.step_size must be > 0")


def _check_searches(cfg: StudyConfig) -> None:
    """Fooling, OOD, audit and detection settings."""
    f = cfg.fooling
    need(min(f.per_class, f.steps, f.generations, f.population) >= 1, "fooling.per_class, steps, generations and population must be >= 1")
    need(0 < f.confidence < 1, "fooling.confidence must lie in (0, 1)")
    need(cfg.ood.n >= 1 and cfg.ood.max_likelihood_images >= 1 and cfg.ood.max_likelihood_steps >= 1,
         "ood.n, ood.max_likelihood_images and ood.max_likelihood_steps must be >= 1")
    need(cfg.audit.large_eps > 0 and cfg.audit.tolerance > 0, "audit.large_eps and audit.tolerance must be > 0")
    need(cfg.audit.second_opinion_steps >= 0, "audit.second_opinion_steps must be >= 0 (0 skips the second opinions)")
    need(0 < cfg.audit.aware_tolerance < 1 and cfg.audit.known_answer_eps > 0 and cfg.audit.known_answer_images >= 0,
         "audit.aware_tolerance must lie in (0, 1), audit.known_answer_eps be > 0 and audit.known_answer_images >= 0")
    for part in cfg.audit.autoattack:
        need(part in AUTOATTACK_PARTS, f"audit.autoattack: unknown part '{part}'; expected some of {', '.join(AUTOATTACK_PARTS)}")
    need(cfg.audit.autoattack_steps >= 1 and (cfg.audit.autoattack_targets is None or cfg.audit.autoattack_targets >= 1),
         "audit.autoattack_steps and audit.autoattack_targets must be >= 1")
    need(0 < cfg.detect.fpr < 1, "detect.fpr must lie in (0, 1)")


def _check_train(cfg: StudyConfig) -> None:
    need(cfg.train.epochs >= 1 and cfg.train.batch_size >= 1 and cfg.train.patience >= 1, "train.epochs, train.batch_size and train.patience must be >= 1")
    need(cfg.train.lr > 0, "train.lr must be > 0")
    need(0 <= cfg.train.lr_drop < 1, "train.lr_drop must lie in [0, 1) (0: the learning rate is kept)")


def _check_flow(cfg: StudyConfig) -> None:
    need(cfg.models.flow.blocks >= 1 and cfg.models.flow.hidden >= 1, "models.flow.blocks and models.flow.hidden must be >= 1")
    need(cfg.models.flow.mean_norm >= 0 and cfg.models.flow.scale_bound > 0, "models.flow.mean_norm must be >= 0 and scale_bound > 0")
    need(0 < cfg.models.flow.alpha < 0.5, "models.flow.alpha must lie in (0, 0.5)")
    need(0 <= cfg.models.cnn.dropout < 1, "models.cnn.dropout must lie in [0, 1)")
    need(cfg.models.cnn.pool >= 1 and cfg.models.cnn_adv.pool >= 1, "models.cnn.pool and models.cnn_adv.pool must be >= 1")


def _check_models(cfg: StudyConfig) -> None:
    a = cfg.models.cnn_adv
    need(0 <= a.dropout < 1 and 0 < a.eps <= 1, "models.cnn_adv.dropout must lie in [0, 1) and models.cnn_adv.eps in (0, 1]")
    need(a.steps >= 1 and (a.step_size is None or a.step_size > 0), "models.cnn_adv.steps must be >= 1 and step_size > 0 (or left out)")
    for m in cfg.models.names:
        need(m in MODELS, f"models.names: unknown model '{m}'; expected some of {', '.join(MODELS)}")
    need("flow" in cfg.models.names, "models.names must include 'flow': its log p(x) is the detector")
    need(cfg.models.flow.permutation in ("shuffle", "lu"), "models.flow.permutation must be 'shuffle' or 'lu'")
    need(cfg.models.flow.base in ("diagonal", "gaussian"), f"models.flow.base: unknown base '{cfg.models.flow.base}'; expected diagonal or gaussian")
    need(cfg.models.flow.kind in FLOW_KINDS, f"models.flow.kind: unknown kind '{cfg.models.flow.kind}'; expected one of {', '.join(FLOW_KINDS)}")
    g = cfg.models.glow
    need(min(g.scales, g.blocks_per_scale, g.hidden_channels) >= 1, "models.glow.scales, blocks_per_scale and hidden_channels must be >= 1")
    need(g.mean_norm >= 0 and g.scale_bound > 0, "models.glow.mean_norm must be >= 0 and scale_bound > 0")
    need(0 < g.alpha < 0.5, "models.glow.alpha must lie in (0, 0.5)")
    need(g.head in GLOW_HEADS, f"models.glow.head must be one of {', '.join(GLOW_HEADS)}, got {g.head!r}")
    need(g.lam >= 0 and g.head_hidden >= 1, "models.glow.lam must be >= 0 and head_hidden >= 1")
    need(0 <= g.head_dropout < 1, "models.glow.head_dropout must lie in [0, 1)")
    if cfg.models.flow.kind == "glow":
        _, h, w = dataset_info(cfg.data.name).shape
        need(h % 2**g.scales == 0 and w % 2**g.scales == 0,
             f"models.glow.scales: {h}x{w} images must be divisible by 2**scales = {2**g.scales} (use scales = 2 for 28x28)")
    need(cfg.models.hybrid.lam >= 0, "models.hybrid.lam must be >= 0")
    need(cfg.models.gaussian.covariance in ("auto", "shared", "per_class"), "models.gaussian.covariance must be auto, shared or per_class")
    need(cfg.models.gaussian.shrinkage is None or 0 <= cfg.models.gaussian.shrinkage <= 1, "models.gaussian.shrinkage must lie in [0, 1]")
    need(0 < cfg.models.gaussian.alpha < 0.5 and cfg.models.logreg.l2 >= 0, "models.gaussian.alpha must lie in (0, 0.5) and models.logreg.l2 >= 0")




def from_dict(raw: dict) -> StudyConfig:
    """Build and validate a StudyConfig from nested dicts (as read from TOML)."""
    cfg = _build(StudyConfig, raw)
    _check_range(cfg)
    return cfg


def run_config(results: Mapping) -> StudyConfig:
    """The typed config of a run from its results.json (keys and types checked; the range rules, which judge a config
    before it runs, are not); a run whose config this version cannot read is named, with what to do."""
    try:
        return _build(StudyConfig, results["config"])
    except ConfigError as e:
        raise ConfigError(f"this run's config does not read in fooled {__version__} ({e}); rerun the study to report it") from None


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Set dotted keys from `KEY=VALUE` strings; VALUE is read as TOML (`0.1`, `[1, 2]`, `"pgd"`), else as a string."""
    raw = json.loads(json.dumps(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        raw = set_key(raw, key, value)
    return raw


def set_key(raw: dict, key: str, value) -> dict:
    """A copy of nested dicts `raw` with the dotted `key` set to `value`."""
    raw = json.loads(json.dumps(raw))
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"'{key}': '{part}' is not a table")
    node[leaf] = value
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> StudyConfig:
    """Read a TOML experiment file (None: the built-in default, the digits study), then apply `--set` overrides."""
    raw = {}
    if path is not None:
        path = Path(path)
        raw = read_toml(path, "config file")
        raw.setdefault("name", path.stem)
    return from_dict(apply_overrides(raw, overrides))


def read_toml(path: Path, what: str) -> dict:
    """A TOML file as dicts, with one-line errors naming `what` is missing or malformed."""
    try:
        return tomllib.loads(Path(path).read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None


def override(cfg: StudyConfig, overrides: list[str] | tuple[str, ...]) -> StudyConfig:
    """A config with `KEY=VALUE` overrides applied and validated again."""
    return from_dict(apply_overrides(to_dict(cfg), overrides)) if overrides else cfg


def to_dict(cfg) -> dict:
    """The fully resolved config as plain JSON-compatible data."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


MONITORING = ("curve_images",)  # [train] keys that only watch training: no trained weight depends on them


NEUTRAL = {"lr_drop": 0.0, "head_dropout": 0.0}  # settings added after runs were published, at the value that changes nothing:
# cache keys leave them out there, so those runs' checkpoints stay valid


def key_dict(part) -> dict:
    """A config section (or a dict of them) as cache keys see it: without the settings, at any depth, that are at their
    `NEUTRAL` value."""
    d = to_dict(part) if dataclasses.is_dataclass(part) else part
    return {k: key_dict(v) if isinstance(v, dict) else v for k, v in d.items() if not (k in NEUTRAL and v == NEUTRAL[k])}


def training_dict(train: TrainConfig) -> dict:
    """[train] as the cache keys of trained models see it: without the keys that only monitor training."""
    return {k: v for k, v in key_dict(train).items() if k not in MONITORING}


def config_hash(part) -> str:
    """Stable short hash of a config or any part of it."""
    blob = json.dumps(to_dict(part) if dataclasses.is_dataclass(part) else part, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def trained_hash(cfg: StudyConfig) -> str:
    """The hash of what a run's trained models depend on (data, models, training, seeds), not its attacks or audit: a
    trade-off run belongs to a study whose trained_hash it shares."""
    keyed = key_dict(to_dict(cfg))
    return config_hash({**{k: keyed[k] for k in ("data", "models", "seeds")}, "train": training_dict(cfg.train)})


def quick(cfg: StudyConfig) -> StudyConfig:
    """A small variant for tests and smoke runs: one seed, few epochs, few attacked images."""
    return dataclasses.replace(
        cfg,
        name=cfg.name + "-quick",
        seeds=cfg.seeds[:1],
        models=dataclasses.replace(
            cfg.models, flow=dataclasses.replace(cfg.models.flow, blocks=2, hidden=64),
            glow=dataclasses.replace(cfg.models.glow, blocks_per_scale=1, hidden_channels=32),
            hybrid=dataclasses.replace(cfg.models.hybrid, flow=dataclasses.replace(cfg.models.hybrid.flow, blocks=2, hidden=64))),
        train=dataclasses.replace(cfg.train, epochs=min(cfg.train.epochs, 8), patience=3),
        attacks=dataclasses.replace(cfg.attacks, steps=min(cfg.attacks.steps, 10), max_examples=64, expensive_examples=24,
                                    decay_steps=20, decay_restarts=1,
                                    l2_eps=cfg.attacks.l2_eps[:2],
                                    adaptive_steps=8, aware_lambdas=(1.0,), aware_detectors=("nll", "typicality"), aware_targets=("cnn",),
                                    cw_steps=20, cw_binary_steps=3, targets=1),
        fooling=dataclasses.replace(cfg.fooling, per_class=1, steps=50, generations=30, population=8),
        audit=dataclasses.replace(cfg.audit, known_answer_images=0, autoattack_steps=min(cfg.audit.autoattack_steps, 20),
                                  second_opinion_steps=min(cfg.audit.second_opinion_steps, 40)),
        ood=dataclasses.replace(cfg.ood, n=48, max_likelihood_images=8, max_likelihood_steps=50),
    )


def with_seeds(cfg: StudyConfig, n: int) -> StudyConfig:
    """Replace the seed list by 0..n-1."""
    if n < 1:
        raise ConfigError(f"--seeds must be >= 1, got {n}")
    return dataclasses.replace(cfg, seeds=tuple(range(n)))


__all__ = [
    "StudyConfig", "DataConfig", "TrainConfig", "AttackConfig", "FoolingConfig", "OODConfig", "AuditConfig", "DetectConfig", "ModelsConfig",
    "CNNConfig", "AdversarialCNNConfig", "FlowConfig", "GlowConfig", "HybridConfig", "GaussianConfig", "LogisticRegressionConfig", "from_dict", "load_config", "to_dict", "config_hash", "trained_hash", "quick", "with_seeds",
]
