"""Cutoff schedules and the day arithmetic of point-in-time windows (``features.cutoffs``).

Hand-checked schedules first, then hypothesis properties of the slot arithmetic the engine relies on: a row
is before window edge ``b_j`` iff its slot is ``<= j``, so a window ``[c - w, c)`` is the difference of two
running totals, and day numbers decide ``ts < c`` exactly for midnight cutoffs.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churn_pipeline.errors import DataContractError
from churn_pipeline.features.cutoffs import (
    CutoffSchedule,
    data_end,
    from_day,
    scoring_cutoff,
    slot_boundaries,
    slot_of_day,
    to_day,
    training_cutoffs,
)

T = pd.Timestamp
FIRST = T("2023-01-15 10:00")
LAST = T("2024-12-31 13:00")  # end of the data: 2025-01-01; with a 90-day horizon the latest cutoff is 2024-10-03


def days(*dates: str) -> list[pd.Timestamp]:
    return [T(d) for d in dates]


# ---- data_end, scoring_cutoff, to_day / from_day ----------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "end"),
    [
        ("2024-12-31 13:00", "2025-01-01"),
        ("2024-12-31 00:00", "2025-01-01"),  # a row at midnight still lies strictly before the end
        ("2024-12-31 23:59:59.999999", "2025-01-01"),
        ("2024-02-28 08:00", "2024-02-29"),  # leap day
    ],
)
def test_data_end_is_the_day_after_the_last_timestamp(last, end):
    assert data_end(T(last)) == T(end)


def test_scoring_cutoff_defaults_to_the_end_of_the_data():
    assert scoring_cutoff(CutoffSchedule(), LAST) == T("2025-01-01")


def test_scoring_cutoff_given_is_floored_to_its_day():
    assert scoring_cutoff(CutoffSchedule(scoring_date="2024-06-01 15:30"), LAST) == T("2024-06-01")
    assert scoring_cutoff(CutoffSchedule(scoring_date="2024-06-01"), LAST) == T("2024-06-01")


def test_an_as_of_day_given_wins_over_the_scoring_date_of_the_schedule():
    schedule = CutoffSchedule(scoring_date="2024-06-01")
    assert scoring_cutoff(schedule, LAST, as_of=T("2024-03-01"), first_ts=FIRST) == T("2024-03-01")


@pytest.mark.parametrize(
    ("schedule", "as_of", "said"),
    [
        (CutoffSchedule(), T("2023-01-15"), "--as-of 2023-01-15"),  # the first order's day: nothing before it
        (CutoffSchedule(scoring_date="2022-06-01"), None, "as-of date 2022-06-01"),
    ],
)
def test_a_scoring_cutoff_on_or_before_the_first_order_day_is_a_data_error(schedule, as_of, said):
    with pytest.raises(DataContractError, match=f"{said} is not after the first order \\(2023-01-15\\) in shop/"):
        scoring_cutoff(schedule, LAST, as_of=as_of, first_ts=FIRST, source="shop/")
    assert scoring_cutoff(schedule, LAST, as_of=as_of) <= FIRST  # checked only given the first order


@pytest.mark.parametrize(
    ("ts", "day"),
    [
        ("1970-01-01", 0),
        ("1970-01-01 23:59:59.999999", 0),
        ("1970-01-02", 1),
        ("1969-12-31 23:59", -1),  # floors, never truncates towards zero
        ("2024-07-01", (dt.date(2024, 7, 1) - dt.date(1970, 1, 1)).days),
        ("2024-07-01 18:00", (dt.date(2024, 7, 1) - dt.date(1970, 1, 1)).days),
    ],
)
def test_to_day(ts, day):
    assert to_day(T(ts)) == day
    assert to_day(ts) == day


def test_from_day_is_midnight_of_the_day():
    assert from_day(0) == T("1970-01-01")
    assert from_day(-1) == T("1969-12-31")
    assert from_day(19905) == T("2024-07-01")
    assert from_day(to_day("2024-02-29 17:45")) == T("2024-02-29")


# ---- training_cutoffs: grids -------------------------------------------------------------------------------


def test_monthly_grid_is_the_latest_month_starts_with_a_complete_horizon():
    cutoffs, messages = training_cutoffs(CutoffSchedule("monthly", 3), FIRST, LAST, 90)
    # latest allowed = 2025-01-01 - 90 days = 2024-10-03; the month starts on or before it
    assert cutoffs == days("2024-08-01", "2024-09-01", "2024-10-01")
    assert messages == []


def test_weekly_grid_is_mondays():
    cutoffs, messages = training_cutoffs(CutoffSchedule("weekly", 3), FIRST, LAST, 90)
    # 2024-10-03 is a Thursday; the Monday before it is 2024-09-30
    assert cutoffs == days("2024-09-16", "2024-09-23", "2024-09-30")
    assert all(c.weekday() == 0 for c in cutoffs)
    assert messages == []


def test_semimonthly_grid_is_the_first_and_the_fifteenth():
    cutoffs, messages = training_cutoffs(CutoffSchedule("semimonthly", 3), FIRST, LAST, 90)
    # latest allowed = 2024-10-03: the 1st or 15th on or before it
    assert cutoffs == days("2024-09-01", "2024-09-15", "2024-10-01")
    assert messages == []


def test_auto_frequency_is_resolved_by_the_split_planner_not_the_grid():
    assert CutoffSchedule().frequency == "auto"
    with pytest.raises(ValueError, match="plan_schedule"):
        training_cutoffs(CutoffSchedule(), FIRST, LAST, 90)
    # explicit dates need no grid
    cutoffs, _ = training_cutoffs(CutoffSchedule(dates=("2024-09-01",)), FIRST, LAST, 90)
    assert cutoffs == days("2024-09-01")


def test_daily_grid_ends_on_the_latest_complete_day():
    cutoffs, messages = training_cutoffs(CutoffSchedule("daily", 3), FIRST, LAST, 90)
    assert cutoffs == days("2024-10-01", "2024-10-02", "2024-10-03")
    assert messages == []


def test_a_grid_date_whose_horizon_ends_exactly_at_the_end_of_the_data_is_kept():
    # end = 2024-12-30, latest = end - 90 days = 2024-10-01, itself a month start
    cutoffs, _ = training_cutoffs(CutoffSchedule("monthly", 2), FIRST, T("2024-12-29 23:59:59.999999"), 90)
    assert cutoffs == days("2024-09-01", "2024-10-01")
    # one day less of data: 2024-10-01 + 90 days would pass the end, so the grid stops a month earlier
    cutoffs, _ = training_cutoffs(CutoffSchedule("monthly", 2), FIRST, T("2024-12-28 12:00"), 90)
    assert cutoffs == days("2024-08-01", "2024-09-01")


def test_grid_dates_before_the_data_are_dropped_with_a_message():
    cutoffs, messages = training_cutoffs(CutoffSchedule("monthly", 30), FIRST, LAST, 90)
    # 30 month starts back from 2024-10-01 reach 2022-05-01; the data starts 2023-01-15
    assert cutoffs == list(pd.date_range("2023-02-01", "2024-10-01", freq="MS"))
    assert len(messages) == 9
    assert messages[0] == "cutoff 2022-05-01 dropped: no data before it (data starts 2023-01-15)"
    assert messages[-1] == "cutoff 2023-01-01 dropped: no data before it (data starts 2023-01-15)"


# ---- training_cutoffs: explicit dates ----------------------------------------------------------------------


def test_explicit_dates_are_floored_sorted_and_deduplicated():
    schedule = CutoffSchedule(dates=("2024-06-15 13:00", "2024-03-01", "2024-06-15"))
    cutoffs, messages = training_cutoffs(schedule, FIRST, LAST, 90)
    assert cutoffs == days("2024-03-01", "2024-06-15")
    assert messages == []


def test_explicit_dates_with_an_incomplete_horizon_are_dropped_with_a_message():
    schedule = CutoffSchedule(dates=("2024-10-03", "2024-10-04", "2024-12-31"))
    cutoffs, messages = training_cutoffs(schedule, FIRST, LAST, 90)
    assert cutoffs == days("2024-10-03")  # 2024-10-03 + 90 days = 2025-01-01 = the end: complete
    assert messages == [
        "cutoff 2024-10-04 dropped: its 90-day label horizon ends after the data (2025-01-01)",
        "cutoff 2024-12-31 dropped: its 90-day label horizon ends after the data (2025-01-01)",
    ]


def test_explicit_dates_on_or_before_the_first_day_are_dropped_with_a_message():
    schedule = CutoffSchedule(dates=("2022-12-01", "2023-01-15", "2023-01-16"))
    cutoffs, messages = training_cutoffs(schedule, FIRST, LAST, 90)
    # 2023-01-15 00:00 is before the first order (10:00 that day): nobody is a customer yet
    assert cutoffs == days("2023-01-16")
    assert messages == [
        "cutoff 2022-12-01 dropped: no data before it (data starts 2023-01-15)",
        "cutoff 2023-01-15 dropped: no data before it (data starts 2023-01-15)",
    ]


def test_no_cutoff_fits_short_data():
    cutoffs, messages = training_cutoffs(CutoffSchedule("monthly", 2), T("2024-11-20"), LAST, 90)
    assert cutoffs == []
    assert len(messages) == 2


def test_schedule_rejects_bad_values():
    with pytest.raises(ValueError, match="frequency"):
        CutoffSchedule(frequency="yearly")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count"):
        CutoffSchedule(count=0)


# ---- properties of the window arithmetic -------------------------------------------------------------------

DAY = st.integers(min_value=-2_000, max_value=30_000)
OFFSET = st.integers(min_value=-800, max_value=800)


@settings(max_examples=200, deadline=None)
@given(
    cutoffs=st.lists(DAY, min_size=1, max_size=6),
    offsets=st.lists(OFFSET, min_size=1, max_size=8),
    rows=st.lists(st.integers(min_value=-4_000, max_value=32_000), min_size=1, max_size=50),
)
def test_slot_of_day_is_before_boundary_iff_slot_not_after_it(cutoffs, offsets, rows):
    bounds = slot_boundaries(np.array(cutoffs, dtype=np.int64), np.array(offsets, dtype=np.int64))
    assert set(bounds.tolist()) == {c + o for c in cutoffs for o in offsets}
    assert np.all(np.diff(bounds) > 0)
    row_days = np.array(rows, dtype=np.int64)
    slots = slot_of_day(row_days, bounds)
    assert slots.min() >= 0 and slots.max() <= len(bounds)
    for j, b in enumerate(bounds):
        assert np.array_equal(slots <= j, row_days < b), (j, b)


@settings(max_examples=200, deadline=None)
@given(
    cutoffs=st.lists(st.integers(min_value=0, max_value=2_000), min_size=1, max_size=5),
    windows=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=4, unique=True),
    horizon=st.integers(min_value=1, max_value=400),
    rows=st.lists(
        st.tuples(st.integers(min_value=-900, max_value=2_500), st.integers(min_value=-1_000, max_value=1_000)),
        max_size=60,
    ),
)
def test_window_sum_from_running_totals_equals_brute_force(cutoffs, windows, horizon, rows):
    """The engine's scheme: bucket rows into slots, cumulate per slot, subtract two running totals."""
    offsets = np.array(sorted({0, horizon, *(-w for w in windows), *(-2 * w for w in windows)}), dtype=np.int64)
    bounds = slot_boundaries(np.array(cutoffs, dtype=np.int64), offsets)
    row_days = np.array([d for d, _ in rows], dtype=np.int64)
    values = np.array([v for _, v in rows], dtype=np.int64)
    per_slot = np.zeros(len(bounds) + 1, dtype=np.int64)
    np.add.at(per_slot, slot_of_day(row_days, bounds), values)
    running = np.cumsum(per_slot)  # running[j] = total of every row strictly before bounds[j]
    j_of = {int(b): j for j, b in enumerate(bounds)}

    def before(day: int) -> int:
        return int(running[j_of[day]])

    for c in cutoffs:
        for w in windows:
            brute = sum(v for d, v in rows if c - w <= d < c)
            assert before(c) - before(c - w) == brute, (c, w)
            trend_brute = brute - sum(v for d, v in rows if c - 2 * w <= d < c - w)
            assert (before(c) - before(c - w)) - (before(c - w) - before(c - 2 * w)) == trend_brute
        assert before(c) == sum(v for d, v in rows if d < c)
        assert before(c + horizon) - before(c) == sum(v for d, v in rows if c <= d < c + horizon)


