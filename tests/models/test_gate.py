import pytest

from models.gate import GatedMetric, decide

GATED = (GatedMetric("roc_auc", True, 0.01), GatedMetric("brier", False, 0.002))


def test_first_version_is_promoted_without_comparison():
    decision = decide({"roc_auc": 0.5, "brier": 0.3}, None, GATED)
    assert decision.promote
    assert "no champion" in decision.summary()


def test_challenger_within_tolerance_is_promoted():
    decision = decide({"roc_auc": 0.795, "brier": 0.1515}, {"roc_auc": 0.80, "brier": 0.150}, GATED)
    assert decision.promote
    assert all(r.endswith(": ok") for r in decision.reasons)


def test_challenger_worse_than_tolerance_on_one_metric_is_refused_and_says_which():
    decision = decide({"roc_auc": 0.85, "brier": 0.160}, {"roc_auc": 0.80, "brier": 0.150}, GATED)
    assert not decision.promote
    assert "brier (lower is better) challenger 0.1600 vs champion 0.1500: worse by 0.01 > tolerance 0.002" in (
        decision.summary()
    )
    assert decision.reasons[0].endswith(": ok")


def test_lower_is_better_metric_that_improves_is_ok():
    decision = decide({"roc_auc": 0.80, "brier": 0.10}, {"roc_auc": 0.80, "brier": 0.15}, GATED)
    assert decision.promote


def test_missing_metric_is_an_error_not_a_silent_pass():
    with pytest.raises(KeyError):
        decide({"roc_auc": 0.8}, {"roc_auc": 0.8, "brier": 0.1}, GATED)


def test_negative_tolerance_is_rejected():
    with pytest.raises(ValueError, match="tolerance of auc"):
        GatedMetric("auc", True, -0.1)
