"""Learning curves read from model rows: the table, the early-stopping sentence and the figure."""

import pytest

from fooled.analysis.curves import curve_table, learning_curves, stopped_early, stopping_text


def _results(cap=6, patience=2):
    def row(seed, epochs, best, bpd=True):
        curve = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "train_acc": 0.8 + 0.02 * e, "val_acc": 0.78 + 0.02 * e,
                  **({"train_bpd": 4.0 - 0.1 * e, "val_bpd": 4.05 - 0.1 * e} if bpd else {})} for e in range(epochs)]
        return {"seed": seed, "epochs": epochs, "best_epoch": best, "curve": curve}
    return {"config": {"train": {"epochs": cap, "patience": patience}},
            "models": {"cnn": [row(0, 5, 2, bpd=False), row(1, 6, 3, bpd=False)], "flow": [row(0, 6, 5), row(1, 6, 4)],
                       "gaussian": [{"seed": 0, "epochs": 0, "best_epoch": 0}]}}


@pytest.mark.parametrize("epochs, best, stopped", [(5, 2, True), (6, 3, True), (6, 4, False), (6, 5, False)])
def test_early_stopping_is_told_from_the_cap_cutting_a_model_that_still_improved(epochs, best, stopped):
    assert stopped_early(epochs, best, cap=6, patience=2) is stopped


def test_the_sentence_says_per_seed_whether_early_stopping_or_the_cap_ended_training():
    text = stopping_text(_results())
    assert text.startswith("How training ended (early stopping: 2 epochs without a better validation loss; the cap: 6 epochs): ")
    assert "cnn, early stopping for every seed (after 5, 6 epochs; best 3, 4); flow, the cap for every seed (best 6, 5)." in text
    mixed = _results()
    mixed["models"]["flow"][1] = {**mixed["models"]["flow"][1], "epochs": 5, "best_epoch": 2}
    assert "flow, seed 0 at the cap (best 6), seed 1 by early stopping after 5 epochs (best 3)." in stopping_text(mixed)
    assert "gaussian" not in text  # fitted in closed form: no curve


def test_table_has_a_row_per_model_seed_epoch_and_split_and_bits_only_for_densities(tmp_path):
    df = curve_table(_results())
    assert len(df) == 2 * (5 + 6 + 6 + 6)
    assert df[df.model == "cnn"]["bits/dim"].isna().all() and df[df.model == "flow"]["bits/dim"].notna().all()
    assert df["epoch"].min() == 1 and set(df["split"]) == {"train", "validation"}
    path = learning_curves(_results(), tmp_path)[0]
    assert path.name == "learning_curves.png" and path.stat().st_size > 10_000
