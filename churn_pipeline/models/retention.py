"""Retention analytics for the evaluation report: cohorts, repeat purchases, periods and customer segments.

Pure functions: data in, new data out. Nothing here reads or writes files or params, no input is modified, and
nothing runs at import time. The order-level aggregations run in an in-memory DuckDB connection: the orders are
turned into integer columns once (customer codes, microseconds, days and months since 1970, with NumPy) and
every view groups integers, so they scale to tens of millions of orders (3 million orders, 300,000 customers:
about 5-7 s for all views on 2 shared cores). The customer-level segment tables use vectorised pandas.

Time: every timestamp (``orders.order_ts``, ``as_of``, ``cutoff``) is UTC, naive or zone-aware (a zone-aware
one is converted to UTC, a naive one is taken to be UTC, as in docs/data_contract.md). Only orders strictly
before ``as_of`` count: an order at or after it never does. Calendar months and quarters are UTC calendar
periods; a period counts as *fully observed* when it ends at or before ``as_of``.

Money: ``amount`` in the shop's currency. Revenue here is the sum of order amounts (orders only; refunds in the
``returns`` table are not subtracted), except the segment tables' ``revenue_365d`` column, which is whatever
the caller passes (the panel's net revenue).

- :func:`cohort_retention`: share of each first-order month's customers who order again k months later.
- :func:`cohort_curve`: the customer-weighted average of those shares per month offset.
- :func:`repeat_purchase_rate`: share of customers who ordered on a second day (ever, within 90 / 365 days).
- :func:`retention_by_period`: active, new and retained customers, revenue, orders and AOV per month/quarter.
- :func:`main_order_channel`: each customer's most used order channel.
- :func:`segment_table`: churn, value and NPS per segment (risk tier, country, channel, loyalty tier, ...).
- :func:`retention_views` bundles them in :class:`RetentionViews`; :func:`retention_figures` draws the
  charts (``models.report.Figure`` objects, as ``evaluation_figures``); :func:`retention_section` is the
  report section (a ``models.report.Section`` for ``build_report(extra_sections=...)``) and
  :func:`retention_section_html` the same section as an HTML fragment.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from churn_pipeline.models.report import Figure, Section, Table, _axes, _png

__all__ = [
    "DEFAULT_SEGMENTS",
    "FIGURE_NAMES",
    "OTHER",
    "REPEAT_WINDOWS",
    "SECTION_TITLE",
    "SEGMENT_LABELS",
    "UNKNOWN",
    "RetentionViews",
    "cohort_curve",
    "cohort_retention",
    "main_order_channel",
    "repeat_purchase_rate",
    "retention_by_period",
    "retention_captions",
    "retention_figures",
    "retention_section",
    "retention_section_html",
    "retention_views",
    "segment_table",
]

SECTION_TITLE = "Retention: cohorts, periods and segments"
UNKNOWN = "(unknown)"
OTHER = "(other)"
ALL = "(all customers)"
DEFAULT_SEGMENTS = ("risk_tier", "country", "acquisition_channel", "order_channel", "loyalty_tier")
SEGMENT_LABELS = {
    "risk_tier": "risk tier",
    "country": "country",
    "acquisition_channel": "acquisition channel",
    "order_channel": "main order channel",
    "loyalty_tier": "loyalty tier",
}
# Natural orders that beat "most customers first" for a segment (values not listed follow, by size).
SEGMENT_ORDERS: dict[str, tuple[str, ...]] = {"risk_tier": ("high", "medium", "low", "lapsed")}
REPEAT_WINDOWS = (30, 90, 180, 365)
FIGURE_NAMES = ("cohort_retention", "retention_curve", "retention_rate", "repeat_purchase")
SHOWN_COHORTS = 36  # the heatmap and the cohort table show the latest 36 cohorts (3 years of months)
PERIODS = ("month", "quarter")
US_PER_DAY = 86_400_000_000


# ------------------------------------------------------------------------------------------------ inputs
def _timestamp(value: Any, name: str) -> pd.Timestamp:
    """``value`` as a naive UTC pd.Timestamp (a zone-aware one converted to UTC)."""
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError(f"{name} is missing (NaT)")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _utc_naive(column: pd.Series) -> pd.Series:
    """A timestamp column as naive UTC datetime64 (a new Series; the input is not touched)."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(column.dtype):
        return column
    # Text or objects, possibly mixing naive and zone-aware values: naive ones are UTC.
    return pd.to_datetime(column, utc=True, format="ISO8601").dt.tz_localize(None)


def _us(ts: pd.Timestamp) -> int:
    """Microseconds since 1970-01-01 of a naive UTC timestamp."""
    return int(np.datetime64(ts.as_unit("us").to_datetime64(), "us").astype(np.int64))


def _month_index(ts: pd.Timestamp) -> int:
    """Calendar months since January 1970 (the unit of the ``m`` column of :func:`_connect`)."""
    return (ts.year - 1970) * 12 + ts.month - 1


def _period_index(ts: pd.Timestamp, period: str) -> int:
    return _month_index(ts) // (1 if period == "month" else 3)


def _period_start(index: np.ndarray, period: str) -> pd.DatetimeIndex:
    """First day (naive UTC, microseconds) of each period index of :func:`_period_index`."""
    months = np.asarray(index, dtype=np.int64) * (1 if period == "month" else 3)
    return pd.DatetimeIndex(months.astype("datetime64[M]").astype("datetime64[us]"))


def _period_labels(start: pd.DatetimeIndex, period: str) -> list[str]:
    if period == "month":
        return list(start.strftime("%Y-%m"))
    return [f"{y}-Q{(m - 1) // 3 + 1}" for y, m in zip(start.year, start.month, strict=True)]


