"""Typed rows of the study's later stages, in the style of `records`: Carlini-Wagner, fooling images, the label oracle's
committee and the one-threat-model stage (matched controls, valid evasion on and off the grid, the combined defence), with
their selectors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .records import ANY, Record, _is


@dataclass(frozen=True, kw_only=True)
class CWRow(Record):
    """Carlini-Wagner L2 against one model and seed (study/stages/cw.py): minimal adversarials and their detection."""

    seed: int | None = None
    target: str | None = None
    attack: str | None = None
    detector: str | None = None
    n: int | None = None
    success_rate: float | None = None
    median_l2: float | None = None
    auroc: float | None = None
    tpr_at_fpr: float | None = None  # flagged / successful adversarials
    mean_bpd: float | None = None
    seconds: float | None = None

    @property
    def n_success(self) -> int:
        return round(self.success_rate * self.n)


@dataclass(frozen=True, kw_only=True)
class FoolingRow(Record):
    """One fooling-image search (Nguyen et al. 2015) of one target class, model and seed (study/stages/fooling.py)."""

    seed: int | None = None
    target: str | None = None
    method: str | None = None  # gradient or evolution
    constrained: bool | None = None  # the search also keeps p(x) above the detector's threshold
    n: int | None = None
    success_rate: float | None = None
    unflagged_success_rate: float | None = None


@dataclass(frozen=True, kw_only=True)
class CommitteeRow(Record):
    """The label oracle of one seed (study/stages/honest_oracle.py): a committee of classifiers no attack is run against,
    fitted on images held out before any model was trained."""

    seed: int | None = None
    members: list[str] | None = None  # the last one adversarially trained: the robust member
    chosen: Mapping[str, Any] | None = None  # the members' hyper-parameters, chosen on validation
    robust_member: str | None = None
    n_fit: int | None = None  # the held-out images it was fitted on
    test_acc: Mapping[str, float] | None = None  # per member, on the clean test images
    self_agreement: float | None = None  # share of clean test images on which every member agrees
    majority_acc: float | None = None  # share on which the majority label is the true one
    seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class OracleRow(Record):
    """The label oracle's verdict on one attacked set (study/stages/oracle.py): of the successful images, how many it still
    gives the original class, the attacker's class, or no majority."""

    seed: int | None = None
    target: str | None = None
    set: str | None = None  # adaptive_pgd, or fooling_<method> (grown from noise: no original class)
    eps: float | None = None
    n: int | None = None
    members: int | None = None  # committee members that voted (the attacked model left out)
    original: int | None = None
    original_rate: float | None = None
    changed: int | None = None
    changed_rate: float | None = None
    disagree: int | None = None
    disagree_rate: float | None = None


@dataclass(frozen=True, kw_only=True)
class SetDetection(Record):
    """One detector's AUROC against the clean test images, and its flag rate at its validation threshold, on one OOD set."""

    auroc: float | None = None
    tpr_at_fpr: float | None = None


@dataclass(frozen=True, kw_only=True)
class OODRow(Record):
    """One out-of-distribution set under one density model (study/stages/likelihood.py): how likely it is against the
    clean test images, and how every detector of that model does on it."""

    set: str | None = None
    n: int | None = None
    mean_bpd: float | None = None
    test_mean_bpd: float | None = None
    frac_in_distribution: float | None = None  # not flagged at the validation threshold
    auroc: float | None = None
    higher_likelihood_than_test: float | None = None  # share above the median clean test image's log p(x)
    seed: int | None = None
    model: str | None = None
    detectors: Mapping[str, SetDetection] | None = None

    NESTED: ClassVar[Mapping[str, type[Record]]] = {"detectors": SetDetection}


@dataclass(frozen=True, kw_only=True)
class EvasionCounts(Record):
    """One detector's counts in an evasion row: images made wrong and unflagged, and of those the ones the oracle keeps."""

    n_evaded: int | None = None
    n_valid: int | None = None