US_PER_DAY = 86_400_000_000
EPOCH_US_RANGE = st.integers(min_value=-1_000 * US_PER_DAY, max_value=25_000 * US_PER_DAY)


@settings(max_examples=300, deadline=None)
@given(ts_us=EPOCH_US_RANGE, cutoff_day=st.integers(min_value=-1_000, max_value=25_000))
def test_before_a_midnight_cutoff_iff_day_number_is_smaller(ts_us, cutoff_day):
    ts = pd.Timestamp(ts_us, unit="us")
    c = from_day(cutoff_day)
    assert to_day(c) == cutoff_day
    assert (ts < c) == (to_day(ts) < cutoff_day)
    assert (ts >= c) == (to_day(ts) >= cutoff_day)
    assert from_day(to_day(ts)) <= ts < from_day(to_day(ts) + 1)


def test_duckdb_day_numbers_agree_with_to_day():
    """The engine computes day numbers in DuckDB; they must be the same floor as ``to_day`` (pre-1970 too)."""
    rng = np.random.default_rng(3)
    us = np.concatenate(
        [
            rng.integers(-1_000 * US_PER_DAY, 25_000 * US_PER_DAY, size=2_000),
            np.array([0, -1, 1, US_PER_DAY - 1, US_PER_DAY, -US_PER_DAY, -US_PER_DAY - 1]),
        ]
    )
    frame = pd.DataFrame({"ts": pd.to_datetime(us, unit="us").astype("datetime64[us]")})
    con = duckdb.connect()
    con.register("frame", frame)
    got = con.sql("SELECT date_diff('day', DATE '1970-01-01', CAST(ts AS DATE)) AS day FROM frame").fetchnumpy()["day"]
    expected = np.array([to_day(t) for t in frame["ts"]])
    assert np.array_equal(got, expected)
    assert np.array_equal(np.floor_divide(us, US_PER_DAY), expected)
