"""The measures every feature is built from: one definition, read by the engine for every cutoff.

A *measure* is an aggregate of one source table's rows within one (customer, slot): a count or a sum
(additive over slots, so a window is the difference of two running totals), a max or min timestamp (rolled
forward as a running max/min), or the value of the latest row (rolled forward to the latest slot that has
one). Windows, trends, ratios and labels are derived from these in :mod:`features.derive`.

Each measure names the columns or event type it needs; the engine drops a measure whose source table,
column or event type is absent, so a shop with only ``orders`` still gets every purchase feature (and one
without ``orders.channel`` no channel shares).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Rollup = Literal["sum", "max", "min", "last"]
Aggregate = Literal["count", "sum", "max", "min", "last"]


@dataclass(frozen=True)
class Measure:
    """One per-(customer, slot) aggregate: ``agg`` of the row expression ``arg`` over the source rows.

    ``agg``: ``count`` (rows, or rows where ``arg`` is not NULL), ``sum`` (an exact sum of an amount, see
    :func:`exact_sum`), ``max`` / ``min``, or ``last`` (the value ``arg`` of the row with the latest timestamp).
    ``arg`` is portable SQL over one source row (``*`` for ``count(*)``); timestamps are carried as
    microseconds since the epoch (``ts_us``). An engine either aggregates in SQL (:attr:`expr`) or takes each
    row's contribution (:attr:`row_expr`) and aggregates it itself: both come from this one definition.
    ``dtype``: ``int32`` counts, ``int64`` timestamps, ``float64`` amounts (a ``sum`` of them is carried in
    integer millionths; a ``last`` as the value itself).
    """

    name: str
    source: Literal["orders", "returns", "events"]
    agg: Aggregate
    arg: str = "*"
    needs_columns: tuple[str, ...] = ()
    event_type: str | None = None
    dtype: str = "float64"

    def __post_init__(self) -> None:
        if self.arg == "*" and self.agg != "count":
            raise ValueError(f"measure {self.name}: only count takes `*`")

    @property
    def rollup(self) -> Rollup:
        """How slots combine into a running value: counts and sums add up, the rest keep their kind."""
        return "sum" if self.agg in ("count", "sum") else self.agg

    @property
    def expr(self) -> str:
        """The SQL aggregate over one group of source rows (``last``: the value; the engine picks the row)."""
        if self.agg == "count":
            return f"count({self.arg})"
        if self.agg == "sum":
            return exact_sum(self.arg)
        if self.agg == "last":
            return self.arg
        return f"{self.agg}({self.arg})"

    @property
    def row_expr(self) -> str | None:
        """Each source row's contribution as SQL, for an engine that aggregates rows itself: a count's
        ``arg IS NOT NULL`` (None for ``count(*)``: every row counts), a sum's amount in integer millionths
        (:func:`exact_amount`), else ``arg``; a NULL contributes nothing."""
        if self.agg == "count":
            return None if self.arg == "*" else f"({self.arg}) IS NOT NULL"
        if self.agg == "sum":
            return exact_amount(self.arg)
        return self.arg


# Amounts are summed as integers of this many units per currency unit (millionths). Integer sums are exact,
# so the order rows are added in (DuckDB and Spark sum in parallel) cannot change a feature, and they are fast
# in both engines (Spark aggregates decimals wider than 18 digits as Java BigDecimals, far slower than longs).
AMOUNT_SCALE = 1_000_000


def exact_amount(expr: str) -> str:
    """One row's amount in integer millionths (``AMOUNT_SCALE``), NULL for NaN and infinities (missing values
    in Parquet floats)."""
    return f"TRY_CAST(round(({expr}) * {AMOUNT_SCALE}) AS BIGINT)"


def exact_sum(expr: str) -> str:
    """A sum that does not depend on the order rows are added in, so the same data always gives bit-identical
    features: each value rounded to millionths and summed as a 64-bit integer (:func:`exact_amount`; divide by
    ``AMOUNT_SCALE`` to get the amount back). NaN and infinities count as missing."""
    return f"sum({exact_amount(expr)})"


# The sales channels (orders.channel) whose order shares are features, compared as lower(trim(channel)): the
# contract's examples and the synthetic shop's channels. Other channels and NULL count only in orders_total.
SALES_CHANNELS: tuple[str, ...] = ("web", "app", "store")


def channel_measure(channel: str) -> str:
    """Name of the measure counting a customer's orders placed via ``channel`` (:data:`SALES_CHANNELS`)."""
    return f"n_{channel}_orders"


