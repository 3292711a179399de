"""The measures every feature is built from: one definition, read by the engine for every cutoff.

A *measure* is an aggregate of one source table's rows within one (customer, slot): a count or a sum
(additive over slots, so a window is the difference of two running totals), a max or min timestamp (rolled
forward as a running max/min), or the value of the latest row (rolled forward to the latest slot that has
one). Windows, trends and ratios are derived from these in :mod:`features.build`.

Each measure names the columns or event type it needs; the engine drops a measure whose source table,
column or event type is absent, so a shop with only ``orders`` still gets every purchase feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from features.contract import KNOWN_EVENT_TYPES

Rollup = Literal["sum", "max", "min", "last"]


@dataclass(frozen=True)
class Measure:
    """One per-(customer, slot) aggregate.

    ``expr`` is a SQL aggregate over the source rows (portable SQL: count, sum, max, min, and ``max_by`` for
    ``last``). For ``last`` measures ``expr`` is the value and the engine takes the value of the row with
    the latest timestamp. Timestamps are carried as microseconds since the epoch (``ts_us``).
    ``dtype``: ``int32`` counts, ``int64`` timestamps, ``float64`` amounts (a ``sum`` of them is carried in
    integer millionths, see :func:`exact_sum`; a ``last`` as the value itself).
    """

    name: str
    source: Literal["orders", "returns", "events"]
    expr: str
    rollup: Rollup
    needs_columns: tuple[str, ...] = ()
    event_type: str | None = None
    dtype: str = "float64"


# Amounts are summed as integers of this many units per currency unit (millionths). Integer sums are exact,
# so the order rows are added in (DuckDB and Spark sum in parallel) cannot change a feature, and they are fast
# in both engines (Spark aggregates decimals wider than 18 digits as Java BigDecimals, far slower than longs).
AMOUNT_SCALE = 1_000_000


def exact_sum(expr: str) -> str:
    """A sum that does not depend on the order rows are added in, so the same data always gives bit-identical
    features: each value rounded to millionths and summed as a 64-bit integer (``AMOUNT_SCALE``; divide to get
    the amount back). NaN and infinities (missing values in Parquet floats) count as missing."""
    return f"sum(TRY_CAST(round(({expr}) * {AMOUNT_SCALE}) AS BIGINT))"


def _event(name: str, event_type: str, expr: str, rollup: Rollup, dtype: str = "float64") -> Measure:
    needs = ("value",) if "value" in expr else ()
    return Measure(name, "events", expr, rollup, needs_columns=needs, event_type=event_type, dtype=dtype)


# Time in the reduce step: ``ts_us`` is the row's timestamp in microseconds since 1970-01-01 (UTC).
MEASURES: tuple[Measure, ...] = (
    # Purchase behaviour.
    Measure("n_orders", "orders", "count(*)", "sum", dtype="int32"),
    Measure("revenue", "orders", exact_sum("amount"), "sum"),
    Measure("discount", "orders", exact_sum("coalesce(discount_amount, 0)"), "sum", needs_columns=("discount_amount",)),
    Measure("items", "orders", exact_sum("coalesce(items, 0)"), "sum", needs_columns=("items",)),
    Measure("gap_n", "orders", "count(gap_days)", "sum", dtype="int32"),
    Measure("gap_sum", "orders", exact_sum("gap_days"), "sum"),
    Measure("gap_sq", "orders", exact_sum("gap_days * gap_days"), "sum"),
    Measure("last_order_us", "orders", "max(ts_us)", "max", dtype="int64"),
    Measure("first_order_us", "orders", "min(ts_us)", "min", dtype="int64"),
    Measure("n_returns", "returns", "count(*)", "sum", dtype="int32"),
    Measure("return_value", "returns", exact_sum("amount"), "sum"),
    # Engagement.
    _event("n_session", "session", "count(*)", "sum", "int32"),
    _event("last_session_us", "session", "max(ts_us)", "max", "int64"),
    _event("n_page_view", "page_view", "count(*)", "sum", "int32"),
    _event("n_add_to_cart", "add_to_cart", "count(*)", "sum", "int32"),
    _event("n_email_sent", "email_sent", "count(*)", "sum", "int32"),
    _event("n_email_open", "email_open", "count(*)", "sum", "int32"),
    _event("last_email_open_us", "email_open", "max(ts_us)", "max", "int64"),
    _event("n_email_click", "email_click", "count(*)", "sum", "int32"),
    _event("last_email_click_us", "email_click", "max(ts_us)", "max", "int64"),
    _event("n_unsubscribe", "unsubscribe", "count(*)", "sum", "int32"),
    # Experience and loyalty.
    _event("n_support_ticket", "support_ticket", "count(*)", "sum", "int32"),
    _event("n_review", "review", "count(value)", "sum", "int32"),
    _event("review_sum", "review", exact_sum("value"), "sum"),
    _event("review_last", "review", "value", "last"),
    _event("n_nps", "nps", "count(value)", "sum", "int32"),
    _event("nps_sum", "nps", exact_sum("value"), "sum"),
    _event("nps_last", "nps", "value", "last"),
    _event("points_earned", "loyalty_points_earned", exact_sum("coalesce(value, 0)"), "sum"),
    _event("points_redeemed", "loyalty_points_redeemed", exact_sum("coalesce(value, 0)"), "sum"),
    _event("loyalty_tier_last", "loyalty_tier_change", "value", "last"),
    _event("n_coupon_redeemed", "coupon_redeemed", "count(*)", "sum", "int32"),
    # Any event type the contract does not name is still counted, so a shop's own events are not lost.
    _event("n_other_events", "*other*", "count(*)", "sum", "int32"),
)

OTHER_EVENTS = "*other*"
KNOWN_TYPES = KNOWN_EVENT_TYPES


# Which windowed features each family derives: (output prefix, measure). Windows come from params.
WINDOWED_COUNTS: tuple[tuple[str, str], ...] = (
    ("orders", "n_orders"),
    ("revenue", "revenue"),
    ("returns", "n_returns"),
    ("returns_value", "return_value"),
    ("sessions", "n_session"),
    ("page_views", "n_page_view"),
    ("add_to_cart", "n_add_to_cart"),
    ("emails_sent", "n_email_sent"),
    ("email_opens", "n_email_open"),
    ("email_clicks", "n_email_click"),
    ("support_tickets", "n_support_ticket"),
    ("points_earned", "points_earned"),
    ("points_redeemed", "points_redeemed"),
    ("coupons_redeemed", "n_coupon_redeemed"),
    ("other_events", "n_other_events"),
)
# Windowed features whose trend (this window minus the one before) is derived too.
TRENDED: tuple[str, ...] = ("orders", "revenue", "sessions", "email_opens")
