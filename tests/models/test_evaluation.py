"""Evaluation tables and curves, each checked against values worked out by hand on a few customers."""

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.models import evaluation as ev
from churn_pipeline.models import metrics as mx

# Ten customers ranked by a score with no ties: churners at ranks 1, 2, 4 and 8 (churn rate 0.4).
Y10 = np.array([1, 1, 0, 1, 0, 0, 0, 1, 0, 0])
S10 = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_top_count_is_the_ceiling_of_share_times_rows_without_float_noise():
    assert ev.top_count(0.1, 30) == 3  # 0.1 * 30 is 3.0000000000000004 in floating point
    assert ev.top_count(0.05, 10) == 1
    assert ev.top_count(0.2, 11) == 3
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ev.top_count(0.0, 10)


def test_expected_top_sums_average_a_tie_group_that_the_cut_splits():
    values = np.array([1.0, 0.0, 1.0, 0.0])
    score = np.array([0.9, 0.5, 0.5, 0.1])
    # k=2 takes the 0.9 row and half of the tied pair (whose values sum to 1).
    assert ev.expected_top_sums(values, score, [0, 1, 2, 3, 4]).tolist() == [0.0, 1.0, 1.5, 2.0, 2.0]


def test_expected_top_sums_do_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    values, score = rng.random(50), rng.integers(0, 5, 50).astype(float)
    perm = rng.permutation(50)
    k = np.arange(51)
    np.testing.assert_allclose(
        ev.expected_top_sums(values, score, k), ev.expected_top_sums(values[perm], score[perm], k)
    )


def test_lift_table_matches_hand_counts():
    table = ev.lift_table(Y10, S10, shares=(0.1, 0.2, 0.5))
    assert table["customers"].tolist() == [1, 2, 5]
    assert table["churners"].tolist() == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(table["churn_rate"], [1.0, 1.0, 0.6])
    np.testing.assert_allclose(table["lift"], [2.5, 2.5, 1.5])  # rate over the base rate 0.4
    np.testing.assert_allclose(table["capture"], [0.25, 0.5, 0.75])  # of 4 churners


def test_gains_table_by_quintile_matches_hand_counts():
    table = ev.gains_table(Y10, S10, n_groups=5)
    assert table["customers"].tolist() == [2, 2, 2, 2, 2]
    assert table["churners"].tolist() == [2.0, 1.0, 0.0, 1.0, 0.0]
    np.testing.assert_allclose(table["churn_rate"], [1.0, 0.5, 0.0, 0.5, 0.0])
    np.testing.assert_allclose(table["lift"], [2.5, 1.25, 0.0, 1.25, 0.0])
    np.testing.assert_allclose(table["cumulative_capture"], [0.5, 0.75, 0.75, 1.0, 1.0])
    np.testing.assert_allclose(table["cumulative_lift"], [2.5, 1.875, 1.25, 1.25, 1.0])
    np.testing.assert_allclose(table["mean_score"], [0.85, 0.65, 0.45, 0.25, 0.075])


def test_reliability_curve_bins_like_the_calibration_error():
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0.05, 0.15, 0.12, 0.95, 1.0])
    curve = ev.reliability_curve(y, p, n_bins=10)
    assert curve["bin_lower"].tolist() == [0.0, 0.1, 0.9]
    assert curve["customers"].tolist() == [1, 2, 2]
    np.testing.assert_allclose(curve["mean_predicted"], [0.05, 0.135, 0.975])
    np.testing.assert_allclose(curve["observed_rate"], [0.0, 0.5, 1.0])
    gap = (curve["customers"] * (curve["observed_rate"] - curve["mean_predicted"]).abs()).sum() / 5
    assert gap == pytest.approx(mx.expected_calibration_error(y, p))


def test_roc_points_step_through_each_threshold_and_their_area_is_the_auc():
    y, s = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])
    roc = ev.roc_curve_points(y, s)
    assert roc["fpr"].tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert roc["tpr"].tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert np.isinf(roc["threshold"].iloc[0])
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(0.75) == mx.roc_auc(y, s)


def test_pr_points_give_average_precision():
    y, s = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])
    pr = ev.pr_curve_points(y, s)
    assert pr["recall"].tolist() == [0.5, 0.5, 1.0, 1.0]
    np.testing.assert_allclose(pr["precision"], [1.0, 0.5, 2 / 3, 0.5])
    ap = float(np.sum(np.diff(np.r_[0.0, pr["recall"]]) * pr["precision"]))
    assert ap == pytest.approx(5 / 6) == pytest.approx(mx.pr_auc(y, s))


def test_curves_need_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        ev.roc_curve_points([1, 1], [0.2, 0.3])


def test_thin_curve_keeps_the_ends_and_at_most_the_asked_number_of_points():
    curve = pd.DataFrame({"x": np.arange(1000)})
    thin = ev.thin_curve(curve, 50)
    assert len(thin) == 50 and thin["x"].iloc[0] == 0 and thin["x"].iloc[-1] == 999
    assert len(ev.thin_curve(curve.head(10), 50)) == 10