def _channel(channel: str) -> Measure:
    # count() of a CASE without ELSE counts the matching rows only: plain SQL both DuckDB and Spark evaluate.
    arg = f"CASE WHEN lower(trim(channel)) = '{channel}' THEN 1 END"
    return Measure(channel_measure(channel), "orders", "count", arg, needs_columns=("channel",), dtype="int32")


def _event(name: str, event_type: str, agg: Aggregate, arg: str = "*", dtype: str = "float64") -> Measure:
    needs = ("value",) if "value" in arg else ()
    return Measure(name, "events", agg, arg, needs_columns=needs, event_type=event_type, dtype=dtype)


# Time in the reduce step: ``ts_us`` is the row's timestamp in microseconds since 1970-01-01 (UTC).
MEASURES: tuple[Measure, ...] = (
    # Purchase behaviour.
    Measure("n_orders", "orders", "count", dtype="int32"),
    # Days with at least one order: the purchase occasions of the BG/NBD prior (features.derive).
    Measure("n_order_days", "orders", "count", "new_day", dtype="int32"),
    Measure("revenue", "orders", "sum", "amount"),
    Measure("discount", "orders", "sum", "coalesce(discount_amount, 0)", needs_columns=("discount_amount",)),
    Measure("items", "orders", "sum", "coalesce(items, 0)", needs_columns=("items",)),
    Measure("gap_n", "orders", "count", "gap_days", dtype="int32"),
    Measure("gap_sum", "orders", "sum", "gap_days"),
    Measure("gap_sq", "orders", "sum", "gap_days * gap_days"),
    Measure("last_order_us", "orders", "max", "ts_us", dtype="int64"),
    Measure("first_order_us", "orders", "min", "ts_us", dtype="int64"),
    # Orders per sales channel (a shop without orders.channel gets none of them).
    *(_channel(c) for c in SALES_CHANNELS),
    Measure("n_returns", "returns", "count", dtype="int32"),
    Measure("return_value", "returns", "sum", "amount"),
    # Engagement.
    _event("n_session", "session", "count", dtype="int32"),
    _event("last_session_us", "session", "max", "ts_us", "int64"),
    _event("n_page_view", "page_view", "count", dtype="int32"),
    _event("n_add_to_cart", "add_to_cart", "count", dtype="int32"),
    _event("n_email_sent", "email_sent", "count", dtype="int32"),
    _event("n_email_open", "email_open", "count", dtype="int32"),
    _event("last_email_open_us", "email_open", "max", "ts_us", "int64"),
    _event("n_email_click", "email_click", "count", dtype="int32"),
    _event("last_email_click_us", "email_click", "max", "ts_us", "int64"),
    _event("n_unsubscribe", "unsubscribe", "count", dtype="int32"),
    # Experience and loyalty.
    _event("n_support_ticket", "support_ticket", "count", dtype="int32"),
    _event("n_review", "review", "count", "value", "int32"),
    _event("review_sum", "review", "sum", "value"),
    _event("review_last", "review", "last", "value"),
    _event("n_nps", "nps", "count", "value", "int32"),
    _event("nps_sum", "nps", "sum", "value"),
    _event("nps_last", "nps", "last", "value"),
    _event("points_earned", "loyalty_points_earned", "sum", "coalesce(value, 0)"),
    _event("points_redeemed", "loyalty_points_redeemed", "sum", "coalesce(value, 0)"),
    _event("loyalty_tier_last", "loyalty_tier_change", "last", "value"),
    _event("n_coupon_redeemed", "coupon_redeemed", "count", dtype="int32"),
    # Any event type the contract does not name is still counted, so a shop's own events are not lost.
    _event("n_other_events", "*other*", "count", dtype="int32"),
)

OTHER_EVENTS = "*other*"


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
