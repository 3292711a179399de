"""models.measure: contact outcomes from orders and refunds, treatment against control with intervals, verdicts.

Small hand-made frames whose every expected number can be worked out by hand (the arithmetic is in the comments),
simulations of the intervals' coverage, and the bad inputs: overlapping campaigns, no control group, unknown
actions, contacts not yet followed up.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.models.measure import (
    ALL_CAMPAIGNS,
    EFFECT_COLUMNS,
    campaign_ids,
    contact_outcomes,
    measure_effects,
    measurement_summary,
)

T0 = pd.Timestamp("2025-03-01 10:00")
DAY = pd.Timedelta(days=1)
US = pd.Timedelta(microseconds=1)
END = pd.Timestamp("2026-01-01")


def _contacts(rows: list[tuple]) -> pd.DataFrame:
    """(customer_id, contact_ts, action, group[, campaign_id[, cost]]) rows as a contacts table."""
    columns = ["customer_id", "contact_ts", "action", "group", "campaign_id", "cost"]
    full = [tuple(r) + (None,) * (len(columns) - len(r)) for r in rows]
    frame = pd.DataFrame(full, columns=columns)
    frame["contact_ts"] = pd.to_datetime(frame["contact_ts"])
    frame["cost"] = frame["cost"].astype("float64")
    return frame


def _orders(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "order_ts", "amount"])
    frame["order_ts"] = pd.to_datetime(frame["order_ts"])
    return frame


def _returns(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "return_ts", "amount"])
    frame["return_ts"] = pd.to_datetime(frame["return_ts"])
    return frame


# ------------------------------------------------------------------------------------- contact_outcomes
def test_window_edges_an_order_at_the_contact_counts_one_at_the_window_end_does_not():
    contacts = _contacts(
        [
            ("at_start", T0, "winback_email_coupon", "treatment"),
            ("at_retention_end", T0, "winback_email_coupon", "treatment"),
            ("just_inside", T0, "winback_email_coupon", "control"),
            ("before", T0, "winback_email_coupon", "control"),
            ("no_orders", T0, "winback_email_coupon", "control"),
        ]
    )
    orders = _orders(
        [
            ("at_start", T0, 10.0),  # exactly at contact_ts: retained, revenue
            ("at_retention_end", T0 + 90 * DAY, 20.0),  # not retained (90-day window ends here), revenue (< 180 d)
            ("at_retention_end", T0 + 180 * DAY, 99.0),  # at the revenue window's end: not counted
            ("just_inside", T0 + 90 * DAY - US, 5.0),  # last microsecond of the retention window
            ("just_inside", T0 + 180 * DAY - US, 7.0),  # last microsecond of the revenue window
            ("before", T0 - US, 50.0),  # before the contact: nothing
        ]
    )
    out = contact_outcomes(contacts, orders, None, END, retention_days=90, revenue_days=180)
    assert out["customer_id"].tolist() == ["at_start", "at_retention_end", "just_inside", "before", "no_orders"]
    assert out["retained"].tolist() == [True, False, True, False, False]
    assert out["orders_in_window"].tolist() == [1, 1, 2, 0, 0]
    assert out["net_revenue"].tolist() == [10.0, 20.0, 12.0, 0.0, 0.0]
    assert out["retained"].dtype == bool and out["followed_up"].dtype == bool


def test_refunds_in_the_window_are_netted_whatever_order_they_refund():
    contacts = _contacts([("a", T0, "onboarding", "treatment"), ("b", T0, "onboarding", "control")])
    orders = _orders([("a", T0 + DAY, 100.0), ("b", T0 + 2 * DAY, 30.0)])
    returns = _returns(
        [
            ("a", T0 + 5 * DAY, 40.0),  # refund of the window's order: netted
            ("a", T0 + 179 * DAY, 10.0),  # still inside [T0, T0 + 180 d)
            ("a", T0 + 180 * DAY, 1000.0),  # at the window's end: not netted
            ("b", T0 - DAY, 5.0),  # before the contact: not netted
            ("b", T0, 45.0),  # at the contact, refunding an older order: netted (30 - 45 = -15)
        ]
    )
    out = contact_outcomes(contacts, orders, returns, END, 90, 180)
    assert out["net_revenue"].tolist() == [100.0 - 40.0 - 10.0, -15.0]
    assert out["orders_in_window"].tolist() == [1, 1]


def test_followed_up_only_when_the_longer_window_has_ended_by_the_data_end():
    end = T0 + 180 * DAY
    contacts = _contacts(
        [
            ("a", T0, "onboarding", "treatment"),  # T0 + 180 d == data end: fully observed
            ("b", T0 + US, "onboarding", "treatment"),  # one microsecond later: not yet
            ("c", T0 - DAY, "onboarding", "control"),
        ]
    )
    out = contact_outcomes(contacts, _orders([]), None, end, 90, 180)
    assert out["followed_up"].tolist() == [True, False, True]
    # max(retention, revenue): a longer retention window decides.
    assert contact_outcomes(contacts, _orders([]), None, end, 200, 180)["followed_up"].tolist() == [False] * 3


def test_rows_keep_their_order_the_index_is_reset_and_inputs_are_untouched():
    contacts = _contacts(
        [
            ("z", T0 + 3 * DAY, "onboarding", "treatment", "spring", 1.5),
            ("a", T0, "onboarding", "control", None, None),
            ("m", T0 + DAY, "cross_sell_upsell", "treatment", None, 2.0),
        ]
    )
    contacts.index = [30, 10, 20]
    orders = _orders([("m", T0 + 2 * DAY, 12.0), ("z", T0 + 4 * DAY, 1.0)])
    before_c, before_o = contacts.copy(), orders.copy()
    out = contact_outcomes(contacts, orders, None, END, 90, 180)
    pd.testing.assert_frame_equal(contacts, before_c)
    pd.testing.assert_frame_equal(orders, before_o)
    assert out.index.tolist() == [0, 1, 2]
    assert out["customer_id"].tolist() == ["z", "a", "m"]
    assert out["net_revenue"].tolist() == [1.0, 0.0, 12.0]
    assert out["campaign_id"].tolist() == ["spring", "2025-03-01-onboarding", "2025-03-02-cross_sell_upsell"]
    assert out["cost"].tolist()[0] == 1.5


def test_zone_aware_contact_times_are_compared_in_utc():
    contacts = _contacts([("a", T0, "onboarding", "treatment")])
    contacts["contact_ts"] = contacts["contact_ts"].dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin")
    orders = _orders([("a", T0, 10.0), ("a", T0 - US, 99.0)])
    out = contact_outcomes(contacts, orders, None, END, 90, 180)
    assert out["contact_ts"].iloc[0] == T0 and out["net_revenue"].iloc[0] == 10.0


def test_campaign_ids_fill_a_missing_campaign_with_the_contact_day_and_action():
    contacts = _contacts(
        [("a", T0, "onboarding", "treatment", "c-1"), ("b", pd.Timestamp("2025-12-31 23:59"), "winback", "control")]
    )
    assert campaign_ids(contacts).tolist() == ["c-1", "2025-12-31-winback"]
    assert campaign_ids(contacts.drop(columns="campaign_id")).tolist() == [
        "2025-03-01-onboarding",
        "2025-12-31-winback",
    ]


def test_a_contact_within_the_revenue_window_of_an_earlier_one_is_flagged():
    contacts = _contacts(
        [
            ("a", T0 + 200 * DAY, "onboarding", "treatment"),  # 100 d after a's second: overlaps it
            ("a", T0, "onboarding", "treatment"),  # a's first
            ("a", T0 + 100 * DAY, "winback_email_coupon", "control"),  # 100 d after the first: overlaps
            ("b", T0, "onboarding", "treatment"),
            ("b", T0 + 180 * DAY, "onboarding", "treatment"),  # exactly 180 d later: a new window
            ("c", T0, "onboarding", "treatment"),
            ("c", T0, "cross_sell_upsell", "treatment"),  # same instant: the later row is set aside
        ]
    )
    out = contact_outcomes(contacts, _orders([]), None, END, 90, 180)
    assert out["earlier_contact"].tolist() == [True, False, True, False, False, False, True]


def test_missing_columns_and_bad_windows_raise():
    contacts = _contacts([("a", T0, "onboarding", "treatment")])
    with pytest.raises(ValueError, match="orders lacks"):
        contact_outcomes(contacts, _orders([]).drop(columns="amount"), None, END, 90, 180)
    with pytest.raises(ValueError, match=">= 1"):
        contact_outcomes(contacts, _orders([]), None, END, 0, 180)


# -------------------------------------------------------------------------------------- measure_effects
def _outcomes(
    treated: list[tuple[bool, float, float | None]],
    control: list[tuple[bool, float]],
    action: str = "winback_email_coupon",
    campaign: str = "c1",
    copies: int = 1,
) -> pd.DataFrame:
    """An outcomes frame (as contact_outcomes returns) of one campaign: (retained, net_revenue[, cost]) per contact,
    each repeated ``copies`` times."""
    rows = [("treatment", r, v, c) for r, v, c in treated] + [("control", r, v, None) for r, v in control]
    frame = pd.DataFrame(rows * copies, columns=["group", "retained", "net_revenue", "cost"])
    frame.insert(0, "customer_id", [f"{campaign}-{i}" for i in range(len(frame))])
    frame["contact_ts"] = T0
    frame["action"] = action
    frame["campaign_id"] = campaign
    frame["followed_up"] = True
    frame["earlier_contact"] = False
    frame["cost"] = frame["cost"].astype("float64")
    return frame


# Treated: retained 3 of 4, revenue 10, 20, 30, 0 (mean 15, sample variance 500 / 3), cost 2 where known.
TREATED = [(True, 10.0, 2.0), (True, 20.0, 2.0), (True, 30.0, 2.0), (False, 0.0, None)]
# Control: retained 1 of 4, revenue 5, 0, 0, 0 (mean 1.25, sample variance 18.75 / 3 = 6.25).
CONTROL = [(True, 5.0), (False, 0.0), (False, 0.0), (False, 0.0)]
Z95 = 1.959963984540054


def _row(effects: pd.DataFrame, campaign: str = "c1") -> pd.Series:
    return effects[effects["campaign_id"].eq(campaign)].iloc[0]


def test_intervals_match_the_hand_calculation():
    effects = measure_effects(_outcomes(TREATED, CONTROL), margin=0.3, min_group_size=2)
    assert list(effects.columns) == list(EFFECT_COLUMNS)
    row = _row(effects)
    assert (row["n_treatment"], row["n_control"], row["contacts"]) == (4, 4, 8)
    assert row["retention_treatment"] == 0.75 and row["retention_control"] == 0.25
    # Wald: sqrt(0.75 * 0.25 / 4 + 0.25 * 0.75 / 4) = sqrt(0.09375) = 0.306186 -> 50 pp +- 1.96 x 30.6186 pp.
    se_p = 0.3061862178
    assert row["retention_diff_pp"] == pytest.approx(50.0)
    assert row["retention_diff_pp_low"] == pytest.approx(50.0 - Z95 * 100 * se_p)
    assert row["retention_diff_pp_high"] == pytest.approx(50.0 + Z95 * 100 * se_p)
    assert row["retention_diff_pp_low"] == pytest.approx(-10.0118, abs=1e-3)
    # Welch: sqrt((500 / 3) / 4 + 6.25 / 4) = sqrt(43.2292) = 6.57489; difference 15 - 1.25 = 13.75.
    se_m = 6.574889
    assert row["revenue_treatment"] == 15.0 and row["revenue_control"] == 1.25
    assert row["revenue_diff"] == pytest.approx(13.75)
    assert row["revenue_diff_low"] == pytest.approx(13.75 - Z95 * se_m, abs=1e-5)
    assert row["revenue_diff_high"] == pytest.approx(13.75 + Z95 * se_m, abs=1e-5)
    # Cost: the known treated costs' mean, 2. Profit 0.3 x 13.75 - 2 = 2.125, interval from the revenue one.
    assert row["mean_cost"] == 2.0
    assert row["profit_per_customer"] == pytest.approx(2.125)
    assert row["profit_low"] == pytest.approx(0.3 * (13.75 - Z95 * se_m) - 2, abs=1e-5)
    assert row["profit_high"] == pytest.approx(0.3 * (13.75 + Z95 * se_m) - 2, abs=1e-5)
    assert row["verdict"] == "too small to tell"  # the profit interval (-1.74, 5.99) covers 0
    # A 90 % interval uses z = 1.6449.
    narrow = _row(measure_effects(_outcomes(TREATED, CONTROL), 0.3, 2, confidence=0.90))
    assert narrow["retention_diff_pp_high"] == pytest.approx(50.0 + 1.644854 * 100 * se_p, abs=1e-4)


def test_verdicts_pays_does_not_pay_and_too_small():
    # 100 copies: the same means, standard errors ~ 1/10 (sample variances with n - 1 barely move).
    big = _outcomes(TREATED, CONTROL, copies=100)
    pays = _row(measure_effects(big, 0.3, 200))
    assert pays["profit_low"] > 0 and pays["verdict"] == "pays"
    costly = big.assign(cost=big["cost"].where(big["cost"].isna(), 10.0))  # profit 4.125 - 10 < 0
    loses = _row(measure_effects(costly, 0.3, 200))
    assert loses["profit_high"] < 0 and loses["verdict"] == "does not pay"
    small = _row(measure_effects(big, 0.3, 401))  # 400 per group < 401
    assert small["verdict"] == "too small to tell" and small["profit_low"] > 0


def test_unknown_cost_is_taken_as_zero_and_noted():
    outcomes = _outcomes(TREATED, CONTROL).assign(cost=np.nan)
    row = _row(measure_effects(outcomes, 0.3, 2))
    assert row["mean_cost"] == 0.0 and row["profit_per_customer"] == pytest.approx(0.3 * 13.75)
    assert "cost unknown" in row["note"]


def test_only_followed_up_first_contacts_count_and_the_rest_are_counted():
    outcomes = _outcomes(TREATED, CONTROL)
    extra = _outcomes([(True, 1000.0, 2.0)] * 3, [(False, 0.0)] * 2, campaign="c1")
    extra["customer_id"] = ["x1", "x2", "x3", "x4", "x5"]
    extra["followed_up"] = [False, False, True, True, False]
    extra["earlier_contact"] = [False, True, True, False, True]  # x2, x3, x5 overlap an earlier contact
    every = pd.concat([outcomes, extra], ignore_index=True)
    row = _row(measure_effects(every, 0.3, 2))
    # x1 not followed up; x2, x3, x5 set aside for the overlap; x4 (control, no order) measured.
    assert (row["contacts"], row["not_followed_up"], row["set_aside_overlap"]) == (13, 1, 3)
    assert (row["n_treatment"], row["n_control"]) == (4, 5)
    assert row["revenue_treatment"] == 15.0 and row["retention_control"] == pytest.approx(0.2)
    assert "3 overlapping later contact(s) set aside" in row["note"] and "1 not yet followed up" in row["note"]
    summary = measurement_summary(every, measure_effects(every, 0.3, 2))
    assert (summary["contacts"], summary["measured"], summary["not_followed_up"]) == (13, 9, 1)
    assert summary["overlapping_contacts_set_aside"] == 3 and summary["overlapping_customers"] == 3
    assert any("first contact only" in m for m in summary["messages"])
    assert any("not yet followed up" in m for m in summary["messages"])


def test_a_campaign_without_control_is_listed_with_its_verdict():
    with_control = _outcomes(TREATED, CONTROL, campaign="c1")
    no_control = _outcomes(TREATED, [], campaign="c2")
    outcomes = pd.concat([with_control, no_control], ignore_index=True)
    effects = measure_effects(outcomes, 0.3, 2)
    row = _row(effects, "c2")
    assert row["verdict"] == "no control group" and row["n_control"] == 0 and row["n_treatment"] == 4
    assert np.isnan(row["retention_diff_pp"]) and np.isnan(row["profit_per_customer"])
    # The action's row measures the campaign with a control group only, and says so.
    overall = _row(effects, ALL_CAMPAIGNS)
    assert overall["level"] == "action" and overall["campaigns"] == 1 and overall["contacts"] == 12
    assert overall["retention_diff_pp"] == pytest.approx(50.0) and overall["n_treatment"] == 4
    assert "1 campaign(s) without 2+ treated and 2+ control contacts left out (4 treated)" in overall["note"]
    summary = measurement_summary(outcomes, effects)
    assert summary["no_control_group"] == [
        {"action": "winback_email_coupon", "campaign_id": "c2", "treated_contacts": 4}
    ]
    assert any("no control group" in m and "c2 (4 treated)" in m for m in summary["messages"])
    # An action none of whose contacts has a control group.
    alone = _row(measure_effects(no_control, 0.3, 2), ALL_CAMPAIGNS)
    assert alone["verdict"] == "no control group"


def test_unknown_actions_are_measured_and_noted():
    outcomes = pd.concat(
        [_outcomes(TREATED, CONTROL, campaign="c1"), _outcomes(TREATED, CONTROL, action="sms_blast", campaign="s1")],
        ignore_index=True,
    )
    known = ("winback_email_coupon", "onboarding")
    effects = measure_effects(outcomes, 0.3, 2, known_actions=known)
    sms = effects[effects["action"].eq("sms_blast")]
    assert len(sms) == 2 and not sms["known_action"].any() and sms["retention_diff_pp"].notna().all()
    assert sms["note"].str.contains("not in the rule table").all()
    assert effects.loc[effects["action"].eq("winback_email_coupon"), "known_action"].all()
    summary = measurement_summary(outcomes, effects, known)
    assert summary["unknown_actions"] == {"sms_blast": 8}
    assert any("sms_blast (8)" in m for m in summary["messages"])


def test_rows_are_ordered_campaigns_by_first_contact_then_the_action_row():
    late = _outcomes(TREATED, CONTROL, campaign="b-late").assign(contact_ts=T0 + 30 * DAY)
    early = _outcomes(TREATED, CONTROL, campaign="z-early")
    other = _outcomes(TREATED, CONTROL, action="onboarding", campaign="o")
    effects = measure_effects(pd.concat([late, early, other], ignore_index=True), 0.3, 2)
    assert list(zip(effects["action"], effects["campaign_id"], strict=True)) == [
        ("onboarding", "o"),
        ("onboarding", "all"),
        ("winback_email_coupon", "z-early"),
        ("winback_email_coupon", "b-late"),
        ("winback_email_coupon", "all"),
    ]


def test_the_action_row_is_stratified_by_campaign_not_pooled():
    # Neither campaign has any effect, but campaign A treats 90 % of a loyal group (retention 80 %) and B 10 % of
    # a lapsing one (20 %). Pooled: treated 0.9 x 0.8 + 0.1 x 0.2 = 0.74, control 0.1 x 0.8 + 0.9 x 0.2 = 0.26, a
    # spurious +48 pp. Stratified: 0 pp in each campaign, so 0 pp.
    def campaign(name: str, n_t: int, n_c: int, rate: float) -> pd.DataFrame:
        kept_t, kept_c = round(n_t * rate), round(n_c * rate)
        treated = [(True, 10.0, 0.0)] * kept_t + [(False, 0.0, 0.0)] * (n_t - kept_t)
        control = [(True, 10.0)] * kept_c + [(False, 0.0)] * (n_c - kept_c)
        return _outcomes(treated, control, campaign=name)

    outcomes = pd.concat([campaign("A", 900, 100, 0.8), campaign("B", 100, 900, 0.2)], ignore_index=True)
    effects = measure_effects(outcomes, 0.3, 2)
    overall = _row(effects, ALL_CAMPAIGNS)
    assert overall["retention_diff_pp"] == pytest.approx(0.0, abs=1e-9)
    assert overall["revenue_diff"] == pytest.approx(0.0, abs=1e-9)
    # Weighted by campaign size (1,000 each): rates 0.5 in both groups; variance sum of w^2 var.
    assert overall["retention_treatment"] == pytest.approx(0.5) and overall["retention_control"] == pytest.approx(0.5)
    var_a = 0.16 / 900 + 0.16 / 100
    var_b = 0.16 / 100 + 0.16 / 900
    half = Z95 * 100 * np.sqrt(0.25 * var_a + 0.25 * var_b)
    assert overall["retention_diff_pp_high"] == pytest.approx(half)
    assert (overall["n_treatment"], overall["n_control"], overall["campaigns"]) == (1000, 1000, 2)


def _simulated(reps: int, n_t: int, n_c: int, seed: int, sigma: float) -> tuple[pd.DataFrame, float]:
    """``reps`` campaigns of one action with retention 35 % vs 30 % and zero-inflated log-normal revenue (a
    purchase with probability 0.40 vs 0.35, amount LogNormal(3, sigma)); returns the outcomes and the true revenue
    difference."""
    rng = np.random.default_rng(seed)
    size = n_t + n_c
    treated = np.tile(np.r_[np.ones(n_t, bool), np.zeros(n_c, bool)], reps)
    revenue = (rng.random(reps * size) < np.where(treated, 0.40, 0.35)) * rng.lognormal(3.0, sigma, reps * size)
    outcomes = pd.DataFrame(
        {
            "customer_id": np.arange(reps * size).astype(str),
            "contact_ts": T0,
            "action": "winback_email_coupon",
            "group": np.where(treated, "treatment", "control"),
            "campaign_id": np.repeat(np.arange(reps), size).astype(str),
            "retained": rng.random(reps * size) < np.where(treated, 0.35, 0.30),
            "net_revenue": revenue,
            "followed_up": True,
            "earlier_contact": False,
        }
    )
    return outcomes, 0.05 * np.exp(3.0 + sigma**2 / 2)


def test_the_retention_interval_covers_the_true_difference_95_percent_of_the_time():
    outcomes, _ = _simulated(reps=2000, n_t=250, n_c=250, seed=7, sigma=1.0)
    campaigns = measure_effects(outcomes, 0.3, 200).query("level == 'campaign'")
    covered = (campaigns["retention_diff_pp_low"] <= 5.0) & (campaigns["retention_diff_pp_high"] >= 5.0)
    assert len(campaigns) == 2000
    assert 0.93 <= covered.mean() <= 0.97  # 2,000 campaigns: the share's standard error is 0.005


def test_the_revenue_interval_keeps_its_coverage_on_heavy_tailed_revenue():
    outcomes, truth = _simulated(reps=2000, n_t=250, n_c=250, seed=8, sigma=1.5)
    campaigns = measure_effects(outcomes, 0.3, 200).query("level == 'campaign'")
    covered = (campaigns["revenue_diff_low"] <= truth) & (campaigns["revenue_diff_high"] >= truth)
    assert 0.93 <= covered.mean() <= 0.975
    # The action row (2,000 campaigns, stratified) covers the true difference too, with a far narrower interval.
    overall = measure_effects(outcomes, 0.3, 200).query("level == 'action'").iloc[0]
    assert overall["revenue_diff_low"] <= truth <= overall["revenue_diff_high"]
    assert overall["retention_diff_pp_low"] <= 5.0 <= overall["retention_diff_pp_high"]


def test_bad_input_raises_with_a_count():
    outcomes = _outcomes(TREATED, CONTROL)
    outcomes.loc[0, "group"] = "treated"
    with pytest.raises(ValueError, match="1 contact"):
        measure_effects(outcomes, 0.3, 2)
    with pytest.raises(ValueError, match="lack column"):
        measure_effects(outcomes.drop(columns="followed_up"), 0.3, 2)
    with pytest.raises(ValueError, match="min_group_size"):
        measure_effects(_outcomes(TREATED, CONTROL), 0.3, 1)
    with pytest.raises(ValueError, match="confidence"):
        measure_effects(_outcomes(TREATED, CONTROL), 0.3, 2, confidence=95)


def test_measure_effects_leaves_its_input_alone_and_handles_no_rows():
    outcomes = _outcomes(TREATED, CONTROL)
    before = outcomes.copy()
    measure_effects(outcomes, 0.3, 2)
    pd.testing.assert_frame_equal(outcomes, before)
    empty = measure_effects(outcomes.iloc[:0], 0.3, 2)
    assert empty.empty and list(empty.columns) == list(EFFECT_COLUMNS)


def test_outcomes_feed_the_measurement_end_to_end():
    # Two campaigns of hand-made orders: c1 treated a retained (order on day 3, 40, refund 10), b control not.
    contacts = _contacts(
        [
            ("a", T0, "winback_email_coupon", "treatment", None, 1.0),
            ("a2", T0, "winback_email_coupon", "treatment", None, 1.0),
            ("b", T0, "winback_email_coupon", "control"),
            ("b2", T0, "winback_email_coupon", "control"),
            ("a", T0 + 10 * DAY, "winback_email_coupon", "treatment", None, 1.0),  # overlaps a's first contact
        ]
    )
    orders = _orders([("a", T0 + 3 * DAY, 40.0), ("b2", T0 + 100 * DAY, 8.0)])
    returns = _returns([("a", T0 + 20 * DAY, 10.0)])
    outcomes = contact_outcomes(contacts, orders, returns, END, 90, 180)
    effects = measure_effects(outcomes, 0.5, 2)
    row = _row(effects, "2025-03-01-winback_email_coupon")
    assert (row["n_treatment"], row["n_control"]) == (2, 2)
    assert row["retention_treatment"] == 0.5 and row["retention_control"] == 0.0  # b2's order is on day 100
    assert row["revenue_treatment"] == 15.0 and row["revenue_control"] == 4.0  # (40 - 10) / 2, 8 / 2
    assert row["profit_per_customer"] == pytest.approx(0.5 * 11.0 - 1.0)
    later = _row(effects, "2025-03-11-winback_email_coupon")
    assert later["set_aside_overlap"] == 1 and later["n_treatment"] == 0 and later["verdict"] == "no control group"


# ------------------------------------------------------------------------------------------- the report
def _document(effects: pd.DataFrame, outcomes: pd.DataFrame) -> dict:
    """The part of `churn measure`'s metrics document the report reads."""
    from churn_pipeline.pipelines.measure import effect_records

    return {
        "status": "measured",
        "contacts": len(outcomes),
        "params": {"min_group_size": 2, "confidence": 0.95, "retention_days": 90, "revenue_days": 180},
        "summary": measurement_summary(outcomes, effects),
        "effects": effect_records(effects),
    }


