"""``build_feature_table`` on a hand-made shop of four customers, every value worked out by hand.

Cutoff ``C`` = 2024-07-01 (00:00 UTC). Windows 30 and 90 days, so ``[C - 30, C)`` starts 2024-06-01 and
``[C - 90, C)`` starts 2024-04-02; the windows before them (for trends) start 2024-05-02 and 2024-01-03.
Labels: churn horizon 30 days ``[C, 2024-07-31)``, CLV horizon 60 days ``[C, 2024-08-30)``; next-order grid
14, 30, 60, 90, 120, 180 days (the default), of which the data (to 2024-12-02, 154 days after ``C``) reach 120.
Orders carry a sales channel (``CHANNELS``), spelled as real exports do (case, blanks, missing, unknown).

- A01: the customer with everything; every feature at ``C`` is computed by hand in ``EXPECTED_A``.
- B02: lapsed (last order 2024-03-01, 122 days before ``C`` > ``max_recency_days`` = 100).
- C03: first order after ``C``; its last order (2024-12-01 10:00) makes the end of the data 2024-12-02.
- D04: one order, no events, signed up after ``C`` (an order before signup: guest checkout).
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from churn_pipeline.features.build import LABELS, FeatureConfig, build_feature_table
from churn_pipeline.features.contract import KNOWN_EVENT_TYPES
from churn_pipeline.features.cutoffs import data_end
from churn_pipeline.features.definitions import SALES_CHANNELS

T = pd.Timestamp
US = pd.Timedelta(microseconds=1)
C = T("2024-07-01")
CONFIG = FeatureConfig(windows_days=(30, 90), churn_horizon_days=30, clv_horizon_days=60, max_recency_days=100)
FAMILIES = {"purchase", "bgnbd", "engagement", "experience", "loyalty", "attributes", "calendar"}
NON_FEATURES = {"customer_id", "cutoff", "is_lapsed", *LABELS}
CHANNEL_FEATURES = [f"{c}_order_share" for c in SALES_CHANNELS]


def ts(values) -> pd.Series:
    return pd.Series([pd.Timestamp(v) for v in values]).astype("datetime64[us]")


def orders_frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (customer_id, order_id, order_ts, amount, discount_amount, items)."""
    cust, oid, when, amount, discount, items = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "customer_id": list(cust),
            "order_id": list(oid),
            "order_ts": ts(when),
            "amount": np.array(amount, dtype=float),
            "discount_amount": np.array(discount, dtype=float),
            "items": pd.array(items, dtype="Int64"),
        }
    )


def with_channels(orders: pd.DataFrame, channels: dict[str, str | None]) -> pd.DataFrame:
    """``orders`` with a ``channel`` column: ``channels`` by order_id (NULL where unlisted)."""
    return orders.assign(channel=orders["order_id"].map(channels).astype(object))


def returns_frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (customer_id, order_id, return_ts, amount)."""
    cust, oid, when, amount = zip(*rows, strict=True)
    return pd.DataFrame(
        {"customer_id": list(cust), "order_id": list(oid), "return_ts": ts(when), "amount": np.array(amount, float)}
    )


def events_frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (customer_id, event_ts, event_type, value)."""
    cust, when, kind, value = zip(*rows, strict=True)
    return pd.DataFrame(
        {"customer_id": list(cust), "event_ts": ts(when), "event_type": list(kind), "value": np.array(value, float)}
    )


