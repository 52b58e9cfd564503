"""Typed records of what a study writes to results.json: an attack row, a model row, an audit check and a verdict cell
(with its budgets).

Each record reads a row of results.json with `from_dict` and writes it back with `to_dict`. A key an older run did not
write reads as None (or empty); a key this version does not know is kept in `extra`, so nothing is lost on the way
through. The selectors below (`rows`, `budgets`, `middle_budget`, `shown_budgets`) are the one place where attack rows
are filtered and budgets chosen; `model_names` gives the run's models in order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .audit_prose import render
from .errors import ConfigError
from .rundir import Key, set_name

R = TypeVar("R", bound="Record")
ANY = object()  # a selector argument left open (None is a value some rows hold: `attacked_detector=None`)


@dataclass(frozen=True, kw_only=True)
class Record:
    """A row of results.json: its known keys as fields, the rest in `extra`."""

    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    OMIT_NONE: ClassVar[frozenset[str]] = frozenset()  # keys the study writes only when they have a value
    NESTED: ClassVar[Mapping[str, type[Record]]] = {}  # keys whose value maps names to rows of a record type

    @classmethod
    def known(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    @classmethod
    def from_dict(cls: type[R], d: Mapping[str, Any]) -> R:
        """The record of one row; keys it lacks read as the field's default, unknown keys go to `extra`."""
        names = set(cls.known())
        return cls(**{k: cls._read(k, v) for k, v in d.items() if k in names},
                   extra={k: v for k, v in d.items() if k not in names})

    @classmethod
    def _read(cls, key: str, value: Any) -> Any:
        kind = cls.NESTED.get(key)
        return value if kind is None or value is None else {name: kind.from_dict(v) for name, v in value.items()}

    def _write(self, key: str, value: Any) -> Any:
        return value if key not in self.NESTED or value is None else {name: v.to_dict() for name, v in value.items()}

    def to_dict(self) -> dict[str, Any]:
        """The row as results.json holds it, keys in the order the study writes them."""
        out = {k: self._write(k, getattr(self, k)) for k in self.known()
               if not (k in self.OMIT_NONE and getattr(self, k) is None)}
        return {**out, **self.extra}


@dataclass(frozen=True, kw_only=True)
class DetectorRates(Record):
    """One detector's numbers for one attacked set: detection over the successful adversarials, evasion over the
    clean-correct images, and the all-image rates beside them."""

    auroc: float | None = None
    n_detected: int | None = None
    tpr_at_fpr: float | None = None  # detected / successful adversarials
    tpr_all: float | None = None  # flagged / every image
    n_evaded: int | None = None
    evasion_rate: float | None = None  # made wrong and not flagged / clean-correct
    evasion_all: float | None = None
    test_fpr: float | None = None  # flagged / clean test images at the validation threshold


@dataclass(frozen=True, kw_only=True)
class AttackRow(Record):
    """One attacked (or control) set of one seed and target, scored by its target's detector and every other detector
    (study/stages/scoring.py writes it)."""

    seed: int | None = None
    target: str | None = None  # the attacked classifier
    attack: str | None = None  # fgsm, pgd, pgd_l2, adaptive_pgd, noise_linf, ...
    norm: str | None = None  # the budget's norm: linf or l2
    eps: float | None = None
    adaptive: bool | None = None  # the attack knew a detector
    attacked_detector: str | None = None  # the detector it knew
    grid: str | None = None  # "continuous": as the attack made it; "rounded": on the data's grey levels
    detector: str | None = None  # the target's density model
    n: int | None = None
    clean_acc: float | None = None
    adv_acc: float | None = None
    n_correct: int | None = None
    n_success: int | None = None  # clean-correct images the attack made wrong
    auroc: float | None = None  # the -log p(x) detector's numbers, as in `detectors["nll"]`
    n_detected: int | None = None
    tpr_at_fpr: float | None = None
    tpr_all: float | None = None
    n_evaded: int | None = None
    evasion_rate: float | None = None
    evasion_all: float | None = None
    detectors: Mapping[str, DetectorRates] = field(default_factory=dict)
    fpr: float | None = None  # the validation false-positive rate the thresholds were set at
    threshold: float | None = None
    mean_bpd: float | None = None
    success_mean_bpd: float | None = None
    max_perturbation: float | None = None
    seconds: float | None = None
    fooled_by: Mapping[str, int] | None = None  # the study's PGD: successful adversarials per loss that made them

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"fooled_by"})
    NESTED: ClassVar[Mapping[str, type[Record]]] = {"detectors": DetectorRates}

    def key(self, column: str = "nll") -> Key:
        """The Key of this row's per-image arrays in scores.npz (and examples.npz)."""
        return Key(self.seed, self.target, set_name(self.attack, self.grid == "rounded", self.attacked_detector), self.eps, column)

    @property
    def is_control(self) -> bool:
        """A random-perturbation control: every perturbed image counts, not only the successful ones."""
        return self.attack.startswith("noise_")

    @property
    def flag_rate(self) -> str:
        """The name of the rate flagged: over every image for a control, over the successful adversarials otherwise."""
        return "tpr_all" if self.is_control else "tpr_at_fpr"


