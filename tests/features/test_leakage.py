"""Leakage tests: data at or after the cutoff ``C`` must not move any feature at ``C``.

Start from a small synthetic shop, build the panel at three cutoffs (the month before ``C``, ``C`` and the month
after, so the multi-cutoff slot arithmetic is exercised), then edit, delete and add rows at or after ``C`` in
the tables one feature family reads. Every feature at the cutoffs up to ``C`` must stay exactly equal (NaN
positions included) and the eligible rows must stay the same. Added rows always include some at exactly ``C``
(00:00), so an engine that compared with ``<=`` instead of ``<`` fails; each test also shows, as a control, that
the same rows one microsecond earlier do change the family's features, so the edits are ones the features see.

Labels at ``C`` read ``[C, C + h)``: they move with order/refund edits inside the horizon and stay put when only
rows at or after ``C + h`` change. The next-order labels read orders in ``[C, C + e)`` for the grid's edges ``e``
(here up to 180 days, past the CLV horizon): nothing at or after ``C + 180`` moves any label. Order channels
(``orders.channel``) are features too: editing them at or after ``C`` moves nothing.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from churn_pipeline.features.build import LABELS, FeatureConfig, build_feature_table
from churn_pipeline.features.contract import KNOWN_EVENT_TYPES
from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop

T = pd.Timestamp
US = pd.Timedelta(microseconds=1)
DAY = pd.Timedelta(days=1)
NO_SHIFT = pd.Timedelta(0)
C = T("2025-03-01")
CUTOFFS = [T("2025-02-01"), C, T("2025-04-01")]
END = T("2026-01-01")  # the synthetic shop's export window ends 2026-01-01
CONFIG = FeatureConfig(windows_days=(30, 90, 180, 365), churn_horizon_days=60, clv_horizon_days=120)
H_CHURN = C + pd.Timedelta(days=CONFIG.churn_horizon_days)
H_CLV = C + pd.Timedelta(days=CONFIG.clv_horizon_days)
# The last day any label at C reads before: the CLV horizon or the next-order grid's last edge (180).
H_LAST = C + pd.Timedelta(days=max(CONFIG.clv_horizon_days, *CONFIG.next_order_days))
# The next-order follow-up depends on C and the end of the data only, never on the rows.
MOVABLE_LABELS = [n for n in LABELS if n != "next_order_followup_days"]
CHANNEL_FEATURES = ["web_order_share", "app_order_share", "store_order_share"]
KEYS = ["customer_id", "cutoff"]
TS = {"orders": "order_ts", "returns": "return_ts", "events": "event_ts", "customers": "signup_ts"}

ENGAGEMENT_TYPES = ("session", "page_view", "add_to_cart", "email_sent", "email_open", "email_click", "unsubscribe")
EXPERIENCE_TYPES = ("support_ticket", "review", "nps")
LOYALTY_TYPES = ("loyalty_points_earned", "loyalty_points_redeemed", "loyalty_tier_change", "coupon_redeemed")
UNKNOWN_TYPE = "wishlist_add"  # a shop's own event type: counted as other_events (engagement)
GUESTS = 5  # eligible customers whose account (signup_ts) is created only after C: guest checkout first


def _plain(table: pa.Table) -> pd.DataFrame:
    """Dictionary-encoded columns as plain strings: the validated contract's types."""
    columns = {
        name: col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col
        for name, col in zip(table.column_names, table.columns, strict=True)
    }
    return pa.table(columns).to_pandas()


