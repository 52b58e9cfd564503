"""The noise control's sanity check of the gradient-masking audit."""

from hypothesis import given, strategies as st

from fooled.study.stages.audit import pgd_beats_noise

rate = st.integers(0, 48).map(lambda k: k / 48)


def test_noise_doing_about_as_well_as_pgd_on_both_scales_fails():
    assert not pgd_beats_noise(clean=0.95, noise=0.60, pgd=0.50)  # noise: 35 of PGD's 45 points, and PGD leaves 5/6 of noise's
    assert not pgd_beats_noise(clean=0.95, noise=0.40, pgd=0.50)  # noise beats PGD: PGD is weak


def test_a_robust_model_passes_on_the_drop_and_a_fragile_one_on_what_is_left():
    assert pgd_beats_noise(clean=0.90, noise=0.89, pgd=0.60)  # robust: noise barely moves it, PGD takes 30 points
    assert pgd_beats_noise(clean=0.70, noise=0.106, pgd=0.037)  # Fashion's Gaussian classifier at eps 0.05: noise breaks it
    assert pgd_beats_noise(clean=0.97, noise=0.47, pgd=0.0)  # PGD leaves nothing to find
    assert not pgd_beats_noise(clean=0.70, noise=0.106, pgd=0.08)


@given(clean=rate, noise=rate, pgd=rate)
def test_noise_that_beats_pgd_never_passes_and_pgd_at_zero_always_does(clean, noise, pgd):
    if noise < pgd:
        assert not pgd_beats_noise(clean, noise, pgd)
    if pgd == 0:
        assert pgd_beats_noise(clean, noise, pgd)
    if noise >= pgd and (clean - noise <= 0.5 * (clean - pgd) or pgd <= 0.5 * noise):
        assert pgd_beats_noise(clean, noise, pgd)