@dataclass(frozen=True, kw_only=True)
class HonestRow(Record):
    """A row of the one-threat-model stage (study/stages/honest.py), by `kind`: "matched_control" (PGD on the grid and its
    matched controls, counted on the images it fooled), "evasion" (a detector-aware attack on or off the grid, with every
    detector's valid evasions), "defence" (the combined defence's calibration) or "fooling" (density-aware fooling images
    judged by the oracle)."""

    seed: int | None = None
    target: str | None = None
    kind: str | None = None
    attack: str | None = None
    grid: str | None = None  # evasion: "on_grid" or "off_grid"
    eps: float | None = None
    detector: str | None = None
    attacked: str | None = None  # evasion: the detector the attack knew ("combined": every member)
    method: str | None = None  # fooling: gradient or evolution
    n: int | None = None
    n_correct: int | None = None
    n_success: int | None = None
    n_oracle_kept: int | None = None
    n_unflagged: int | None = None
    n_oracle_target: int | None = None
    n_valid: int | None = None
    flagged_attack: int | None = None
    flagged_sign_noise: int | None = None
    flagged_shuffled: int | None = None
    flagged_background: int | None = None
    detectors: Mapping[str, EvasionCounts] | None = None  # evasion: per detector
    members: Any = None
    thresholds: Any = None
    member_rate: Any = None
    val_fpr: float | None = None
    test_fpr: float | None = None
    seconds: float | None = None

    NESTED: ClassVar[Mapping[str, type[Record]]] = {"detectors": EvasionCounts}

    # the key order the stage writes where it differs from the fields' (evasion rows put the attacked detector first)
    KEY_ORDER: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "evasion": ("seed", "target", "kind", "attacked", "grid", "eps", "seconds", "n", "n_correct", "n_success", "n_oracle_kept",
                    "detectors")}

    def to_dict(self) -> dict[str, Any]:  # the stage writes only the keys of its kind, in its order
        out = {k: v for k, v in super().to_dict().items() if v is not None or k in self.extra}
        order = self.KEY_ORDER.get(self.kind, ())
        return {**{k: out[k] for k in order if k in out}, **{k: v for k, v in out.items() if k not in order}}


def honest_rows(results: Mapping[str, Any], **match: Any) -> list[HonestRow]:
    """The one-threat-model rows whose keys equal every value given (`kind="evasion", grid="on_grid"`), by seed."""
    picked = [r for r in results.get("honest") or [] if all(r.get(k) == v for k, v in match.items())]
    return [HonestRow.from_dict(r) for r in sorted(picked, key=lambda r: r["seed"])]


def cw_rows(results: Mapping[str, Any], target: Any = ANY) -> list[CWRow]:
    return [CWRow.from_dict(r) for r in results.get("cw") or [] if _is(r["target"], target)]


def committee_rows(results: Mapping[str, Any]) -> list[CommitteeRow]:
    return [CommitteeRow.from_dict(r) for r in results.get("committee") or []]


def oracle_rows(results: Mapping[str, Any]) -> list[OracleRow]:
    return [OracleRow.from_dict(r) for r in results.get("oracle") or []]


def ood_rows(results: Mapping[str, Any], model: Any = ANY, seed: Any = ANY) -> list[OODRow]:
    return [OODRow.from_dict(r) for r in results.get("ood") or [] if _is(r.get("model", "flow"), model) and _is(r["seed"], seed)]


def fooling_rows(results: Mapping[str, Any], target: Any = ANY) -> list[FoolingRow]:
    return [FoolingRow.from_dict(r) for r in results.get("fooling") or [] if _is(r["target"], target)]


__all__ = ["CWRow", "CommitteeRow", "EvasionCounts", "FoolingRow", "HonestRow", "OODRow", "OracleRow", "SetDetection",
           "committee_rows", "cw_rows", "fooling_rows", "honest_rows", "ood_rows", "oracle_rows"]