@pytest.fixture(scope="module")
def base_shop() -> dict[str, pd.DataFrame]:
    shop = {name: _plain(t) for name, t in generate_shop(SyntheticShopConfig(customers=2000, seed=7)).items()}
    rng = np.random.default_rng(11)
    # A type the contract does not name, before and after C, so other_events_* exist and are tested too.
    n = 3000
    extra = pd.DataFrame(
        {
            "customer_id": rng.choice(shop["customers"]["customer_id"].to_numpy(), n),
            "event_ts": (T("2023-01-01") + pd.to_timedelta(rng.integers(0, 1095 * 86_400, n), unit="s")).astype(
                "datetime64[us]"
            ),
            "event_type": UNKNOWN_TYPE,
            "value": np.nan,
        }
    )
    shop["events"] = concat(shop["events"], extra)
    # A few customers eligible at C whose account is created only after C (an order before signup is allowed by
    # the contract's grace period and happens with guest checkouts): signup_age_days is unknown, NaN, at C.
    orders = shop["orders"]
    before = orders[orders["order_ts"] < C].groupby("customer_id")["order_ts"].max()
    guests = sorted(before[before > C - pd.Timedelta(days=20)].index)[:GUESTS]
    customers = shop["customers"]
    customers.loc[customers["customer_id"].isin(guests), "signup_ts"] = C + pd.Timedelta(days=3, hours=5)
    shop["guests"] = pd.DataFrame({"customer_id": guests})
    return shop


