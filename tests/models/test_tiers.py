"""Risk tiers from churn probabilities: thresholds, shares, lapsed customers, and parameter validation."""

import numpy as np
import pytest

from churn_pipeline.models.tiers import TIER_ORDER, RiskTiers, assign_risk_tier


def test_tier_order_lists_the_most_urgent_tier_first():
    assert TIER_ORDER == ("high", "medium", "low", "lapsed")


def test_probability_thresholds_are_inclusive_at_their_lower_edge():
    tiers = RiskTiers(method="probability", high=0.8, medium=0.5)
    p = np.array([0.0, 0.49, 0.5, 0.79, 0.8, 1.0])
    assert assign_risk_tier(p, tiers).tolist() == ["low", "low", "medium", "medium", "high", "high"]


def test_lapsed_customers_are_lapsed_whatever_their_probability():
    tiers = RiskTiers(high=0.8, medium=0.5)
    out = assign_risk_tier([0.95, 0.1, 0.6], tiers, is_lapsed=[True, True, False])
    assert out.tolist() == ["lapsed", "lapsed", "medium"]


def test_share_method_takes_the_top_share_as_high_and_the_next_up_to_the_cumulative_share_as_medium():
    tiers = RiskTiers(method="share", high=0.2, medium=0.5)
    p = np.array([0.1, 0.9, 0.3, 0.7, 0.5, 0.2, 0.8, 0.4, 0.6, 0.05])  # top 2 of 10 high, next 3 medium
    out = assign_risk_tier(p, tiers)
    assert out[p >= 0.8].tolist() == ["high", "high"]
    assert sorted(out[(p >= 0.5) & (p < 0.8)].tolist()) == ["medium"] * 3
    assert (out[p < 0.5] == "low").all()


def test_share_method_counts_only_customers_who_are_not_lapsed():
    tiers = RiskTiers(method="share", high=0.25, medium=0.5)
    p = np.array([0.99, 0.9, 0.8, 0.7, 0.6])  # the 0.99 one is lapsed: 4 active, top 1 high, next 1 medium
    out = assign_risk_tier(p, tiers, is_lapsed=np.array([True, False, False, False, False]))
    assert out.tolist() == ["lapsed", "high", "medium", "low", "low"]


def test_share_method_keeps_tied_probabilities_in_the_same_tier():
    tiers = RiskTiers(method="share", high=0.25, medium=0.5)
    out = assign_risk_tier([0.9, 0.9, 0.1, 0.1], tiers)
    assert out.tolist() == ["high", "high", "low", "low"]


def test_the_output_holds_tier_names_and_the_input_is_not_changed():
    p = np.array([0.2, 0.9])
    out = assign_risk_tier(p, RiskTiers())
    assert out.dtype == object and set(out) <= set(TIER_ORDER)
    assert p.tolist() == [0.2, 0.9]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "quantile"}, "method must be one of"),
        ({"high": 0.5, "medium": 0.8}, "0 < medium < high <= 1"),
        ({"high": 1.2, "medium": 0.5}, "0 < medium < high <= 1"),
        ({"high": 0.8, "medium": 0.0}, "0 < medium < high <= 1"),
        ({"method": "share", "high": 0.5, "medium": 0.2}, "0 < high < medium <= 1"),
        ({"method": "share", "high": 0.1, "medium": 1.5}, "0 < high < medium <= 1"),
        ({"high": float("nan")}, "must be a number"),
    ],
)
def test_invalid_tier_parameters_are_rejected_with_the_rule(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RiskTiers(**kwargs)


def test_probabilities_outside_zero_one_or_a_length_mismatch_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        assign_risk_tier([1.5], RiskTiers())
    with pytest.raises(ValueError, match="is_lapsed has 1 values"):
        assign_risk_tier([0.5, 0.6], RiskTiers(), is_lapsed=[True])
