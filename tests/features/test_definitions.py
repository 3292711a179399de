"""Measure definitions as SQL: exact amount sums and the grouping of measures into reduce queries."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from churn_pipeline.features.definitions import AMOUNT_SCALE, MEASURES, Measure, exact_amount, exact_sum
from churn_pipeline.features.sql import reduce_groups

AMOUNTS = [0.1, 0.2, float("nan"), float("inf"), -2.5, 3.0000004]


def _exact_sum(amounts: list[float]) -> int:
    con = duckdb.connect()
    con.register("frame", pd.DataFrame({"amount": amounts}))
    return con.sql(f"SELECT {exact_sum('amount')} FROM frame").fetchall()[0][0]


def test_an_exact_sum_is_integer_millionths_that_skip_nan_and_infinity():
    # 0.1 + 0.2 - 2.5 + 3.0000004 rounded to millionths each; NaN and inf are missing values.
    assert _exact_sum(AMOUNTS) == 800_000
    assert _exact_sum(AMOUNTS) / AMOUNT_SCALE == 0.8


def test_an_exact_sum_does_not_depend_on_the_order_of_the_rows():
    rng = np.random.default_rng(0)
    amounts = list(rng.normal(50, 30, 2_000).round(4))
    shuffled = list(rng.permutation(amounts))
    assert _exact_sum(amounts) == _exact_sum(shuffled)


def test_reduce_groups_put_orders_first_and_split_events_by_whether_they_read_value():
    groups = reduce_groups(list(MEASURES))
    assert [s for s, _ in groups] == ["orders", "returns", "events", "events"]
    assert sorted(m.name for _, ms in groups for m in ms) == sorted(m.name for m in MEASURES)
    assert [len(ms) for s, ms in groups if s == "events"] == [
        sum(m.source == "events" and "value" not in m.needs_columns for m in MEASURES),
        sum(m.source == "events" and "value" in m.needs_columns for m in MEASURES),
    ]


def test_a_measure_gives_its_sql_aggregate_and_each_rows_contribution_from_one_definition():
    rows = Measure("n_rows", "events", "count", event_type="session", dtype="int32")
    assert (rows.expr, rows.row_expr, rows.rollup) == ("count(*)", None, "sum")
    present = Measure("n_values", "events", "count", "value", dtype="int32")
    assert (present.expr, present.row_expr, present.rollup) == ("count(value)", "(value) IS NOT NULL", "sum")
    amount = Measure("revenue", "orders", "sum", "amount")
    assert (amount.expr, amount.row_expr, amount.rollup) == (exact_sum("amount"), exact_amount("amount"), "sum")
    latest = Measure("last_us", "orders", "max", "ts_us", dtype="int64")
    assert (latest.expr, latest.row_expr, latest.rollup) == ("max(ts_us)", "ts_us", "max")
    last = Measure("tier_last", "events", "last", "value")
    assert (last.expr, last.row_expr, last.rollup) == ("value", "value", "last")


def test_only_a_count_takes_every_row():
    with pytest.raises(ValueError, match="only count"):
        Measure("revenue", "orders", "sum")
