"""The audit's prose, rendered from each check's numbers: a check row keeps `kind` and `numbers`, and its `detail` is
`render(kind, numbers)`, so the report, the tests and a reader of results.json all see the same numbers.

Per-budget numbers are lists of dicts with an "eps" key, in budget order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError


def _per_eps(rows, each: Callable[[Mapping], str]) -> str:
    return "; ".join(f"eps {r['eps']:g}: {each(r)}" for r in rows)


def _large(n):
    return f"adversarial accuracy {n['acc']:.3f}, chance {n['chance']:.3f}"


def _unbounded(n):
    return f"adversarial accuracy {n['acc']:.3f}"


def _doubling(n):
    return (f"eps {n['eps']:g}, {n['n']} images: accuracy {n['acc']:.3f} with {n['steps']} steps x {n['restarts']} restarts, "
            f"{n['acc_double']:.3f} with {2 * n['steps']} x {2 * n['restarts']}; {n['missed']} fooled only by the doubled attack "
            f"(tolerance {n['tolerance']:g})")


def _linear_exact(n):
    return _per_eps(n["per_eps"], lambda r: f"PGD {r['pgd']:.3f}, exact {r['exact']:.3f}")


def _fgsm(n):
    return _per_eps(n["per_eps"], lambda r: f"PGD {r['pgd']:.3f} vs FGSM {r['fgsm']:.3f}")


def _transfer(n):
    return _per_eps(n["per_eps"], lambda r: f"PGD {r['pgd']:.3f} vs best transfer {r['transfer']:.3f}")


def _fooling(n):
    return f"success {n['gradient']:.3f} vs {n['evolution']:.3f}"


def _noise(n):
    return _per_eps(n["per_eps"], lambda r: f"noise {r['noise']:.3f} vs PGD {r['pgd']:.3f}") + f" (clean {n['clean']:.3f})"


def _aware_doubling(n):
    return (f"eps {n['eps']:g}, {n['n']} images: {n['evaded']} evaded with {n['steps']} steps x {n['restarts']} restarts, "
            f"{n['evaded_double']} with {2 * n['steps']} x {2 * n['restarts']} (tolerance {n['tolerance']:g})")


def _aware_budgets(n):
    return (f"{n['n']} images, evading only through a smaller budget's point: "
            + ", ".join(f"{r['rescued']} at eps {r['eps']:g}" for r in n["per_eps"]) + f" (tolerance {n['tolerance']:g})")


def _aware_unbounded(n):
    return f"{n['evaded']} of {n['correct']} correctly classified images"


def _known_answer(n):
    return (f"L2 eps {n['eps']:g}, {n['n']} images: exact {n['exact']} evadable, attack {n['found']} "
            f"(allowed shortfall {n['slack']}; never more than exact)")


def _autoattack(n):
    return f"{n['name']}, first {n['n']} images, tolerance {n['tolerance']:g}: " + _per_eps(
        n["per_eps"], lambda r: f"study {r['study']:.3f}, with AutoAttack {r['both']:.3f} ({r['only']} of the {r['left']} images "
                                "the study left correct fooled by AutoAttack)")


def _second_opinions(n):
    return (f"{n['n']} images; evading with the study's attack, and only with each opinion (run where the study's did not): "
            + _per_eps(n["per_eps"], lambda r: f"study {r['study']}, " + ", ".join(f"{o} +{r[o]}" for o in n["opinions"]))
            + f" (tolerance {n['tolerance']:g} of the images)")


PROSE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "large_eps": _large, "unbounded": _unbounded, "doubling": _doubling, "linear_exact": _linear_exact, "fgsm": _fgsm,
    "transfer": _transfer, "fooling": _fooling, "noise": _noise, "aware_doubling": _aware_doubling,
    "aware_budgets": _aware_budgets, "aware_unbounded": _aware_unbounded, "known_answer": _known_answer,
    "autoattack": _autoattack, "second_opinions": _second_opinions,
}


def render(kind: str, numbers: Mapping[str, Any]) -> str:
    """The prose of an audit check of this kind from its numbers."""
    if kind not in PROSE:
        raise ConfigError(f"unknown audit check kind {kind!r}; known: {', '.join(PROSE)}")
    return PROSE[kind](numbers)


def check_row(seed: int, check: str, target: str, passed: bool, kind: str, **numbers: Any) -> dict:
    """An audit check as results.json keeps it: its question, answer, numbers, and the prose rendered from them."""
    return {"seed": seed, "check": check, "target": target, "passed": bool(passed), "kind": kind, "numbers": numbers,
            "detail": render(kind, numbers)}
