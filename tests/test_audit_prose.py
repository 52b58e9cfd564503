"""The audit's prose is rendered from its numbers: every kind renders, a check row carries both, an unknown kind is named."""

import pytest

from fooled.audit_prose import PROSE, check_row, render
from fooled.errors import ConfigError
from fooled.records import AuditCheck

EXAMPLES = {
    "large_eps": {"eps": 0.5, "acc": 0.0, "chance": 0.1},
    "unbounded": {"acc": 0.0},
    "doubling": {"eps": 0.125, "n": 24, "acc": 0.25, "acc_double": 0.2083, "steps": 40, "restarts": 1, "missed": 1, "tolerance": 0.01},
    "linear_exact": {"per_eps": [{"eps": 0.0625, "pgd": 0.5, "exact": 0.5}]},
    "fgsm": {"per_eps": [{"eps": 0.0625, "pgd": 0.1, "fgsm": 0.3}, {"eps": 0.125, "pgd": 0.0, "fgsm": 0.2}]},
    "transfer": {"per_eps": [{"eps": 0.125, "pgd": 0.0, "transfer": 0.4}]},
    "fooling": {"gradient": 1.0, "evolution": 0.7},
    "noise": {"per_eps": [{"eps": 0.125, "noise": 0.9, "pgd": 0.0}], "clean": 0.98},
    "aware_doubling": {"eps": 0.125, "n": 24, "evaded": 10, "evaded_double": 11, "steps": 32, "restarts": 1, "tolerance": 0.05},
    "aware_budgets": {"n": 24, "per_eps": [{"eps": 0.0625, "rescued": 0}, {"eps": 0.125, "rescued": 2}], "tolerance": 0.05},
    "aware_unbounded": {"evaded": 23, "correct": 24},
    "known_answer": {"eps": 1.0, "n": 32, "exact": 12, "found": 12, "slack": 1},
    "autoattack": {"name": "APGD-CE, APGD-T", "n": 24, "tolerance": 0.01,
                   "per_eps": [{"eps": 0.05, "study": 0.25, "both": 0.25, "only": 0, "left": 6}]},
    "second_opinions": {"n": 24, "opinions": ["penalty", "multitarget penalty"], "tolerance": 0.05,
                        "per_eps": [{"eps": 0.125, "study": 9, "penalty": 1, "multitarget penalty": 0}]},
}


def test_every_kind_renders_every_number_it_is_given():
    assert set(EXAMPLES) == set(PROSE)
    assert render("doubling", EXAMPLES["doubling"]) == ("eps 0.125, 24 images: accuracy 0.250 with 40 steps x 1 restarts, 0.208 "
                                                       "with 80 x 2; 1 fooled only by the doubled attack (tolerance 0.01)")
    assert render("second_opinions", EXAMPLES["second_opinions"]).endswith(
        "eps 0.125: study 9, penalty +1, multitarget penalty +0 (tolerance 0.05 of the images)")
    assert render("aware_budgets", EXAMPLES["aware_budgets"]) == ("24 images, evading only through a smaller budget's point: 0 at "
                                                                 "eps 0.0625, 2 at eps 0.125 (tolerance 0.05)")


def test_a_check_row_keeps_its_numbers_and_the_record_renders_them_again():
    row = check_row(1, "accuracy falls to chance", "cnn", True, "large_eps", **EXAMPLES["large_eps"])
    assert row["numbers"] == EXAMPLES["large_eps"] and row["detail"] == "adversarial accuracy 0.000, chance 0.100"
    check = AuditCheck.from_dict(row)
    assert check.to_dict() == row and check.text() == "seed 1: adversarial accuracy 0.000, chance 0.100"
    moved = AuditCheck.from_dict({**row, "numbers": {"eps": 0.5, "acc": 0.25, "chance": 0.1}})  # the prose follows the numbers
    assert moved.prose() == "adversarial accuracy 0.250, chance 0.100"
    old = AuditCheck.from_dict({k: v for k, v in row.items() if k not in ("kind", "numbers")})  # a run written before: its detail
    assert old.text() == "seed 1: adversarial accuracy 0.000, chance 0.100"


def test_an_unknown_kind_is_named():
    with pytest.raises(ConfigError, match="'doubled'"):
        render("doubled", {})