def test_the_report_section_shows_every_row_with_its_verdict_and_a_figure():
    from churn_pipeline.models.report import CAMPAIGN_SECTION_TITLE, campaign_figure, campaign_section, render_page

    outcomes = pd.concat(
        [
            _outcomes(TREATED, CONTROL, campaign="<b>spring</b>", copies=100),
            _outcomes(TREATED, [], action="onboarding", campaign="solo"),
        ],
        ignore_index=True,
    )
    effects = measure_effects(outcomes, 0.3, 200)
    section = campaign_section(_document(effects, outcomes))
    assert section.title == CAMPAIGN_SECTION_TITLE
    table = section.tables[0].frame
    assert len(table) == len(effects) == 4
    assert table["verdict"].tolist() == ["no control group", "no control group", "pays", "pays"]
    assert table["retention CI"].iloc[2].startswith("[+") and table["retention CI"].iloc[0] == "–"
    assert ("campaigns: pays", "1") in section.cards and ("campaigns: no control group", "1") in section.cards
    assert any("no control group" in p for p in section.paragraphs)
    assert section.figures[0].png.startswith(b"\x89PNG")
    page = render_page("report", "", [section])
    assert "&lt;b&gt;spring&lt;/b&gt;" in page and "<b>spring</b>" not in page
    assert campaign_figure(effects).startswith(b"\x89PNG")