def customers_frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (customer_id, signup_ts, country, acquisition_channel)."""
    cust, when, country, channel = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "customer_id": list(cust),
            "signup_ts": ts(when),
            "country": list(country),
            "acquisition_channel": list(channel),
            "email_opt_in": [True] * len(cust),
            "loyalty_tier": ["gold"] * len(cust),
        }
    )


def connect(**frames: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, frame in frames.items():
        con.register(f"{name}_df", frame)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_df")
    return con


NAN = float("nan")
ORDERS = [
    ("A01", "a1", "2024-01-10 12:00", 100.0, 0.0, 2),
    ("A01", "a2", "2024-04-02 00:00", 50.0, 10.0, 1),  # exactly C - 90: inside the 90-day window
    ("A01", "a3", "2024-06-01 00:00", 80.0, 20.0, 4),  # exactly C - 30: inside the 30-day window
    ("A01", "a4", "2024-06-30 18:00", 20.0, NAN, 3),  # no discount recorded: counts as 0
    ("A01", "a5", "2024-07-01 00:00", 40.0, 0.0, 1),  # exactly C: label, not feature
    ("A01", "a6", "2024-07-20 00:00", 60.0, 0.0, 1),
    ("A01", "a7", "2024-08-30 00:00", 1000.0, 0.0, 1),  # exactly C + 60: outside the CLV horizon
    ("B02", "b1", "2024-02-20 09:00", 30.0, 0.0, 1),
    ("B02", "b2", "2024-03-01 00:00", 30.0, 0.0, 1),
    ("C03", "c1", "2024-07-10 08:00", 25.0, 0.0, 1),
    ("C03", "c2", "2024-12-01 10:00", 35.0, 0.0, 1),
    ("D04", "d1", "2024-06-15 10:00", 30.0, 0.0, 1),
]
# Sales channels by order id, as exports spell them: compared as lower(trim(channel)).
CHANNELS = {
    "a1": "web",
    "a2": " App",
    "a3": None,  # not recorded: counts in orders_total only
    "a4": "WEB ",
    "a5": "store",  # exactly C: not a feature
    "a6": "store",
    "a7": "app",
    "b1": "phone",  # a channel outside the vocabulary: counts in orders_total only
    "b2": "web",
    "c1": "web",
    "c2": "app",
    "d1": "Store",
}
RETURNS = [
    ("A01", "a1", "2024-01-15 00:00", 30.0),
    ("A01", "a3", "2024-06-15 00:00", 8.0),
    ("A01", "a4", "2024-07-01 00:00", 15.0),  # exactly C: label only
    ("A01", "a5", "2024-08-29 23:59:59", 5.0),  # last second of the CLV horizon
    ("A01", "a6", "2024-08-30 00:00", 7.0),  # exactly C + 60: outside
]
EVENTS = [
    ("A01", "2024-05-01 00:00", "session", NAN),
    ("A01", "2024-06-20 10:00", "session", NAN),
    ("A01", "2024-07-01 00:00", "session", NAN),  # at C: unseen
    ("A01", "2024-06-20 10:05", "page_view", NAN),
    ("A01", "2024-06-20 10:06", "page_view", NAN),
    ("A01", "2024-06-20 10:07", "page_view", NAN),
    ("A01", "2024-06-20 10:10", "add_to_cart", NAN),
    ("A01", "2024-05-07 09:00", "email_sent", NAN),
    ("A01", "2024-06-04 09:00", "email_sent", NAN),
    ("A01", "2024-06-11 09:00", "email_sent", NAN),
    ("A01", "2024-07-01 00:00", "email_sent", NAN),  # at C
    ("A01", "2024-05-08 00:00", "email_open", NAN),
    ("A01", "2024-06-04 12:00", "email_open", NAN),
    ("A01", "2024-07-01 00:00", "email_open", NAN),  # at C
    ("A01", "2024-06-04 12:01", "email_click", NAN),
    ("A01", "2024-06-25 00:00", "unsubscribe", NAN),
    ("A01", "2024-03-01 00:00", "support_ticket", NAN),
    ("A01", "2024-06-29 00:00", "support_ticket", NAN),
    ("A01", "2024-02-01 00:00", "review", 4.0),
    ("A01", "2024-06-10 00:00", "review", 2.0),
    ("A01", "2024-06-12 00:00", "review", NAN),  # a review without a rating: neither last nor average
    ("A01", "2024-07-01 00:00", "review", 5.0),  # at C
    ("A01", "2024-03-15 00:00", "nps", 9.0),
    ("A01", "2024-06-28 00:00", "nps", 6.0),
    ("A01", "2024-01-10 12:00", "loyalty_points_earned", 100.0),
    ("A01", "2024-06-01 00:00", "loyalty_points_earned", 80.0),
    ("A01", "2024-06-15 00:00", "loyalty_points_redeemed", 50.0),
    ("A01", "2024-02-01 00:00", "loyalty_tier_change", 1.0),
    ("A01", "2024-06-01 00:00", "loyalty_tier_change", 2.0),
    ("A01", "2024-07-01 00:00", "loyalty_tier_change", 3.0),  # at C
    ("A01", "2024-06-01 00:00", "coupon_redeemed", 10.0),
    ("A01", "2024-06-10 00:00", "wishlist_add", NAN),  # types the contract does not name
    ("A01", "2024-06-10 00:01", "wishlist_add", NAN),
    ("A01", "2024-04-15 00:00", "chat", NAN),
    ("B02", "2024-03-02 00:00", "unsubscribe", NAN),
]
CUSTOMERS = [
    ("A01", "2023-12-01 06:00", "DE", "search"),
    ("B02", "2023-01-01 00:00", "FR", "social"),
    ("C03", "2024-07-05 00:00", "DE", "search"),
    ("D04", "2024-09-01 00:00", None, "ads"),  # signed up after C: signup age unknown at C
]
END = data_end(T("2024-12-01 10:00"))  # 2024-12-02

# A01 at C, by hand. Orders before C: a1 Jan 10 12:00 (100), a2 Apr 2 (50), a3 Jun 1 (80), a4 Jun 30 18:00 (20).
GAPS = (82.5, 60.0, 29.75)  # Jan 10 12:00 -> Apr 2 -> Jun 1 -> Jun 30 18:00, in days
GAP_MEAN = sum(GAPS) / 3
GAP_STD = math.sqrt(sum((g - GAP_MEAN) ** 2 for g in GAPS) / 3)
EXPECTED_A = {
    # purchase
    "recency_days": 0.25,  # Jun 30 18:00 -> Jul 1
    "tenure_days": 172.5,  # Jan 10 12:00 -> Jul 1: 21.5 + 29 (leap year) + 31 + 30 + 31 + 30
    "orders_total": 4,
    "frequency": 3,
    "revenue_total": 250.0,
    "monetary_value": 62.5,
    "orders_30d": 2,  # a3 (exactly C - 30) and a4
    "orders_90d": 3,  # a2 (exactly C - 90), a3, a4
    "orders_trend_30d": 2,  # 2 - orders in [May 2, Jun 1) = 2 - 0
    "orders_trend_90d": 2,  # 3 - orders in [Jan 3, Apr 2) = 3 - 1 (a1)
    "revenue_30d": 100.0,
    "revenue_90d": 150.0,
    "revenue_trend_30d": 100.0,
    "revenue_trend_90d": 50.0,  # 150 - 100
    "aov_30d": 50.0,
    "aov_90d": 50.0,
    "gap_mean_days": GAP_MEAN,  # 57.4166...
    "gap_std_days": GAP_STD,  # population spread of the three gaps
    "overdue_ratio": 0.25 / GAP_MEAN,
    "discount_share": 30.0 / 280.0,  # discounts 0 + 10 + 20 + (null = 0) over revenue + discounts
    "items_per_order": 2.5,  # (2 + 1 + 4 + 3) / 4
    "web_order_share": 0.5,  # a1 "web" and a4 "WEB " of 4 orders
    "app_order_share": 0.25,  # a2 " App"; a3 has no channel
    "store_order_share": 0.0,  # a5 "store" is at exactly C
    "returns_total": 2,  # Jan 15 (30) and Jun 15 (8); the refund at exactly C is a label
    "returns_value_total": 38.0,
    "return_rate": 38.0 / 250.0,
    "returns_30d": 1,
    "returns_90d": 1,
    "returns_value_30d": 8.0,
    "returns_value_90d": 8.0,
    # engagement
    "sessions_30d": 1,  # Jun 20
    "sessions_90d": 2,  # May 1, Jun 20
    "sessions_trend_30d": 1,  # 1 - sessions in [May 2, Jun 1) = 1 - 0 (May 1 is a day earlier)
    "sessions_trend_90d": 2,
    "days_since_last_session": 10 + 14 / 24,  # Jun 20 10:00 -> Jul 1
    "page_views_30d": 3,
    "page_views_90d": 3,
    "add_to_cart_30d": 1,
    "add_to_cart_90d": 1,
    "emails_sent_30d": 2,  # Jun 4, Jun 11
    "emails_sent_90d": 3,  # + May 7
    "email_opens_30d": 1,  # Jun 4
    "email_opens_90d": 2,  # + May 8
    "email_opens_trend_30d": 0,  # 1 - opens in [May 2, Jun 1) = 1 - 1
    "email_opens_trend_90d": 2,
    "email_clicks_30d": 1,
    "email_clicks_90d": 1,
    "email_open_rate_30d": 1 / 2,
    "email_open_rate_90d": 2 / 3,
    "email_click_rate_30d": 1 / 2,
    "email_click_rate_90d": 1 / 3,
    "days_since_last_email_open": 26.5,  # Jun 4 12:00 -> Jul 1
    "days_since_last_email_click": 26.5 - 1 / 1440,  # Jun 4 12:01
    "unsubscribes_total": 1,
    "other_events_30d": 2,  # the two wishlist_add
    "other_events_90d": 3,  # + chat on Apr 15
    # experience
    "support_tickets_30d": 1,  # Jun 29
    "support_tickets_90d": 1,
    "support_tickets_total": 2,  # + Mar 1
    "review_last": 2.0,  # the unrated review of Jun 12 and the one at C do not count
    "review_avg": 3.0,  # (4 + 2) / 2
    "nps_last": 6.0,
    "nps_avg": 7.5,
    # loyalty
    "points_earned_30d": 80.0,  # Jun 1 = C - 30 is inside; Jan 10 is outside both windows
    "points_earned_90d": 80.0,
    "points_redeemed_30d": 50.0,
    "points_redeemed_90d": 50.0,
    "loyalty_points_balance": 130.0,  # 100 + 80 - 50
    "loyalty_tier_level": 2.0,  # the change to 3 happens at C
    "coupons_redeemed_30d": 1,
    "coupons_redeemed_90d": 1,
    # attributes
    "signup_age_days": 212.75,  # 2023-12-01 06:00 -> 2024-07-01: 31 + 182 days - 0.25
    "country": "DE",
    "acquisition_channel": "search",
    # BG/NBD: the hand shop has fewer than 20 customers at C, too few to fit the model on
    "bgnbd_p_alive": None,
    "bgnbd_churn_probability": None,
    "bgnbd_expected_orders": None,
    "bgnbd_order_value": None,
    "bgnbd_clv": None,
    # calendar
    "cutoff_month": 7,
    "cutoff_day_of_year": 183,  # 2024 is a leap year
}


def hand_shop() -> duckdb.DuckDBPyConnection:
    return connect(
        orders=with_channels(orders_frame(ORDERS), CHANNELS),
        returns=returns_frame(RETURNS),
        events=events_frame(EVENTS),
        customers=customers_frame(CUSTOMERS),
    )


@pytest.fixture(scope="module")
def training() -> tuple[pd.DataFrame, dict]:
    table, manifest = build_feature_table(hand_shop(), [C, T("2024-11-01")], END, CONFIG, training=True)
    return table.to_pandas(), manifest


def row(frame: pd.DataFrame, customer: str, cutoff: pd.Timestamp = C) -> pd.Series:
    hit = frame[(frame["customer_id"] == customer) & (frame["cutoff"] == cutoff)]
    assert len(hit) == 1, f"{customer} at {cutoff.date()}: {len(hit)} rows"
    return hit.iloc[0]


def assert_value(name: str, got, want) -> None:
    if want is None or (isinstance(want, float) and math.isnan(want)):
        assert pd.isna(got), (name, got)
    elif isinstance(want, str):
        assert got == want, (name, got, want)
    else:
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), (name, got, want)


# ---- every value by hand -----------------------------------------------------------------------------------


def test_every_feature_of_a01_by_hand(training):
    frame, manifest = training
    assert set(EXPECTED_A) == set(manifest["features"]), "the hand-computed list must cover every feature"
    a = row(frame, "A01")
    for name, want in EXPECTED_A.items():
        assert_value(name, a[name], want)
    assert not a["is_lapsed"]


def test_labels_of_a01_by_hand(training):
    frame, _ = training
    a = row(frame, "A01")
    assert not a["churned"]  # the order at exactly C counts
    assert a["future_orders"] == 2  # a5 (at C) and a6; a7 at exactly C + 60 is outside
    assert a["future_revenue"] == pytest.approx(40 + 60 - 15 - 5)  # net of refunds at C and at C + 60 - 1s
    # a5 at exactly C is in the first interval [C, C + 14); the data (to Dec 2 = C + 154) reach the edge 120
    assert a["next_order_days"] == 14 and a["next_order_followup_days"] == 120


def test_one_order_customer_without_events_or_signup(training):
    frame, _ = training
    d = row(frame, "D04")
    expected = {
        "recency_days": 15 + 14 / 24,  # Jun 15 10:00 -> Jul 1
        "tenure_days": 15 + 14 / 24,
        "orders_total": 1,
        "frequency": 0,
        "orders_30d": 1,
        "orders_trend_30d": 1,
        "monetary_value": 30.0,
        "gap_mean_days": NAN,  # no gap yet
        "gap_std_days": NAN,
        "overdue_ratio": NAN,
        "return_rate": 0.0,
        "returns_total": 0,
        "sessions_90d": 0,
        "days_since_last_session": NAN,
        "email_open_rate_30d": NAN,  # nothing sent
        "review_last": NAN,
        "nps_avg": NAN,
        "loyalty_tier_level": 0.0,  # no tier change seen: level 0 (none)
        "loyalty_points_balance": 0.0,
        "other_events_90d": 0,
        "signup_age_days": NAN,  # signed up after C
        "country": None,
        "acquisition_channel": "ads",
        "cutoff_month": 7,
        "store_order_share": 1.0,  # d1 "Store"
        "web_order_share": 0.0,
        "app_order_share": 0.0,
    }
    for name, want in expected.items():
        assert_value(name, d[name], want)
    assert d["churned"] and d["future_orders"] == 0 and d["future_revenue"] == 0.0
    # no order after C: censored at the last edge the data reach
    assert pd.isna(d["next_order_days"]) and d["next_order_followup_days"] == 120


def test_rows_are_the_eligible_customers_sorted(training):
    frame, manifest = training
    keys = list(zip(frame["cutoff"], frame["customer_id"], strict=True))
    # At C: A01 and D04 (B02 lapsed, C03 not a customer yet). At Nov 1 (max recency 100): A01 only (last
    # order Aug 30); C03's last order before Nov 1 is Jul 10 (114 days), D04's Jun 15.
    assert keys == [(C, "A01"), (C, "D04"), (T("2024-11-01"), "A01")]
    assert manifest["cutoffs"] == ["2024-07-01", "2024-11-01"]
    assert manifest["data_end"] == "2024-12-02"


def test_labels_are_null_where_their_horizon_passes_the_end(training):
    frame, _ = training
    late = row(frame, "A01", T("2024-11-01"))
    # churn horizon [Nov 1, Dec 1) ends before the end of the data (Dec 2); the CLV one (to Dec 31) does not
    assert late["churned"]
    assert pd.isna(late["future_orders"]) and pd.isna(late["future_revenue"])
    assert row(frame, "A01")["future_orders"] == 2
    # next-order: Nov 1 + 30 = Dec 1 is inside the data, + 60 is not; no order in [Nov 1, Dec 1)
    assert pd.isna(late["next_order_days"]) and late["next_order_followup_days"] == 30


def test_manifest_lists_exactly_the_produced_features(training):
    frame, manifest = training
    produced = [c for c in frame.columns if c not in NON_FEATURES]
    assert manifest["features"] == produced
    assert set(manifest["families"]) == set(produced)
    assert set(manifest["families"].values()) == FAMILIES
    assert manifest["categorical"] == ["country", "acquisition_channel"]
    assert manifest["labels"] == list(LABELS)
    assert manifest["keys"] == ["customer_id", "cutoff"]
    assert manifest["windows_days"] == [30, 90]
    assert manifest["next_order_days"] == [14, 30, 60, 90, 120, 180]
    assert (manifest["churn_horizon_days"], manifest["clv_horizon_days"]) == (30, 60)
    assert manifest["skipped_sources"] == []
    assert manifest["labels"][-2:] == ["next_order_days", "next_order_followup_days"]
    assert frame.columns[-len(LABELS) :].tolist() == list(LABELS)
    # export-time columns of `customers` would leak the future into historic rows
    assert "email_opt_in" not in frame.columns and "loyalty_tier" not in frame.columns


def test_families(training):
    _, manifest = training
    fam = manifest["families"]
    assert fam["recency_days"] == fam["returns_30d"] == fam["return_rate"] == "purchase"
    assert {fam[f] for f in CHANNEL_FEATURES} == {"purchase"}
    assert fam["sessions_30d"] == fam["email_click_rate_90d"] == fam["other_events_30d"] == "engagement"
    assert fam["support_tickets_total"] == fam["nps_last"] == fam["support_tickets_30d"] == "experience"
    assert fam["loyalty_tier_level"] == fam["points_earned_30d"] == fam["coupons_redeemed_30d"] == "loyalty"
    assert fam["signup_age_days"] == fam["country"] == "attributes"
    assert fam["cutoff_month"] == fam["cutoff_day_of_year"] == "calendar"
    assert fam["bgnbd_p_alive"] == fam["bgnbd_churn_probability"] == fam["bgnbd_clv"] == "bgnbd"


# ---- BG/NBD ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_con() -> duckdb.DuckDBPyConnection:
    from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop

    shop = generate_shop(SyntheticShopConfig(customers=1500, seed=3))
    plain = {
        name: pa.table(
            {c: t[c].cast(pa.string()) if pa.types.is_dictionary(t[c].type) else t[c] for c in t.column_names}
        )
        for name, t in shop.items()
        if name in ("orders", "returns")
    }
    con = duckdb.connect()
    for name, table in plain.items():
        con.register(f"{name}_src", table)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_src")
    return con


def test_bgnbd_features_are_fitted_on_every_customer_of_the_cutoff_with_purchase_days(synthetic_con):
    from churn_pipeline.btyd import bgnbd_quantities

    cutoff, end = T("2025-06-01"), T("2026-01-01")
    config = FeatureConfig(churn_horizon_days=90, clv_horizon_days=180, max_recency_days=180)
    scoring = build_feature_table(synthetic_con, [cutoff], end, config, training=False)[0].to_pandas()
    training = build_feature_table(synthetic_con, [cutoff], end, config, training=True)[0].to_pandas()
    assert scoring["is_lapsed"].any() and len(training) == (~scoring["is_lapsed"]).sum()
    # By hand: a purchase occasion is a day with an order; the fit uses every customer with an order before c.
    days = synthetic_con.sql(
        f"SELECT customer_id, count(DISTINCT CAST(order_ts AS DATE)) AS days FROM orders "
        f"WHERE order_ts < TIMESTAMP '{cutoff}' GROUP BY customer_id"
    ).df()
    n_days = scoring["customer_id"].map(days.set_index("customer_id")["days"]).to_numpy(np.float64)
    tenure, recency = scoring["tenure_days"].to_numpy(np.float64), scoring["recency_days"].to_numpy(np.float64)
    want = bgnbd_quantities(
        frequency=n_days - 1,
        t_x=tenure - recency,
        T=tenure,
        orders_total=n_days,
        monetary_value=scoring["revenue_total"].to_numpy(np.float64) / n_days,
        churn_horizon_days=90,
        clv_horizon_days=180,
    )
    assert scoring["bgnbd_churn_probability"].to_numpy() == pytest.approx(want["churn_probability"], rel=1e-3)
    assert scoring["bgnbd_clv"].to_numpy() == pytest.approx(want["clv"], rel=1e-3)
    # The fit does not depend on the table: the training table (lapsed rows dropped) has the same values.
    active = scoring[~scoring["is_lapsed"]].reset_index(drop=True)
    for name in ("bgnbd_p_alive", "bgnbd_churn_probability", "bgnbd_expected_orders", "bgnbd_order_value"):
        assert training[name].to_numpy() == pytest.approx(active[name].to_numpy(), rel=1e-6), name
    assert scoring["bgnbd_churn_probability"].between(0, 1).all()
    lapsed = scoring["is_lapsed"].to_numpy()
    assert (
        scoring.loc[lapsed, "bgnbd_churn_probability"].mean() > scoring.loc[~lapsed, "bgnbd_churn_probability"].mean()
    )


def test_orders_on_one_day_are_one_purchase_occasion_for_the_bgnbd_prior():
    from churn_pipeline.features.derive import bgnbd_inputs_at

    now = {
        "n_order_days": np.array([2.0]),
        "n_orders": np.array([5.0]),
        "revenue": np.array([100.0]),
        "first_order_us": np.array([0.0]),
        "last_order_us": np.array([10 * 86_400e6]),
    }
    inputs = bgnbd_inputs_at(now, np.array([20]))
    assert inputs["frequency"][0] == 1 and inputs["orders_total"][0] == 2
    assert inputs["monetary_value"][0] == 50.0 and inputs["t_x"][0] == 10.0 and inputs["T"][0] == 20.0


# ---- eligibility ---------------------------------------------------------------------------------------------


def test_scoring_keeps_lapsed_customers_flagged():
    table, _ = build_feature_table(hand_shop(), [C], END, CONFIG, training=False)
    frame = table.to_pandas()
    assert frame["customer_id"].tolist() == ["A01", "B02", "D04"]  # C03 has no order before C
    assert frame["is_lapsed"].tolist() == [False, True, False]
    b = row(frame, "B02")
    assert_value("recency_days", b["recency_days"], 122.0)  # Mar 1 -> Jul 1
    assert_value("country", b["country"], "FR")
    assert b["churned"] and b["future_orders"] == 0


def recency_shop(last_order: pd.Timestamp) -> duckdb.DuckDBPyConnection:
    return connect(
        orders=orders_frame(
            [
                ("X", "x0", "2024-01-01", 10.0, 0.0, 1),
                ("X", "x1", str(last_order), 10.0, 0.0, 1),
                ("Y", "y1", "2024-06-30", 10.0, 0.0, 1),
                ("Y", "y2", "2024-12-01", 10.0, 0.0, 1),
            ]
        )
    )


def test_recency_exactly_max_recency_days_is_still_eligible():
    con = recency_shop(C - pd.Timedelta(days=100))
    frame = build_feature_table(con, [C], END, CONFIG, training=True)[0].to_pandas()
    assert frame["customer_id"].tolist() == ["X", "Y"]
    assert_value("recency_days", row(frame, "X")["recency_days"], 100.0)


def test_recency_just_over_max_recency_days_is_lapsed():
    con = recency_shop(C - pd.Timedelta(days=100) - US)
    assert build_feature_table(con, [C], END, CONFIG, training=True)[0].column("customer_id").to_pylist() == ["Y"]
    scoring = build_feature_table(con, [C], END, CONFIG, training=False)[0].to_pandas()
    assert scoring["customer_id"].tolist() == ["X", "Y"]
    assert scoring["is_lapsed"].tolist() == [True, False]
    keep_all = FeatureConfig(windows_days=(30, 90), churn_horizon_days=30, clv_horizon_days=60, max_recency_days=None)
    frame = build_feature_table(con, [C], END, keep_all, training=True)[0].to_pandas()
    assert frame["customer_id"].tolist() == ["X", "Y"]
    assert not frame["is_lapsed"].any()


def test_customer_whose_first_order_is_at_the_cutoff_is_not_eligible():
    con = connect(
        orders=orders_frame(
            [
                ("X", "x1", str(C), 10.0, 0.0, 1),
                ("Y", "y1", "2024-06-30", 10.0, 0.0, 1),
                ("Y", "y2", "2024-12-01", 1, 0, 1),
            ]
        )
    )
    frame = build_feature_table(con, [C], END, CONFIG, training=False)[0].to_pandas()
    assert frame["customer_id"].tolist() == ["Y"]


# ---- boundaries ----------------------------------------------------------------------------------------------


def boundary_shop(extra_orders=(), extra_returns=(), extra_events=()) -> duckdb.DuckDBPyConnection:
    """X has one old order (so it is eligible) plus the rows under test; Y's late order sets the end."""
    base = [("X", "x0", "2023-12-01", 1.0, 0.0, 1), ("Y", "y9", "2024-12-01", 1.0, 0.0, 1)]
    orders = base + [("X", f"o{i}", str(t), amount, 0.0, 1) for i, (t, amount) in enumerate(extra_orders)]
    frames = {"orders": orders_frame(orders)}
    if extra_returns:
        frames["returns"] = returns_frame([("X", "x0", str(t), amount) for t, amount in extra_returns])
    if extra_events:
        frames["events"] = events_frame([("X", str(t), kind, NAN) for t, kind in extra_events])
    return connect(**frames)


