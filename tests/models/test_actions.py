"""The action rule table (first match wins, a default, validation) and the stable control group."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from churn_pipeline.models.actions import (
    ActionRule,
    applicable_rules,
    break_even_value,
    control_group,
    recommend,
    unit_hash,
    validate_rules,
)

RULES = (
    ActionRule(name="new", tiers=("high", "medium", "low"), max_tenure_days=60, action="onboarding"),
    ActionRule(name="valuable at risk", tiers=("high",), min_value_percentile=80, action="personal_outreach"),
    ActionRule(name="at risk", tiers=("high", "lapsed"), action="winback_email_coupon"),
    ActionRule(name="disengaging", tiers=("medium",), reason_features=("email_", "sessions_"), action="points_boost"),
    ActionRule(name="rich", min_clv=500.0, action="vip_newsletter"),
    ActionRule(name="default", action="no_action"),
)


def _recommend(tier, pct=50, clv=10.0, tenure=400.0, codes=(None, None, None)):
    return recommend(
        RULES,
        np.array([tier], dtype=object),
        np.array([pct]),
        np.array([clv]),
        np.array([tenure]),
        [np.array([c], dtype=object) for c in codes],
    )[0]


def test_the_first_matching_rule_wins():
    # A new, valuable, high-risk customer matches rules 1, 2 and 3: onboarding comes first.
    assert _recommend("high", pct=95, tenure=10) == "onboarding"
    assert _recommend("high", pct=95, tenure=100) == "personal_outreach"
    assert _recommend("high", pct=50, tenure=100) == "winback_email_coupon"


def test_customers_no_rule_matches_get_the_default():
    assert _recommend("low") == "no_action"
    assert _recommend("medium", codes=("recency_days", None, None)) == "no_action"


def test_lapsed_customers_are_never_onboarded():
    assert _recommend("lapsed", tenure=10) == "winback_email_coupon"


def test_reason_features_match_any_reason_slot_by_prefix():
    assert _recommend("medium", codes=("recency_days", None, "email_opens_90d")) == "points_boost"
    assert _recommend("medium", codes=("recency_days", "sessions_trend_30d", None)) == "points_boost"


def test_value_percentile_conditions_compare_the_value_percentile_given():
    # recommend takes the value percentile (rank of value if retained) as it is; 80 is the rule's bound.
    assert _recommend("high", pct=80, tenure=100) == "personal_outreach"
    assert _recommend("high", pct=79, tenure=100) == "winback_email_coupon"


def test_an_absolute_value_threshold_applies_to_predicted_clv():
    assert _recommend("low", clv=500.0) == "vip_newsletter"
    assert _recommend("low", clv=499.99) == "no_action"


def test_an_unknown_tenure_matches_no_tenure_condition():
    assert _recommend("medium", tenure=np.nan) == "no_action"


def test_many_customers_are_decided_at_once():
    out = recommend(
        RULES,
        np.array(["high", "low", "medium", "lapsed"], dtype=object),
        np.array([90, 10, 50, 50]),
        np.array([1.0, 1.0, 1.0, 1.0]),
        np.array([100.0, 100.0, 30.0, 900.0]),
        [np.array([None] * 4, dtype=object)] * 3,
    )
    assert out.tolist() == ["personal_outreach", "no_action", "onboarding", "winback_email_coupon"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tiers": ("urgent",), "action": "call"}, "unknown tier"),
        ({"min_value_percentile": 0, "action": "call"}, "percentile 1-100"),
        ({"min_value_percentile": 90, "max_value_percentile": 10, "action": "call"}, "never matches"),
        ({"action": "Call Them"}, "lower_snake_case"),
        ({"action": "hold_out"}, "reserved"),
        ({"max_tenure_days": -1, "action": "call"}, ">= 0"),
    ],
)
def test_a_bad_rule_is_refused_with_its_name(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        ActionRule(name="my rule", **kwargs)
    assert "my rule" in str(info.value)


def test_the_table_must_end_with_a_default_rule():
    with pytest.raises(ValueError, match="last action rule"):
        validate_rules((ActionRule(tiers=("high",), action="call"),))


def test_a_default_rule_before_the_end_is_refused_because_later_rules_never_fire():
    with pytest.raises(ValueError, match=r"actions\[0\].*never"):
        validate_rules((ActionRule(action="no_action"), ActionRule(action="call")))


def test_an_empty_table_is_refused():
    with pytest.raises(ValueError, match="empty"):
        validate_rules(())


def test_rules_whose_reason_features_the_model_has_are_all_kept_without_warnings():
    kept, warnings = applicable_rules(RULES, ["email_opens_90d", "sessions_30d", "recency_days"])
    assert kept == RULES and warnings == []


def test_a_rule_none_of_whose_reason_features_the_model_has_is_skipped_with_one_warning():
    # A model trained without events has no e-mail or session features: the "disengaging" rule can never fire.
    kept, warnings = applicable_rules(RULES, ["orders_90d", "recency_days"])
    assert [r.name for r in kept] == ["new", "valuable at risk", "at risk", "rich", "default"]
    assert len(warnings) == 1
    assert "actions[3] (rule 'disengaging') skipped" in warnings[0]
    assert "['email_', 'sessions_']" in warnings[0] and "\n" not in warnings[0]


def test_a_rule_with_some_reason_features_the_model_lacks_is_kept_and_the_missing_ones_named():
    kept, warnings = applicable_rules(RULES, ["email_opens_90d", "recency_days"])
    assert kept == RULES
    assert len(warnings) == 1 and "actions[3] (rule 'disengaging')" in warnings[0] and "['sessions_']" in warnings[0]


def test_customers_of_a_skipped_rule_get_the_next_matching_rule():
    rules = (
        ActionRule(name="disengaging", tiers=("medium",), reason_features=("email_",), action="points_boost"),
        ActionRule(name="medium otherwise", tiers=("medium",), action="winback_email_coupon"),
        ActionRule(name="default", action="no_action"),
    )
    kept, _ = applicable_rules(rules, ["recency_days", "orders_90d"])
    tier, pct, clv, tenure = (np.array(["medium"], dtype=object), np.array([50]), np.array([1.0]), np.array([400.0]))
    codes = [np.array(["recency_days"], dtype=object)] * 3
    assert recommend(kept, tier, pct, clv, tenure, codes).tolist() == ["winback_email_coupon"]


def test_skipping_rules_never_makes_a_valid_table_invalid():
    # Even if every conditional rule is skipped, the default rule (no reason_features) remains last.
    rules = (ActionRule(reason_features=("email_",), action="points_boost"), ActionRule(action="no_action"))
    kept, warnings = applicable_rules(rules, ["recency_days"])
    validate_rules(kept)
    assert kept == (ActionRule(action="no_action"),) and len(warnings) == 1


# ------------------------------------------------------------------ control group
SALT = "churn-control-group-1"


def test_control_group_membership_is_pinned_for_known_ids():
    # Pinned: a change of hash function, key derivation or pandas' SipHash would reshuffle every customer's group.
    ids = ["0000001", "0000004", "0000008", "0000009", "0000021"]
    assert unit_hash(ids, SALT).round(6).tolist() == [0.090281, 0.027273, 0.047802, 0.933849, 0.028601]
    assert control_group(ids, 0.05, SALT).tolist() == [False, True, True, False, True]


def test_control_group_does_not_depend_on_row_order_or_the_other_customers():
    ids = np.array([f"C{i:06d}" for i in range(5000)], dtype=object)
    full = control_group(ids, 0.1, SALT)
    order = np.random.default_rng(1).permutation(ids.size)
    assert (control_group(ids[order], 0.1, SALT) == full[order]).all()
    assert (control_group(ids[:37], 0.1, SALT) == full[:37]).all()


def test_control_group_share_is_close_to_the_configured_share():
    ids = [f"C{i:07d}" for i in range(200_000)]
    assert control_group(ids, 0.05, SALT).mean() == pytest.approx(0.05, abs=0.002)


def test_a_larger_share_keeps_everyone_already_held_out():
    ids = [f"C{i:06d}" for i in range(20_000)]
    small, large = control_group(ids, 0.05, SALT), control_group(ids, 0.10, SALT)
    assert (large[small]).all() and large.sum() > small.sum()


def test_a_new_salt_draws_a_new_group():
    ids = [f"C{i:06d}" for i in range(20_000)]
    a, b = control_group(ids, 0.1, SALT), control_group(ids, 0.1, "another salt")
    assert (a & b).mean() == pytest.approx(0.01, abs=0.004)  # independent draws overlap by share^2


def test_a_share_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="share"):
        control_group(["a"], 1.0, SALT)


# ------------------------------------------------------------------ value floor (issue 18)
PARAMS_YAML = Path(__file__).resolve().parents[2] / "params.yaml"


def test_break_even_value_follows_the_campaign_arithmetic():
    # f 1, d 10, gamma 0.3, m 0.3: a sure churner pays back at (10 + 1 / 0.3) / 0.3; likelier stayers cost more.
    assert break_even_value(1.0, 10.0, 0.3, 0.3) == pytest.approx(44.444, abs=1e-3)
    assert break_even_value(1.0, 10.0, 0.3, 0.3, churn_probability=0.8) == pytest.approx(75.0)
    assert break_even_value(1.0, 10.0, 0.3, 0.3, churn_probability=0.5) == pytest.approx(166.667, abs=1e-3)
    assert break_even_value(1.0, 10.0, 0.3, 0.3, churn_probability=0.0) == float("inf")
    # At the break-even value the expected profit p (g (m v - d) - f) - (1 - p)(d + f) is zero.
    p, v = 0.8, break_even_value(1.0, 10.0, 0.3, 0.3, churn_probability=0.8)
    assert p * (0.3 * (0.3 * v - 10.0) - 1.0) - (1 - p) * 11.0 == pytest.approx(0.0, abs=1e-9)


FLOORED = (
    ActionRule(name="lapsed win-back", tiers=("lapsed",), min_value_if_retained=45.0, action="winback_email_coupon"),
    ActionRule(name="cheap", tiers=("lapsed",), min_value_if_retained=5.0, action="reactivation_email"),
    ActionRule(name="default", action="no_action"),
)


def test_customers_below_the_value_floor_fall_through_to_a_cheaper_action_or_none():
    n = 4
    out = recommend(
        FLOORED,
        np.array(["lapsed"] * n, dtype=object),
        np.full(n, 50),
        np.array([0.5, 3.0, 0.2, 10.0]),
        np.full(n, 900.0),
        [np.array([None] * n, dtype=object)] * 3,
        value_if_retained=np.array([10.0, 45.0, 4.0, np.nan]),
    )
    assert out.tolist() == ["reactivation_email", "winback_email_coupon", "no_action", "no_action"]


def test_a_value_floor_needs_the_value_if_retained():
    with pytest.raises(ValueError, match="value_if_retained"):
        recommend(FLOORED, np.array(["lapsed"], dtype=object), [50], [1.0], [900.0], [np.array([None], dtype=object)])
    with pytest.raises(ValueError, match="finite"):
        ActionRule(name="bad floor", min_value_if_retained=float("nan"), action="call")


def test_the_shipped_win_back_rules_have_the_break_even_floor_of_the_shops_costs():
    params = yaml.safe_load(PARAMS_YAML.read_text(encoding="utf-8"))
    ev, tiers = params["evaluate"], params["risk_tiers"]
    lowest_p = {"lapsed": 1.0, "high": tiers["high"], "medium": tiers["medium"], "low": 0.0}
    winback = [r for r in params["score"]["actions"] if r["action"] == "winback_email_coupon"]
    assert winback and all("min_value_if_retained" in r for r in winback)
    for rule in winback:
        p = min(lowest_p[t] for t in rule["tiers"])
        value = break_even_value(ev["contact_cost"], ev["incentive_cost"], ev["acceptance_rate"], ev["value_margin"], p)
        assert rule["min_value_if_retained"] == math.ceil(value - 1e-9), rule["name"]


def test_default_rules_send_lapsed_customers_worth_less_than_the_coupon_to_no_action():
    from churn_pipeline.models.actions import DEFAULT_ACTIONS

    n = 3
    rules, _ = applicable_rules(DEFAULT_ACTIONS, ["recency_days"], uplift_actions=())  # no uplift model
    out = recommend(
        rules,
        np.array(["lapsed", "lapsed", "high"], dtype=object),
        np.array([50, 50, 50]),
        np.array([0.8, 5.0, 3.0]),
        np.full(n, 900.0),
        [np.array([None] * n, dtype=object)] * 3,
        value_if_retained=np.array([16.0, 100.0, 60.0]),  # CLV 0.8 at p 0.95 is worth 16 if kept
    )
    assert out.tolist() == ["no_action", "winback_email_coupon", "no_action"]


# ------------------------------------------------------------------ days to the next order (scores v1.2)
TIMED = (
    ActionRule(name="due soon", tiers=("low", "medium"), max_days_to_next_order=30, action="cross_sell_upsell"),
    ActionRule(name="drifting", tiers=("medium", "high"), min_days_to_next_order=90, action="winback_email_coupon"),
    ActionRule(name="default", action="no_action"),
)


def _timed(tiers, days, rules=TIMED):
    n = len(tiers)
    return recommend(
        rules,
        np.array(tiers, dtype=object),
        np.full(n, 50),
        np.full(n, 10.0),
        np.full(n, 400.0),
        [np.array([None] * n, dtype=object)] * 3,
        days_to_next_order=days,
    ).tolist()


def test_max_days_to_next_order_matches_up_to_the_bound_and_never_an_empty_median():
    # Empty (NaN / None): not expected to order within 180 days, later than any bound.
    out = _timed(["low"] * 5, np.array([0.0, 29.9, 30.0, 30.1, np.nan]))
    assert out == ["cross_sell_upsell", "cross_sell_upsell", "cross_sell_upsell", "no_action", "no_action"]


def test_min_days_to_next_order_matches_from_the_bound_and_always_an_empty_median():
    out = _timed(["high"] * 4, np.array([89.9, 90.0, 180.0, np.nan]))
    assert out == ["no_action", "winback_email_coupon", "winback_email_coupon", "winback_email_coupon"]


def test_days_conditions_combine_with_the_others_and_the_first_match_wins():
    # Medium customers match both rules' tiers: due soon -> rule 1, drifting or empty -> rule 2, between -> none.
    out = _timed(["medium"] * 4, np.array([10.0, 60.0, 120.0, np.nan]))
    assert out == ["cross_sell_upsell", "no_action", "winback_email_coupon", "winback_email_coupon"]


def test_empty_medians_may_come_as_none_or_pandas_na():
    as_objects = _timed(["low", "high"], np.array([None, None], dtype=object))
    as_series = _timed(["low", "high"], pd.Series([pd.NA, pd.NA], dtype="Float64"))
    assert as_objects == as_series == ["no_action", "winback_email_coupon"]


def test_a_days_rule_on_scores_without_days_to_next_order_is_a_clear_error_naming_the_rule():
    with pytest.raises(ValueError, match="days_to_next_order") as info:
        recommend(TIMED, np.array(["low"], dtype=object), [50], [1.0], [400.0], [np.array([None], dtype=object)])
    message = str(info.value)
    assert "rule 'due soon'" in message and "rule 'drifting'" in message and "v1.2" in message
    # Rules without a days condition do not need the column.
    plain = recommend(RULES, np.array(["low"], dtype=object), [50], [1.0], [400.0], [np.array([None], dtype=object)])
    assert plain.tolist() == ["no_action"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_days_to_next_order": -1}, r"days in \[0, 180\]"),
        ({"min_days_to_next_order": 181}, r"days in \[0, 180\]"),
        ({"max_days_to_next_order": float("nan")}, r"days in \[0, 180\]"),
        ({"min_days_to_next_order": 60, "max_days_to_next_order": 30}, "never matches"),
    ],
)
def test_a_bad_days_condition_is_refused_with_the_rule_name(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        ActionRule(name="my rule", action="call", **kwargs)
    assert "my rule" in str(info.value)


def test_a_days_condition_makes_a_rule_conditional():
    assert not ActionRule(max_days_to_next_order=30, action="call").is_default
    assert not ActionRule(min_days_to_next_order=0, action="call").is_default
    with pytest.raises(ValueError, match="last action rule"):
        validate_rules((ActionRule(max_days_to_next_order=30, action="call"),))


def test_days_conditions_load_from_params_and_a_misspelt_key_is_refused():
    from churn_pipeline.errors import ParamsError
    from churn_pipeline.pipelines.params import build_dataclass

    where = "params.yaml:score.actions[0]"
    rule = build_dataclass(ActionRule, {"action": "call", "max_days_to_next_order": 30}, where)
    assert rule.max_days_to_next_order == 30.0 and isinstance(rule.max_days_to_next_order, float)
    with pytest.raises(ParamsError, match=r"unknown key\(s\) \['max_days_to_order'\]"):
        build_dataclass(ActionRule, {"action": "call", "max_days_to_order": 30}, where)
    with pytest.raises(ParamsError, match=r"actions\[0\]: rule with action 'call': min_days_to_next_order"):
        build_dataclass(ActionRule, {"action": "call", "min_days_to_next_order": 365}, where)


# ------------------------------------------------------------------ targeting by expected profit (scores v1.3)
PROFIT_RULES = (
    ActionRule(name="uplift", action="most_profitable", min_expected_profit=1.0),
    ActionRule(name="coupon if it pays", tiers=("high",), min_expected_profit=0.0, action="winback_email_coupon"),
    ActionRule(name="default", action="no_action"),
)


def _by_profit(best_action, best_profit, coupon_profit, tier="high"):
    n = len(best_action)
    return recommend(
        PROFIT_RULES,
        np.full(n, tier, dtype=object),
        np.full(n, 50),
        np.full(n, 10.0),
        np.full(n, 400.0),
        [np.full(n, None, dtype=object)] * 3,
        expected_profit=lambda action: np.asarray(coupon_profit, dtype=np.float64),
        most_profitable=(np.asarray(best_action, dtype=object), np.asarray(best_profit, dtype=np.float64)),
    )


def test_most_profitable_gives_each_customer_the_uplift_models_best_action_where_it_pays_enough():
    got = _by_profit(["personal_outreach", "cross_sell_upsell", "personal_outreach"], [5.0, 1.0, 0.99], [3.0, 3.0, -1])
    # 0.99 < min_expected_profit 1.0: the third falls through to the coupon rule, which does not pay either.
    assert got.tolist() == ["personal_outreach", "cross_sell_upsell", "no_action"]


def test_min_expected_profit_compares_the_rules_own_action():
    got = _by_profit(["personal_outreach"] * 2, [0.0, 0.0], [0.0, -0.01])
    assert got.tolist() == ["winback_email_coupon", "no_action"]


def test_most_profitable_needs_a_profit_floor_and_the_uplift_models_answers():
    with pytest.raises(ValueError, match="needs min_expected_profit"):
        ActionRule(action="most_profitable")
    one = [np.array(["high"], dtype=object), np.array([50]), np.array([10.0]), np.array([400.0])]
    with pytest.raises(ValueError, match="pass most_profitable"):
        recommend(PROFIT_RULES, *one, [np.array([None], dtype=object)] * 3, expected_profit=lambda a: np.zeros(1))


def test_without_an_uplift_model_the_most_profitable_rule_is_skipped_with_a_warning():
    kept, warnings = applicable_rules(PROFIT_RULES, ["recency_days"], uplift_actions=())
    assert [r.name for r in kept] == ["coupon if it pays", "default"]
    assert len(warnings) == 1 and "no uplift model" in warnings[0] and "actions[0]" in warnings[0]
    kept, warnings = applicable_rules(PROFIT_RULES, ["recency_days"], uplift_actions=("personal_outreach",))
    assert len(kept) == 3 and warnings == []


def test_the_shipped_table_starts_with_the_uplift_rule():
    params = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text(encoding="utf-8"))
    first = params["score"]["actions"][0]
    assert first["action"] == "most_profitable" and first["min_expected_profit"] > 0