@dataclass(frozen=True, kw_only=True)
class ModelRow(Record):
    """One trained model of one seed (the classifiers with their training, the density baselines with their choice)."""

    seed: int | None = None
    test_acc: float | None = None
    train_seconds: float | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    best_val_loss: float | None = None
    base: Mapping[str, Any] | None = None  # the closed-form Gaussian a flow starts from
    chosen: Mapping[str, Any] | None = None  # a density baseline's hyper-parameters, chosen on validation
    n_params: int | None = None
    test_bpd: float | None = None
    curve: tuple[Mapping[str, float], ...] | None = None  # per epoch: losses, accuracy and bits/dim on train and validation

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"test_acc", "train_seconds", "epochs", "best_epoch", "best_val_loss", "base",
                                                     "chosen", "n_params", "test_bpd", "curve"})


@dataclass(frozen=True, kw_only=True)
class AuditCheck(Record):
    """One gradient-masking check of one seed and model: whether it passed, the numbers it compared, and its prose."""

    seed: int | None = None
    check: str | None = None
    target: str | None = None
    passed: bool | None = None
    kind: str | None = None  # which check (`audit_prose.PROSE`): how its numbers read (runs written before: None)
    numbers: Mapping[str, Any] | None = None  # the numbers themselves (runs written before they were kept: None)
    detail: str | None = None  # the numbers in words, as rendered when the check ran

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"kind", "numbers"})

    def prose(self) -> str:
        """The check's numbers in words, rendered from `numbers` (the stored `detail` for runs written before)."""
        return render(self.kind, self.numbers) if self.kind and self.numbers is not None else self.detail

    def text(self) -> str:
        """The check's prose, led by its seed."""
        return f"seed {self.seed}: {self.prose()}"


@dataclass(frozen=True, kw_only=True)
class BudgetAnswer(Record):
    """One budget of a verdict cell (an entry of its `per_eps`): the interval there and the answer it gives."""

    eps: float | None = None
    value: Mapping[str, Any] = field(default_factory=dict)  # {mean, lo, hi, n, ...} as `stats.rate_ci` gives it
    answer: str | None = None  # yes, no, partly, borderline or n/a
    could: list[str] | None = None  # borderline: the answers the interval spans
    leaning: str | None = None  # borderline: the answer of the point estimate
    control: Mapping[str, Any] | None = None  # a control cell: the strongest control's interval

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"could", "leaning", "control"})


@dataclass(frozen=True, kw_only=True)
class VerdictCell(Record):
    """One answer of the verdict: a question about one model, its answer over the budgets, and the numbers behind it.
    `value` and each budget's `value` are intervals {mean, lo, hi, n, ...} as `stats.rate_ci` gives them."""

    question: str | None = None
    model: str | None = None
    criterion: str | None = None  # flagged, control, evasion, combined, robust, shallow, support, typical
    answer: str | None = None  # yes, no, partly, unclear or n/a
    leaning: str | None = None  # where UNCLEAR: the way the point estimates go
    per_eps: list[Mapping[str, Any]] = field(default_factory=list)  # per budget: eps, value, answer (and could, leaning, control)
    value: Mapping[str, Any] = field(default_factory=dict)  # the interval of the budget the cell shows
    eps: float | None = None  # that budget (None: a question without one)
    measure: str | None = None  # what `value` measures, in words
    grid: str | None = None
    matched: bool | None = None  # a control answered against matched controls on the same images
    counted_eps: list[float] | None = None  # valid evasion: the budgets that count
    quoted_eps: float | None = None  # valid evasion: the budget quoted
    val_fpr: float | None = None
    success: Mapping[str, Any] | None = None  # fooling: the interval of the search's success
    sets: list[str] | None = None  # support: the sets likelier than the data
    shares: Mapping[str, Any] | None = None  # support: every set's share likelier than the median test image
    likelier: Mapping[str, Any] | None = None  # typical: the max-likelihood images' share likelier than the data

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"grid", "matched", "counted_eps", "quoted_eps", "val_fpr", "success", "sets",
                                                     "shares", "likelier"})

    @property
    def is_fooling(self) -> bool:
        return self.criterion == "flagged" and self.question.startswith("Are fooling images")

    @property
    def kind(self) -> tuple[str, str | None]:
        """The row of the verdict table the cell belongs to: its criterion and grid (fooling images apart)."""
        return ("fooling", None) if self.is_fooling else (self.criterion, self.grid)

    def budget(self, eps: float | None) -> Mapping[str, Any] | None:
        """The answer at budget `eps`, or None."""
        return next((p for p in self.per_eps if p["eps"] == eps), None)

    @property
    def per_budget(self) -> list[BudgetAnswer]:
        """`per_eps` as typed records."""
        return [BudgetAnswer.from_dict(p) for p in self.per_eps]


