"""The noise control's sanity check of the gradient-masking audit."""

from hypothesis import given, strategies as st

from fooled.study.stages.audit import noise_within_half

rate = st.integers(0, 48).map(lambda k: k / 48)


def test_noise_doing_about_as_well_as_pgd_fails_while_pgd_leaves_images_correct():
    assert noise_within_half(clean=0.95, noise=0.80, pgd=0.50)  # noise: 15 points, PGD: 45
    assert not noise_within_half(clean=0.95, noise=0.60, pgd=0.50)  # noise: 35 of PGD's 45 points
    assert not noise_within_half(clean=0.95, noise=0.40, pgd=0.50)  # noise beats PGD: PGD is weak


def test_a_model_that_noise_breaks_passes_where_pgd_leaves_nothing_to_find():
    assert noise_within_half(clean=0.97, noise=0.47, pgd=0.0)  # the default study's Gaussian classifier at eps 5/16
    assert not noise_within_half(clean=0.97, noise=0.47, pgd=1 / 48)  # one image left: the rule applies again


@given(clean=rate, noise=rate, pgd=rate)
def test_the_check_never_passes_noise_that_beats_pgd(clean, noise, pgd):
    if noise < pgd:
        assert not noise_within_half(clean, noise, pgd)
    if pgd == 0 or clean - noise <= 0.5 * (clean - pgd) and noise >= pgd:
        assert noise_within_half(clean, noise, pgd)
