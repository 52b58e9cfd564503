"""The report's audit table: a failed check shows a failing seed's detail."""

from fooled.report import _audit_detail


def test_audit_detail_shows_a_failing_seed_before_a_passing_one():
    rows = [{"seed": 0, "passed": True, "detail": "fine"}, {"seed": 1, "passed": False, "detail": "2 images moved"},
            {"seed": 2, "passed": False, "detail": "1 image moved"}]
    assert _audit_detail(rows) == "seed 1: 2 images moved"
    assert _audit_detail([r | {"passed": True} for r in rows]) == "seed 0: fine"