def test_tier_table_counts_customers_and_observed_churn_per_tier_in_tier_order():
    y = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.85, 0.6, 0.55, 0.2, 0.1])
    tiers = np.array(["high", "high", "medium", "medium", "low", "low"], dtype=object)
    table = ev.tier_table(y, p, tiers)
    assert table["tier"].tolist() == ["high", "medium", "low"]
    assert table["customers"].tolist() == [2, 2, 2]
    np.testing.assert_allclose(table["share"], [1 / 3] * 3)
    np.testing.assert_allclose(table["churn_rate"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(table["mean_probability"], [0.875, 0.575, 0.15])
    with pytest.raises(ValueError, match="unknown tier"):
        ev.tier_table(y, p, np.array(["x"] * 6, dtype=object))


# ------------------------------------------------------------------------------------------------ CLV
ACTUAL = np.array([100.0, 0.0, 50.0, 10.0])
PREDICTED = np.array([80.0, 5.0, 40.0, 20.0])  # ranks: 80 (100), 40 (50), 20 (10), 5 (0)


def test_clv_deciles_compare_mean_predicted_and_mean_actual_per_group():
    table = ev.clv_deciles(ACTUAL, PREDICTED, n_groups=2)
    np.testing.assert_allclose(table["mean_predicted"], [60.0, 12.5])
    np.testing.assert_allclose(table["mean_actual"], [75.0, 5.0])
    np.testing.assert_allclose(table["abs_pct_error"], [0.2, 1.5])
    np.testing.assert_allclose(table["share_of_actual"], [150 / 160, 10 / 160])
    assert ev.decile_mape(table) == pytest.approx(0.85)


def test_decile_mape_skips_a_group_whose_actual_revenue_is_zero():
    table = ev.clv_deciles(np.array([10.0, 0.0]), np.array([12.0, 3.0]), n_groups=2)
    assert np.isnan(table["abs_pct_error"].iloc[1])
    assert ev.decile_mape(table) == pytest.approx(0.2)


def test_top_share_capture_is_the_share_of_revenue_in_the_top_predicted_rows():
    assert ev.top_share_capture(ACTUAL, PREDICTED, share=0.25) == pytest.approx(100 / 160)
    assert ev.top_share_capture(ACTUAL, PREDICTED, share=0.5) == pytest.approx(150 / 160)


def test_clv_summary_reports_totals_bias_and_capture():
    out = ev.clv_summary(ACTUAL, PREDICTED, top_share=0.25)
    assert out["total_actual"] == 160.0 and out["total_predicted"] == 145.0
    assert out["total_bias_pct"] == pytest.approx(100 * (145 - 160) / 160)
    assert out["top25_capture"] == pytest.approx(0.625)
    assert out["mae"] == pytest.approx((20 + 5 + 10 + 10) / 4)
    assert out["decile_mape"] > 0


# ---------------------------------------------------------------------------------------------- money
# Five customers ranked by score; campaign f = 1, d = 10, gamma = 0.5. Contacting a churner with value v
# earns 0.5 * (v - 10) - 1; contacting a non-churner costs 11.
Y5 = np.array([1, 1, 0, 1, 0])
V5 = np.array([100.0, 20.0, 50.0, 40.0, 30.0])
S5 = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
CAMPAIGN = ev.Campaign(contact_cost=1.0, incentive_cost=10.0, acceptance_rate=0.5)


def test_profit_curve_adds_each_contacted_customers_profit_in_rank_order():
    curve = ev.profit_curve(Y5, V5, S5, CAMPAIGN)
    # per customer: 44, 4, -11, 14, -11
    assert curve["profit"].tolist() == [0.0, 44.0, 48.0, 37.0, 51.0, 40.0]
    np.testing.assert_allclose(curve["share"], [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    best = ev.max_profit(curve)
    assert best == {"share": 0.8, "customers": 4.0, "profit": 51.0, "profit_per_customer": 51.0 / 5}


def test_profit_curve_on_a_share_grid_and_with_a_margin():
    curve = ev.profit_curve(Y5, V5, S5, ev.Campaign(1.0, 10.0, 0.5, value_margin=0.5), shares=[0.0, 0.2])
    assert curve["profit"].tolist() == [0.0, 0.5 * (50 - 10) - 1]


def test_profit_is_never_worth_a_campaign_when_nobody_churns():
    curve = ev.profit_curve(np.zeros(5), V5, S5, CAMPAIGN)
    assert ev.max_profit(curve)["share"] == 0.0 and ev.max_profit(curve)["profit"] == 0.0


def test_expected_maximum_profit_integrates_the_best_campaign_over_the_acceptance_rate():
    # Profit(k, g) = A_k + g * B_k with A = 0, -1, -2, -13, -14, -25 and B = 0, 90, 100, 100, 130, 130. The best
    # k is 0 for g < 1/90, 1 up to g = 0.1, 2 up to 0.4, then 4. With g ~ Beta(1, 1) = uniform, the integral is
    # [-g + 45 g^2] from 1/90 to 0.1 + [-2 g + 50 g^2] from 0.1 to 0.4 + [-14 g + 65 g^2] from 0.4 to 1.
    expected = (0.35 + 1 / 90 - 45 / 8100) + 6.9 + 46.2
    out = ev.expected_maximum_profit(Y5, V5, S5, CAMPAIGN, alpha=1.0, beta=1.0, n_gamma=4000)
    assert out["emp"] == pytest.approx(expected, rel=1e-4)
    assert out["emp_per_customer"] == pytest.approx(expected / 5, rel=1e-4)
    assert out["emp_share"] == pytest.approx((0.1 - 1 / 90) * 0.2 + 0.3 * 0.4 + 0.6 * 0.8, abs=1e-3)


def test_campaign_value_score_is_the_expected_profit_by_the_models_estimates():
    score = ev.campaign_value_score([1.0, 0.0, 0.5], [100.0, 100.0, 30.0], CAMPAIGN)
    np.testing.assert_allclose(score, [44.0, -11.0, 0.5 * (0.5 * 20 - 1) + 0.5 * -11])


def test_value_if_retained_divides_by_the_probability_of_staying_with_a_floor():
    out = ev.value_if_retained([10.0, 10.0, 10.0], [0.0, 0.5, 0.99], min_stay_probability=0.05)
    np.testing.assert_allclose(out, [10.0, 20.0, 200.0])  # 1 - 0.99 is below the floor 0.05
    with pytest.raises(ValueError, match="min_stay_probability"):
        ev.value_if_retained([1.0], [0.5], min_stay_probability=0.0)


def test_invalid_campaigns_are_rejected():
    with pytest.raises(ValueError, match="acceptance_rate"):
        ev.Campaign(acceptance_rate=1.5)
    with pytest.raises(ValueError, match="value_margin"):
        ev.Campaign(value_margin=0.0)
    with pytest.raises(ValueError, match="Beta"):
        ev.expected_maximum_profit(Y5, V5, S5, CAMPAIGN, alpha=0.0, beta=1.0)


# ------------------------------------------------------------------------------------------ summaries
def test_churn_summary_holds_the_metrics_and_lift_keys_named_by_percentage():
    out = ev.churn_summary(Y10, S10)
    assert out["roc_auc"] == pytest.approx(mx.roc_auc(Y10, S10))
    assert out["lift_top10"] == pytest.approx(2.5) and out["capture_top20"] == pytest.approx(0.5)
    assert {"pr_auc", "brier", "log_loss", "ece", "lift_top5", "capture_top5"} <= set(out)


def test_inputs_of_different_length_or_with_nan_are_rejected():
    with pytest.raises(ValueError, match="differ in length"):
        ev.lift_table([1, 0], [0.3])
    with pytest.raises(ValueError, match="non-finite"):
        ev.clv_deciles([1.0, np.nan], [1.0, 2.0])


def test_the_contact_list_contacts_exactly_the_customers_with_positive_expected_profit_and_earns_their_profit():
    campaign = ev.Campaign(contact_cost=1.0, incentive_cost=10.0, acceptance_rate=0.3, value_margin=0.3)
    churned = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.2, 0.1])
    value = np.array([200.0, 100.0, 50.0, 300.0])
    expected = ev.campaign_value_score(p, value, campaign)
    assert (expected > 0).tolist() == [True, True, False, False]  # 0.9 (0.3 x 50 - 1) - 0.1 x 11 = 11.5, ...
    curve = ev.profit_curve(churned, value, expected, campaign)
    got = ev.contact_list_profit(expected, curve)
    # Realised: churner 1 is worth 0.3 (0.3 x 200 - 10) - 1 = 14, churner 2 0.3 (30 - 10) - 1 = 5.
    assert got["share"] == 0.5 and got["customers"] == 2.0
    assert got["profit"] == pytest.approx(19.0) and got["profit_per_customer"] == pytest.approx(4.75)
    assert got["max_profit"] == pytest.approx(19.0) and got["best_share"] == 0.5
    with pytest.raises(ValueError, match="every whole number"):
        ev.contact_list_profit(expected, ev.profit_curve(churned, value, expected, campaign, shares=[0.5]))


def test_the_train_metrics_are_the_first_keys_of_the_evaluation_summaries():
    churn = ev.churn_summary(Y10, S10)
    assert list(churn)[:7] == list(ev.churn_metrics(Y10, S10))
    assert {k: churn[k] for k in ev.churn_metrics(Y10, S10)} == ev.churn_metrics(Y10, S10)
    clv = ev.clv_summary(ACTUAL, PREDICTED)
    core = ev.clv_metrics(ACTUAL, PREDICTED)
    assert {k: clv[k] for k in core} == core
    orders = ev.clv_metrics(ACTUAL, PREDICTED, [1, 0, 2, 1], [0.5, 0.5, 1.5, 1.0])
    assert orders["orders_mae"] == pytest.approx((0.5 + 0.5 + 0.5 + 0.0) / 4)
    assert list(orders)[:-1] == list(core)