def copy(shop: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {name: frame.copy() for name, frame in shop.items()}


def concat(frame: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows[list(frame.columns)].astype(frame.dtypes.to_dict())
    return pd.concat([frame, rows], ignore_index=True)


def build(shop: dict[str, pd.DataFrame], training: bool = True) -> pd.DataFrame:
    con = duckdb.connect()
    for name in ("orders", "returns", "customers", "events"):
        if name in shop:
            con.register(f"{name}_df", shop[name])
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_df")
    table, manifest = build_feature_table(con, CUTOFFS, END, CONFIG, training=training)
    frame = table.to_pandas()
    frame.attrs["manifest"] = manifest
    return frame


@pytest.fixture(scope="module")
def base(base_shop) -> pd.DataFrame:
    return build(base_shop)


def features(frame: pd.DataFrame, family: str | None = None) -> list[str]:
    fams = frame.attrs["manifest"]["families"]
    return [c for c in frame.attrs["manifest"]["features"] if family is None or fams[c] == family]


def upto_c(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["cutoff"] <= C].reset_index(drop=True)


def at_c(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["cutoff"] == C].reset_index(drop=True)


def changed(before: pd.DataFrame, after: pd.DataFrame, columns: list[str]) -> list[str]:
    """Columns whose values differ (exact equality, NaN in the same places counts as equal)."""
    assert before[KEYS].equals(after[KEYS]), "the rows (eligible customers per cutoff) changed"
    return [c for c in columns if not before[c].equals(after[c])]


def assert_features_unchanged(base: pd.DataFrame, edited: pd.DataFrame, family: str) -> None:
    assert edited.attrs["manifest"]["features"] == base.attrs["manifest"]["features"]
    assert len(features(base, family)) >= 2, f"no {family} features to test"
    before, after = upto_c(base), upto_c(edited)
    assert changed(before, after, features(base, family)) == [], f"{family} features moved with data at >= C"
    assert changed(before, after, features(base)) == [], "features moved with data at >= C"


def eligible_at_c(base: pd.DataFrame) -> np.ndarray:
    return at_c(base)["customer_id"].to_numpy()


def orders_rows(customers, when: pd.Timestamp, amount: float, prefix: str) -> pd.DataFrame:
    customers = list(customers)
    return pd.DataFrame(
        {
            "customer_id": customers,
            "order_id": [f"{prefix}{i:06d}" for i in range(len(customers))],
            "order_ts": when,
            "amount": amount,
            "discount_amount": 4.0,
            "items": 9,
            "channel": "web",
        }
    )


def returns_rows(customers, when: pd.Timestamp, amount: float) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": list(customers), "order_id": "X", "return_ts": when, "amount": amount})


def event_rows(customers, types, when: pd.Timestamp, value: float) -> pd.DataFrame:
    customers = list(customers)
    return pd.DataFrame(
        {
            "customer_id": np.repeat(customers, len(types)),
            "event_ts": when,
            "event_type": np.tile(list(types), len(customers)),
            # a different value per type, so e.g. points earned and redeemed do not cancel out in the balance
            "value": value + np.tile(np.arange(len(types), dtype=float), len(customers)),
        }
    )


def edit_after(frame: pd.DataFrame, table: str, start: pd.Timestamp, mask=None) -> tuple[pd.Series, pd.Series]:
    """Rows at or after ``start`` (and matching ``mask``): (all of them, every other one, for deleting)."""
    late = frame[TS[table]] >= start
    if mask is not None:
        late &= mask
    drop = late & (np.arange(len(frame)) % 2 == 0)
    return late, drop


# ---- purchase (orders and returns) --------------------------------------------------------------------------


def purchase_edits(
    shop: dict[str, pd.DataFrame], eligible, start: pd.Timestamp, shift: pd.Timedelta = NO_SHIFT
) -> None:
    """Change, delete and add orders and refunds at or after ``start`` (added ones from exactly ``start``)."""
    orders, returns = shop["orders"], shop["returns"]
    late, drop = edit_after(orders, "orders", start)
    orders.loc[late, "amount"] = orders.loc[late, "amount"] * 3 + 1
    orders.loc[late, "discount_amount"] = 7.5
    orders.loc[late, "items"] = 11
    orders.loc[late, "channel"] = np.resize(np.array([" STORE", "app", None, "phone"], dtype=object), int(late.sum()))
    orders = orders[~drop]
    t0 = start + shift
    added = [orders_rows(eligible, t0, 999.0, "AT"), orders_rows(eligible, t0 + 12 * DAY, 5.0, "AFTER")]
    added.append(orders_rows(["9999999"], t0, 50.0, "NEW"))  # a brand-new customer from exactly start
    shop["orders"] = concat(orders, pd.concat(added, ignore_index=True))
    late, drop = edit_after(returns, "returns", start)
    returns.loc[late, "amount"] = returns.loc[late, "amount"] + 2.5
    returns = returns[~drop]
    shop["returns"] = concat(returns, returns_rows(eligible, t0, 1.5))


def test_purchase_features_ignore_orders_and_returns_at_or_after_c(base_shop, base):
    shop = copy(base_shop)
    purchase_edits(shop, eligible_at_c(base), C)
    edited = build(shop)
    assert_features_unchanged(base, edited, "purchase")
    # the new customer's first order is at C: not a customer at C
    assert "9999999" not in set(upto_c(edited)["customer_id"])
    # labels at C see [C, C + h): every one of them moves (but the follow-up, which no row decides)
    assert changed(at_c(base), at_c(edited), list(LABELS)) == MOVABLE_LABELS

    control = copy(base_shop)
    purchase_edits(control, eligible_at_c(base), C, shift=-US)
    after = at_c(build(control))
    assert "9999999" in set(after["customer_id"])  # one microsecond before C it is a customer at C
    after = after[after["customer_id"] != "9999999"].reset_index(drop=True)
    moved = changed(at_c(base), after, features(base, "purchase"))
    assert {"orders_total", "recency_days", "revenue_30d", "returns_total", "discount_share"} <= set(moved)
    assert set(CHANNEL_FEATURES) <= set(moved)


def test_bgnbd_features_ignore_orders_and_returns_at_or_after_c(base_shop, base):
    # BG/NBD is refitted at every cutoff on that cutoff's customers: orders at or after C must move neither the
    # fitted parameters nor any customer's quantities at C, in the training and in the scoring table.
    shop = copy(base_shop)
    purchase_edits(shop, eligible_at_c(base), C)
    assert_features_unchanged(base, build(shop), "bgnbd")
    before, after = upto_c(build(base_shop, training=False)), upto_c(build(shop, training=False))
    assert changed(before, after, features(base, "bgnbd")) == []

    control = copy(base_shop)
    purchase_edits(control, eligible_at_c(base), C, shift=-US)
    after = at_c(build(control))
    after = after[after["customer_id"] != "9999999"].reset_index(drop=True)
    assert set(changed(at_c(base), after, features(base, "bgnbd"))) == set(features(base, "bgnbd"))


def test_scoring_table_ignores_orders_and_returns_at_or_after_c(base_shop, base):
    shop = copy(base_shop)
    purchase_edits(shop, eligible_at_c(base), C)
    before, after = upto_c(build(base_shop, training=False)), upto_c(build(shop, training=False))
    assert changed(before, after, [*features(base), "is_lapsed"]) == []


def test_labels_ignore_orders_and_returns_at_or_after_the_horizon(base_shop, base):
    shop = copy(base_shop)
    purchase_edits(shop, eligible_at_c(base), H_CLV)  # CLV horizon >= churn horizon: outside both
    edited = build(shop)
    assert_features_unchanged(base, edited, "purchase")
    # ... but inside the next-order grid (to C + 180)
    assert changed(at_c(base), at_c(edited), list(LABELS)) == ["next_order_days"]
    # one microsecond earlier the same edits are inside the CLV horizon
    control = copy(base_shop)
    purchase_edits(control, eligible_at_c(base), H_CLV, shift=-US)
    moved = ["future_orders", "future_revenue", "next_order_days"]
    assert changed(at_c(base), at_c(build(control)), list(LABELS)) == moved


def test_no_label_reads_orders_and_returns_at_or_after_the_last_grid_edge(base_shop, base):
    shop = copy(base_shop)
    purchase_edits(shop, eligible_at_c(base), H_LAST)
    edited = build(shop)
    assert_features_unchanged(base, edited, "purchase")
    assert changed(at_c(base), at_c(edited), list(LABELS)) == []
    # one microsecond earlier an order is inside the last interval [C + 120, C + 180)
    control = copy(base_shop)
    purchase_edits(control, eligible_at_c(base), H_LAST, shift=-US)
    after = at_c(build(control))
    assert changed(at_c(base), after, list(LABELS)) == ["next_order_days"]
    # everyone without an order in [C, C + 180) before now has one in its last interval
    assert (after.loc[at_c(base)["next_order_days"].isna(), "next_order_days"] == 180).all()


def test_churn_label_ignores_orders_at_the_end_of_its_horizon(base_shop, base):
    churners = at_c(base).loc[at_c(base)["churned"], "customer_id"]
    assert len(churners) > 50
    shop = copy(base_shop)
    shop["orders"] = concat(shop["orders"], orders_rows(churners, H_CHURN, 10.0, "H"))
    after = at_c(build(shop))
    # C + 60 is also a next-order edge: the order is in [C + 60, C + 90)
    assert changed(at_c(base), after, list(LABELS)) == ["future_orders", "future_revenue", "next_order_days"]
    assert (after.loc[after["customer_id"].isin(churners), "next_order_days"] <= 90).all()
    shop = copy(base_shop)
    shop["orders"] = concat(shop["orders"], orders_rows(churners, H_CHURN - US, 10.0, "H"))
    after = at_c(build(shop))
    assert not after.loc[after["customer_id"].isin(churners), "churned"].any()


def test_future_revenue_is_net_of_refunds_inside_the_horizon_only(base_shop, base):
    eligible = eligible_at_c(base)
    shop = copy(base_shop)
    shop["returns"] = concat(shop["returns"], returns_rows(eligible, H_CLV - US, 2.0))
    after = at_c(build(shop))
    assert changed(at_c(base), after, list(LABELS)) == ["future_revenue"]
    assert np.allclose(after["future_revenue"], at_c(base)["future_revenue"] - 2.0)
    shop = copy(base_shop)
    shop["returns"] = concat(shop["returns"], returns_rows(eligible, H_CLV, 2.0))
    assert changed(at_c(base), at_c(build(shop)), list(LABELS)) == []


def test_channel_shares_ignore_the_channels_of_orders_at_or_after_c(base_shop, base):
    assert base_shop["orders"]["channel"].notna().all() and len(set(base_shop["orders"]["channel"])) == 3
    shop = copy(base_shop)
    orders = shop["orders"]
    late = orders["order_ts"] >= C
    # Every later order moves to another channel (or to none), spelled as exports do.
    orders.loc[late, "channel"] = np.resize(np.array(["APP ", None, "store", "kiosk"], dtype=object), int(late.sum()))
    edited = build(shop)
    assert_features_unchanged(base, edited, "purchase")
    assert changed(at_c(base), at_c(edited), list(LABELS)) == []  # labels count orders whatever their channel
    # control: the same for the orders before C moves every share
    control = copy(base_shop)
    orders = control["orders"]
    early = orders["order_ts"] < C
    orders.loc[early, "channel"] = np.resize(np.array(["APP ", None, "store", "kiosk"], dtype=object), int(early.sum()))
    assert changed(at_c(base), at_c(build(control)), features(base, "purchase")) == CHANNEL_FEATURES


# ---- events: engagement, experience, loyalty ---------------------------------------------------------------


def event_edits(shop: dict[str, pd.DataFrame], eligible, types, shift: pd.Timedelta = NO_SHIFT) -> None:
    """Change values of, delete and add events of ``types`` at or after C; added ones at exactly C and later.

    Added values are extreme (review 1, nps 0, tier 3, many points) and come at exactly C in two copies per
    type, so a ``last`` measure that peeked at C would see them whatever its tie-break.
    """
    events = shop["events"]
    late, drop = edit_after(events, "events", C, events["event_type"].isin(types))
    events.loc[late, "value"] = events.loc[late, "value"] * 2 + 1
    events = events[~drop]
    t0 = C + shift
    added = [
        event_rows(eligible, types, t0, 0.0),
        event_rows(eligible, types, t0, 1.0),
        event_rows(eligible, types, t0 + 3 * pd.Timedelta(hours=1), 3.0),
        event_rows(eligible, types, t0 + 40 * DAY, 10.0),
    ]
    shop["events"] = concat(events, pd.concat(added, ignore_index=True))


@pytest.mark.parametrize(
    ("family", "types", "moves"),
    [
        (
            "engagement",
            (*ENGAGEMENT_TYPES, UNKNOWN_TYPE),
            {
                "sessions_30d",
                "page_views_90d",
                "add_to_cart_30d",
                "email_open_rate_30d",
                "email_click_rate_365d",
                "days_since_last_session",
                "days_since_last_email_open",
                "days_since_last_email_click",
                "unsubscribes_total",
                "other_events_30d",
            },
        ),
        (
            "experience",
            EXPERIENCE_TYPES,
            {"support_tickets_total", "support_tickets_30d", "review_last", "review_avg", "nps_last", "nps_avg"},
        ),
        (
            "loyalty",
            LOYALTY_TYPES,
            {"points_earned_30d", "points_redeemed_90d", "loyalty_points_balance", "loyalty_tier_level"},
        ),
    ],
)
def test_event_features_ignore_events_at_or_after_c(base_shop, base, family, types, moves):
    shop = copy(base_shop)
    event_edits(shop, eligible_at_c(base), types)
    edited = build(shop)
    assert_features_unchanged(base, edited, family)
    assert changed(at_c(base), at_c(edited), list(LABELS)) == []  # labels read orders and refunds only

    control = copy(base_shop)
    event_edits(control, eligible_at_c(base), types, shift=-US)
    moved = set(changed(at_c(base), at_c(build(control)), features(base, family)))
    assert moves <= moved, moves - moved


def test_every_event_type_at_c_and_all_events_after_c_deleted(base_shop, base):
    shop = copy(base_shop)
    events = shop["events"]
    events = events[events["event_ts"] < C]
    every = (*KNOWN_EVENT_TYPES, UNKNOWN_TYPE, "never_seen_before")
    shop["events"] = concat(events, event_rows(eligible_at_c(base), every, C, 1.0))
    edited = build(shop)
    for family in ("engagement", "experience", "loyalty"):
        assert_features_unchanged(base, edited, family)


def test_event_type_seen_only_after_c_adds_columns_empty_at_c(base_shop, base):
    shop = copy(base_shop)
    events = shop["events"]
    shop["events"] = events[~((events["event_type"] == "nps") & (events["event_ts"] < T("2025-06-01")))]
    edited = build(shop)
    # nps exists in the data (after C), so the columns exist for every cutoff of the panel...
    nps = upto_c(edited)[["nps_last", "nps_avg"]]
    # ...but at C and before they know nothing
    assert nps.isna().all().all()
    others = [f for f in features(base) if not f.startswith("nps_")]
    assert changed(upto_c(base), upto_c(edited), others) == []


# ---- customer attributes -----------------------------------------------------------------------------------


def attribute_edits(shop: dict[str, pd.DataFrame], base: pd.DataFrame, signup: pd.Timestamp) -> None:
    customers = shop["customers"]
    # Export-time columns describe the end of the data, not C: changing them must not matter.
    customers["loyalty_tier"] = "gold"
    customers["email_opt_in"] = ~customers["email_opt_in"]
    # Customers who sign up after C (the guests among them are eligible at C) sign up at another time after C.
    late = customers["signup_ts"] > C
    customers.loc[late, "signup_ts"] = signup
    # A new customer: signs up and orders from exactly C.
    new = pd.DataFrame(
        {
            "customer_id": ["9999999"],
            "signup_ts": [C],
            "country": ["XX"],
            "acquisition_channel": ["tv"],
            "email_opt_in": [True],
            "loyalty_tier": ["none"],
        }
    )
    shop["customers"] = concat(customers, new)
    shop["orders"] = concat(shop["orders"], orders_rows(["9999999"], C, 20.0, "NEW"))
    shop["events"] = concat(shop["events"], event_rows(["9999999"], KNOWN_EVENT_TYPES, C, 1.0))


def test_attributes_ignore_signups_and_export_time_columns_after_c(base_shop, base):
    guests = base_shop["guests"]["customer_id"]
    assert len(guests) == GUESTS
    at = at_c(base)
    assert at.loc[at["customer_id"].isin(guests), "signup_age_days"].isna().all()
    shop = copy(base_shop)
    attribute_edits(shop, base, C + 30 * DAY)
    edited = build(shop)
    assert_features_unchanged(base, edited, "attributes")
    assert changed(at, at_c(edited), list(LABELS)) == []
    # control: a signup one microsecond before C is known at C
    control = copy(base_shop)
    attribute_edits(control, base, C - US)
    assert changed(at, at_c(build(control)), ["signup_age_days"]) == ["signup_age_days"]


def test_signup_exactly_at_c_is_unknown_at_c(base_shop, base):
    shop = copy(base_shop)
    customers = shop["customers"]
    customers.loc[customers["signup_ts"] > C, "signup_ts"] = C
    edited = build(shop)
    assert_features_unchanged(base, edited, "attributes")


# ---- calendar ----------------------------------------------------------------------------------------------


def test_calendar_is_the_cutoffs_and_ignores_everything_after_c(base_shop, base):
    shop = copy(base_shop)
    for table in ("orders", "returns", "events"):
        frame = shop[table]
        late = frame[TS[table]] >= C
        # Everything after C moves 75 days later (another month, another season); the first rows at exactly C.
        frame.loc[late, TS[table]] = frame.loc[late, TS[table]] + pd.Timedelta(days=75)
    shop["orders"] = concat(shop["orders"], orders_rows(eligible_at_c(base), C, 1.0, "CAL"))
    edited = build(shop)
    assert_features_unchanged(base, edited, "calendar")
    rows = upto_c(edited)
    assert (rows["cutoff_month"] == rows["cutoff"].dt.month).all()
    assert (rows["cutoff_day_of_year"] == rows["cutoff"].dt.day_of_year).all()
    assert set(rows.loc[rows["cutoff"] == C, "cutoff_month"]) == {3}