def x_at_c(con: duckdb.DuckDBPyConnection, config: FeatureConfig = CONFIG) -> pd.Series:
    frame = build_feature_table(con, [C], END, config, training=False)[0].to_pandas()
    return row(frame, "X")


def test_order_at_the_cutoff_is_a_label_and_one_microsecond_before_is_a_feature():
    x = x_at_c(boundary_shop(extra_orders=[(C - US, 7.0), (C, 11.0)]))
    assert x["orders_total"] == 2 and x["revenue_total"] == 8.0
    assert x["orders_30d"] == 1 and x["revenue_30d"] == 7.0
    assert 0 < x["recency_days"] < 1e-9  # one microsecond, in days
    assert not x["churned"]
    assert x["future_orders"] == 1 and x["future_revenue"] == 11.0


def test_order_only_at_the_cutoff_changes_no_feature():
    without = x_at_c(boundary_shop())
    with_c = x_at_c(boundary_shop(extra_orders=[(C, 11.0)]))
    features = [c for c in without.index if c not in NON_FEATURES]
    pd.testing.assert_series_equal(without[features], with_c[features])
    assert without["churned"] and not with_c["churned"]


@pytest.mark.parametrize("w", [30, 90])
def test_order_exactly_at_window_start_is_inside_and_one_microsecond_earlier_is_not(w):
    start = C - pd.Timedelta(days=w)
    x = x_at_c(boundary_shop(extra_orders=[(start, 1.0), (start - US, 10.0)]))
    assert x[f"orders_{w}d"] == 1
    assert x[f"revenue_{w}d"] == 1.0
    assert x[f"aov_{w}d"] == 1.0
    # the microsecond-earlier order falls in the window before, which the trend subtracts
    assert x[f"revenue_trend_{w}d"] == 1.0 - 10.0


