"""The independent label oracle: its images are held out of the training split before any model or attack sees them."""


import pytest
import torch

from fooled.config import StudyConfig
from fooled.data import Split, Splits, dataset_info
from fooled.errors import ConfigError
from fooled.models.oracle import Committee
from fooled.study.stages.honest_oracle import hold_out_for_oracle, oracle_labels


def indexed_splits(n_train=400):
    """Splits whose every image holds its own index in its first pixel (so images can be traced)."""
    def split(n, offset):
        x = torch.zeros(n, 1, 8, 8)
        x[:, 0, 0, 0] = torch.arange(offset, offset + n) / 10_000
        return Split(x, torch.arange(n) % 10)
    return Splits(split(n_train, 0), split(100, 5000), split(100, 6000), dataset_info("digits"))


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_the_oracle_never_sees_the_attack_donors_or_the_models_training_images(fraction):
    splits = indexed_splits()
    rest, oracle = hold_out_for_oracle(splits, fraction, seed=3)
    donors = rest.train.x[: StudyConfig().attacks.aware_donors]  # the study's donors: the first training images the models get
    ids = lambda x: set(x[:, 0, 0, 0].mul(10_000).round().long().tolist())  # noqa: E731
    assert not ids(oracle.x) & ids(rest.train.x) and not ids(oracle.x) & ids(donors)
    assert ids(oracle.x) | ids(rest.train.x) == ids(splits.train.x)
    assert len(oracle) == pytest.approx(fraction * 400, abs=1)
    assert torch.bincount(oracle.y, minlength=10).min() >= 1  # stratified: every class on both sides
    assert rest.val is splits.val and rest.test is splits.test
    again = hold_out_for_oracle(splits, fraction, seed=3)[1]
    assert torch.equal(again.x, oracle.x)  # fixed by the seed


def test_bad_fraction_is_named():
    with pytest.raises(ConfigError, match="oracle_fraction"):
        hold_out_for_oracle(indexed_splits(), 1.0, seed=0)
    with pytest.raises(ConfigError, match="oracle_fraction"):
        hold_out_for_oracle(indexed_splits(20), 0.05, seed=0)


def test_oracle_label_is_the_strict_majority():
    committee = Committee()
    committee.svc = committee.knn = object()  # votes replaced below
    votes = torch.tensor([[1, 2, 3, 4], [1, 2, 5, 4], [1, 7, 6, 0]])
    committee.votes = lambda x: votes
    assert oracle_labels(committee, torch.zeros(4, 1, 8, 8)).tolist() == [1, 2, -1, 4]
    assert oracle_labels(committee, torch.zeros(0, 1, 8, 8)).shape == (0,)
