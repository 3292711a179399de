"""The synthetic shop: reproducible, in the data contract, and its generative story visible in the data.

The story tests measure what a modeller would see (orders, events), not the generator's hidden draws, and
use thresholds well inside the measured effect at these sizes but far from what a shop without the effect
would show. The past campaigns are checked against their design (eligibility, shares, costs) and their ground
truth against what a treatment-control comparison measures in the orders.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from churn_pipeline.features.contract import (
    CONTACT_GROUPS,
    EVENT_VALUE_RANGES,
    KNOWN_ACTIONS,
    KNOWN_EVENT_TYPES,
    LOYALTY_TIERS,
    TABLE_ORDER,
    TABLES,
)
from churn_pipeline.features.synthetic import TRUTH_COLUMNS, UPLIFT_COLUMNS, SyntheticShopConfig, generate_shop

CONFIG = SyntheticShopConfig(customers=20000, seed=7)
TRUTH = "campaign_truth"
END = pd.Timestamp(CONFIG.end)
START = pd.Timestamp(CONFIG.start)
ARROW_KIND = {
    "id": pa.types.is_string,
    "string": pa.types.is_string,
    "timestamp": lambda t: pa.types.is_timestamp(t) and t.unit == "us" and t.tz is None,
    "float": pa.types.is_float64,
    "int": pa.types.is_int64,
    "bool": pa.types.is_boolean,
}


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _frame(table: pa.Table) -> pd.DataFrame:
    columns = {
        name: (col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col)
        for name, col in zip(table.column_names, table.columns, strict=True)
    }
    return pa.table(columns).to_pandas()


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Table equality where NaN equals NaN (Arrow's ``equals`` says NaN != NaN)."""
    if a.schema != b.schema:
        return False
    for name in a.column_names:
        if pa.types.is_floating(a.schema.field(name).type):
            if not np.array_equal(a[name].to_numpy(), b[name].to_numpy(), equal_nan=True):
                return False
        elif not a[name].equals(b[name]):
            return False
    return True


@pytest.fixture(scope="module")
def shop() -> dict[str, pa.Table]:
    return generate_shop(CONFIG)


@pytest.fixture(scope="module")
def frames(shop: dict[str, pa.Table]) -> dict[str, pd.DataFrame]:
    return {name: _frame(table) for name, table in shop.items()}


