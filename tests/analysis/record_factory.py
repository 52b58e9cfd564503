"""One factory for the attack rows the analysis tests build, as typed records, and the results around them."""

from fooled.records import AttackRow


def attack_row(target: str, attack: str, eps: float, *, seed: int = 0, n: int = 200, correct: int | None = None, success: int = 100,
               detected: int = 0, evaded: int = 0, acc: float = 0.5, flagged: float = 0.0, grid: str = "continuous",
               attacked: str | None = None) -> AttackRow:
    """A linf row of `n` images: `correct` of them right before the attack (default all), `success` made wrong, `detected`
    of those flagged, `evaded` made wrong unflagged; `flagged`: the share of every image flagged."""
    return AttackRow(seed=seed, target=target, attack=attack, eps=eps, norm="linf", grid=grid, n=n,
                     n_correct=n if correct is None else correct, n_success=success, n_detected=detected, n_evaded=evaded,
                     adv_acc=acc, tpr_all=flagged, adaptive=attack == "adaptive_pgd", attacked_detector=attacked)


def results_of(made: list[AttackRow], names=("cnn", "logreg"), **more) -> dict:
    """results.json around the rows: the models' names, the detector's false-positive rate, and `more` keys."""
    return {"attacks": [r.to_dict() for r in made], "config": {"models": {"names": list(names)}, "detect": {"fpr": 0.05}},
            "ood": [], "fooling": [], **more}
