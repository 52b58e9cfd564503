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

    def to_dict(self) -> dict[str, Any]:  # the stage writes only the keys of its kind
        return {k: v for k, v in super().to_dict().items() if v is not None or k in self.extra}


def honest_rows(results: Mapping[str, Any], **match: Any) -> list[HonestRow]:
    """The one-threat-model rows whose keys equal every value given (`kind="evasion", grid="on_grid"`), by seed."""
    picked = [r for r in results.get("honest") or [] if all(r.get(k) == v for k, v in match.items())]
    return [HonestRow.from_dict(r) for r in sorted(picked, key=lambda r: r["seed"])]


def cw_rows(results: Mapping[str, Any], target: Any = ANY) -> list[CWRow]:
    return [CWRow.from_dict(r) for r in results.get("cw") or [] if _is(r["target"], target)]


def committee_rows(results: Mapping[str, Any]) -> list[CommitteeRow]:
    return [CommitteeRow.from_dict(r) for r in results.get("committee") or []]


def fooling_rows(results: Mapping[str, Any], target: Any = ANY) -> list[FoolingRow]:
    return [FoolingRow.from_dict(r) for r in results.get("fooling") or [] if _is(r["target"], target)]


__all__ = ["CWRow", "CommitteeRow", "EvasionCounts", "FoolingRow", "HonestRow", "committee_rows", "cw_rows", "fooling_rows",
           "honest_rows"]