@pytest.mark.parametrize("w", [30, 90])
def test_return_and_event_at_window_start_are_inside(w):
    start = C - pd.Timedelta(days=w)
    con = boundary_shop(
        extra_returns=[(start, 2.0), (start - US, 20.0)],
        extra_events=[(start, "session"), (start - US, "session"), (start, "support_ticket")],
    )
    x = x_at_c(con)
    assert x[f"returns_{w}d"] == 1 and x[f"returns_value_{w}d"] == 2.0
    assert x["returns_total"] == 2
    assert x[f"sessions_{w}d"] == 1 and x[f"sessions_trend_{w}d"] == 1 - 1
    assert x[f"support_tickets_{w}d"] == 1
    assert x["days_since_last_session"] == pytest.approx(w)


def test_rows_at_the_cutoff_are_not_features_in_any_source():
    con = boundary_shop(
        extra_orders=[(C - pd.Timedelta(days=2), 5.0)],
        extra_returns=[(C, 3.0)],
        extra_events=[(C, "session"), (C, "support_ticket"), (C - pd.Timedelta(days=1), "session")],
    )
    x = x_at_c(con)
    assert x["returns_total"] == 0 and x["returns_30d"] == 0
    assert x["sessions_30d"] == 1 and x["support_tickets_total"] == 0
    assert x["days_since_last_session"] == pytest.approx(1.0)
    assert x["future_revenue"] == -3.0  # the refund at C is in the label