def model_names(results: Mapping[str, Any], among: Iterable[str] | None = None) -> list[str]:
    """The run's models in its config's order (only those in `among`, where given)."""
    names, keep = results["config"]["models"]["names"], None if among is None else set(among)
    return [n for n in names if keep is None or n in keep]


def attack_rows(results: Mapping[str, Any]) -> list[AttackRow]:
    """Every attack row of a run."""
    return [AttackRow.from_dict(r) for r in results["attacks"]]


def model_rows(results: Mapping[str, Any]) -> dict[str, list[ModelRow]]:
    """Each model's rows (one per seed), in the run's order."""
    return {name: [ModelRow.from_dict(r) for r in rs] for name, rs in results["models"].items()}


def audit_checks(results: Mapping[str, Any]) -> list[AuditCheck]:
    return [AuditCheck.from_dict(r) for r in results.get("audit") or []]


def verdict_cells(results: Mapping[str, Any]) -> list[VerdictCell]:
    """The answers of the verdict the report shows (results["verdict"], computed by analysis.verdict)."""
    return [VerdictCell.from_dict(a) for a in results["verdict"]["answers"]]


def _is(value: Any, wanted: Any) -> bool:
    """`wanted` open (ANY), one value, or a tuple or set of values."""
    return wanted is ANY or (value in wanted if isinstance(wanted, (tuple, set, frozenset)) else value == wanted)


ROW_FILTERS = ("attack", "target", "eps", "seed", "norm", "detector", "attacked_detector")


def rows(results: Mapping[str, Any], *, grid: Any = "continuous", **match: Any) -> list[AttackRow]:
    """The attack rows that match every filter given (`ROW_FILTERS`, each a value or a tuple of accepted values:
    `attacked_detector=(None, "nll")`: the plain attacks and those that knew -log p(x)). Rows as the attacks made them
    (grid "continuous") unless `grid` says otherwise (ANY: both). `detector`: the target's own detector."""
    unknown = sorted(set(match) - set(ROW_FILTERS))
    if unknown:
        raise ConfigError(f"rows() has no filter {', '.join(unknown)}; filters: grid, {', '.join(ROW_FILTERS)}")
    match = {k: v for k, v in {"grid": grid, **match}.items() if v is not ANY}
    # filtered on the dicts, then typed: a report selects hundreds of times from thousands of rows
    return [AttackRow.from_dict(r) for r in results["attacks"] if all(_is(r.get(k), v) for k, v in match.items())]


def budgets(selected: Iterable[AttackRow], *, linf: bool = False, positive: bool = False) -> list[float]:
    """The budgets of the rows, ascending (`linf`: of linf rows only; `positive`: without eps 0)."""
    return sorted({r.eps for r in selected if (not linf or r.norm == "linf") and (not positive or r.eps > 0)})


def middle_budget(eps: Iterable[float]) -> float:
    """The budget figures and tables show when they show one: the middle of the sorted budgets (the lower of two middles;
    pass each budget once)."""
    eps = sorted(eps)
    return eps[(len(eps) - 1) // 2]


def shown_budgets(eps: Iterable[float]) -> list[float]:
    """The budgets the example and histogram figures show: the middle one and the largest."""
    eps = sorted(eps)
    return sorted({middle_budget(eps), eps[-1]})


def field_of(row: Any, name: str, default: Any = None) -> Any:
    """A named value of a row, typed or a plain dict (the generic tables name their columns)."""
    if isinstance(row, Mapping):
        return row.get(name, default)
    value = getattr(row, name, None)
    if value is None and isinstance(row, Record):
        value = row.extra.get(name)
    return default if value is None else value
