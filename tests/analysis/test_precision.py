"""The precision line: every headline number's half-width, computed from the rows, and why a wide one is wide."""

from fooled.analysis.precision import half_width, headline_intervals, images_alone, precision_sentence
from fooled.analysis.verdict import compute_verdict
from record_factory import attack_row, results_of

EPS = (0.0625, 0.125)


def results(detected_per_seed, n=400):
    """PGD against the cnn on one budget per seed pair, `detected_per_seed[s]` of `n // 2` successful adversarials flagged."""
    rows = []
    for seed, detected in enumerate(detected_per_seed):
        rows += [attack_row("cnn", "pgd", e, seed=seed, n=n, success=n // 2, detected=detected) for e in EPS]
        rows += [attack_row("cnn", "noise_linf", e, seed=seed, n=n, flagged=0.1) for e in EPS]
    res = results_of(rows, names=("cnn",))
    res["verdict"] = compute_verdict(res)
    return res


def test_half_width_is_the_larger_side_in_whole_points_as_shown():
    assert half_width({"mean": 0.62, "lo": 0.57, "hi": 0.67}) == 5
    assert half_width({"mean": 0.74, "lo": 0.67, "hi": 0.79}) == 7  # the larger side, not half the width (6)
    assert half_width({"mean": -0.37, "lo": -0.40, "hi": -0.33}) == 4


def test_seeds_that_agree_give_a_narrow_interval_within_five_points():
    res = results([180] * 10)  # ten seeds, 90% flagged on every one
    (what, ci), = headline_intervals(res)
    assert what == "PGD flagged" and half_width(ci) <= 5 and images_alone(ci) <= 2
    text = precision_sentence(res)
    assert text.startswith("Precision of the headline numbers") and "PGD flagged +-" in text and "1 of 1 are within +-5." in text
    assert "Wider" not in text


def test_seeds_that_disagree_are_named_as_the_reason_more_images_would_not_help():
    res = results([100, 190, 120, 180, 110, 195, 105, 185, 115, 175])  # 50% to 98% per seed
    (_, ci), = headline_intervals(res)
    assert half_width(ci) > 5 and images_alone(ci) <= 5
    text = precision_sentence(res)
    assert "0 of 1 are within +-5." in text and "how much the seeds disagree" in text


def test_few_images_are_named_as_the_reason_where_the_images_alone_are_wide():
    res = results([15, 16], n=40)  # two seeds of 20 successful adversarials
    (_, ci), = headline_intervals(res)
    assert images_alone(ci) > 5
    assert "it needs more images, and seeds" in precision_sentence(res)


def test_nothing_to_say_without_headline_numbers():
    assert precision_sentence(results([])) == ""


def test_a_set_likelier_on_some_seeds_for_all_its_images_and_on_others_for_none_reads_as_a_yes_or_no_per_seed():
    res = results([180] * 10)
    res["ood"] = [{"seed": s, "model": "flow", "set": "blank", "n": 100, "higher_likelihood_than_test": float(s < 3)}
                  for s in range(10)]
    res["verdict"] = compute_verdict(res)
    (what, ci), = [(w, c) for w, c in headline_intervals(res) if w.startswith("off the support")]
    assert "(blank)" in what and ci["mean"] == 0.3 and half_width(ci) > 5
    assert "a yes or no per seed" in precision_sentence(res)
    res["ood"][0]["higher_likelihood_than_test"] = 0.5  # one seed splits the set: images, not only seeds, count
    res["verdict"] = compute_verdict(res)
    assert "a yes or no per seed" not in precision_sentence(res)