def test_label_rows_at_the_end_of_the_horizon_are_outside():
    churn_end = C + pd.Timedelta(days=CONFIG.churn_horizon_days)
    clv_end = C + pd.Timedelta(days=CONFIG.clv_horizon_days)
    x = x_at_c(boundary_shop(extra_orders=[(churn_end, 100.0), (clv_end, 1000.0)], extra_returns=[(clv_end, 9.0)]))
    assert x["churned"]  # the order at exactly C + 30 is outside the churn horizon...
    assert x["future_orders"] == 1 and x["future_revenue"] == 100.0  # ...but inside the 60-day CLV horizon
    x = x_at_c(
        boundary_shop(
            extra_orders=[(churn_end - US, 100.0), (clv_end - US, 1000.0)], extra_returns=[(clv_end - US, 9.0)]
        )
    )
    assert not x["churned"]
    assert x["future_orders"] == 2 and x["future_revenue"] == 100.0 + 1000.0 - 9.0


def test_label_is_complete_when_the_horizon_ends_exactly_at_the_end_of_the_data():
    con = boundary_shop()
    h = CONFIG.clv_horizon_days
    exact = build_feature_table(con, [C], C + pd.Timedelta(days=h), CONFIG, training=False)[0].to_pandas()
    assert exact["future_orders"].notna().all()
    short = build_feature_table(con, [C], C + pd.Timedelta(days=h - 1), CONFIG, training=False)[0].to_pandas()
    assert short["future_orders"].isna().all() and short["churned"].notna().all()


def test_session_time_zone_does_not_move_day_boundaries():
    """Timestamps are naive UTC: a DuckDB session time zone must not shift a row across a cutoff or window edge."""
    base = build_feature_table(hand_shop(), [C], END, CONFIG, training=False)[0]
    for zone in ("Pacific/Kiritimati", "America/Los_Angeles"):
        con = hand_shop()
        con.execute(f"SET TimeZone = '{zone}'")
        assert build_feature_table(con, [C], END, CONFIG, training=False)[0].equals(base), zone


# ---- missing sources ---------------------------------------------------------------------------------------


