"""Time-aware splits: train < validation < test, whole cutoffs per split, purged label horizons."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churn_pipeline.errors import DataContractError
from churn_pipeline.models.split import (
    TimeSplit,
    deployment_split,
    labelled_splits,
    plan_schedule,
    split_frame,
    time_split,
)

T = pd.Timestamp
MONTHLY = list(pd.date_range("2024-11-01", "2025-10-01", freq="MS"))  # the default 12 monthly cutoffs


def dates(*values: str) -> tuple[pd.Timestamp, ...]:
    return tuple(T(v) for v in values)


def assert_ordered_and_purged(split: TimeSplit, h: int, purge: bool = True) -> None:
    assert list(split.train) == sorted(split.train) and list(split.validation) == sorted(split.validation)
    assert len(split.test) == 1 and split.train and split.validation
    # no validation or test cutoff earlier than (or equal to) a training one
    assert max(split.train) < min(split.validation) <= max(split.validation) < split.test_cutoff
    if purge:
        horizon = pd.Timedelta(days=h)
        assert all(c + horizon <= split.validation[0] for c in split.train)
        assert all(c + horizon <= split.test_cutoff for c in split.validation)


def test_default_monthly_cutoffs_with_90_day_churn_label():
    split = time_split(MONTHLY, label_horizon_days=90, n_validation=2)
    # validation: c + 90 d <= 2025-10-01 -> latest two are June and July (Aug + 90 d = Oct 30)
    # train: c + 90 d <= 2025-06-01 -> up to March (Mar 1 + 90 d = May 30; Apr 1 + 90 d = Jun 30)
    assert split.test == dates("2025-10-01")
    assert split.validation == dates("2025-06-01", "2025-07-01")
    assert split.train == dates("2024-11-01", "2024-12-01", "2025-01-01", "2025-02-01", "2025-03-01")
    assert split.purged == dates("2025-04-01", "2025-05-01", "2025-08-01", "2025-09-01")
    assert_ordered_and_purged(split, 90)


def test_without_purge_every_cutoff_is_used():
    split = time_split(MONTHLY, 90, 2, purge=False)
    assert split.test == (MONTHLY[-1],)
    assert split.validation == tuple(MONTHLY[-3:-1])
    assert split.train == tuple(MONTHLY[:-3])
    assert split.purged == ()
    assert_ordered_and_purged(split, 90, purge=False)


def test_input_order_duplicates_and_strings_do_not_matter():
    shuffled = [str(c.date()) for c in MONTHLY[::-1]] + [MONTHLY[3]]
    assert time_split(shuffled, 90, 2) == time_split(MONTHLY, 90, 2)


def test_horizon_exactly_reaching_the_next_split_is_kept():
    cutoffs = dates("2025-01-01", "2025-01-11", "2025-01-21")
    split = time_split(cutoffs, 10, 1)  # 01-01 + 10 d = 01-11: ends exactly at the validation cutoff
    assert split.train == dates("2025-01-01") and split.validation == dates("2025-01-11")
    with pytest.raises(ValueError, match="satisfy"):
        time_split(cutoffs, 11, 1)


def test_a_180_day_label_on_12_monthly_cutoffs_cannot_be_purged():
    labelled = MONTHLY[:9]  # a 180-day CLV label is complete only up to 2025-07-01
    with pytest.raises(ValueError, match=r"training split would be empty.*180 days.*purge=False"):
        time_split(labelled, 180, 1)
    assert_ordered_and_purged(time_split(labelled, 180, 1, purge=False), 180, purge=False)


def test_empty_training_split_is_reported():
    with pytest.raises(ValueError, match="training split would be empty"):
        time_split(list(pd.date_range("2025-01-01", "2025-08-01", freq="MS")), 90, 3)


@pytest.mark.parametrize(
    ("cutoffs", "h", "n", "message"),
    [
        ([], 90, 1, "at least one cutoff"),
        (MONTHLY, 0, 1, "positive"),
        (MONTHLY, 90, 0, "n_validation"),
        (MONTHLY[:2], 10, 1, "at least 2 are needed"),
        (MONTHLY, 90, 9, "at least 10 are needed"),
    ],
)
def test_impossible_splits_raise(cutoffs, h, n, message):
    with pytest.raises(ValueError, match=message):
        time_split(cutoffs, h, n)


@settings(max_examples=200, deadline=None)
@given(
    days=st.sets(st.integers(0, 400), min_size=1, max_size=30),
    h=st.integers(1, 120),
    n=st.integers(1, 4),
    purge=st.booleans(),
)
def test_any_split_that_succeeds_is_ordered_and_complete(days, h, n, purge):
    cutoffs = [T("2024-01-01") + pd.Timedelta(days=d) for d in days]
    try:
        split = time_split(cutoffs, h, n, purge=purge)
    except ValueError:
        return
    assert_ordered_and_purged(split, h, purge)
    assert len(split.validation) == n and split.test_cutoff == max(cutoffs)
    used = [*split.train, *split.validation, *split.test, *split.purged]
    assert sorted(used) == sorted(cutoffs)  # every cutoff in exactly one place


def test_split_frame_selects_whole_cutoffs():
    panel = pd.DataFrame(
        {
            "customer_id": ["a", "b", "a", "b", "a", "a"],
            "cutoff": pd.to_datetime(["2025-01-01"] * 2 + ["2025-02-01"] * 2 + ["2025-03-01", "2025-04-01"]),
            "x": range(6),
        }
    )
    split = TimeSplit(train=dates("2025-01-01"), validation=dates("2025-03-01"), test=dates("2025-04-01"))
    train, valid, test = split_frame(panel, split)
    assert train["x"].tolist() == [0, 1] and valid["x"].tolist() == [4] and test["x"].tolist() == [5]
    with pytest.raises(ValueError, match="no rows at the test cutoff"):
        split_frame(panel, TimeSplit(train=split.train, validation=split.validation, test=dates("2025-05-01")))
    with pytest.raises(ValueError, match="no 'when' column"):
        split_frame(panel, split, cutoff_column="when")


def test_fixture_panel_splits_are_time_ordered(churn_split, clv_split, churn_frames, manifest):
    assert_ordered_and_purged(churn_split, manifest["churn_horizon_days"])
    assert_ordered_and_purged(clv_split, manifest["clv_horizon_days"])
    train, valid, test = churn_frames
    assert train["cutoff"].max() < valid["cutoff"].min() and valid["cutoff"].max() < test["cutoff"].min()
    assert (test["cutoff"] == test["cutoff"].iloc[0]).all()


# ------------------------------------------------------------------ deployment split and the auto schedule
def test_the_deployed_split_validates_on_the_latest_cutoffs_and_trains_on_purged_earlier_ones():
    split = deployment_split(MONTHLY, label_horizon_days=90, n_validation=2)
    # validation: the two latest labelled cutoffs, the held-out test cutoff among them
    assert split.validation == dates("2025-09-01", "2025-10-01")
    # train: c + 90 d <= 2025-09-01 -> up to June (Jun 1 + 90 d = Aug 30)
    assert split.train == tuple(MONTHLY[: MONTHLY.index(T("2025-06-01")) + 1])
    assert split.purged == dates("2025-07-01", "2025-08-01")
    assert split.test == ()
    held_out = time_split(MONTHLY, 90, 2)
    assert set(held_out.train) < set(split.train) and max(split.train) == held_out.validation[0]


def test_the_deployed_split_without_purge_trains_on_every_earlier_cutoff():
    split = deployment_split(MONTHLY, 90, 1, purge=False)
    assert split.validation == (MONTHLY[-1],) and split.train == tuple(MONTHLY[:-1]) and split.purged == ()


def test_a_three_year_shop_gets_monthly_cutoffs_with_two_purged_validation_cutoffs():
    plan = plan_schedule(T("2023-01-01"), T("2025-12-31"), (90, 180), span_months=24)
    assert (plan.frequency, plan.n_validation, plan.purge) == ("monthly", 2, True)
    assert len(plan.cutoffs) == 24 and plan.cutoffs[-1] == T("2025-10-01")
    assert "coarsest grid" in plan.reason


def test_eighteen_months_with_half_year_horizons_need_weekly_cutoffs_and_say_why():
    # Online Retail II up to 2011-06-09: monthly and semi-monthly leave no purged training cutoff.
    plan = plan_schedule(T("2009-12-01 07:45"), T("2011-06-09 17:00"), (182, 182), span_months=24)
    assert (plan.frequency, plan.n_validation, plan.purge) == ("weekly", 1, True)
    assert all(c.weekday() == 0 for c in plan.cutoffs)
    assert "rejected: monthly purged" in plan.reason and "semimonthly purged" in plan.reason
    split = time_split(plan.cutoffs, 182, plan.n_validation, plan.purge)
    assert_ordered_and_purged(split, 182)


def test_a_year_of_history_with_half_year_horizons_falls_back_to_an_unpurged_split_and_warns():
    plan = plan_schedule(T("2010-06-10"), T("2011-06-09"), (182, 182), span_months=24)
    assert plan.purge is False and plan.frequency == "monthly" and plan.n_validation == 2
    assert "NOT purged" in plan.reason and "optimistic" in plan.reason
    assert_ordered_and_purged(time_split(plan.cutoffs, 182, 2, purge=False), 182, purge=False)


def test_no_schedule_fits_five_months_of_data_with_half_year_horizons():
    with pytest.raises(ValueError, match=r"no cutoff schedule fits data from 2011-01-01 to 2011-06-09"):
        plan_schedule(T("2011-01-01"), T("2011-06-09"), (182, 182), span_months=24)


def test_the_schedule_plan_reads_back_as_json():
    plan = plan_schedule(T("2023-01-01"), T("2025-12-31"), (90, 180), span_months=24)
    assert plan.as_dict() == {"frequency": "monthly", "n_validation": 2, "purge": True, "reason": plan.reason}


def test_labelled_splits_give_the_held_out_and_the_deployed_split_or_say_what_makes_room():
    split, deployed = labelled_splits(MONTHLY, 90, 2, True, what="w", remedy="r")
    assert split == time_split(MONTHLY, 90, 2) and deployed == deployment_split(MONTHLY, 90, 2)
    assert labelled_splits(iter(MONTHLY), 90, 2, True, what="w", remedy="r") == (split, deployed)
    with pytest.raises(DataContractError, match=r"^cannot split it: cannot split 4 cutoffs .* Add cutoffs\.$"):
        labelled_splits(MONTHLY[:4], 90, 2, True, what="cannot split it", remedy="Add cutoffs.")
