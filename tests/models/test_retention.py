"""Retention analytics (models.retention): exact numbers on a five-customer shop whose every figure can be
checked by hand, the as-of boundary, unobserved months, UTC handling, segments and NPS, figures and HTML.

The shop (as of 2024-04-15 00:00 UTC; amounts in brackets, channel after the slash):

- A: 2024-01-05 10:00 [50]/web, 2024-01-05 18:00 [10]/web (same day), 2024-02-10 [40]/app, 2024-04-01 [30]/app
- B: 2024-01-20 [100]/store, 2024-03-03 [20]/no channel
- C: 2024-02-01 [60]/no channel
- D: 2024-02-15 [25]/app, 2024-02-16 [25]/web, 2024-04-10 [20]/web
- E: 2024-03-31 23:00 [80]/web, 2024-04-15 00:00 [999]/app (exactly as_of: never counts), 2024-05-01 [5]/app
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.models.report import Figure, Section, render_page
from churn_pipeline.models.retention import (
    OTHER,
    UNKNOWN,
    RetentionViews,
    cohort_curve,
    cohort_retention,
    main_order_channel,
    repeat_purchase_rate,
    retention_by_period,
    retention_figures,
    retention_section,
    retention_section_html,
    retention_views,
    segment_table,
)

AS_OF = "2024-04-15"
ORDERS = [
    ("A", "2024-01-05 10:00", 50.0, "web"),
    ("A", "2024-01-05 18:00", 10.0, "web"),
    ("A", "2024-02-10 00:00", 40.0, "app"),
    ("A", "2024-04-01 00:00", 30.0, "app"),
    ("B", "2024-01-20 00:00", 100.0, "store"),
    ("B", "2024-03-03 00:00", 20.0, None),
    ("C", "2024-02-01 00:00", 60.0, None),
    ("D", "2024-02-15 00:00", 25.0, "app"),
    ("D", "2024-02-16 00:00", 25.0, "web"),
    ("D", "2024-04-10 00:00", 20.0, "web"),
    ("E", "2024-03-31 23:00", 80.0, "web"),
    ("E", "2024-04-15 00:00", 999.0, "app"),
    ("E", "2024-05-01 00:00", 5.0, "app"),
]


@pytest.fixture
def orders() -> pd.DataFrame:
    frame = pd.DataFrame(ORDERS, columns=["customer_id", "order_ts", "amount", "channel"])
    frame["order_ts"] = pd.to_datetime(frame["order_ts"])
    frame.insert(1, "order_id", [f"o{i}" for i in range(len(frame))])
    return frame


@pytest.fixture
def rows() -> pd.DataFrame:
    """Five customers at one cutoff: countries (one missing, one hostile), outcomes, value, NPS."""
    return pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "E"],
            "country": ["DE", "DE", "<script>alert(1)</script>", None, "FR"],
            "risk_tier": ["low", "high", "low", "medium", "lapsed"],
            "churned": pd.array([True, False, None, True, False], dtype="boolean"),
            "monetary_value": [20.0, 60.0, 60.0, 25.0, 80.0],
            "revenue_365d": [100.0, 120.0, 60.0, 50.0, 80.0],
            "future_revenue": [0.0, 30.0, np.nan, 0.0, 10.0],
            "nps": [10.0, 9.0, 7.0, 3.0, np.nan],
        }
    )


# ------------------------------------------------------------------------------------------------ cohorts
def test_cohort_shares_by_hand_and_unobserved_months_are_nan(orders):
    cohorts = cohort_retention(orders, AS_OF, max_months=3)
    assert list(cohorts.columns) == ["cohort", "customers", "month_0", "month_1", "month_2", "month_3"]
    assert list(cohorts["cohort"]) == [
        pd.Timestamp("2024-01-01"),
        pd.Timestamp("2024-02-01"),
        pd.Timestamp("2024-03-01"),
    ]
    assert cohorts["customers"].tolist() == [2, 2, 1]  # Jan: A, B; Feb: C, D; Mar: E
    expected = np.array(
        [
            [1.0, 0.5, 0.5, np.nan],  # Feb: A; Mar: B; Apr is not over on 2024-04-15 (A's order there is unseen)
            [1.0, 0.0, np.nan, np.nan],  # Mar: nobody (a true 0, observed); Apr: not over
            [1.0, np.nan, np.nan, np.nan],
        ]
    )
    np.testing.assert_array_equal(cohorts[["month_0", "month_1", "month_2", "month_3"]].to_numpy(), expected)


def test_cohort_month_is_observed_once_it_has_ended(orders):
    cohorts = cohort_retention(orders, "2024-05-01", max_months=3)
    # April is over now: A (Jan cohort, k = 3) and D (Feb cohort, k = 2) ordered in it, and E (Mar cohort,
    # k = 1) on 04-15; May (Feb cohort, k = 3) has only begun.
    np.testing.assert_array_equal(
        cohorts[["month_1", "month_2", "month_3"]].to_numpy(),
        np.array([[0.5, 0.5, 0.5], [0.0, 0.5, np.nan], [1.0, np.nan, np.nan]]),
    )


def test_cohort_curve_weights_by_cohort_size(orders):
    curve = cohort_curve(cohort_retention(orders, AS_OF, max_months=3))
    assert curve["month"].tolist() == [0, 1, 2, 3]
    assert curve["cohorts"].tolist() == [3, 2, 1, 0]
    assert curve["customers"].tolist() == [5, 4, 2, 0]
    assert curve["retained"].tolist() == [5, 1, 1, 0]
    np.testing.assert_array_equal(curve["retention"].to_numpy(), [1.0, 0.25, 0.5, np.nan])


def test_zone_aware_timestamps_are_converted_to_utc(orders):
    # E's first order 2024-03-31 23:00 UTC is 2024-04-01 01:00 in Berlin: still a March customer in UTC.
    aware = orders.assign(order_ts=orders["order_ts"].dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin"))
    as_of = pd.Timestamp("2024-04-15 02:00", tz="Europe/Berlin")  # = 2024-04-15 00:00 UTC
    pd.testing.assert_frame_equal(cohort_retention(aware, as_of), cohort_retention(orders, AS_OF))
    pd.testing.assert_frame_equal(
        retention_by_period(aware, as_of, "month"), retention_by_period(orders, AS_OF, "month")
    )
    # Text timestamps, naive (UTC) and with an offset mixed, too.
    text = orders.assign(order_ts=orders["order_ts"].dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object))
    text.loc[10, "order_ts"] = "2024-04-01T01:00:00+02:00"
    pd.testing.assert_frame_equal(cohort_retention(text, AS_OF), cohort_retention(orders, AS_OF))


# ---------------------------------------------------------------------------------------- repeat purchases
def test_repeat_purchase_rates_by_hand(orders):
    repeat = repeat_purchase_rate(orders, AS_OF, windows=(30, 90, 365))
    assert repeat["window"].tolist() == ["any time", "within 30 days", "within 90 days", "within 365 days"]
    # Any time: A (2nd day 02-10), B (03-03), D (02-16) of all five; E's 04-15 order is at as_of.
    # 30 days: first order by 2024-03-16 (A, B, C, D), repeat within 30 days: D. 90 days: first order by
    # 2024-01-16: only A, who repeated after 35.6 days. 365 days: nobody is a year old.
    assert repeat["customers"].tolist() == [5, 4, 1, 0]
    assert repeat["repeat_customers"].tolist() == [3, 1, 1, 0]
    np.testing.assert_allclose(repeat["repeat_rate"].to_numpy(), [0.6, 0.25, 1.0, np.nan])
    gap_a = (pd.Timestamp("2024-02-10") - pd.Timestamp("2024-01-05 10:00")) / pd.Timedelta(days=1)
    np.testing.assert_allclose(repeat["median_days_to_second_order"].to_numpy(), [gap_a, 1.0, gap_a, np.nan])
    assert np.isnan(repeat["window_days"].iloc[0]) and repeat["window_days"].iloc[1:].tolist() == [30, 90, 365]


def test_default_windows_are_90_and_365_days(orders):
    repeat = repeat_purchase_rate(orders, AS_OF)
    assert repeat["window"].tolist() == ["any time", "within 90 days", "within 365 days"]


def test_a_second_order_on_the_first_day_is_no_repeat():
    same_day = pd.DataFrame(
        {
            "customer_id": ["x", "x"],
            "order_ts": pd.to_datetime(["2023-01-01 08:00", "2023-01-01 20:00"]),
            "amount": [1.0, 2.0],
        }
    )
    repeat = repeat_purchase_rate(same_day, "2024-06-01")
    assert repeat["repeat_customers"].tolist() == [0, 0, 0] and repeat["customers"].tolist() == [1, 1, 1]


# ------------------------------------------------------------------------------------------------ periods
def test_monthly_retention_by_hand(orders):
    periods = retention_by_period(orders, AS_OF, "month")
    assert periods["label"].tolist() == ["2024-01", "2024-02", "2024-03"]  # April is not over
    assert periods["period_end"].tolist() == [pd.Timestamp(d) for d in ("2024-02-01", "2024-03-01", "2024-04-01")]
    assert periods["active_customers"].tolist() == [2, 3, 2]  # Jan A B; Feb A C D; Mar B E
    assert periods["new_customers"].tolist() == [2, 2, 1]
    assert periods["returning_customers"].tolist() == [0, 1, 1]
    assert periods["previous_active"].tolist() == [0, 2, 3]
    assert periods["retained_customers"].tolist() == [0, 1, 0]  # A in Jan and Feb; nobody in Feb and Mar
    np.testing.assert_array_equal(periods["retention_rate"].to_numpy(), [np.nan, 0.5, 0.0])
    assert periods["orders"].tolist() == [3, 4, 2]
    assert periods["revenue"].tolist() == [160.0, 150.0, 100.0]
    np.testing.assert_allclose(periods["aov"].to_numpy(), [160 / 3, 37.5, 50.0])


def test_quarterly_retention_counts_orders_before_as_of_only(orders):
    periods = retention_by_period(orders, "2024-07-01")  # quarter is the default
    assert periods["label"].tolist() == ["2024-Q1", "2024-Q2"]
    assert periods["active_customers"].tolist() == [5, 3]  # Q2: A, D, E
    assert periods["new_customers"].tolist() == [5, 0]
    assert periods["retained_customers"].tolist() == [0, 3]
    np.testing.assert_array_equal(periods["retention_rate"].to_numpy(), [np.nan, 0.6])
    assert periods["orders"].tolist() == [9, 4]
    assert periods["revenue"].tolist() == [410.0, 30.0 + 20.0 + 999.0 + 5.0]
    # As of 2024-04-15 the second quarter is still running: only Q1.
    assert retention_by_period(orders, AS_OF)["label"].tolist() == ["2024-Q1"]


def test_a_month_without_orders_is_kept_and_breaks_retention():
    gap = pd.DataFrame(
        {
            "customer_id": ["x", "x", "y"],
            "order_ts": pd.to_datetime(["2024-01-10", "2024-03-10", "2024-03-11"]),
            "amount": [10.0, 20.0, 30.0],
        }
    )
    periods = retention_by_period(gap, "2024-04-01", "month")
    assert periods["label"].tolist() == ["2024-01", "2024-02", "2024-03"]
    assert periods["active_customers"].tolist() == [1, 0, 2]
    assert periods["previous_active"].tolist() == [0, 1, 0]
    np.testing.assert_array_equal(periods["retention_rate"].to_numpy(), [np.nan, 0.0, np.nan])
    assert np.isnan(periods["aov"].iloc[1]) and periods["orders"].tolist() == [1, 0, 2]


def test_an_order_at_as_of_never_counts(orders):
    first = orders["order_ts"].min()  # A's 2024-01-05 10:00
    assert cohort_retention(orders, first).empty
    assert repeat_purchase_rate(orders, first)["customers"].tolist() == [0, 0, 0]
    assert main_order_channel(orders, first).empty
    just_after = first + pd.Timedelta(microseconds=1)
    assert cohort_retention(orders, just_after)["customers"].tolist() == [1]


def test_period_argument_is_checked(orders):
    with pytest.raises(ValueError, match="period"):
        retention_by_period(orders, AS_OF, "week")
    with pytest.raises(ValueError, match="order_ts"):
        cohort_retention(orders.drop(columns="order_ts"), AS_OF)


# ------------------------------------------------------------------------------------------------ channel
def test_main_order_channel_majority_ties_alphabetical_and_as_of(orders):
    channel = main_order_channel(orders, AS_OF)
    # A: web 2, app 2 -> app (tie, alphabetical); B: store (the order without channel is ignored); C: none;
    # D: web 2 of 3; E: web (its app orders are at and after as_of).
    assert channel.to_dict() == {"A": "app", "B": "store", "D": "web", "E": "web"}
    assert channel.name == "order_channel" and channel.index.name == "customer_id"
    assert main_order_channel(orders, "2024-06-01")["E"] == "app"


def test_blank_channels_are_no_channel(orders):
    blank = orders.assign(channel=orders["channel"].where(orders["customer_id"] != "A", "  "))
    assert "A" not in main_order_channel(blank, AS_OF).index


def test_no_channel_column_gives_an_empty_series(orders):
    channel = main_order_channel(orders.drop(columns="channel"), AS_OF)
    assert channel.empty and channel.name == "order_channel" and channel.index.name == "customer_id"


# ----------------------------------------------------------------------------------------------- segments
def test_segment_table_by_hand_with_nps(rows):
    table = segment_table(rows, "country", min_customers=2)
    assert table["country"].tolist() == ["DE", UNKNOWN, "<script>alert(1)</script>", "FR", "(all customers)"]
    assert table["customers"].tolist() == [2, 1, 1, 1, 5]
    np.testing.assert_allclose(table["share"].to_numpy(), [0.4, 0.2, 0.2, 0.2, 1.0])
    assert table["churn_labelled"].tolist() == [2, 1, 0, 1, 4]
    np.testing.assert_array_equal(table["churn_rate"].to_numpy(), [0.5, 1.0, np.nan, 0.0, 0.5])
    np.testing.assert_allclose(table["mean_aov"].to_numpy(), [40.0, 25.0, 60.0, 80.0, 49.0])
    np.testing.assert_allclose(table["revenue_365d_per_customer"].to_numpy(), [110.0, 50.0, 60.0, 80.0, 82.0])
    np.testing.assert_array_equal(table["future_revenue_per_customer"].to_numpy(), [15.0, 0.0, np.nan, 10.0, 10.0])
    # NPS: DE 10 and 9 -> +100; unknown 3 -> -100; <script> 7 (passive) -> 0; FR no answer -> NaN;
    # all: 2 promoters, 1 detractor of 4 respondents -> 50 % - 25 % = +25.
    assert table["nps_respondents"].tolist() == [2, 1, 1, 0, 4]
    np.testing.assert_array_equal(table["nps"].to_numpy(), [100.0, -100.0, 0.0, np.nan, 25.0])
    assert table["small"].tolist() == [False, True, True, True, False]


def test_nps_thresholds_six_is_a_detractor_and_eight_is_passive():
    frame = pd.DataFrame({"customer_id": list("abcd"), "s": ["x"] * 4, "nps": [6.0, 8.0, 9.0, 0.0]})
    table = segment_table(frame, "s", total=False)
    assert table["nps"].tolist() == [(1 - 2) / 4 * 100]


def test_small_segments_are_flagged_by_default_below_30():
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(59)], "tier": ["big"] * 30 + ["tiny"] * 29})
    table = segment_table(frame, "tier", total=False)
    assert table["tier"].tolist() == ["big", "tiny"] and table["small"].tolist() == [False, True]
    assert table["churn_labelled"].tolist() == [0, 0] and table["churn_rate"].isna().all()  # no churned column
    assert "nps" not in table.columns and "future_revenue_per_customer" not in table.columns


def test_many_segment_values_fold_into_other():
    values = [f"v{i:02d}" for i in range(20) for _ in range(20 - i)]  # v00 x20, v01 x19, ... v19 x1
    frame = pd.DataFrame({"customer_id": range(len(values)), "shop": values})
    table = segment_table(frame, "shop", max_rows=5)
    assert table["shop"].tolist() == ["v00", "v01", "v02", "v03", OTHER, "(all customers)"]
    assert table["customers"].tolist() == [20, 19, 18, 17, sum(range(1, 17)), 210]


def test_segment_order_and_input_left_alone(rows):
    before = rows.copy()
    table = segment_table(rows, "risk_tier", order=("high", "medium", "low", "lapsed"), total=False)
    assert table["risk_tier"].tolist() == ["high", "medium", "low", "lapsed"]
    pd.testing.assert_frame_equal(rows, before)
    with pytest.raises(ValueError, match="one row per customer"):
        segment_table(pd.concat([rows, rows]), "country")


# -------------------------------------------------------------------------------- views, figures, HTML
def test_views_bundle_everything_and_leave_the_inputs_alone(orders, rows):
    orders_before, rows_before = orders.copy(), rows.copy()
    views = retention_views(orders, AS_OF, rows, period="month", max_months=3, repeat_windows=(30, 90, 365))
    assert isinstance(views, RetentionViews)
    pd.testing.assert_frame_equal(orders, orders_before)
    pd.testing.assert_frame_equal(rows, rows_before)
    assert views.customers == 5 and views.as_of == views.cutoff == pd.Timestamp(AS_OF)
    pd.testing.assert_frame_equal(views.cohorts, cohort_retention(orders, AS_OF, 3))
    pd.testing.assert_frame_equal(views.periods, retention_by_period(orders, AS_OF, "month"))
    pd.testing.assert_frame_equal(views.repeat, repeat_purchase_rate(orders, AS_OF, (30, 90, 365)))
    # loyalty_tier is not among the rows: skipped; order_channel comes from the orders.
    assert list(views.segments) == ["risk_tier", "country", "order_channel"]
    channel = views.segments["order_channel"].set_index("order_channel")["customers"]
    assert channel.to_dict() == {"web": 2, "app": 1, "store": 1, UNKNOWN: 1, "(all customers)": 5}
    assert views.segments["risk_tier"]["risk_tier"].tolist()[:4] == ["high", "medium", "low", "lapsed"]


def test_views_order_channel_at_an_earlier_cutoff(orders, rows):
    views = retention_views(orders, "2024-06-01", rows, segments=["order_channel"], cutoff=AS_OF)
    channel = views.segments["order_channel"].set_index("order_channel")["customers"]
    assert channel["web"] == 2  # D and E: E's app orders are after the cutoff
    no_channel = retention_views(orders.drop(columns="channel"), AS_OF, rows, segments=["order_channel"])
    assert no_channel.segments == {}


def _is_png(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 2000


def test_figures_render_as_png(orders, rows):
    views = retention_views(orders, AS_OF, rows, period="month")
    figures = retention_figures(views)
    assert list(figures) == ["cohort_retention", "retention_curve", "retention_rate", "repeat_purchase"]
    assert all(isinstance(f, Figure) and _is_png(f.png) and f.caption for f in figures.values())


def test_figures_render_without_any_order_before_as_of(orders):
    views = retention_views(orders, "2023-01-01")
    assert views.customers == 0 and views.cohorts.empty and views.periods.empty
    assert all(_is_png(f.png) for f in retention_figures(views).values())
    assert "Retention" in retention_section_html(views)


def test_html_fragment_escapes_data_marks_small_segments_and_embeds_images(orders, rows):
    views = retention_views(orders, AS_OF, rows, period="month")
    figures = retention_figures(views)
    fragment = retention_section_html(views, figures)
    assert fragment.startswith("<section><h2>Retention: cohorts, periods and segments</h2>")
    assert "<script>" not in fragment and "&lt;script&gt;alert(1)&lt;/script&gt;" in fragment
    assert fragment.count('src="data:image/png;base64,') == 4
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", fragment)
    # Every segment row here has fewer than 30 customers: each is greyed and says so.
    assert fragment.count('<tr class="small"') == sum(len(t) for t in views.segments.values())
    assert "small: &lt; 30 customers" in fragment
    assert ">+25<" in fragment  # the NPS of all customers, formatted like the report's numbers
    # Bare PNG bytes work too.
    assert retention_section_html(views, {k: f.png for k, f in figures.items()}).count("<figure>") == 4


def test_section_renders_in_the_report_page(orders, rows):
    views = retention_views(orders, AS_OF, rows)
    section = retention_section(views)
    assert isinstance(section, Section) and len(section.figures) == 4
    page = render_page("t", "s", [section])
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "small: &lt; 30 customers" in page and "Retention: cohorts, periods and segments" in page