def test_orders_only_builds_purchase_and_calendar_features():
    con = connect(orders=orders_frame(ORDERS))
    table, manifest = build_feature_table(con, [C], END, CONFIG, training=True)
    frame = table.to_pandas()
    produced = [c for c in frame.columns if c not in NON_FEATURES]
    assert manifest["features"] == produced
    assert set(manifest["families"].values()) == {"purchase", "bgnbd", "calendar"}
    assert manifest["categorical"] == []
    assert "returns_total" not in produced and "country" not in produced
    a = row(frame, "A01")
    for name, want in EXPECTED_A.items():
        if name in produced:
            assert_value(name, a[name], want)
    kept = {n for n in EXPECTED_A if manifest["families"].get(n) in ("purchase", "bgnbd", "calendar")}
    assert set(produced) == kept - set(CHANNEL_FEATURES)  # ORDERS alone has no channel column
    # returns absent: future revenue is gross
    assert a["future_revenue"] == 100.0 and a["future_orders"] == 2
    skipped = set(manifest["skipped_sources"])
    assert "returns" in skipped and "orders.channel" in skipped
    assert set(KNOWN_EVENT_TYPES) <= skipped


def test_orders_without_optional_columns():
    con = connect(orders=orders_frame(ORDERS).drop(columns=["discount_amount", "items"]))
    frame, manifest = build_feature_table(con, [C], END, CONFIG, training=True)
    assert "discount_share" not in manifest["features"] and "items_per_order" not in manifest["features"]
    assert not set(CHANNEL_FEATURES) & set(frame.column_names)
    assert {"orders.discount_amount", "orders.items", "orders.channel"} <= set(manifest["skipped_sources"])
    assert row(frame.to_pandas(), "A01")["revenue_total"] == 250.0


def test_channel_shares_only_from_orders_with_a_channel_column():
    # The same orders with and without a channel: the shares are the only difference, nothing else moves.
    without = build_feature_table(connect(orders=orders_frame(ORDERS)), [C], END, CONFIG, True)[0].to_pandas()
    con = connect(orders=with_channels(orders_frame(ORDERS), CHANNELS))
    with_ = build_feature_table(con, [C], END, CONFIG, True)[0].to_pandas()
    assert [c for c in with_.columns if c not in without.columns] == CHANNEL_FEATURES
    pd.testing.assert_frame_equal(with_.drop(columns=CHANNEL_FEATURES), without)
    # A channel column that is never filled in: every share is 0 (orders there, none via these channels).
    blank = with_channels(orders_frame(ORDERS), {})
    frame = build_feature_table(connect(orders=blank), [C], END, CONFIG, True)[0].to_pandas()
    assert (frame[CHANNEL_FEATURES] == 0.0).all().all()


def test_channel_shares_ignore_the_channels_of_orders_at_or_after_the_cutoff():
    con = connect(orders=with_channels(orders_frame(ORDERS), CHANNELS))
    base = build_feature_table(con, [C], END, CONFIG, training=False)[0].to_pandas()
    moved = {**CHANNELS, **{k: "store" for k in ("a5", "a6", "a7", "c1", "c2")}}  # orders at or after C
    con = connect(orders=with_channels(orders_frame(ORDERS), moved))
    frame = build_feature_table(con, [C], END, CONFIG, training=False)[0].to_pandas()
    pd.testing.assert_frame_equal(frame, base)
    # control: the channel of a4 (Jun 30 18:00, before C) does move them
    con = connect(orders=with_channels(orders_frame(ORDERS), {**CHANNELS, "a4": "store"}))
    a = row(build_feature_table(con, [C], END, CONFIG, training=False)[0].to_pandas(), "A01")
    assert (a["web_order_share"], a["app_order_share"], a["store_order_share"]) == (0.25, 0.25, 0.25)


def test_orders_only_manifest_names_the_absent_tables():
    _, manifest = build_feature_table(connect(orders=orders_frame(ORDERS)), [C], END, CONFIG, training=True)
    assert {"returns", "customers", "events"} <= set(manifest["skipped_sources"])


def test_event_types_absent_from_the_data_are_skipped():
    events = events_frame([e for e in EVENTS if e[2] in ("session", "review")])
    con = connect(orders=orders_frame(ORDERS), events=events)
    table, manifest = build_feature_table(con, [C], END, CONFIG, training=True)
    assert "sessions_30d" in manifest["features"] and "review_avg" in manifest["features"]
    for gone in ("nps_last", "emails_sent_30d", "email_open_rate_30d", "loyalty_tier_level", "other_events_30d"):
        assert gone not in manifest["features"]
    assert {"nps", "email_sent", "loyalty_tier_change", "returns"} <= set(manifest["skipped_sources"])
    a = row(table.to_pandas(), "A01")
    assert a["sessions_90d"] == 2 and a["review_last"] == 2.0


def test_events_without_value_column():
    con = connect(orders=orders_frame(ORDERS), events=events_frame(EVENTS).drop(columns=["value"]))
    table, manifest = build_feature_table(con, [C], END, CONFIG, training=True)
    assert "sessions_30d" in manifest["features"] and "review_avg" not in manifest["features"]
    assert row(table.to_pandas(), "A01")["sessions_30d"] == 1


def test_events_before_the_first_order_count_in_all_history_features():
    # First order of the whole data: 2024-06-01. Windows (30,) at C reach back to C - 60 = 2024-05-02 only.
    orders = orders_frame([("X", "x1", "2024-06-01", 10.0, 0.0, 1), ("X", "x2", "2024-12-01", 1.0, 0.0, 1)])
    events = events_frame(
        [
            ("X", "2024-01-05", "support_ticket", NAN),  # a question before buying
            ("X", "2024-01-06", "review", 1.0),
            ("X", "2024-06-10", "review", 5.0),
        ]
    )
    config = FeatureConfig(windows_days=(30,), churn_horizon_days=30, clv_horizon_days=60, max_recency_days=None)
    x = row(build_feature_table(connect(orders=orders, events=events), [C], END, config, True)[0].to_pandas(), "X")
    assert x["support_tickets_total"] == 1
    assert x["review_avg"] == 3.0


def test_no_cutoffs_and_no_orders_are_errors():
    with pytest.raises(ValueError, match="no cutoffs"):
        build_feature_table(hand_shop(), [], END, CONFIG, training=True)
    with pytest.raises(ValueError, match="orders"):
        build_feature_table(connect(events=events_frame(EVENTS)), [C], END, CONFIG, training=True)


def test_output_types():
    table, _ = build_feature_table(hand_shop(), [C], END, CONFIG, training=True)
    schema = table.schema
    assert schema.field("customer_id").type == pa.string()
    assert schema.field("cutoff").type == pa.timestamp("us")
    assert schema.field("churned").type == pa.bool_()
    assert schema.field("future_orders").type == pa.int32()
    assert schema.field("future_revenue").type == pa.float64()
    assert schema.field("next_order_days").type == pa.float64()
    assert schema.field("next_order_followup_days").type == pa.float64()
    assert schema.field("web_order_share").type == pa.float32()
    assert schema.field("country").type == pa.string()


