"""The label oracle: a committee never attacked, and the bookkeeping of what it says about adversarial images."""

import math

import pytest
import torch

from fooled.data import load
from fooled.errors import ModelError
from fooled.models.oracle import VERDICTS, Committee, oracle_verdicts, verdict_codes


def test_verdicts_on_hand_made_votes_cover_every_branch():
    # five images, original class 1, attacker's class 7; three members per column
    votes = torch.tensor([
        [1, 7, 7, 1, 1],
        [1, 7, 7, 7, 3],
        [1, 7, 2, 2, 4],
    ])
    y_original, y_attacker = torch.full((5,), 1), torch.full((5,), 7)
    # all original | unanimous attacker | 2 of 3 attacker | 1 vote each | original majority, not unanimous
    expected = ["original", "changed", "changed", "disagree", "disagree"]
    assert [VERDICTS[c] for c in verdict_codes(votes, y_original, y_attacker)] == expected
    out = oracle_verdicts(votes, y_original, y_attacker)
    assert out == {"n": 5, "members": 3, "original": 1, "changed": 2, "disagree": 2,
                   "original_rate": 0.2, "changed_rate": 0.4, "disagree_rate": 0.4}


def test_a_majority_is_strict_and_labels_are_per_image():
    votes = torch.tensor([[4, 0], [9, 0]])  # two members split 1-1: no majority; a different class pair per image
    out = oracle_verdicts(votes, y_original=torch.tensor([4, 5]), y_attacker=torch.tensor([9, 0]))
    assert (out["original"], out["changed"], out["disagree"]) == (0, 1, 1)


def test_no_images_gives_zero_counts_and_nan_rates():
    out = oracle_verdicts(torch.zeros(3, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert out["n"] == 0 and out["original"] == out["changed"] == out["disagree"] == 0 and math.isnan(out["changed_rate"])


@pytest.mark.parametrize("votes, y_original, y_attacker, message", [
    (torch.tensor([1, 2]), torch.tensor([1, 2]), torch.tensor([3, 4]), "votes must be an integer tensor"),
    (torch.tensor([[1.0, 2.0]]), torch.tensor([1, 2]), torch.tensor([3, 4]), "votes must be an integer tensor"),
    (torch.tensor([[1, 2]]), torch.tensor([1]), torch.tensor([3, 4]), "y_original must be an integer tensor of shape \\(2,\\)"),
    (torch.tensor([[1, 2]]), torch.tensor([1, 2]), torch.tensor([1, 4]), "pass only the adversarials that fooled"),
])
def test_bad_inputs_are_named(votes, y_original, y_attacker, message):
    with pytest.raises(ModelError, match=message):
        oracle_verdicts(votes, y_original, y_attacker)


@pytest.fixture(scope="module")
def digits():
    return load("digits", seed=0)


def test_committee_reads_clean_digits_and_votes_in_member_order(digits):
    extra = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    with torch.no_grad():
        extra[1].weight.zero_()
        extra[1].bias.copy_(torch.arange(10.0))  # always says 9
    committee = Committee(extra={"nine": extra})
    chosen = committee.fit(digits.train, digits.val)
    assert chosen["svc_C"] in committee.c_grid and chosen["knn_k"] in committee.k_grid
    acc = committee.accuracy(digits.test.x, digits.test.y)
    # measured on digits seed 0 (360 test images): svc 0.983 (C = 1), knn 0.983 (k = 1)
    assert acc["svc"] >= 0.95 and acc["knn"] >= 0.95
    votes = committee.votes(digits.test.x[:20])
    assert votes.shape == (3, 20) and votes.dtype == torch.long and committee.members == ("svc", "knn", "nine")
    assert (votes[2] == 9).all()


def test_committee_refuses_to_vote_unfitted_and_reserved_names():
    with pytest.raises(ModelError, match="call fit"):
        Committee().votes(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ModelError, match="'svc' is taken"):
        Committee(extra={"svc": torch.nn.Identity()})