@pytest.fixture(scope="module")
def cohort(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Customers who first ordered more than a year before the end, with an observable churn label:
    no order in the last 180 days."""
    orders = frames["orders"]
    per = orders.groupby("customer_id").agg(
        first=("order_ts", "min"), last=("order_ts", "max"), orders=("order_id", "size")
    )
    per = per.join(frames["customers"].set_index("customer_id"))
    per = per[per["first"] < END - pd.Timedelta(days=365)].copy()
    per["churned"] = per["last"] < END - pd.Timedelta(days=180)
    return per


# ---- Reproducibility and contract -------------------------------------------------------------------------


def test_same_seed_gives_identical_tables_and_another_seed_differs() -> None:
    small = SyntheticShopConfig(customers=3000, seed=11)
    first, again = generate_shop(small), generate_shop(small)
    other = generate_shop(dataclasses.replace(small, seed=12))
    for name in (*TABLE_ORDER, TRUTH):
        assert _same(first[name], again[name]), name
    for name in (*TABLE_ORDER, TRUTH):
        assert not _same(first[name], other[name]), name


def test_tables_have_exactly_the_contract_columns_and_types(shop: dict[str, pa.Table]) -> None:
    assert set(shop) == {*TABLE_ORDER, TRUTH}
    for name in TABLE_ORDER:
        table, spec = shop[name], TABLES[name]
        assert tuple(table.column_names) == spec.column_names, name
        for column in spec.columns:
            arrow_type = _value_type(table.schema.field(column.name).type)
            assert ARROW_KIND[column.kind](arrow_type), f"{name}.{column.name} is {arrow_type}"
            if not column.nullable or column.name != "value":
                assert table.column(column.name).null_count == 0, f"{name}.{column.name} has nulls"


def test_ids_are_unique_zero_padded_strings_and_references_resolve(frames: dict[str, pd.DataFrame]) -> None:
    customers, orders, returns, events = (frames[n] for n in ("customers", "orders", "returns", "events"))
    ids = customers["customer_id"]
    assert ids.is_unique and len(ids) == CONFIG.customers
    assert (ids.str.len() == len(ids.iloc[0])).all() and ids.str.fullmatch(r"\d+").all()
    assert ids.str.startswith("0").all()  # leading zeros that a numeric parse would lose
    assert ids.iloc[0] == "0000001"
    assert orders["order_id"].is_unique and orders["order_id"].str.startswith("0").any()
    known = set(ids)
    for table in (orders, returns, events):
        assert set(table["customer_id"].unique()) <= known


def test_amounts_are_cents_and_returns_refund_existing_orders_later(frames: dict[str, pd.DataFrame]) -> None:
    orders, returns = frames["orders"], frames["returns"]
    for col in ("amount", "discount_amount"):
        values = orders[col].to_numpy()
        assert (values >= 0).all()
        assert np.allclose(values * 100, np.round(values * 100), atol=1e-6)
    assert (orders["amount"] > 0).all() and (orders["items"] >= 1).all()
    assert 0.1 < (orders["discount_amount"] > 0).mean() < 0.3
    assert set(orders["channel"]) == {"web", "app", "store"}

    assert 0.03 < len(returns) / len(orders) < 0.15
    joined = returns.merge(orders, on="order_id", how="left", suffixes=("", "_order"), validate="many_to_one")
    assert joined["order_ts"].notna().all(), "every return refers to an existing order"
    assert (joined["customer_id"] == joined["customer_id_order"]).all()
    assert (joined["return_ts"] > joined["order_ts"]).all()
    assert (joined["return_ts"] - joined["order_ts"] < pd.Timedelta(days=60)).all()
    assert (joined["amount"] > 0).all() and (joined["amount"] <= joined["amount_order"]).all()
    assert np.allclose(returns["amount"] * 100, np.round(returns["amount"] * 100), atol=1e-6)


def test_everything_happens_inside_the_window_and_after_signup(frames: dict[str, pd.DataFrame]) -> None:
    signup = frames["customers"].set_index("customer_id")["signup_ts"]
    assert signup.max() < END
    for name, ts in (
        ("orders", "order_ts"),
        ("returns", "return_ts"),
        ("events", "event_ts"),
        ("contacts", "contact_ts"),
    ):
        table = frames[name]
        assert table[ts].min() >= START and table[ts].max() < END, name
        assert (table[ts].to_numpy() >= signup.reindex(table["customer_id"]).to_numpy()).all(), name


def test_event_types_and_values_follow_the_contract(frames: dict[str, pd.DataFrame]) -> None:
    events = frames["events"]
    assert set(events["event_type"].unique()) == set(KNOWN_EVENT_TYPES)
    valued = events["event_type"].isin(list(EVENT_VALUE_RANGES))
    assert events.loc[~valued, "value"].isna().all()
    for event_type, (low, high) in EVENT_VALUE_RANGES.items():
        values = events.loc[events["event_type"] == event_type, "value"]
        assert values.notna().all() and values.between(low, high).all(), event_type
    for event_type in ("review", "nps", "loyalty_tier_change", "loyalty_points_earned"):
        values = events.loc[events["event_type"] == event_type, "value"]
        assert (values == np.round(values)).all(), event_type
    assert set(events.loc[events["event_type"] == "review", "value"]) == {1, 2, 3, 4, 5}
    assert events.loc[events["event_type"] == "nps", "value"].nunique() == 11
    # Rows are grouped by customer and in time order within each customer.
    assert events["customer_id"].is_monotonic_increasing
    assert (events.groupby("customer_id", sort=False)["event_ts"].diff().dropna() >= pd.Timedelta(0)).all()


def test_loyalty_points_tiers_and_coupons_tie_to_orders(frames: dict[str, pd.DataFrame]) -> None:
    orders, events, customers = frames["orders"], frames["events"], frames["customers"]
    points = events[events["event_type"] == "loyalty_points_earned"].merge(
        orders, left_on=["customer_id", "event_ts"], right_on=["customer_id", "order_ts"], how="left"
    )
    assert points["order_id"].notna().all(), "points are earned with an order"
    assert (points["value"] >= np.floor(points["amount"]) - 1).all()
    assert (points["value"] <= np.floor(1.5 * points["amount"])).all()

    by_customer = events.pivot_table(index="customer_id", columns="event_type", values="value", aggfunc="sum")
    redeemed = by_customer["loyalty_points_redeemed"].dropna()
    assert (redeemed <= by_customer.loc[redeemed.index, "loyalty_points_earned"]).all()

    tiers = events[events["event_type"] == "loyalty_tier_change"].groupby("customer_id")["value"].max()
    tier_level = {tier: i for i, tier in enumerate(LOYALTY_TIERS)}
    level = customers.set_index("customer_id")["loyalty_tier"].map(tier_level)
    assert (level.reindex(tiers.index) == tiers).all(), "export tier is the last tier reached"
    assert set(level[level > 0].index) == set(tiers.index)
    assert 0.15 < (level > 0).mean() < 0.35

    coupons = events[events["event_type"] == "coupon_redeemed"].merge(
        orders, left_on=["customer_id", "event_ts"], right_on=["customer_id", "order_ts"], how="left"
    )
    assert (coupons["value"] == coupons["discount_amount"]).all() and (coupons["value"] > 0).all()


def test_invalid_configs_are_refused_with_the_knob_named() -> None:
    with pytest.raises(ValueError, match="customers"):
        SyntheticShopConfig(customers=0)
    with pytest.raises(ValueError, match="return_prob"):
        SyntheticShopConfig(return_prob=1.5)
    with pytest.raises(ValueError, match="tier_thresholds"):
        SyntheticShopConfig(tier_thresholds=(1500.0, 500.0))
    with pytest.raises(ValueError, match="end"):
        SyntheticShopConfig(start="2024-01-01", end="2023-01-01")
    with pytest.raises(ValueError, match="ISO"):
        SyntheticShopConfig(start="yesterday")
    with pytest.raises(ValueError, match="campaigns"):
        SyntheticShopConfig(campaigns=-1)
    with pytest.raises(ValueError, match="campaign_share"):
        SyntheticShopConfig(campaign_share=1.2)
    with pytest.raises(ValueError, match="campaign_cooldown_days"):
        SyntheticShopConfig(campaign_cooldown_days=90.0)
    with pytest.raises(ValueError, match="coupon_hazard_ratio"):
        SyntheticShopConfig(coupon_hazard_ratio=0.0)
    with pytest.raises(ValueError, match="outreach_cost"):
        SyntheticShopConfig(outreach_cost=-1.0)


def test_tiny_shops_still_produce_contract_tables() -> None:
    for config in (
        SyntheticShopConfig(customers=1, seed=1),
        SyntheticShopConfig(customers=50, start="2024-03-01", end="2024-03-15", email_opt_in_share=0.0),
    ):
        tables = generate_shop(config)
        for name in TABLE_ORDER:
            assert tuple(tables[name].column_names) == TABLES[name].column_names
        assert tuple(tables[TRUTH].column_names) == TRUTH_COLUMNS
        assert tables[TRUTH].num_rows == tables["contacts"].num_rows


# ---- The generative story, measured in the data -----------------------------------------------------------


def test_customers_arrive_over_time_and_most_signups_order(frames: dict[str, pd.DataFrame]) -> None:
    customers = frames["customers"]
    per_year = customers["signup_ts"].dt.year.value_counts()
    assert (customers["signup_ts"] < START).mean() > 0.15, "a base of customers was there before the window"
    assert per_year[2023] * 1.2 < per_year[2024] and per_year[2024] * 1.2 < per_year[2025], "arrivals grow"
    in_window = customers[customers["signup_ts"] >= START]
    never = ~in_window["customer_id"].isin(frames["orders"]["customer_id"])
    assert 0.08 < never.mean() < 0.18
    first = frames["orders"].groupby("customer_id")["order_ts"].min()
    delay = first.reindex(in_window["customer_id"]).dropna() - in_window.set_index("customer_id")["signup_ts"]
    assert (delay.dropna() >= pd.Timedelta(0)).all() and delay.median() < pd.Timedelta(days=2)


def test_loyalty_members_churn_less(cohort: pd.DataFrame) -> None:
    member = cohort["loyalty_tier"] != "none"
    assert member.sum() > 500 and (~member).sum() > 500
    assert cohort.loc[member, "churned"].mean() < cohort.loc[~member, "churned"].mean() - 0.06


def test_spend_is_heavy_tailed_and_the_knobs_control_it(frames: dict[str, pd.DataFrame]) -> None:
    def top_decile_share(orders: pd.DataFrame) -> float:
        revenue = np.sort(orders.groupby("customer_id")["amount"].sum().to_numpy())[::-1]
        return revenue[: len(revenue) // 10].sum() / revenue.sum()

    share = top_decile_share(frames["orders"])
    assert share > 0.4
    flat = SyntheticShopConfig(customers=5000, seed=3, spend_sigma=0.0, purchase_rate_shape=100.0, hazard_shape=100.0)
    assert top_decile_share(_frame(generate_shop(flat)["orders"])) < share - 0.12


def test_orders_peak_in_november_december_and_differ_by_weekday(frames: dict[str, pd.DataFrame]) -> None:
    daily = frames["orders"].set_index("order_ts").resample("D").size()
    for year in (2023, 2024, 2025):
        days = daily[daily.index.year == year]
        nov_dec = days[days.index.month >= 11].mean()
        assert nov_dec > 1.25 * days.mean(), year
        # Against the neighbouring months too, so customer-base growth cannot explain it.
        assert nov_dec > 1.3 * days[days.index.month.isin([9, 10])].mean(), year
    by_weekday = frames["orders"]["order_ts"].dt.day_of_week.value_counts()
    assert by_weekday[6] > 1.25 * by_weekday[5], "Sunday above Saturday"
    sessions = frames["events"].loc[frames["events"]["event_type"] == "session", "event_ts"]
    session_weekday = sessions.dt.day_of_week.value_counts()
    assert session_weekday[6] > 1.2 * session_weekday[5]
    session_months = sessions.dt.month.value_counts()
    assert session_months[12] > 1.3 * session_months[10]


def test_dissatisfied_customers_churn_more(frames: dict[str, pd.DataFrame], cohort: pd.DataFrame) -> None:
    events = frames["events"]
    nps = events[events["event_type"] == "nps"].groupby("customer_id")["value"].mean().reindex(cohort.index)
    detractors, promoters = cohort[nps <= 6], cohort[nps >= 9]
    assert len(detractors) > 300 and len(promoters) > 300
    assert detractors["churned"].mean() > promoters["churned"].mean() + 0.07
    tickets = events[events["event_type"] == "support_ticket"].groupby("customer_id").size()
    tickets = tickets.reindex(cohort.index, fill_value=0)
    per_order = tickets.groupby(cohort["churned"]).sum() / cohort.groupby("churned")["orders"].sum()
    assert per_order[True] > 1.15 * per_order[False]
    # Returns are a symptom of the same dissatisfaction: detractors return more of their orders.
    returned = frames["returns"].groupby("customer_id").size().reindex(cohort.index, fill_value=0)
    assert (returned[nps <= 6].sum() / detractors["orders"].sum()) > 1.5 * (
        returned[nps >= 9].sum() / promoters["orders"].sum()
    )


def test_engagement_fades_before_churned_customers_stop_ordering(
    frames: dict[str, pd.DataFrame], cohort: pd.DataFrame
) -> None:
    window = pd.Timedelta(days=60)
    churned = cohort[cohort["churned"] & (cohort["last"] - cohort["first"] > pd.Timedelta(days=240))]
    assert len(churned) > 1000
    events = frames["events"]
    mine = events[events["customer_id"].isin(churned.index)]
    engaged = mine[mine["event_type"].isin(["session", "email_open"])]
    engaged = engaged.join(churned[["first", "last"]], on="customer_id")
    late = (engaged["event_ts"] >= engaged["last"] - window) & (engaged["event_ts"] < engaged["last"])
    early = (engaged["event_ts"] >= engaged["first"]) & (engaged["event_ts"] < engaged["last"] - window)
    late_rate = late.sum() / (len(churned) * window.days)
    early_days = ((churned["last"] - churned["first"]) - window).dt.days.sum()
    early_rate = early.sum() / early_days
    assert late_rate < 0.85 * early_rate

    # After they stop ordering, churned customers still get mail but hardly open it.
    mail = mine[mine["event_type"].isin(["email_sent", "email_open"])]
    mail = mail.join(churned[["last"]], on="customer_id")
    after = mail[mail["event_ts"] > mail["last"] + pd.Timedelta(days=120)]["event_type"].value_counts()
    before = mail[mail["event_ts"] < mail["last"] - window]["event_type"].value_counts()
    assert after["email_sent"] > 1000
    assert after["email_open"] / after["email_sent"] < 0.5 * before["email_open"] / before["email_sent"]


def test_fallback_sort_for_huge_shops_gives_the_same_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    small = SyntheticShopConfig(customers=2000, seed=5)
    packed = generate_shop(small)
    monkeypatch.setattr("churn_pipeline.features.synthetic._fits_key", lambda largest: False)
    fallback = generate_shop(small)
    for name in (*TABLE_ORDER, TRUTH):
        assert _same(packed[name], fallback[name]), name


# ---- Past campaigns: contacts and their ground truth --------------------------------------------------------

DAY = pd.Timedelta(days=1)
ACTION_COST = {
    "winback_email_coupon": CONFIG.coupon_cost,
    "loyalty_points_boost": CONFIG.loyalty_boost_cost,
    "personal_outreach": CONFIG.outreach_cost,
    "cross_sell_upsell": CONFIG.cross_sell_cost,
}
ACTION_CHANNEL = {
    "winback_email_coupon": "email",
    "loyalty_points_boost": "email",
    "personal_outreach": "phone",
    "cross_sell_upsell": "email",
}
# Big enough for a treatment-control comparison per action (about 2,000 customers per arm), seconds to build.
LARGE = SyntheticShopConfig(customers=30000, seed=3)


def _outcomes(orders: pd.DataFrame, returns: pd.DataFrame, contacts: pd.DataFrame, days: int) -> pd.DataFrame:
    """Per contact, what the orders show in [contact_ts, contact_ts + days): any order, and the net revenue
    (order amounts less their refunds)."""
    refunds = returns.groupby("order_id")["amount"].sum()
    net = (orders["amount"] - orders["order_id"].map(refunds).fillna(0.0)).to_numpy()
    ms = 10**13  # packed key: customer number, then milliseconds since the epoch
    key = orders["customer_id"].astype(np.int64).to_numpy() * ms + orders["order_ts"].to_numpy().astype(
        "datetime64[ms]"
    ).astype(np.int64)
    by_key = np.argsort(key)
    key, total = key[by_key], np.concatenate(([0.0], np.cumsum(net[by_key])))
    start = contacts["customer_id"].astype(np.int64).to_numpy() * ms + contacts["contact_ts"].to_numpy().astype(
        "datetime64[ms]"
    ).astype(np.int64)
    lo, hi = np.searchsorted(key, start), np.searchsorted(key, start + days * 86_400_000)
    return pd.DataFrame({"retained": (hi > lo).astype(float), "revenue": total[hi] - total[lo]}, index=contacts.index)


@pytest.fixture(scope="module")
def large() -> dict[str, pd.DataFrame]:
    return {name: _frame(table) for name, table in generate_shop(LARGE).items()}


def test_campaigns_follow_their_schedule_channels_and_costs(frames: dict[str, pd.DataFrame]) -> None:
    contacts = frames["contacts"]
    campaigns = contacts.groupby("campaign_id").agg(
        action=("action", "first"),
        actions=("action", "nunique"),
        first=("contact_ts", "min"),
        last=("contact_ts", "max"),
    )
    assert len(campaigns) == CONFIG.campaigns == 8 and (campaigns["actions"] == 1).all()
    assert campaigns["action"].value_counts().to_dict() == dict.fromkeys(ACTION_COST, 2)
    assert set(contacts["action"]) <= set(KNOWN_ACTIONS) and set(contacts["group"]) == set(CONTACT_GROUPS)
    # One early and one later campaign per action, from spring 2024 to early summer 2025; a 180-day follow-up
    # of the last one ends inside the window.
    assert campaigns["first"].min() >= pd.Timestamp("2024-03-01") and campaigns["last"].max() < END - 180 * DAY
    assert (campaigns.groupby("action")["first"].agg(lambda ts: ts.max() - ts.min()) > 180 * DAY).all()
    for campaign_id, row in campaigns.iterrows():
        assert campaign_id == f"{row['first']:%Y-%m}-{row['action']}"
    # Sent between 09:00 and 11:00 UTC on the campaign day.
    hour = contacts["contact_ts"].dt.hour + contacts["contact_ts"].dt.minute / 60
    assert hour.between(9.0, 11.0).all()
    assert (contacts.groupby("campaign_id")["contact_ts"].agg(lambda ts: ts.dt.date.nunique()) == 1).all()

    assert (contacts["channel"] == contacts["action"].map(ACTION_CHANNEL)).all()
    treated = contacts["group"] == "treatment"
    assert (contacts.loc[~treated, "cost"] == 0.0).all()
    assert (contacts.loc[treated, "cost"] == contacts.loc[treated, "action"].map(ACTION_COST)).all()
    assert (contacts.loc[treated, "cost"] > 0).all()


def test_each_campaign_contacts_a_share_of_the_eligible_customers_split_at_random(
    frames: dict[str, pd.DataFrame],
) -> None:
    contacts, orders = frames["contacts"], frames["orders"]
    first_order = orders.groupby("customer_id")["order_ts"].min()
    sizes = contacts.pivot_table(index="campaign_id", columns="group", values="customer_id", aggfunc="size")
    for campaign_id, campaign in contacts.groupby("campaign_id"):
        send = campaign["contact_ts"].min().normalize() + pd.Timedelta(hours=9)
        earlier = contacts[(contacts["contact_ts"] < send) & (contacts["contact_ts"] > send - 365 * DAY)]
        eligible = first_order[first_order < send].index.difference(earlier["customer_id"])
        assert abs(len(campaign) - CONFIG.campaign_share * len(eligible)) <= 1, campaign_id
        assert set(campaign["customer_id"]) <= set(eligible), campaign_id
    assert (abs(sizes["treatment"] - sizes["control"]) <= 1).all()
    assert (sizes.sum(axis=1) > 800).all(), "every campaign is big enough to compare its arms"
    # Randomised: the arms look alike before the contact.
    history = orders.merge(contacts, on="customer_id")
    history = history[history["order_ts"] < history["contact_ts"]]
    per_arm = history.groupby("group").size() / contacts.groupby("group").size()
    assert abs(per_arm["treatment"] / per_arm["control"] - 1) < 0.1


def test_nobody_is_contacted_twice_within_a_year_and_every_contact_had_ordered(
    frames: dict[str, pd.DataFrame],
) -> None:
    contacts, orders = frames["contacts"], frames["orders"]
    gaps = contacts.sort_values("contact_ts").groupby("customer_id")["contact_ts"].diff().dropna()
    assert len(gaps) > 0 and (gaps > 364 * DAY).all()
    assert not contacts.duplicated(["customer_id", "campaign_id"]).any()
    first_order = orders.groupby("customer_id")["order_ts"].min()
    assert (first_order.reindex(contacts["customer_id"]).to_numpy() < contacts["contact_ts"].to_numpy()).all()


def test_without_campaigns_the_shop_is_the_one_before_them() -> None:
    plain = SyntheticShopConfig(customers=3000, seed=11, campaigns=0)
    tables = generate_shop(plain)
    assert tables["contacts"].num_rows == 0 and tables[TRUTH].num_rows == 0
    assert tuple(tables["contacts"].column_names) == TABLES["contacts"].column_names
    assert tuple(tables[TRUTH].column_names) == TRUTH_COLUMNS
    # Without price sensitivity either, every table is bit for bit the shop of before both existed (these
    # figures are that generator's at this config).
    before = generate_shop(dataclasses.replace(plain, price_sensitivity_discount=0.0))
    assert {name: before[name].num_rows for name in ("orders", "returns", "events")} == {
        "orders": 10526,
        "returns": 907,
        "events": 120135,
    }
    assert round(float(np.sum(before["orders"]["amount"].to_numpy())), 2) == 601342.86
    assert round(float(np.sum(before["returns"]["amount"].to_numpy())), 2) == 43837.72
    assert round(float(np.nansum(before["events"]["value"].to_numpy())), 2) == 313557.19


def test_campaigns_change_only_what_comes_after_them(frames: dict[str, pd.DataFrame]) -> None:
    without = _frame(generate_shop(dataclasses.replace(CONFIG, campaigns=0))["orders"])
    first_contact = frames["contacts"]["contact_ts"].min()
    columns = ["customer_id", "order_ts"]

    def before(orders: pd.DataFrame) -> pd.DataFrame:
        return orders.loc[orders["order_ts"] < first_contact, columns].sort_values(columns).reset_index(drop=True)

    pd.testing.assert_frame_equal(before(frames["orders"]), before(without))
    assert len(frames["orders"]) != len(without)


def test_price_sensitive_customers_get_more_discounts(frames: dict[str, pd.DataFrame]) -> None:
    trait = frames[TRUTH].groupby("customer_id")["price_sensitivity"].first()
    orders = frames["orders"][frames["orders"]["customer_id"].isin(trait.index)]
    share = (orders["discount_amount"] > 0).groupby(orders["customer_id"]).mean()
    sensitive, insensitive = share[trait.reindex(share.index) > 1.0], share[trait.reindex(share.index) < -1.0]
    assert len(sensitive) > 300 and len(insensitive) > 300
    assert sensitive.mean() > 2.5 * insensitive.mean()


def test_the_truth_has_one_row_per_contact_and_no_effect_on_customers_gone(frames: dict[str, pd.DataFrame]) -> None:
    truth, contacts = frames[TRUTH], frames["contacts"]
    assert tuple(truth.columns) == TRUTH_COLUMNS
    keys = ["customer_id", "campaign_id", "action", "group", "contact_ts"]
    pd.testing.assert_frame_equal(truth[keys], contacts[keys])
    assert truth[list(TRUTH_COLUMNS[5:])].notna().all().all()
    gone = ~truth["alive_at_contact"]
    assert 0.1 < gone.mean() < 0.5, "campaigns reach lapsed customers too"
    assert (truth["alive_at_contact"] == (truth["days_to_dropout"] > 0)).all()
    assert (truth.loc[gone, list(UPLIFT_COLUMNS)] == 0).all().all()
    assert (truth.loc[gone, "hazard_ratio"] == 1).all() and (
        truth.loc[gone, ["order_lift", "spend_lift"]] == 0
    ).all().all()
    assert truth["true_uplift_retention_90d"].between(-1, 1).all()
    by_action = truth[~gone].groupby("action")
    assert by_action["hazard_ratio"].min()["winback_email_coupon"] < 0.4
    assert by_action["hazard_ratio"].max()["cross_sell_upsell"] > 1.05
    assert 0.15 < by_action["spend_lift"].max()["cross_sell_upsell"] <= CONFIG.cross_sell_spend_lift
    # Both arms carry the truth: it is what the action does (or would do), whoever got it.
    arms = truth.pivot_table(index="action", columns="group", values="true_uplift_retention_90d", aggfunc="mean")
    assert (abs(arms["treatment"] - arms["control"]) < 0.02).all()


def test_the_coupon_works_on_price_sensitive_customers_who_are_drifting_away(frames: dict[str, pd.DataFrame]) -> None:
    truth = frames[TRUTH]
    coupon = truth[truth["action"] == "winback_email_coupon"]
    drifting = (coupon["days_to_dropout"] > 0) & (coupon["days_to_dropout"] < CONFIG.engagement_fade_days)
    target = drifting & (coupon["price_sensitivity"] > 0.5)
    settled = (coupon["days_to_dropout"] > 2 * CONFIG.engagement_fade_days) & (coupon["price_sensitivity"] < 0)
    assert target.sum() > 30 and settled.sum() > 300
    effect = coupon["true_uplift_retention_90d"]
    assert effect[target].mean() > 0.2
    assert effect[target].mean() > 5 * effect[~target].mean()
    assert effect[settled].mean() < 0.02, "loyal customers far from dropping out hardly react: the coupon is wasted"
    # Outreach works on high-value customers, cross-selling lifts the spend of frequent buyers.
    spend = frames["orders"].groupby("customer_id")["amount"].mean()
    outreach = truth[(truth["action"] == "personal_outreach") & truth["alive_at_contact"]]
    value = spend.reindex(outreach["customer_id"]).to_numpy()
    top, bottom = value > np.nanquantile(value, 0.9), value < np.nanquantile(value, 0.5)
    assert outreach["hazard_ratio"][top].mean() < outreach["hazard_ratio"][bottom].mean() - 0.15


@pytest.mark.parametrize(
    "action", ["winback_email_coupon", "loyalty_points_boost", "personal_outreach", "cross_sell_upsell"]
)
def test_treatment_minus_control_in_the_orders_matches_the_true_uplift(
    large: dict[str, pd.DataFrame], action: str
) -> None:
    """The randomised comparison an analyst would run agrees with the truth: 90-day retention within its 95 %
    normal-approximation interval; the 180-day and the (heavy-tailed) revenue outcomes, three more comparisons
    per action, within three standard errors, so that twelve extra checks do not fail by chance."""
    truth = large[TRUTH]
    mine = truth[truth["action"] == action]
    treated = (mine["group"] == "treatment").to_numpy()
    for days in (90, 180):
        observed = _outcomes(large["orders"], large["returns"], mine, days)
        for outcome, column in (("retained", "retention"), ("revenue", "revenue")):
            y = observed[outcome].to_numpy()
            diff = y[treated].mean() - y[~treated].mean()
            se = np.sqrt(y[treated].var(ddof=1) / treated.sum() + y[~treated].var(ddof=1) / (~treated).sum())
            true = mine[f"true_uplift_{column}_{days}d"].mean()
            z = 1.96 if (column, days) == ("retention", 90) else 3.0
            assert abs(diff - true) < z * se, f"{column} {days}d: observed {diff:.4f} ± {z * se:.4f}, true {true:.4f}"
            if (column, days) == ("retention", 90):
                retention_se = se
    # The retention effects of three actions are big enough to see at this size; cross-selling works on spend.
    true = mine["true_uplift_retention_90d"].mean()
    if action == "cross_sell_upsell":
        assert abs(true) < 0.01 and mine["true_uplift_revenue_90d"].mean() > 2.0
    else:
        assert true > 2.5 * retention_se