# --------------------------------------------------------------------------------------------------------------
# The engine's own aggregation (rows streamed out of DuckDB, aggregated in numpy) against the SQL definition.


def _awkward_shop(seed: int) -> dict[str, pa.Table]:
    """A random shop full of the cases an aggregation gets wrong: NaN, infinite and NULL amounts and values,
    timestamp ties with different values, rows long before the first cutoff's slots and after the last edge,
    an event type the contract does not name, events of customers who never ordered."""
    rng = np.random.default_rng(seed)
    start = T("2023-01-01")

    def when(n: int, days: int = 700) -> list[pd.Timestamp]:
        # Whole hours, so timestamps tie often.
        return list(start + pd.to_timedelta(rng.integers(0, days * 24, n), unit="h"))

    def awkward(n: int, scale: float) -> np.ndarray:
        values = rng.normal(scale, scale, n).round(3)
        values[rng.random(n) < 0.08] = NAN
        values[rng.random(n) < 0.03] = np.inf
        return values

    cust = [f"K{i:02d}" for i in range(25)]
    n = 300
    orders = orders_frame(
        list(
            zip(
                rng.choice(cust, n),
                [f"o{i:03d}" for i in range(n)],
                when(n),
                awkward(n, 60.0),
                np.where(rng.random(n) < 0.3, NAN, rng.random(n) * 10),
                rng.integers(1, 5, n),
                strict=True,
            )
        )
    )
    # Channels as exports spell them (case, blanks), unknown ones and NULLs.
    spellings = np.array(["web", " Web", "APP", "app ", "store", "STORE", "phone", "", None], dtype=object)
    orders["channel"] = spellings[rng.integers(0, len(spellings), n)]
    returns = returns_frame(list(zip(rng.choice(cust, 60), ["o001"] * 60, when(60), awkward(60, 20.0), strict=True)))
    types = [*KNOWN_EVENT_TYPES, "wishlist_add"]
    m = 3_000
    who = rng.choice([*cust, "GHOST1", "GHOST2"], m)
    events = events_frame(list(zip(who, when(m), rng.choice(types, m), awkward(m, 4.0), strict=True)))
    # Same customer, type and timestamp, different values: `last` must pick the larger (NaN the largest).
    tie = events.iloc[[0, 0, 0]].copy()
    tie["event_type"], tie["value"] = "review", [2.0, 5.0, 3.0]
    tie_nan = tie.copy()
    tie_nan["event_ts"] += pd.Timedelta(days=1)
    tie_nan["value"] = [1.0, NAN, 4.0]
    events = pd.concat([events, tie, tie_nan], ignore_index=True)
    # NaN stays NaN (as in Parquet) and a few values are NULL: a pandas frame would make every NaN a NULL.
    frames = {"orders": orders, "returns": returns, "events": events}
    tables = {}
    for name, frame in frames.items():
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for col in ("amount", "discount_amount", "value"):
            if col in frame:
                null = rng.random(len(frame)) < 0.04
                array = pa.array(frame[col].to_numpy(np.float64), from_pandas=False, mask=null)
                table = table.set_column(table.schema.get_field_index(col), col, array)
        tables[name] = table
    return tables


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_measure_at_every_offset_equals_its_sql_definition(seed):
    from churn_pipeline.features.build import _Reader, _Running, _scan_rows, _Slots, inspect_sources
    from churn_pipeline.features.cutoffs import to_day
    from churn_pipeline.features.definitions import MEASURES
    from churn_pipeline.features.derive import SlotLayout, measure_offsets
    from churn_pipeline.features.sql import event_codes, row_columns, source_sql

    con = connect(**_awkward_shop(seed))
    con.execute(
        "CREATE TEMP TABLE _cust AS SELECT customer_id, (row_number() OVER (ORDER BY customer_id) - 1)::INTEGER "
        "AS cust_idx FROM (SELECT DISTINCT customer_id FROM orders)"
    )
    n_cust = con.sql("SELECT count(*) FROM _cust").fetchall()[0][0]
    config = FeatureConfig(windows_days=(30, 90), churn_horizon_days=30, clv_horizon_days=60)
    cut_days = np.array([to_day(T(c)) for c in ("2023-09-01", "2024-01-01", "2024-06-15")])
    layout = SlotLayout.of(cut_days, config)
    everyone = np.tile(np.arange(n_cust), len(cut_days))
    blocks = [(k * n_cust, (k + 1) * n_cust) for k in range(len(cut_days))]
    measures = [m for m in MEASURES if inspect_sources(con).supports(m)]
    assert {m.source for m in measures} == {"orders", "returns", "events"}
    assert {"n_web_orders", "n_app_orders", "n_store_orders"} <= {m.name for m in measures}
    checked = 0
    for source in ("orders", "returns", "events"):
        ms = [m for m in measures if m.source == source]
        parts = _scan_rows(con, source, ms, layout)
        columns, codes = row_columns(ms), event_codes(ms)
        for m in ms:
            slots = _Slots.of(measure_offsets(m, config), layout)
            part = parts[codes[m.event_type] if source == "events" else 0]
            read = _Reader(_Running(part, m, columns, slots, n_cust), slots, layout.reads, everyone, blocks)
            for offset in measure_offsets(m, config):
                got = read(offset)
                for k, c in enumerate(cut_days):
                    # The SQL reduce with one slot holding every day before c + offset: the definition itself.
                    con.execute(
                        f"CREATE OR REPLACE TEMP TABLE _upto AS SELECT range AS day, 0 AS slot "
                        f"FROM range({layout.first_map_day}, {c + offset})"
                    )
                    sql = source_sql(source, [m], layout.first_map_day, daymap="_upto")
                    rows = con.sql(f"SELECT cust_idx, CAST({m.name} AS DOUBLE) AS v FROM ({sql})").df()
                    want = np.full(n_cust, 0.0 if m.rollup == "sum" else np.nan)
                    want[rows["cust_idx"]] = rows["v"].to_numpy(np.float64) / (1_000_000 if m.agg == "sum" else 1)
                    if m.rollup == "sum":
                        want = np.nan_to_num(want, nan=0.0)
                    np.testing.assert_array_equal(got[blocks[k][0] : blocks[k][1]], want, err_msg=f"{m.name}@{offset}")
                    checked += 1
    assert checked > 200


def test_blocks_come_one_per_cutoff_in_order_and_make_the_table():
    from churn_pipeline.features.build import build_feature_blocks

    # 2023-01-01: before every order, so nobody is eligible: an empty block with every column.
    cutoffs = [T("2023-01-01"), C, T("2024-08-01")]
    blocks = list(build_feature_blocks(hand_shop(), cutoffs, END, CONFIG, training=False))
    assert [cutoff for cutoff, _, _ in blocks] == cutoffs
    assert blocks[0][1].num_rows == 0 and blocks[1][1].num_rows > 0
    assert len({block.schema for _, block, _ in blocks}) == 1
    assert all(manifest is blocks[0][2] for _, _, manifest in blocks)
    for cutoff, block, _ in blocks[1:]:
        assert set(block.column("cutoff").to_pylist()) == {cutoff.to_pydatetime()}
    table, manifest = build_feature_table(hand_shop(), cutoffs, END, CONFIG, training=False)
    assert table.equals(pa.concat_tables([block for _, block, _ in blocks]))
    assert manifest == blocks[0][2]


