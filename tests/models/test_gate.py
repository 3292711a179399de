import pytest

from churn_pipeline.models.gate import GatedMetric, decide

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


def test_a_first_version_worse_than_the_best_baseline_is_not_promoted_and_says_which():
    from churn_pipeline.models.gate import clears_baseline_bar

    baselines = {"bgnbd": {"roc_auc": 0.71}, "recency_rule": {"roc_auc": 0.68}}
    decision = clears_baseline_bar({"roc_auc": 0.158}, baselines, {"roc_auc": 0.005})
    assert not decision.promote
    assert "roc_auc challenger 0.1580 vs best baseline bgnbd 0.7100: worse than it by more than 0.005" in (
        decision.summary()
    )
    assert clears_baseline_bar({"roc_auc": 0.79}, baselines, {"roc_auc": 0.005}).promote
    # A tie within the tolerance passes (a booster on a BG/NBD offset lands beside it); beyond it does not.
    assert clears_baseline_bar({"roc_auc": 0.706}, baselines, {"roc_auc": 0.005}).promote
    assert not clears_baseline_bar({"roc_auc": 0.704}, baselines, {"roc_auc": 0.005}).promote
    clv = {"bgnbd": {"normalized_gini": 0.62}}
    assert not clears_baseline_bar({"normalized_gini": 0.5}, clv, {"normalized_gini": 0.01}).promote
    # A NaN challenger never passes; a NaN baseline or none at all cannot block.
    assert not clears_baseline_bar({"roc_auc": float("nan")}, baselines, {"roc_auc": 0.005}).promote
    assert clears_baseline_bar({"roc_auc": 0.6}, {"bgnbd": {"roc_auc": float("nan")}}, {"roc_auc": 0.005}).promote
    assert "no baseline" in clears_baseline_bar({"roc_auc": 0.6}, {}, {"roc_auc": 0.005}).summary()


def test_the_auc_standard_error_is_hanley_and_mcneils():
    from churn_pipeline.models.gate import auc_standard_error

    # Hanley & McNeil (1982), table 2: AUC 0.8 on 50 positives and 50 negatives, standard error 0.0445.
    assert auc_standard_error(0.8, 50, 50) == pytest.approx(0.0445, abs=0.0005)
    assert auc_standard_error(0.72, 5800, 4263) < auc_standard_error(0.72, 425, 308)
    assert auc_standard_error(0.7, 0, 10) != auc_standard_error(0.7, 0, 10)  # NaN: no positives


def test_on_few_test_rows_a_tie_within_one_standard_error_passes_the_bar_and_a_loss_beyond_it_does_not():
    from churn_pipeline.models.gate import clears_baseline_bar

    baselines = {"bgnbd": {"roc_auc": 0.716}}
    tolerance = {"roc_auc": 0.005}
    # The 1,500-customer orders-only shop: 733 test rows, AUC 0.710, standard error 0.019.
    tie = clears_baseline_bar({"roc_auc": 0.710}, baselines, tolerance, {"roc_auc": 0.019})
    assert tie.promote and "within one standard error on these rows (0.0190)" in tie.summary()
    assert not clears_baseline_bar({"roc_auc": 0.690}, baselines, tolerance, {"roc_auc": 0.019}).promote
    # On many rows the standard error is below the tolerance, which then decides; a NaN one changes nothing.
    assert not clears_baseline_bar({"roc_auc": 0.710}, baselines, tolerance, {"roc_auc": 0.004}).promote
    assert not clears_baseline_bar({"roc_auc": 0.710}, baselines, tolerance, {"roc_auc": float("nan")}).promote


def test_models_for_different_label_horizons_are_not_compared():
    from churn_pipeline.models.gate import same_target

    refused = same_target({"label_horizon_days": 60}, {"label_horizon_days": 90}, "1", "churn")
    assert refused is not None and not refused.promote
    assert "label_horizon_days 90 (champion) vs 60 (challenger)" in refused.summary()
    assert "churn promote churn VERSION" in refused.summary()
    assert same_target({"label_horizon_days": 90}, {"label_horizon_days": "90"}, "1", "churn") is None
    assert same_target({"label_horizon_days": 60}, {}, "1", "churn") is None  # an old champion without the tag
