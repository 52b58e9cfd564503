"""One factory for the rows the analysis tests build (attack rows, the oracle's committee), as typed records, and the
results around them."""

from fooled.records import AttackRow
from fooled.stage_rows import CommitteeRow


def attack_row(target: str, attack: str, eps: float, *, seed: int = 0, n: int = 200, correct: int | None = None, success: int = 100,
               detected: int = 0, evaded: int = 0, acc: float = 0.5, flagged: float = 0.0, grid: str = "continuous",
               attacked: str | None = None) -> AttackRow:
    """A linf row of `n` images: `correct` of them right before the attack (default all), `success` made wrong, `detected`
    of those flagged, `evaded` made wrong unflagged; `flagged`: the share of every image flagged."""
    return AttackRow(seed=seed, target=target, attack=attack, eps=eps, norm="linf", grid=grid, n=n,
                     n_correct=n if correct is None else correct, n_success=success, n_detected=detected, n_evaded=evaded,
                     adv_acc=acc, tpr_all=flagged, adaptive=attack == "adaptive_pgd", attacked_detector=attacked)


def committee_row(seed: int = 0, *, agreement: float = 0.8, majority: float = 0.95, n_fit: int = 270,
                  acc: dict | None = None) -> CommitteeRow:
    """The label oracle of one seed, as study/stages/honest_oracle.py writes it: `acc` each member's test accuracy (the
    last member the robust one), `agreement` the share of test images all members agree on, `majority` its accuracy."""
    acc = {"svc": 0.96, "knn": 0.94, "robust_cnn_adv": 0.8} if acc is None else acc
    return CommitteeRow(seed=seed, members=list(acc), chosen={"svc": {"C": 10.0}, "knn": {"k": 3}}, robust_member=list(acc)[-1],
                        n_fit=n_fit, test_acc=acc, self_agreement=agreement, majority_acc=majority, seconds=1.5)


def results_of(made: list[AttackRow], names=("cnn", "logreg"), **more) -> dict:
    """results.json around the rows: the models' names, the detector's false-positive rate, and `more` keys."""
    return {"attacks": [r.to_dict() for r in made], "config": {"models": {"names": list(names)}, "detect": {"fpr": 0.05}},
            "ood": [], "fooling": [], **more}