def test_repeated_customer_rows_are_refused_rather_than_shifting_attributes():
    customers = customers_frame(CUSTOMERS)
    con = connect(orders=orders_frame(ORDERS), customers=pd.concat([customers.iloc[[0]], customers]))
    with pytest.raises(ValueError, match="duplicate customer_id"):
        build_feature_table(con, [C], END, CONFIG, training=False)


def test_empty_returns_and_events_tables_give_zero_returns_and_skip_the_event_families():
    con = connect(
        orders=orders_frame(ORDERS),
        returns=returns_frame(RETURNS).iloc[:0],
        events=events_frame(EVENTS).iloc[:0],
    )
    table, manifest = build_feature_table(con, [C], END, CONFIG, training=False)
    assert table.column("returns_total").to_pylist() == [0] * table.num_rows
    assert table.column("returns_value_30d").to_pylist() == [0.0] * table.num_rows
    assert "sessions_30d" not in table.column_names and "session" in manifest["skipped_sources"]


# ---- next-order (survival) labels -----------------------------------------------------------------------------

DAY = pd.Timedelta(days=1)
C2 = C + 60 * DAY  # a second cutoff, 2024-08-30
# Every customer has an order long before C (eligible, lapsed: built as a scoring table) and these after it.
NEXT_ORDERS = {
    "P": [C + 3 * DAY, C + 40 * DAY],  # first interval [C, C + 14): 14
    "Q": [C + 40 * DAY],  # [C + 30, C + 60): 60
    "R": [C + 14 * DAY],  # exactly C + 14 is in [C + 14, C + 30): 30
    "S": [C + 14 * DAY - US],  # one microsecond earlier: 14
    "U": [],  # never again
    "V": [C + 95 * DAY],  # [C + 90, C + 120): 120; at C2 = C + 60: C2 + 35 -> 60
    "W": [C + 180 * DAY],  # exactly C + 180: outside the grid at C; at C2 it is C2 + 120 -> 180
}


def next_order_table(end: pd.Timestamp, cutoffs=(C,)) -> pd.DataFrame:
    """The next-order labels of NEXT_ORDERS when the data end at ``end`` (later orders are not in the data)."""
    rows = [(k, f"{k}0", "2024-01-01", 1.0, 0.0, 1) for k in NEXT_ORDERS]
    rows += [(k, f"{k}{i + 1}", str(t), 1.0, 0.0, 1) for k, ts in NEXT_ORDERS.items() for i, t in enumerate(ts)]
    rows = [r for r in rows if T(r[2]) < end]
    frame = build_feature_table(connect(orders=orders_frame(rows)), list(cutoffs), end, CONFIG, False)[0].to_pandas()
    return frame.set_index(["cutoff", "customer_id"])[["next_order_days", "next_order_followup_days"]]


def labels_at(frame: pd.DataFrame, cutoff: pd.Timestamp = C) -> dict[str, tuple[float, float]]:
    at = frame.loc[cutoff]
    pairs = zip(at["next_order_days"], at["next_order_followup_days"], strict=True)
    return dict(zip(at.index, pairs, strict=True))


def same(got: dict, want: dict) -> bool:
    """Labels by customer equal, a null event equal to NaN."""

    def key(pair: tuple[float, float]) -> tuple[float, float]:
        return (-1.0 if pd.isna(pair[0]) else float(pair[0]), float(pair[1]))

    return {k: key(v) for k, v in got.items()} == {k: key(v) for k, v in want.items()}


def test_next_order_labels_by_hand():
    # The data end 200 days after C: the whole grid (180) is observed at C, up to 120 at C2 (140 days left).
    frame = next_order_table(C + 200 * DAY, cutoffs=(C, C2))
    at_c = {"P": (14, 180), "Q": (60, 180), "R": (30, 180), "S": (14, 180), "U": (NAN, 180), "V": (120, 180)}
    assert same(labels_at(frame), {**at_c, "W": (NAN, 180)})
    # At C2 only V (C2 + 35) and W (C2 + 120, in [C2 + 120, C2 + 180), not fully observed) order again.
    nothing = (NAN, 120)
    want_c2 = {"P": nothing, "Q": nothing, "R": nothing, "S": nothing, "U": nothing, "V": (60, 120), "W": nothing}
    assert same(labels_at(frame, C2), want_c2)
    assert frame["next_order_days"].dtype == np.float64 and frame["next_order_followup_days"].dtype == np.float64


def test_next_order_labels_are_censored_at_the_end_of_the_data():
    # The data end 100 days after C: edges up to 90 are observed; V's order at C + 95 is in the data, but its
    # interval [C + 90, C + 120) is not fully observed, so V is censored at 90, like U.
    got = labels_at(next_order_table(C + 100 * DAY))
    want = {"P": (14, 90), "Q": (60, 90), "R": (30, 90), "S": (14, 90), "U": (NAN, 90), "V": (NAN, 90), "W": (NAN, 90)}
    assert same(got, want)
    # Ending exactly at C + 14: the first interval is complete (the same rule as c + h <= end for the labels).
    got = labels_at(next_order_table(C + 14 * DAY))
    assert same(got, {k: ((14, 14) if k in ("P", "S") else (NAN, 14)) for k in NEXT_ORDERS})
    # Ending before C + 14: nothing is observed, follow-up 0, no event even for P's order at C + 3.
    got = labels_at(next_order_table(C + 13 * DAY))
    assert same(got, {k: (NAN, 0) for k in NEXT_ORDERS})


def test_next_order_labels_on_another_grid_and_bad_grids():
    config = FeatureConfig(windows_days=(30,), churn_horizon_days=30, clv_horizon_days=60, next_order_days=(7, 45))
    rows = [(k, f"{k}0", "2024-01-01", 1.0, 0.0, 1) for k in NEXT_ORDERS]
    rows += [(k, f"{k}{i + 1}", str(t), 1.0, 0.0, 1) for k, ts in NEXT_ORDERS.items() for i, t in enumerate(ts)]
    end = C + 200 * DAY
    table, manifest = build_feature_table(connect(orders=orders_frame(rows)), [C], end, config, False)
    frame = table.to_pandas().set_index(["cutoff", "customer_id"])
    want = {"P": (7, 45), "Q": (45, 45), "R": (45, 45), "S": (45, 45), "U": (NAN, 45), "V": (NAN, 45), "W": (NAN, 45)}
    assert same(labels_at(frame), want)
    assert manifest["next_order_days"] == [7, 45]
    for bad in ((), (0, 30), (30, 14), (14, 14, 30), (-7,)):
        with pytest.raises(ValueError, match="next_order_days"):
            FeatureConfig(next_order_days=bad)