def _codes(values: pd.Series, blank_is_missing: bool, sort: bool) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize`` of a column: codes (-1 = missing) and the unique values (object array). With
    ``blank_is_missing`` blank text is missing too; it is cleaned on the few unique values, not per row."""
    codes, uniques = pd.factorize(values, sort=sort)
    uniques = np.asarray(uniques, dtype=object)
    if not blank_is_missing or len(uniques) == 0:
        return codes, uniques
    text = pd.Series(uniques, dtype="string").str.strip()
    sub, cleaned = pd.factorize(text.where((text.notna() & (text != "")).fillna(False)), sort=sort)
    return np.append(sub, -1)[codes], np.asarray(cleaned, dtype=object)  # code -1 picks the appended -1


# Aggregates several views share: per customer (first order's time, day and month) and per customer-month.
_DERIVED = {
    "f": "SELECT cid, min(ts) AS ft, min(day) AS fd, min(m) AS fm FROM o GROUP BY cid",
    "cm": "SELECT cid, m, count(*) AS n, sum(amount) AS revenue FROM o GROUP BY cid, m",
}


@dataclass(frozen=True)
class _Orders:
    """The orders before ``as_of`` in an in-memory DuckDB connection, as the integer table ``o``: ``cid``
    (customer code: ``customers[cid]`` is the customer_id), ``ts`` (microseconds since 1970, UTC), ``day``
    (UTC calendar days since 1970), ``m`` (UTC calendar months since January 1970), ``amount`` (DOUBLE, NULL
    when missing) and, with a channel, ``ch`` (``channels[ch]``, codes in alphabetical order; NULL = none).
    :meth:`need` materialises the shared aggregates of :data:`_DERIVED` once, for the queries that use them."""

    con: Any
    customers: np.ndarray
    channels: np.ndarray | None
    made: set[str] = field(default_factory=set)

    def need(self, *names: str) -> None:
        for name in names:
            if name not in self.made:
                self.con.execute(f"CREATE TABLE {name} AS {_DERIVED[name]}")
                self.made.add(name)

    def sql(self, query: str) -> pd.DataFrame:
        return self.con.execute(query).df()

    def close(self) -> None:
        self.con.close()


def _connect(orders: pd.DataFrame, as_of: pd.Timestamp, channel: bool = False) -> _Orders:
    """:class:`_Orders` of ``orders`` before ``as_of``. The ids and timestamps are turned into integers once
    (pandas/NumPy, vectorised) so that every aggregation groups integers; ``orders`` itself is not touched."""
    import duckdb

    missing = [c for c in ("customer_id", "order_ts", "amount") if c not in orders.columns]
    if missing:
        raise ValueError(f"orders lacks the column(s) {', '.join(missing)}")
    ts = _utc_naive(orders["order_ts"]).to_numpy(dtype="datetime64[us]")
    keep = ~np.isnat(ts) & (ts.astype(np.int64) < _us(as_of))
    cid, customers = _codes(orders["customer_id"], blank_is_missing=False, sort=False)
    keep &= cid >= 0
    ts = ts[keep]
    data = {
        "cid": cid[keep],
        "ts": ts.astype(np.int64),
        "day": ts.astype("datetime64[D]").astype(np.int64),
        "m": ts.astype("datetime64[M]").astype(np.int64),
        "amount": pd.to_numeric(orders["amount"], errors="coerce").to_numpy(dtype=np.float64)[keep],
    }
    channels = None
    if channel:
        ch, channels = _codes(orders["channel"], blank_is_missing=True, sort=True)
        data["ch"] = np.where(ch[keep] >= 0, ch[keep], np.nan)  # NaN -> NULL in DuckDB
    con = duckdb.connect()
    con.register("src", pd.DataFrame(data))
    # A native table: the several aggregations over it then run in parallel (a pandas scan is slower).
    con.execute("CREATE TABLE o AS SELECT * FROM src")
    con.unregister("src")
    return _Orders(con, customers, channels)


# ----------------------------------------------------------------------------------------------- cohorts
def _cohorts(db: _Orders, as_of: pd.Timestamp, max_months: int) -> pd.DataFrame:
    db.need("f", "cm")
    counts = db.sql(
        f"""
        SELECT f.fm AS cohort, cm.m - f.fm AS k, count(*) AS n FROM cm JOIN f USING (cid)
        WHERE cm.m - f.fm <= {int(max_months)} GROUP BY ALL
        """
    )
    columns = [f"month_{k}" for k in range(max_months + 1)]
    if counts.empty:
        out = pd.DataFrame({"cohort": pd.Series(dtype="datetime64[us]"), "customers": pd.Series(dtype="int64")})
        return out.assign(**{c: pd.Series(dtype="float64") for c in columns})
    wide = counts.pivot_table(index="cohort", columns="k", values="n", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=range(max_months + 1), fill_value=0).sort_index()
    size = wide[0].to_numpy(dtype=np.int64)
    share = wide.to_numpy(dtype=np.float64) / size[:, None]
    cohort_index = wide.index.to_numpy(dtype=np.int64)
    # Cell (cohort c, offset k) is the calendar month c + k: observed in full only if it ends by as_of.
    observed = (cohort_index[:, None] + np.arange(max_months + 1)[None, :]) < _month_index(as_of)
    share = np.where(observed, share, np.nan)
    share[:, 0] = 1.0  # the cohort's own month: 100 % by definition, also while that month is still running
    out = pd.DataFrame({"cohort": _period_start(cohort_index, "month").as_unit("us"), "customers": size})
    return pd.concat([out, pd.DataFrame(share, columns=columns)], axis=1)


def cohort_retention(orders: pd.DataFrame, as_of: Any, max_months: int = 12) -> pd.DataFrame:
    """Monthly acquisition cohorts and the share of each that orders again ``k`` months later.

    Grain: one row per cohort, the UTC calendar month of a customer's first order before ``as_of``, oldest
    first. Columns: ``cohort`` (naive timestamp of the month's first day), ``customers`` (customers whose first
    order falls in that month: the cohort size) and ``month_0`` .. ``month_{max_months}``: the share (0..1) of
    the cohort's customers with at least one order in the calendar month ``k`` months after the cohort month.
    ``month_0`` is 1.0 by definition (also for the current, still running cohort month). A cell whose calendar
    month does not end at or before ``as_of`` is NaN (not observed yet), not 0. Only orders before ``as_of``
    count.
    """
    if int(max_months) < 0:
        raise ValueError(f"max_months must be >= 0, got {max_months}")
    at = _timestamp(as_of, "as_of")
    db = _connect(orders, at)
    try:
        return _cohorts(db, at, int(max_months))
    finally:
        db.close()


def cohort_curve(cohorts: pd.DataFrame) -> pd.DataFrame:
    """The average retention curve of a :func:`cohort_retention` frame, weighted by cohort size.

    Grain: one row per month offset ``k``. Columns: ``month`` (k), ``cohorts`` (cohorts whose month k is
    observed), ``customers`` (their customers), ``retained`` (of them, customers with an order in month k,
    rounded from the shares) and ``retention`` (retained / customers, NaN where no cohort is observed yet).
    """
    ks = [int(c.split("_")[1]) for c in cohorts.columns if str(c).startswith("month_")]
    share = cohorts[[f"month_{k}" for k in ks]].to_numpy(dtype=np.float64)
    size = cohorts["customers"].to_numpy(dtype=np.float64)[:, None]
    seen = np.isfinite(share)
    customers = np.where(seen, size, 0.0).sum(axis=0)
    retained = np.rint(np.where(seen, share * size, 0.0)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(customers > 0, retained / customers, np.nan)
    return pd.DataFrame(
        {
            "month": np.asarray(ks, dtype=np.int64),
            "cohorts": seen.sum(axis=0).astype(np.int64),
            "customers": customers.astype(np.int64),
            "retained": retained.astype(np.int64),
            "retention": rate,
        }
    )


# -------------------------------------------------------------------------------------- repeat purchases
def _repeat(db: _Orders, as_of: pd.Timestamp, windows: Sequence[int]) -> pd.DataFrame:
    parts = []
    for d in windows:
        eligible = f"ft <= {_us(as_of) - d * US_PER_DAY}"
        within = f"{eligible} AND st < ft + {d * US_PER_DAY}"
        parts.append(
            f"count(*) FILTER (WHERE {eligible}) AS eligible_{d}, count(*) FILTER (WHERE {within}) AS repeat_{d}, "
            f"median(gap) FILTER (WHERE {within}) AS median_{d}"
        )
    extra = ", " + ", ".join(parts) if parts else ""
    db.need("f")
    row = db.sql(
        f"""
        WITH s AS (SELECT o.cid, min(o.ts) AS st FROM o JOIN f USING (cid) WHERE o.day > f.fd GROUP BY o.cid),
        x AS (SELECT ft, st, (st - ft) / {US_PER_DAY}.0 AS gap FROM f LEFT JOIN s USING (cid))
        SELECT count(*) AS eligible_all, count(st) AS repeat_all, median(gap) AS median_all{extra} FROM x
        """
    )
    r = row.iloc[0]
    keys = ["all", *[str(d) for d in windows]]
    eligible = np.array([int(r[f"eligible_{k}"]) for k in keys], dtype=np.int64)
    repeat = np.array([int(r[f"repeat_{k}"]) for k in keys], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(eligible > 0, repeat / np.maximum(eligible, 1), np.nan)
    return pd.DataFrame(
        {
            "window": ["any time", *[f"within {d} days" for d in windows]],
            "window_days": np.array([np.nan, *windows], dtype=np.float64),
            "customers": eligible,
            "repeat_customers": repeat,
            "repeat_rate": rate,
            "median_days_to_second_order": np.array(
                [np.nan if pd.isna(r[f"median_{k}"]) else float(r[f"median_{k}"]) for k in keys], dtype=np.float64
            ),
        }
    )


def repeat_purchase_rate(orders: pd.DataFrame, as_of: Any, windows: Sequence[int] = (90, 365)) -> pd.DataFrame:
    """How many customers came back for a second purchase, overall and within ``windows`` days.

    A repeat purchase is an order on a later UTC calendar day than the customer's first order (several orders
    on the first day are one purchase occasion). Grain: one row per window, first ``"any time"`` (every
    customer with an order before ``as_of``; biased low by young customers), then ``"within d days"`` for each
    ``d``: counted only over customers whose first order is at least ``d`` days before ``as_of`` (so the whole
    window ``[first order, first order + d days)`` is observed), a repeat being an order on a later day that is
    less than ``d`` days after the first order. Columns: ``window``, ``window_days`` (NaN for any time),
    ``customers`` (eligible customers), ``repeat_customers``, ``repeat_rate`` (0..1, NaN with no eligible
    customer) and ``median_days_to_second_order`` (days from the first order to the first order on a later day,
    among those repeat customers). Only orders before ``as_of`` count.
    """
    at = _timestamp(as_of, "as_of")
    days = _windows(windows)
    db = _connect(orders, at)
    try:
        return _repeat(db, at, days)
    finally:
        db.close()


def _windows(windows: Sequence[int]) -> list[int]:
    days = [int(d) for d in windows]
    if any(d <= 0 for d in days) or any(float(d) != float(w) for d, w in zip(days, windows, strict=True)):
        raise ValueError(f"windows must be positive whole days, got {list(windows)}")
    return days


# ------------------------------------------------------------------------------------------------ periods
def _periods(db: _Orders, as_of: pd.Timestamp, period: str) -> pd.DataFrame:
    db.need("f", "cm")
    step = 1 if period == "month" else 3
    agg = db.sql(
        f"""
        WITH cp AS (SELECT cid, m // {step} AS p, sum(n) AS n, sum(revenue) AS revenue FROM cm GROUP BY ALL)
        SELECT cp.p, count(*) AS active, count(*) FILTER (WHERE f.fm // {step} = cp.p) AS new,
               count(prev.cid) AS retained, sum(cp.n) AS orders, coalesce(sum(cp.revenue), 0) AS revenue
        FROM cp JOIN f USING (cid)
        LEFT JOIN cp AS prev ON prev.cid = cp.cid AND prev.p = cp.p - 1
        GROUP BY cp.p
        """
    )
    last = _period_index(as_of, period)  # periods with an index below this one end at or before as_of
    first = int(agg["p"].min()) if len(agg) else last
    grid = np.arange(first, last, dtype=np.int64)
    agg = agg.set_index("p").reindex(np.arange(first - 1, last, dtype=np.int64), fill_value=0)
    active = agg["active"].to_numpy(dtype=np.int64)
    previous = active[:-1]  # the period before each one of the grid (the one before the first holds no order)
    agg = agg.iloc[1:]
    start = _period_start(grid, period).as_unit("us")
    end = _period_start(grid + 1, period).as_unit("us")
    orders = agg["orders"].to_numpy(dtype=np.int64)
    revenue = agg["revenue"].to_numpy(dtype=np.float64)
    retained = agg["retained"].to_numpy(dtype=np.int64)
    new = agg["new"].to_numpy(dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(previous > 0, retained / np.maximum(previous, 1), np.nan)
        aov = np.where(orders > 0, revenue / np.maximum(orders, 1), np.nan)
    return pd.DataFrame(
        {
            "period": start,
            "period_end": end,
            "label": _period_labels(start, period),
            "active_customers": active[1:],
            "new_customers": new,
            "returning_customers": active[1:] - new,
            "previous_active": previous,
            "retained_customers": retained,
            "retention_rate": rate,
            "orders": orders,
            "revenue": revenue,
            "aov": aov,
        }
    )


def retention_by_period(orders: pd.DataFrame, as_of: Any, period: str = "quarter") -> pd.DataFrame:
    """Customers, retention and revenue per UTC calendar ``period`` (``"month"`` or ``"quarter"``).

    Grain: one row per period from the one holding the first order before ``as_of`` to the last one that ends
    at or before ``as_of`` (a period still running at ``as_of`` is left out; periods without any order are
    kept, with zeros). Columns: ``period`` / ``period_end`` (naive UTC timestamps; the end is exclusive),
    ``label`` (``2024-01`` / ``2024-Q1``), ``active_customers`` (customers with an order in the period),
    ``new_customers`` (their first order ever falls in the period), ``returning_customers`` (active less new),
    ``previous_active`` (active customers of the previous period), ``retained_customers`` (active in the
    previous period and in this one), ``retention_rate`` (retained / previous active, 0..1; NaN when the
    previous period had no active customer, e.g. the first one), ``orders`` (count), ``revenue`` (sum of order
    ``amount``, orders only: refunds are not subtracted; shop currency) and ``aov`` (revenue / orders). The first
    period may start before the data does (shops whose history begins mid-quarter).
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    at = _timestamp(as_of, "as_of")
    db = _connect(orders, at)
    try:
        return _periods(db, at, period)
    finally:
        db.close()


# ------------------------------------------------------------------------------------------------ channel
def _main_channel(db: _Orders, before: pd.Timestamp | None = None) -> pd.Series:
    """:func:`main_order_channel` over the table's orders (those before ``before`` too, when given)."""
    bound = "" if before is None else f" AND ts < {_us(before)}"
    frame = db.sql(
        f"""
        WITH n AS (SELECT cid, ch, count(*) AS n FROM o WHERE ch IS NOT NULL{bound} GROUP BY cid, ch)
        SELECT cid, CAST(ch AS BIGINT) AS ch FROM n
        QUALIFY row_number() OVER (PARTITION BY cid ORDER BY n DESC, ch) = 1
        """
    )
    # Channel codes are in alphabetical order, so the smallest code wins a tie.
    out = pd.Series(
        db.channels[frame["ch"].to_numpy(dtype=np.int64)],
        index=pd.Index(db.customers[frame["cid"].to_numpy(dtype=np.int64)], name="customer_id"),
        name="order_channel",
        dtype=object,
    )
    return out.sort_index()


def main_order_channel(orders: pd.DataFrame, as_of: Any) -> pd.Series:
    """Each customer's main order channel: the ``channel`` of most of their orders before ``as_of`` (a tie goes
    to the alphabetically first channel; orders without a channel are ignored).

    Grain: one value per customer with at least one order with a channel before ``as_of``; a Series named
    ``order_channel`` indexed by ``customer_id`` (sorted). Empty when ``orders`` has no ``channel`` column.
    """
    at = _timestamp(as_of, "as_of")
    if "channel" not in orders.columns:
        return pd.Series([], index=pd.Index([], name="customer_id", dtype=object), name="order_channel", dtype=object)
    db = _connect(orders, at, channel=True)
    try:
        return _main_channel(db)
    finally:
        db.close()


# ----------------------------------------------------------------------------------------------- segments
def _labels(values: pd.Series) -> np.ndarray:
    """Segment values as text, missing or blank ones as ``(unknown)``."""
    text = values.astype("string").str.strip()
    return text.where((text.notna() & (text != "")).fillna(False), UNKNOWN).to_numpy(dtype=object)


def _numeric(rows: pd.DataFrame, column: str) -> pd.Series:
    """A column as float64 (bools as 0/1, missing or non-numeric as NaN); all NaN when the column is absent."""
    if column not in rows.columns:
        return pd.Series(np.nan, index=rows.index, dtype=np.float64)
    return pd.to_numeric(rows[column], errors="coerce").astype(np.float64)


def segment_table(
    rows: pd.DataFrame,
    segment: str,
    min_customers: int = 30,
    max_rows: int = 15,
    order: Sequence[str] | None = None,
    total: bool = True,
) -> pd.DataFrame:
    """Churn, value and satisfaction per value of the ``segment`` column.

    ``rows``: one row per customer at one cutoff, with ``customer_id`` (unique), ``segment`` and optionally
    ``churned`` (bool, observed churn in the horizon after the cutoff; missing = not known), ``monetary_value``
    (average order value before the cutoff), ``revenue_365d`` (net revenue in the 365 days before the cutoff),
    ``future_revenue`` (revenue over the horizon after the cutoff) and ``nps`` (last NPS score 0..10 before the
    cutoff, NaN = never answered). Money in the shop's currency.

    Grain: one row per segment value; missing or blank values become ``(unknown)``. Sorted by customers
    descending (ties by name), the values of ``order`` first in that order; beyond ``max_rows`` rows the
    smallest values are folded into one ``(other)`` row (so at most ``max_rows`` rows, ``(other)`` last); with
    ``total`` a last ``(all customers)`` row follows. Columns: the segment column (text), ``customers``,
    ``share`` (of all customers), ``churn_labelled`` (customers with a known outcome), ``churn_rate`` (share of
    them who churned; NaN without any), ``mean_aov`` (mean ``monetary_value`` over customers with one),
    ``revenue_365d_per_customer`` and, when given, ``future_revenue_per_customer`` (means over customers with a
    value); with ``nps``: ``nps_respondents`` and ``nps`` (Net Promoter Score, -100..100: % promoters scoring
    9-10 minus % detractors scoring 0-6 among respondents; NaN without one); ``small`` (customers <
    ``min_customers``: too few to read much into the rates).
    """
    for column in ("customer_id", segment):
        if column not in rows.columns:
            raise ValueError(f"rows lacks the column {column!r}")
    if int(max_rows) < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if rows["customer_id"].duplicated().any():
        raise ValueError("rows must hold one row per customer (customer_id is duplicated)")
    churned = _numeric(rows, "churned")
    nps = _numeric(rows, "nps")
    parts = {
        "customers": pd.Series(1, index=rows.index, dtype=np.int64),
        "churn_labelled": churned.notna().astype(np.int64),
        "churn_sum": churned.fillna(0.0),
        "aov_n": _numeric(rows, "monetary_value").notna().astype(np.int64),
        "aov_sum": _numeric(rows, "monetary_value").fillna(0.0),
        "rev_n": _numeric(rows, "revenue_365d").notna().astype(np.int64),
        "rev_sum": _numeric(rows, "revenue_365d").fillna(0.0),
        "fut_n": _numeric(rows, "future_revenue").notna().astype(np.int64),
        "fut_sum": _numeric(rows, "future_revenue").fillna(0.0),
        "nps_respondents": nps.notna().astype(np.int64),
        "promoters": (nps >= 9).astype(np.int64),
        "detractors": (nps <= 6).astype(np.int64),
    }
    sums = pd.DataFrame(parts).groupby(_labels(rows[segment]), sort=False).sum()
    position = {v: i for i, v in enumerate(order or ())}
    ranked = pd.DataFrame(
        {
            "position": [position.get(v, len(position)) for v in sums.index],  # one per segment value
            "customers": -sums["customers"].to_numpy(),
            "name": sums.index.astype(str),
        },
        index=sums.index,
    )
    sums = sums.loc[ranked.sort_values(["position", "customers", "name"]).index]
    if len(sums) > max_rows:
        head = sums.iloc[: max_rows - 1]
        rest = sums.iloc[max_rows - 1 :].sum().to_frame(OTHER).T
        sums = pd.concat([head, rest])
    if total:
        sums = pd.concat([sums, sums.sum().to_frame(ALL).T])
    sums = sums.astype({c: np.int64 for c in sums.columns if not c.endswith("_sum")})

    def ratio(num: pd.Series, den: pd.Series) -> np.ndarray:
        den_ = den.to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den_ > 0, num.to_numpy(dtype=np.float64) / np.maximum(den_, 1.0), np.nan)

    n_all = len(rows)
    out = pd.DataFrame(
        {
            segment: sums.index.astype(str).to_numpy(dtype=object),
            "customers": sums["customers"].to_numpy(),
            "share": sums["customers"].to_numpy(dtype=np.float64) / n_all if n_all else np.nan,
            "churn_labelled": sums["churn_labelled"].to_numpy(),
            "churn_rate": ratio(sums["churn_sum"], sums["churn_labelled"]),
            "mean_aov": ratio(sums["aov_sum"], sums["aov_n"]),
            "revenue_365d_per_customer": ratio(sums["rev_sum"], sums["rev_n"]),
        }
    )
    if "future_revenue" in rows.columns:
        out["future_revenue_per_customer"] = ratio(sums["fut_sum"], sums["fut_n"])
    if "nps" in rows.columns:
        out["nps_respondents"] = sums["nps_respondents"].to_numpy()
        out["nps"] = 100.0 * ratio(sums["promoters"] - sums["detractors"], sums["nps_respondents"])
    out["small"] = out["customers"].to_numpy() < int(min_customers)
    return out


# -------------------------------------------------------------------------------------------------- views
@dataclass(frozen=True)
class RetentionViews:
    """Everything the report's retention section shows, made by :func:`retention_views`.

    ``as_of``: the order data's end (orders strictly before it count); ``cutoff``: the cutoff of the segment
    rows; ``customers``: customers with an order before ``as_of``; ``cohorts`` / ``curve``: from
    :func:`cohort_retention` / :func:`cohort_curve`; ``repeat``: :func:`repeat_purchase_rate`; ``periods``:
    :func:`retention_by_period` per ``period``; ``segments``: segment name -> :func:`segment_table`.
    """

    as_of: pd.Timestamp
    cutoff: pd.Timestamp
    period: str
    customers: int
    cohorts: pd.DataFrame
    curve: pd.DataFrame
    repeat: pd.DataFrame
    periods: pd.DataFrame
    segments: dict[str, pd.DataFrame] = field(default_factory=dict)
    min_customers: int = 30


def retention_views(
    orders: pd.DataFrame,
    as_of: Any,
    rows: pd.DataFrame | None = None,
    segments: Sequence[str] | Mapping[str, pd.DataFrame] = DEFAULT_SEGMENTS,
    *,
    cutoff: Any = None,
    period: str = "quarter",
    max_months: int = 12,
    repeat_windows: Sequence[int] = REPEAT_WINDOWS,
    min_customers: int = 30,
    max_rows: int = 15,
) -> RetentionViews:
    """All retention views in one call (one DuckDB pass setup over ``orders``).

    ``orders``: the orders table (``customer_id``, ``order_ts``, ``amount``, optional ``channel``); cohorts,
    repeat purchases and periods use the orders before ``as_of``. Segments, either: ``rows`` (one row per
    customer at ``cutoff``, default ``as_of``; the columns of :func:`segment_table`) and ``segments`` the names
    of the segment columns to tabulate (names missing from ``rows`` are skipped, except ``order_channel``,
    which is computed from the orders before ``cutoff`` with :func:`main_order_channel` when ``orders`` has a
    ``channel``; customers without one are ``(unknown)``); or ``segments`` a mapping of segment name -> its own
    rows frame holding that column. ``risk_tier`` keeps the tier order high, medium, low, lapsed.
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    at = _timestamp(as_of, "as_of")
    cut = at if cutoff is None else _timestamp(cutoff, "cutoff")
    days = _windows(repeat_windows)
    wanted = [] if isinstance(segments, Mapping) or rows is None else list(segments)
    # The main order channel, when asked for and not among the rows' columns: from the same connection when
    # the cutoff is not after as_of (the table holds the orders before as_of), else on its own.
    channel_needed = "order_channel" in wanted and "order_channel" not in rows.columns and "channel" in orders.columns
    channel = None
    db = _connect(orders, at, channel=channel_needed and cut <= at)
    try:
        cohorts = _cohorts(db, at, int(max_months))
        repeat = _repeat(db, at, days)
        periods = _periods(db, at, period)
        if channel_needed and cut <= at:
            channel = _main_channel(db, cut)
    finally:
        db.close()
    if channel_needed and channel is None:
        channel = main_order_channel(orders, cut)

    if isinstance(segments, Mapping):
        jobs = [(name, frame) for name, frame in segments.items() if name in frame.columns]
    else:
        jobs = []
        for name in wanted:
            if name in rows.columns:
                jobs.append((name, rows))
            elif name == "order_channel" and channel is not None:
                # A new frame: the caller's rows stay as they are.
                jobs.append((name, rows.assign(order_channel=rows["customer_id"].map(channel))))
    tables = {
        name: segment_table(frame, name, min_customers, max_rows, order=SEGMENT_ORDERS.get(name))
        for name, frame in jobs
    }
    return RetentionViews(
        as_of=at,
        cutoff=cut,
        period=period,
        customers=int(repeat["customers"].iloc[0]),
        cohorts=cohorts,
        curve=cohort_curve(cohorts),
        repeat=repeat,
        periods=periods,
        segments=tables,
        min_customers=int(min_customers),
    )


# ------------------------------------------------------------------------------------------------ figures
def _no_data(ax, text: str = "no complete data before the as-of date") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#5a6475")


def _percent(axis) -> None:
    axis.set_major_formatter(lambda v, _: f"{v:.0%}")


def cohort_heatmap(cohorts: pd.DataFrame, title: str) -> bytes:
    """Heatmap of the latest :data:`SHOWN_COHORTS` cohorts (rows, labelled with their size) by month offset
    1..max (month 0 is 100 % and would flatten the colour scale); unobserved cells stay blank."""
    shown = cohorts.tail(SHOWN_COHORTS)
    ks = [c for c in shown.columns if str(c).startswith("month_") and c != "month_0"]
    n = len(shown)
    fig, ax = _axes(title, "months after the first-order month", "", size=(7.4, 1.6 + 0.24 * max(n, 4)))
    ax.grid(False)
    if n == 0 or not ks:
        _no_data(ax)
        return _png(fig)
    values = shown[ks].to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="Blues", vmin=0.0, vmax=top)
    ax.set_facecolor("#f3f4f6")
    ax.set_xticks(range(len(ks)), [c.split("_")[1] for c in ks])
    labels = [f"{c:%Y-%m}  ({s:,})" for c, s in zip(shown["cohort"], shown["customers"], strict=True)]
    ax.set_yticks(range(n), labels, fontsize=7.5 if n > 18 else 8.5)
    ax.set_ylabel("first-order month (customers)")
    if n * len(ks) <= 40 * 13:
        for i, j in zip(*np.nonzero(np.isfinite(values)), strict=True):
            v = values[i, j]
            ax.text(
                j, i, f"{v:.0%}", ha="center", va="center", fontsize=6.5, color="white" if v > top / 2 else "#1d2330"
            )
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    _percent(bar.ax.yaxis)
    return _png(fig)


def curve_chart(cohorts: pd.DataFrame, curve: pd.DataFrame, title: str) -> bytes:
    """Each cohort's retention by month offset (thin lines, the latest :data:`SHOWN_COHORTS`) and the
    customer-weighted average (bold)."""
    fig, ax = _axes(title, "months after the first-order month", "share of the cohort ordering that month")
    shown = cohorts.tail(SHOWN_COHORTS)
    ks = [c for c in shown.columns if str(c).startswith("month_")]
    x = np.arange(len(ks))
    if len(shown) == 0:
        _no_data(ax)
        return _png(fig)
    for values in shown[ks].to_numpy(dtype=np.float64):
        ax.plot(x[1:], values[1:], color="#9aa5b8", lw=0.8, alpha=0.6)
    ax.plot([], [], color="#9aa5b8", lw=0.8, label="one cohort")
    seen = curve["month"].to_numpy() >= 1
    ax.plot(
        curve["month"].to_numpy()[seen],
        curve["retention"].to_numpy()[seen],
        color="#1f5fbf",
        lw=2.4,
        marker="o",
        ms=4,
        label="all cohorts (weighted by size)",
    )
    ax.set_xticks(x[1:])
    ax.set_ylim(bottom=0)
    _percent(ax.yaxis)
    ax.legend(fontsize=8.5)
    return _png(fig)


def period_chart(periods: pd.DataFrame, title: str) -> bytes:
    """Active customers per period as stacked bars (new and returning) and the retention rate as a line."""
    fig, ax = _axes(title, "", "active customers", size=(7.4, 4.3))
    if len(periods) == 0:
        _no_data(ax)
        return _png(fig)
    x = np.arange(len(periods))
    returning = periods["returning_customers"].to_numpy()
    ax.bar(x, returning, color="#9fb8e0", label="returning customers")
    ax.bar(x, periods["new_customers"].to_numpy(), bottom=returning, color="#d9e3f3", label="new customers")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:,.0f}")
    step = max(1, int(np.ceil(len(periods) / 16)))
    ax.set_xticks(x[::step], periods["label"].to_numpy()[::step], rotation=45 if len(periods) > 8 else 0, ha="right")
    right = ax.twinx()
    right.plot(x, periods["retention_rate"].to_numpy(), color="#d9822b", lw=2.2, marker="o", ms=4, label="retention")
    right.set_ylabel("retention rate")
    right.set_ylim(0, 1)
    _percent(right.yaxis)
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8.5, loc="upper left")
    return _png(fig)


def repeat_chart(repeat: pd.DataFrame, title: str) -> bytes:
    """Share of eligible customers with a second purchase day within each window, with the eligible counts."""
    fig, ax = _axes(title, "", "share of customers with a repeat purchase")
    windows = repeat[repeat["window_days"].notna()]
    if len(windows) == 0 or int(windows["customers"].sum()) == 0:
        _no_data(ax)
        return _png(fig)
    x = np.arange(len(windows))
    rates = windows["repeat_rate"].to_numpy(dtype=np.float64)
    ax.bar(x, np.nan_to_num(rates), color="#1f5fbf")
    for i, (rate, n) in enumerate(zip(rates, windows["customers"], strict=True)):
        text = f"{rate:.1%}" if np.isfinite(rate) else "–"
        ax.text(i, np.nan_to_num(rate), f"{text}\nof {n:,}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"{int(d)} days" for d in windows["window_days"]])
    ax.set_xlabel("window after the first order")
    top = np.nanmax(rates) if np.isfinite(rates).any() else 1.0
    ax.set_ylim(0, min(1.0, top * 1.25 + 0.02))
    _percent(ax.yaxis)
    return _png(fig)


def retention_figures(views: RetentionViews) -> dict[str, Figure]:
    """The retention charts by plot name (PNG ``models.report.Figure`` objects, like
    ``models.report.evaluation_figures``; drawn with matplotlib's Agg backend, no network): ``cohort_retention``
    (heatmap), ``retention_curve`` (cohort lines and their average), ``retention_rate`` (per period) and
    ``repeat_purchase``."""
    label = "month" if views.period == "month" else "quarter"
    return {
        "cohort_retention": Figure(
            cohort_heatmap(views.cohorts, "Cohort retention: share ordering k months after their first month"),
            f"Cohorts by first-order month: share ordering again k months later (latest {SHOWN_COHORTS} cohorts; "
            "blank = month not over yet).",
        ),
        "retention_curve": Figure(
            curve_chart(views.cohorts, views.curve, "Retention curve by months since the first order"),
            "Each cohort (grey) and all cohorts weighted by their size (blue).",
        ),
        "retention_rate": Figure(
            period_chart(views.periods, f"Retention per {label}"),
            f"Active customers per {label} (new and returning) and the share of the previous {label}'s active "
            "customers who ordered again.",
        ),
        "repeat_purchase": Figure(
            repeat_chart(views.repeat, "Second purchase within t days of the first"),
            "Share of customers with an order on a later day within t days of their first order, among customers "
            "whose first order is at least t days old.",
        ),
    }


# ------------------------------------------------------------------------------------------------ section
SEGMENT_FORMATS = {
    "customers": ",d",
    "share": ".1%",
    "churn_labelled": ",d",
    "churn_rate": ".1%",
    "mean_aov": ",.2f",
    "revenue_365d_per_customer": ",.2f",
    "future_revenue_per_customer": ",.2f",
    "nps_respondents": ",d",
    "nps": "+.0f",
}


@dataclass(frozen=True)
class _Part:
    table: Table
    small: np.ndarray | None = None  # rows to mark as small segments


def _small_text(small: np.ndarray, min_customers: int) -> list[str]:
    return [f"small: < {min_customers:,} customers" if s else "" for s in small]


def _parts(views: RetentionViews) -> tuple[list[tuple[str, str]], list[str], list[_Part]]:
    """Cards, paragraphs and tables of the section (shared by the Section and the HTML fragment)."""
    label = "month" if views.period == "month" else "quarter"
    repeat = views.repeat.set_index("window")
    curve = views.curve.set_index("month")
    cards = [(f"customers with an order before {views.as_of:%Y-%m-%d}", f"{views.customers:,}")]
    ever = repeat.loc["any time"]
    cards.append(("bought again on a later day (any time)", _fmt(ever["repeat_rate"], ".1%")))
    for name in ("within 90 days", "within 365 days"):
        if name in repeat.index:
            r = repeat.loc[name]
            cards.append(
                (
                    f"bought again {name} of the first order ({int(r['customers']):,} customers)",
                    _fmt(r["repeat_rate"], ".1%"),
                )
            )
    for k in (1, 3, 12):
        if k in curve.index and np.isfinite(curve.loc[k, "retention"]):
            cards.append(
                (f"month-{k} cohort retention (weighted over cohorts)", _fmt(curve.loc[k, "retention"], ".1%"))
            )
    rated = views.periods[views.periods["retention_rate"].notna()]
    if len(rated):
        last = rated.iloc[-1]
        cards.append(
            (
                f"{label}ly retention, {last['label']} ({int(last['previous_active']):,} active before)",
                _fmt(last["retention_rate"], ".1%"),
            )
        )
    paragraphs = [
        f"From the orders before {views.as_of:%Y-%m-%d %H:%M} UTC. A cohort is the customers whose first order "
        f"falls in one UTC calendar month; month k is the share of them with an order in the k-th calendar month "
        f"after it (month 0 = 100 %). A month not over by the as-of date is left blank (–), not counted as 0.",
        f"Per {label}: active customers ordered in the {label}, new ones ordered for the first time, retained "
        f"ones were active in the previous {label} too; retention rate = retained / active in the previous "
        f"{label}. Revenue is the sum of order amounts (refunds not subtracted); AOV = revenue / orders. Only "
        f"{label}s over by the as-of date are shown.",
        "A repeat purchase is an order on a later day than the first order. 'Within t days' counts only the "
        "customers whose first order is at least t days old, so young customers do not bias it down.",
    ]
    if views.segments:
        paragraphs.append(
            f"Segments: the customers at the cutoff {views.cutoff:%Y-%m-%d}. Churn rate: share of the customers with "
            f"a known outcome who churned within the horizon after the cutoff; mean AOV: average order value before "
            f"the cutoff; revenue per customer: net revenue in the 365 days before the cutoff; NPS: % promoters "
            f"(9-10) minus % detractors (0-6) among customers whose last answer before the cutoff is known "
            f"(respondents). Segments with fewer than {views.min_customers:,} customers are marked small: their "
            f"rates rest on few customers."
        )
    periods = views.periods[
        [
            "label",
            "active_customers",
            "new_customers",
            "returning_customers",
            "retained_customers",
            "retention_rate",
            "orders",
            "revenue",
            "aov",
        ]
    ].rename(columns={"label": label})
    parts = [
        _Part(
            Table(
                periods,
                f"Customers and revenue per {label}",
                formats={"retention_rate": ".1%", "revenue": ",.0f", "aov": ",.2f"},
            )
        ),
        _Part(
            Table(
                views.repeat.drop(columns="window_days"),
                "Repeat purchases",
                formats={"repeat_rate": ".1%", "median_days_to_second_order": ",.0f"},
            )
        ),
    ]
    shown = views.cohorts.tail(SHOWN_COHORTS)
    cohort_table = shown.assign(cohort=[f"{c:%Y-%m}" for c in shown["cohort"]])
    parts.append(
        _Part(
            Table(
                cohort_table,
                f"Cohort retention (latest {min(len(shown), SHOWN_COHORTS)} of {len(views.cohorts)} cohorts)",
                formats={c: ".0%" for c in cohort_table.columns if str(c).startswith("month_")},
            )
        )
    )
    for name, table in views.segments.items():
        small = table["small"].to_numpy(dtype=bool)
        frame = table.assign(small=_small_text(small, views.min_customers))
        parts.append(
            _Part(
                Table(frame, f"By {SEGMENT_LABELS.get(name, name.replace('_', ' '))}", formats=SEGMENT_FORMATS),
                small,
            )
        )
    return cards, paragraphs, parts


def _figure_list(images: Mapping[str, Figure | bytes] | None, views: RetentionViews) -> list[Figure]:
    if images is None:
        images = retention_figures(views)
    defaults = retention_captions()
    out = []
    for name in [*[n for n in FIGURE_NAMES if n in images], *[n for n in images if n not in FIGURE_NAMES]]:
        image = images[name]
        out.append(image if isinstance(image, Figure) else Figure(bytes(image), defaults.get(name, name)))
    return out


def retention_captions() -> dict[str, str]:
    """Default captions of the figures when :func:`retention_section_html` gets bare PNG bytes."""
    return {
        "cohort_retention": "Cohorts by first-order month: share ordering again k months later.",
        "retention_curve": "Retention by months since the first order.",
        "retention_rate": "Active customers and retention per period.",
        "repeat_purchase": "Second purchase within t days of the first.",
    }


def retention_section(views: RetentionViews, figures: Mapping[str, Figure | bytes] | None = None) -> Section:
    """The report section as a ``models.report.Section`` for ``build_report(extra_sections=[...])`` (its page
    renderer escapes every text). ``figures``: :func:`retention_figures` output (drawn when None). Small
    segments carry the note "small: < N customers" in their ``small`` column."""
    cards, paragraphs, parts = _parts(views)
    return Section(SECTION_TITLE, paragraphs, [p.table for p in parts], _figure_list(figures, views), cards)


# A fragment renders like models.report's tables (same CSS classes); small segment rows are greyed in italics.
SMALL_ROW_STYLE = "color:#8a94a6;font-style:italic;background:#fbf7ec"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(value: Any, spec: str | None = None) -> str:
    """A cell as models.report shows it: en dash for missing, yes/no for bools, ``,d`` / ``,.3f`` by default."""
    if value is None or value is pd.NaT or (isinstance(value, float | np.floating) and not np.isfinite(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return format(int(value), spec or ",d")
    if isinstance(value, float | np.floating):
        return format(float(value), spec or ",.3f")
    return str(value)


def _table_html(part: _Part) -> str:
    frame, formats = part.table.frame, part.table.formats
    columns = {c: frame[c].tolist() for c in frame.columns}
    text = {c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])}
    cls = {c: ' class="t"' if c in text else "" for c in frame.columns}
    head = "".join(f"<th{cls[c]}>{_e(str(c).replace('_', ' '))}</th>" for c in frame.columns)
    rows = []
    for i in range(len(frame)):  # a few dozen rows at most (segments are capped), never one per customer
        small = part.small is not None and bool(part.small[i])
        cells = "".join(f"<td{cls[c]}>{_e(_fmt(columns[c][i], formats.get(c)))}</td>" for c in frame.columns)
        rows.append(f'<tr class="small" style="{SMALL_ROW_STYLE}">{cells}</tr>' if small else f"<tr>{cells}</tr>")
    caption = f"<caption>{_e(part.table.caption)}</caption>" if part.table.caption else ""
    return (
        f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def retention_section_html(views: RetentionViews, images: Mapping[str, Figure | bytes] | None = None) -> str:
    """The section as an HTML fragment (``<section>`` .. ``</section>``) in the report's markup: cards,
    paragraphs, tables (small segment rows greyed and noted), then the figures as inline PNG data URIs (no
    external reference). Every data-derived text is escaped. ``images``: plot name -> ``Figure`` or PNG bytes
    (:func:`retention_figures` output; drawn when None)."""
    cards, paragraphs, parts = _parts(views)
    body = [f"<section><h2>{_e(SECTION_TITLE)}</h2>"]
    if cards:
        body.append(
            '<div class="cards">'
            + "".join(
                f'<div class="card"><div class="v">{_e(v)}</div><div class="l">{_e(k)}</div></div>' for k, v in cards
            )
            + "</div>"
        )
    body.extend(f"<p>{_e(p)}</p>" for p in paragraphs)
    body.extend(_table_html(p) for p in parts)
    figures = _figure_list(images, views)
    if figures:
        body.append(
            '<div class="figs">'
            + "".join(
                f'<figure><img alt="{_e(f.caption)}" src="data:image/png;base64,'
                f'{base64.b64encode(f.png).decode("ascii")}"><figcaption>{_e(f.caption)}</figcaption></figure>'
                for f in figures
            )
            + "</div>"
        )
    body.append("</section>")
    return "".join(body)