def test_no_report_section_without_measured_contacts():
    from churn_pipeline.models.report import campaign_section

    assert campaign_section({"contacts": 0, "status": "no contacts table"}) is None
    assert campaign_section({"contacts": 0, "status": "contacts table is empty", "effects": []}) is None


# ----------------------------------------------------------------------------------- the synthetic shop
def test_the_synthetic_shops_true_retention_effects_lie_within_the_intervals():
    """On the default synthetic shop (20,000 customers, seed 42: about 10,600 contacts in 8 campaigns of 4 actions,
    half treated), each action's estimated retention effect over its campaigns covers the true average effect of
    the measured contacts (the generator's true_uplift_retention_90d, the expected treated-minus-control P(order
    within 90 days) of each contact)."""
    import pyarrow as pa

    from churn_pipeline.features.cutoffs import data_end
    from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop

    shop = generate_shop(SyntheticShopConfig(customers=20_000, seed=42))

    def frame(name: str) -> pd.DataFrame:
        table = shop[name]
        plain = {
            n: c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c
            for n, c in zip(table.column_names, table.columns, strict=True)
        }
        return pa.table(plain).to_pandas()

    contacts, orders, returns, truth = (frame(n) for n in ("contacts", "orders", "returns", "campaign_truth"))
    outcomes = contact_outcomes(contacts, orders, returns, data_end(orders["order_ts"].max()), 90, 180)
    effects = measure_effects(outcomes, margin=0.3, min_group_size=200)
    measured = outcomes[outcomes["followed_up"] & ~outcomes["earlier_contact"]]
    keys = ["customer_id", "campaign_id"]
    joined = measured[[*keys, "action"]].merge(truth[[*keys, "true_uplift_retention_90d"]], on=keys, how="left")
    assert joined["true_uplift_retention_90d"].notna().all() and len(joined) == len(measured) > 5000
    true_pp = 100 * joined.groupby("action")["true_uplift_retention_90d"].mean()
    actions = effects[effects["level"].eq("action")].set_index("action")
    assert sorted(actions.index) == sorted(true_pp.index) and len(true_pp) == 4
    assert (actions["n_treatment"] >= 200).all() and (actions["n_control"] >= 200).all()
    low, high = actions["retention_diff_pp_low"], actions["retention_diff_pp_high"]
    covered = (low <= true_pp) & (true_pp <= high)
    assert covered.all(), pd.DataFrame({"low": low, "true": true_pp, "high": high})
