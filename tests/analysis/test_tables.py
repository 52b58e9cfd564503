"""Report tables: a failed audit check shows a failing seed's detail; a rate never rounds onto a threshold it misses; a rate's
counts are read from its row's own keys."""

import dataclasses

from fooled.analysis.tables import audit_detail as _audit_detail, fmt as _fmt, loss_table, rate_counts
from fooled.records import AuditCheck


def test_audit_detail_shows_a_failing_seed_before_a_passing_one():
    rows = [AuditCheck(seed=0, passed=True, detail="fine"), AuditCheck(seed=1, passed=False, detail="2 images moved"),
            AuditCheck(seed=2, passed=False, detail="1 image moved")]
    assert _audit_detail(rows) == "seed 1: 2 images moved"
    assert _audit_detail([dataclasses.replace(r, passed=True) for r in rows]) == "seed 0: fine"


def test_rates_just_under_a_threshold_keep_a_second_decimal():
    ci = {"mean": 0.8996, "lo": 0.882, "hi": 0.918, "n": 3}
    assert _fmt(ci, pct=True) == "89.96 [88.2, 91.8]"
    assert _fmt({"mean": 0.9, "lo": 0.9, "hi": 0.9, "n": 1}, pct=True) == "90.0"
    assert _fmt({"mean": 0.4651, "lo": 0.428, "hi": 0.501, "n": 3}, pct=True) == "46.5 [42.8, 50.1]"
    assert _fmt({"mean": 0.49996, "lo": 0.1, "hi": 1.0, "n": 3}, pct=True) == "49.996 [10.0, 100.0]"  # exact ends stay short
    assert _fmt({"mean": (0.85 + 0.9 + 0.95) / 3, "n": 1}, pct=True) == "90.0"  # 89.99999999999999: float noise, not a miss
    assert _fmt({"mean": 0.4000333, "n": 1}, pct=True) == "40.0"  # rounded down onto 40: no threshold is misstated
    assert _fmt({"mean": 0.399999996, "n": 1}, pct=True) == "40.0"  # 240 of 600 images, averaged in float32


def test_fashion_report_prints_the_papers_bits_per_dim_beside_ours():
    from fooled.analysis.report import _paper_side_by_side

    rows = [{"set": s, "model": "flow", "seed": seed, "mean_bpd": bpd + seed / 50, "test_mean_bpd": 3.5 + seed / 50}
            for seed in (0, 1) for s, bpd in (("MNIST-like digits", 2.7), ("all black", 0.4))]
    text = "\n".join(_paper_side_by_side({"dataset": {"name": "fashion-mnist"}, "ood": rows}))
    assert "| FashionMNIST test | 2.9 | test | 3.51" in text and "| MNIST test | 1.8 | MNIST-like digits | 2.71" in text
    assert "Nalisnick" in text
    assert _paper_side_by_side({"dataset": {"name": "digits"}, "ood": rows}) == []


def test_rate_counts_read_counted_rates_and_rates_over_all_images_in_seed_order():
    rows = [{"seed": 2, "tpr_at_fpr": 0.5, "n_detected": 3, "n_success": 6, "adv_acc": 0.25, "n": 48},
            {"seed": 0, "tpr_at_fpr": 1.0, "n_detected": 5, "n_success": 5, "adv_acc": 1 / 3, "n": 48}]
    assert rate_counts(rows, "tpr_at_fpr") == [(5, 5), (3, 6)]  # the stored counts, not the rate times anything
    assert rate_counts(rows, "adv_acc") == [(16, 48), (12, 48)]  # a rate over all n images: rounded back to a count
    sweep = [{"adv_acc": 0.5, "n": 10}, {"adv_acc": 0.2, "n": 10}]  # a sweep's rows have no seed: their order stands
    assert rate_counts(sweep, "adv_acc") == [(5, 10), (2, 10)]


def test_loss_table_pools_seeds_and_names_the_largest_gap():
    def row(seed, target, attack, eps, n_correct, ce, margin, multitarget, grid="continuous"):
        return {"seed": seed, "target": target, "attack": attack, "eps": eps, "grid": grid, "n_correct": n_correct,
                "fooled_by": {"ce": ce, "margin": margin, "multitarget": multitarget}}

    rows = [row(0, "cnn", "pgd", 0.1, 40, 10, 1, 1), row(1, "cnn", "pgd", 0.1, 60, 20, 0, 0),  # pooled: 30 -> 32 of 100
            row(0, "flow", "pgd_l2", 0.5, 50, 5, 40, 0), row(1, "flow", "pgd_l2", 0.5, 50, 5, 40, 5),  # 10 -> 95 of 100
            row(0, "flow", "pgd_l2", 0.5, 50, 0, 0, 0, grid="rounded")]  # a rounded set is not the attack's output: left out
    text = "\n".join(loss_table({"attacks": rows + [{"seed": 0, "target": "cnn", "attack": "fgsm", "eps": 0.1, "n_correct": 5}]}))
    assert "| cnn | 30.0 → 32.0 | - |" in text and "| flow | - | 10.0 → 95.0 |" in text
    assert "The largest gap: the flow, pgd_l2 at eps 0.5, 10.0% → 95.0%" in text
    assert loss_table({"attacks": [row(0, "cnn", "pgd", 0.1, 40, 10, 1, 1) | {"fooled_by": {"ce": 12}}]}) == []  # one loss
    assert loss_table({"attacks": []}) == []
