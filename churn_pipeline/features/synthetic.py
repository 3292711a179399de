"""A synthetic online shop in the data contract: customers, orders, returns and events from one seed.

The generative story (told in full, with every knob, in ``docs/synthetic_shop.md``):

- customers arrive over time (a base already signed up before ``start``, then a growing stream);
- "buy till you die": while alive, a customer orders as a Poisson process with a Gamma-distributed
  rate; each customer drops out at an exponential time whose hazard is heterogeneous and lowered by
  loyalty membership and raised by a latent dissatisfaction;
- order and session times follow a shop-wide intensity with a weekly, a yearly (Nov/Dec peak) and an
  hour-of-day profile;
- spend is heavy-tailed; some orders are discounted, some returned; dissatisfied customers return more,
  open more support tickets and give lower NPS scores and review ratings;
- a loyalty programme (tiers by cumulative spend, points, redemptions), weekly e-mail campaigns (sent,
  opened, clicked, unsubscribed), web sessions with page views and add-to-carts; engagement fades over a
  window before a customer drops out and stays near zero afterwards;
- a latent price sensitivity makes some customers' orders discounted more often;
- past retention campaigns: a few times over the window the shop contacted a random share of its past
  buyers with one of four actions, holding out a random control group (the ``contacts`` table); the action
  changes a treated customer's remaining lifetime and spend by a known, heterogeneous amount, and the
  ground truth of every contact's effect is returned beside the tables (``campaign_truth``).

Grain and units of the returned tables are those of :mod:`features.contract`: one row per customer, order,
refund and event; amounts in the shop's currency rounded to cents; timestamps naive UTC ``timestamp[us]``.
Every order, return and event lies in ``[start, end)``; ``signup_ts`` of customers who were already there
before the export window starts lies before ``start``.

Internally time is float hours since ``start``; timestamps are floored to whole milliseconds. Everything is
vectorised with numpy: the only Python loops run over e-mail campaigns (one per week), retention campaigns
(a handful), digit positions of ids and event-type blocks, never over customers, orders or events.
This module is pure: no I/O, no params reading, no work at import time beyond constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from churn_pipeline.features.contract import (
    CONTACT_GROUPS,
    CONTACTS,
    CUSTOMERS,
    EVENTS,
    KNOWN_ACTIONS,
    KNOWN_EVENT_TYPES,
    LOYALTY_TIERS,
    ORDERS,
    RETURNS,
)

HOURS_PER_DAY = 24.0
HOURS_PER_YEAR = 365.25 * 24.0
MS_PER_HOUR = 3_600_000

# Shares of customers by country and acquisition channel. The channel also scales the drop-out hazard
# (paid social buys many one-off customers, referrals bring loyal ones) so that it carries signal.
COUNTRIES: tuple[tuple[str, float], ...] = (
    ("DE", 0.32),
    ("FR", 0.16),
    ("NL", 0.10),
    ("AT", 0.08),
    ("BE", 0.07),
    ("CH", 0.06),
    ("IT", 0.08),
    ("ES", 0.06),
    ("PL", 0.04),
    ("GB", 0.03),
)
ACQUISITION_CHANNELS: tuple[tuple[str, float, float], ...] = (
    # name, share, drop-out hazard multiplier
    ("organic", 0.32, 0.9),
    ("paid_search", 0.26, 1.0),
    ("paid_social", 0.18, 1.3),
    ("referral", 0.12, 0.75),
    ("affiliate", 0.12, 1.15),
)
SALES_CHANNELS: tuple[tuple[str, float], ...] = (("web", 0.55), ("app", 0.35), ("store", 0.10))
# Probability an order goes through the customer's preferred sales channel rather than a random one.
PREFERRED_CHANNEL_PROB = 0.75

# Relative order/session intensity by hour of day (UTC, shop in Central Europe): quiet nights, a lunch
# bump and an evening peak.
HOUR_PROFILE: tuple[float, ...] = (
    0.35,
    0.20,
    0.12,
    0.08,
    0.07,
    0.10,
    0.25,
    0.50,
    0.75,
    0.90,
    1.00,
    1.05,
    1.15,
    1.10,
    1.00,
    1.00,
    1.05,
    1.15,
    1.35,
    1.60,
    1.75,
    1.60,
    1.20,
    0.70,
)
# Yearly profile: a Gaussian bump centred on 1 December (Black Friday to Christmas) and a summer dip.
PEAK_DAY_OF_YEAR, PEAK_WIDTH_DAYS = 334, 22.0
SUMMER_DAY_OF_YEAR, SUMMER_WIDTH_DAYS = 200, 30.0

# Loyalty points multiplier by tier level (index = level: none, bronze, silver, gold).
TIER_POINTS_MULTIPLIER: tuple[float, ...] = (0.0, 1.0, 1.25, 1.5)
DISCOUNT_RATES: tuple[float, ...] = (0.05, 0.10, 0.15, 0.20, 0.25)
# Average price of one item; the item count grows with the order's gross value.
ITEM_PRICE = 30.0
# E-mail campaigns go out at this hour (UTC) on the campaign weekday, spread over this many hours.
EMAIL_SEND_HOUR, EMAIL_SEND_SPREAD_HOURS = 9.0, 2.0
# A returned order is refunded partly with this probability, then a uniform share of the paid amount.
PARTIAL_REFUND_PROB, PARTIAL_REFUND_SHARE = 0.4, (0.2, 0.9)

# Past retention campaigns cycle through these actions (name, contact channel); the names are the contract's.
CAMPAIGN_ACTIONS: tuple[tuple[str, str], ...] = (
    ("winback_email_coupon", "email"),
    ("loyalty_points_boost", "email"),
    ("personal_outreach", "phone"),
    ("cross_sell_upsell", "email"),
)
CONTACT_CHANNELS: tuple[str, ...] = ("email", "phone")
# Campaign days are spread evenly from this share of the window to a gap before its end: 200 days (a 180-day
# follow-up and some slack), or this share of the window when that is shorter.
CAMPAIGN_FIRST_AT, CAMPAIGN_END_GAP_DAYS, CAMPAIGN_END_GAP_SHARE = 0.4, 200.0, 0.3
# An action's order lift and spend lift apply in this many days after the contact.
RESPONSE_DAYS = 90.0
# Horizons of the ground-truth effects, days, and the effect columns of the ground truth.
TRUTH_HORIZONS_DAYS: tuple[int, ...] = (90, 180)
UPLIFT_COLUMNS: tuple[str, ...] = tuple(
    f"true_uplift_{what}_{days}d" for what in ("retention", "revenue") for days in TRUTH_HORIZONS_DAYS
)
# Columns of the ground truth (``generate_shop(...)["campaign_truth"]``), one row per contact.
TRUTH_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "campaign_id",
    "action",
    "group",
    "contact_ts",
    "alive_at_contact",
    "hazard_ratio",
    "order_lift",
    "spend_lift",
    *UPLIFT_COLUMNS,
    "price_sensitivity",
    "days_to_dropout",
)
# How strongly the effects act on customers outside each action's target group (share of the full log hazard
# ratio and order lift): the coupon on customers far from dropping out, the points boost on non-members.
COUPON_SETTLED_STRENGTH, LOYALTY_BOOST_NON_MEMBER_STRENGTH = 0.1, 0.3


@dataclass(frozen=True)
class SyntheticShopConfig:
    """Every knob of the synthetic shop. Rates are per year, durations in days, probabilities in [0, 1].

    ``start`` (inclusive) and ``end`` (exclusive) bound the export window as ISO dates or datetimes
    (naive, UTC). Each knob is described in ``docs/synthetic_shop.md``.
    """

    customers: int = 20000
    seed: int = 42
    start: str = "2023-01-01"
    end: str = "2026-01-01"
    # Arrivals
    initial_share: float = 0.25
    prior_signup_days: float = 730.0
    signup_growth: float = 0.4
    never_order_share: float = 0.12
    first_order_delay_days: float = 1.0
    # Buy till you die
    purchase_rate_mean: float = 3.0
    purchase_rate_shape: float = 1.2
    base_lifetime_days: float = 720.0
    hazard_shape: float = 2.0
    # Spend, discounts, returns
    spend_median: float = 45.0
    spend_sigma: float = 0.8
    order_noise_shape: float = 4.0
    discount_prob: float = 0.2
    coupon_share: float = 0.6
    return_prob: float = 0.08
    # Seasonality (weekday factors Monday..Sunday)
    weekday_factors: tuple[float, ...] = (1.05, 1.0, 0.95, 0.95, 0.95, 0.85, 1.25)
    yearly_peak: float = 0.8
    summer_dip: float = 0.15
    # Loyalty programme
    loyalty_share: float = 0.3
    loyalty_hazard_ratio: float = 0.5
    tier_thresholds: tuple[float, ...] = (500.0, 1500.0)
    points_per_currency: float = 1.0
    points_redeem_block: float = 500.0
    points_redeem_prob: float = 0.7
    # E-mail
    email_opt_in_share: float = 0.6
    email_weekday: int = 1
    email_receive_prob: float = 0.25
    email_open_mean: float = 0.25
    email_click_prob: float = 0.15
    unsubscribe_prob: float = 0.003
    unsubscribe_dropout_factor: float = 4.0
    # Web
    sessions_base_per_year: float = 2.0
    sessions_per_order: float = 1.5
    page_views_per_session: float = 2.0
    add_to_cart_prob: float = 0.25
    engagement_fade_days: float = 120.0
    dropout_engagement: float = 0.05
    # Experience (latent dissatisfaction, standard normal across customers)
    dissatisfaction_hazard: float = 0.5
    dissatisfaction_returns: float = 0.6
    dissatisfaction_tickets: float = 1.0
    ticket_prob: float = 0.05
    nps_prob: float = 0.1
    review_prob: float = 0.08
    # Price sensitivity (latent, standard normal across customers): log-odds of a discount per SD
    price_sensitivity_discount: float = 1.0
    # Past retention campaigns (0 = none), who is contacted, and what each action costs and does
    campaigns: int = 8
    campaign_share: float = 0.25
    campaign_treatment_share: float = 0.5
    campaign_cooldown_days: float = 365.0
    coupon_cost: float = 11.0
    coupon_hazard_ratio: float = 0.3
    coupon_order_lift: float = 3.0
    loyalty_boost_cost: float = 6.0
    loyalty_boost_hazard_ratio: float = 0.7
    loyalty_boost_order_lift: float = 0.5
    loyalty_boost_spend_lift: float = 0.05
    outreach_cost: float = 15.0
    outreach_hazard_ratio: float = 0.5
    outreach_order_lift: float = 1.0
    cross_sell_cost: float = 0.5
    cross_sell_spend_lift: float = 0.25
    cross_sell_hazard_ratio: float = 1.1

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.customers < 1:
            problems.append(f"customers must be >= 1, got {self.customers}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        try:
            start, end = _parse_instant(self.start), _parse_instant(self.end)
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if end - start < np.timedelta64(7, "D"):
                problems.append(f"end ({self.end}) must be at least 7 days after start ({self.start})")
        for name in (
            "initial_share",
            "never_order_share",
            "discount_prob",
            "coupon_share",
            "return_prob",
            "loyalty_share",
            "points_redeem_prob",
            "email_opt_in_share",
            "email_receive_prob",
            "email_click_prob",
            "unsubscribe_prob",
            "add_to_cart_prob",
            "dropout_engagement",
            "ticket_prob",
            "nps_prob",
            "review_prob",
            "campaign_share",
            "campaign_treatment_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be within [0, 1], got {value}")
        if not 0.0 < self.email_open_mean < 1.0:
            problems.append(f"email_open_mean must be within (0, 1), got {self.email_open_mean}")
        for name in (
            "purchase_rate_mean",
            "purchase_rate_shape",
            "base_lifetime_days",
            "hazard_shape",
            "spend_median",
            "order_noise_shape",
            "loyalty_hazard_ratio",
            "points_redeem_block",
            "engagement_fade_days",
            "coupon_hazard_ratio",
            "loyalty_boost_hazard_ratio",
            "outreach_hazard_ratio",
            "cross_sell_hazard_ratio",
        ):
            value = getattr(self, name)
            if not value > 0:
                problems.append(f"{name} must be > 0, got {value}")
        for name in (
            "prior_signup_days",
            "first_order_delay_days",
            "spend_sigma",
            "yearly_peak",
            "points_per_currency",
            "unsubscribe_dropout_factor",
            "sessions_base_per_year",
            "sessions_per_order",
            "price_sensitivity_discount",
            "coupon_cost",
            "coupon_order_lift",
            "loyalty_boost_cost",
            "loyalty_boost_order_lift",
            "loyalty_boost_spend_lift",
            "outreach_cost",
            "outreach_order_lift",
            "cross_sell_cost",
            "cross_sell_spend_lift",
        ):
            value = getattr(self, name)
            if not value >= 0:
                problems.append(f"{name} must be >= 0, got {value}")
        if self.campaigns < 0:
            problems.append(f"campaigns must be >= 0 (0 = no past campaigns), got {self.campaigns}")
        if not self.campaign_cooldown_days >= max(TRUTH_HORIZONS_DAYS):
            problems.append(
                f"campaign_cooldown_days must be >= {max(TRUTH_HORIZONS_DAYS)} (the longest ground-truth horizon, so "
                f"one customer's follow-ups never overlap), got {self.campaign_cooldown_days}"
            )
        if not 0.0 <= self.summer_dip < 1.0:
            problems.append(f"summer_dip must be within [0, 1), got {self.summer_dip}")
        if self.page_views_per_session < 1.0:
            problems.append(f"page_views_per_session must be >= 1, got {self.page_views_per_session}")
        if len(self.weekday_factors) != 7 or min(self.weekday_factors, default=0) <= 0:
            problems.append(f"weekday_factors must be 7 positive numbers (Monday..Sunday), got {self.weekday_factors}")
        if not 0 <= self.email_weekday <= 6:
            problems.append(f"email_weekday must be 0 (Monday) .. 6 (Sunday), got {self.email_weekday}")
        n_thresholds = len(LOYALTY_TIERS) - 2
        thresholds = list(self.tier_thresholds)
        if len(thresholds) != n_thresholds or thresholds != sorted(thresholds) or min(thresholds) <= 0:
            problems.append(
                f"tier_thresholds must be {n_thresholds} ascending cumulative-spend amounts (for "
                f"{', '.join(LOYALTY_TIERS[2:])}), got {self.tier_thresholds}"
            )
        if problems:
            raise ValueError("; ".join(problems))


def _parse_instant(text: str) -> np.datetime64:
    try:
        return np.datetime64(text, "us")
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO date or datetime (e.g. 2023-01-01)") from exc


# --------------------------------------------------------------------------------------------------------
# Time: an hourly intensity grid and inhomogeneous Poisson processes sampled by inverse CDF.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """Piecewise-constant intensity per hour of the window; ``cum[k]`` is its integral over hours [0, k)."""

    weight: np.ndarray
    cum: np.ndarray

    @classmethod
    def from_weight(cls, weight: np.ndarray) -> _Grid:
        return cls(weight=weight, cum=np.concatenate(([0.0], np.cumsum(weight))))

    @property
    def hours(self) -> int:
        return len(self.weight)

    def cum_at(self, t: np.ndarray) -> np.ndarray:
        """Integrated intensity from the window start to ``t`` hours (clipped to the window)."""
        t = np.clip(t, 0.0, float(self.hours))
        k = np.minimum(t.astype(np.int64), self.hours - 1)
        return self.cum[k] + self.weight[k] * (t - k)

    def invert(self, u: np.ndarray) -> np.ndarray:
        """The hour ``t`` with ``cum_at(t) == u``; with ``u`` uniform this samples the intensity."""
        k = np.clip(np.searchsorted(self.cum, u, side="right") - 1, 0, self.hours - 1)
        return k + (u - self.cum[k]) / self.weight[k]


def _calendar_weight(config: SyntheticShopConfig, start: np.datetime64, hours: int) -> np.ndarray:
    """Shop-wide relative intensity per hour: weekday × yearly × hour-of-day, scaled to mean 1."""
    hour_ts = start.astype("datetime64[h]") + np.arange(hours)
    day = hour_ts.astype("datetime64[D]")
    weekday = (day.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    day_of_year = (day - day.astype("datetime64[Y]")).astype(np.int64)
    hour_of_day = hour_ts.astype(np.int64) % 24

    def bump(centre: int, width: float) -> np.ndarray:
        # Circular distance, so a peak near the year's end also lifts early January a little.
        dist = (day_of_year - centre + 182) % 365 - 182
        return np.exp(-0.5 * (dist / width) ** 2)

    yearly = 1.0 + config.yearly_peak * bump(PEAK_DAY_OF_YEAR, PEAK_WIDTH_DAYS)
    yearly *= 1.0 - config.summer_dip * bump(SUMMER_DAY_OF_YEAR, SUMMER_WIDTH_DAYS)
    weight = np.asarray(config.weekday_factors)[weekday] * yearly * np.asarray(HOUR_PROFILE)[hour_of_day]
    return weight / weight.mean()


def _poisson_times(
    rng: np.random.Generator, grid: _Grid, a: np.ndarray, b: np.ndarray, rate_per_hour: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Times of independent Poisson processes, row ``i`` over hours ``[a[i], b[i])`` at ``rate × grid``.

    Returns ``(row, t)``: for every event the row it belongs to (grouped, ascending) and its hour. The count
    per row is Poisson with the integrated intensity, the times are inverse-CDF samples of the grid.
    """
    lo, hi = grid.cum_at(a), grid.cum_at(b)
    mass = np.maximum(hi - lo, 0.0)
    counts = rng.poisson(mass * rate_per_hour)
    row = np.repeat(np.arange(len(a), dtype=np.int32), counts)
    t = grid.invert(lo[row] + rng.random(len(row)) * mass[row])
    # Float rounding in the inversion may land a hair outside the row's interval.
    t = np.clip(t, a[row], np.nextafter(b[row], -np.inf))
    return row, t


def _fade(t: np.ndarray, death: np.ndarray, window_hours: float, floor: float) -> np.ndarray:
    """Engagement multiplier: 1 until ``window_hours`` before drop-out, linear down to ``floor`` at drop-out,
    ``floor`` after it."""
    return floor + (1.0 - floor) * np.clip((death - t) / window_hours, 0.0, 1.0)


def _fits_key(largest: int) -> bool:
    """Whether a packed sort key up to ``largest`` fits a signed int64."""
    return largest < 2**63


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1.0 - 1e-9)
    return math.log(p / (1.0 - p))


def _group_starts(group: np.ndarray) -> np.ndarray:
    """Boolean mask of the first row of every run of equal values in a grouped array."""
    first = np.ones(len(group), dtype=bool)
    first[1:] = group[1:] != group[:-1]
    return first


def _cumsum_by_group(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Running total of ``values`` restarting at every group start (rows grouped, ``first`` marks starts)."""
    total = np.cumsum(values)
    before_group = (total - values)[first]
    return total - np.repeat(before_group, np.diff(np.append(np.flatnonzero(first), len(values))))


def _shift_in_group(values: np.ndarray, first: np.ndarray, fill: float) -> np.ndarray:
    """The previous row's value within the group, ``fill`` on each group's first row."""
    out = np.empty_like(values)
    out[1:] = values[:-1]
    out[first] = fill
    return out


# --------------------------------------------------------------------------------------------------------
# Arrow building blocks
# --------------------------------------------------------------------------------------------------------


def _zero_padded(numbers: np.ndarray, width: int) -> pa.StringArray:
    """Decimal strings of non-negative ``numbers`` left-padded with zeros to ``width`` characters.

    Built as one fixed-width byte buffer, which is far faster than formatting Python strings one by one.
    """
    n = len(numbers)
    if n * width >= 2**31:
        raise ValueError(f"{n} ids of {width} digits exceed one Arrow string array")
    digits = np.empty((n, width), dtype=np.uint8)
    rest = numbers.astype(np.int64)
    for position in range(width - 1, -1, -1):
        digits[:, position] = 48 + rest % 10
        rest = rest // 10
    if n and rest.max() > 0:
        raise ValueError(f"numbers do not fit in {width} digits")
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(width)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(digits))


def _categorical(codes: np.ndarray, labels: tuple[str, ...] | list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(list(labels), type=pa.string()))


def _ms(hours: np.ndarray) -> np.ndarray:
    """Whole milliseconds since the window start: every timestamp has millisecond resolution, so events
    placed at an order's time carry exactly its timestamp."""
    return np.floor(hours * MS_PER_HOUR).astype(np.int64)


def _timestamps(start_us: np.int64, hours: np.ndarray) -> pa.TimestampArray:
    us = start_us + _ms(hours) * 1000
    return pa.array(us.view("datetime64[us]"), type=pa.timestamp("us"))


def _cents(x: np.ndarray) -> np.ndarray:
    return np.round(x, 2)


# --------------------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------------------


class _Events:
    """Collects event blocks and assembles them once into the events table, sorted by customer then time.

    Customer, millisecond and type are packed into one int64 key, so a plain sort (much faster than an
    argsort or lexsort, and with no index array) orders the rows and the columns are decoded from it.
    Blocks are released as soon as they are packed, so the peak memory is about the events twice over.
    """

    TYPE_BITS = 4  # room for 16 event types in the key

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self.customer: list[np.ndarray] = []
        self.ms: list[np.ndarray] = []
        self.code: list[int] = []
        self.value: list[np.ndarray | None] = []
        self.has_value: dict[str, bool] = {}

    def add(self, event_type: str, customer: np.ndarray, t: np.ndarray, value: np.ndarray | None = None) -> None:
        """Add events of one type at hours ``t``; those at or after the window end are dropped."""
        if self.has_value.setdefault(event_type, value is not None) != (value is not None):
            raise ValueError(f"event type {event_type!r} added both with and without values")
        inside = t < self.horizon
        if not inside.all():
            customer, t = customer[inside], t[inside]
            value = value[inside] if value is not None else None
        self.customer.append(customer.astype(np.int32))
        self.ms.append(_ms(t))
        self.code.append(KNOWN_EVENT_TYPES.index(event_type))
        self.value.append(value.astype(np.float64) if value is not None else None)

    def table(self, customer_ids: pa.StringArray, start_us: np.int64) -> pa.Table:
        """The events table in the contract; ``customer_ids[i]`` is the id of customer index ``i``."""
        valued = np.zeros(2**self.TYPE_BITS, dtype=bool)
        for code, value in zip(self.code, self.value, strict=True):
            valued[code] |= value is not None
        span = int(max((m.max() for m in self.ms if len(m)), default=0)) + 1
        if _fits_key(len(customer_ids) * span * 2**self.TYPE_BITS):
            customer, ms, code, value = self._sorted_by_packed_key(span, valued)
        else:
            customer, ms, code, value = self._sorted_by_lexsort()
        ms *= 1000
        ms += start_us  # now microseconds since the epoch
        return pa.table(
            {
                "customer_id": pa.DictionaryArray.from_arrays(pa.array(customer), customer_ids),
                "event_ts": pa.array(ms.view("datetime64[us]"), type=pa.timestamp("us")),
                "event_type": _categorical(code, KNOWN_EVENT_TYPES),
                "value": pa.array(value),
            }
        )

    def _sorted_by_packed_key(
        self, span: int, valued: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        def pack(customer: np.ndarray, ms: np.ndarray, code: int) -> np.ndarray:
            return ((customer.astype(np.int64) * span + ms) << self.TYPE_BITS) | code

        # Valued events are few: sort them on their own and slot the values in by rank, since equal keys
        # come out of both sorts in the same relative positions.
        value_keys = [
            pack(c, m, k)
            for c, m, k, v in zip(self.customer, self.ms, self.code, self.value, strict=True)
            if v is not None
        ]
        values = [v for v in self.value if v is not None]
        by_key = np.argsort(np.concatenate(value_keys), kind="stable") if values else np.zeros(0, np.int64)
        sorted_values = np.concatenate(values)[by_key] if values else np.zeros(0)
        del value_keys, values, by_key

        keys = []
        while self.customer:
            keys.append(pack(self.customer.pop(0), self.ms.pop(0), self.code.pop(0)))
        self.value.clear()
        key = np.concatenate(keys)
        del keys
        key.sort()
        code = (key & (2**self.TYPE_BITS - 1)).astype(np.int8)
        key >>= self.TYPE_BITS
        customer = (key // span).astype(np.int32)
        key %= span
        value = np.full(len(key), np.nan)
        value[valued[code]] = sorted_values
        return customer, key, code, value

    def _sorted_by_lexsort(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Slower fallback for shops too big for the packed key (many millions of customers over years)."""
        customer = np.concatenate(self.customer)
        ms = np.concatenate(self.ms)
        blocks = list(zip(self.customer, self.code, self.value, strict=True))
        code = np.concatenate([np.full(len(c), k, dtype=np.int8) for c, k, _ in blocks])
        value = np.concatenate([v if v is not None else np.full(len(c), np.nan) for c, _, v in blocks])
        del blocks
        for field in (self.customer, self.ms, self.code, self.value):
            field.clear()
        order = np.lexsort((code, ms, customer))
        return customer[order], ms[order], code[order], value[order]


@dataclass(frozen=True)
class _Window:
    """The export window: calendar intensity grid and the conversion from hours to timestamps."""

    start: np.datetime64
    start_us: np.int64
    horizon: float  # hours from start to end
    grid: _Grid


@dataclass(frozen=True)
class _Population:
    """Customer-level draws, one entry per customer (index = id - 1, ascending with signup time).

    Times are hours since the window start: ``signup`` may be negative (signed up before the window),
    ``death`` (drop-out) may lie beyond the window end.
    """

    signup: np.ndarray
    is_new: np.ndarray
    country: np.ndarray
    acquisition: np.ndarray
    opt_in: np.ndarray
    member: np.ndarray
    never_orders: np.ndarray
    dissatisfaction: np.ndarray
    purchase_rate: np.ndarray  # orders per year while alive
    spend_scale: np.ndarray
    open_propensity: np.ndarray
    preferred_channel: np.ndarray
    first_order: np.ndarray
    life_start: np.ndarray
    death: np.ndarray
    price_sensitivity: np.ndarray
    discount_prob: np.ndarray  # probability that an order of the customer is discounted

    @property
    def size(self) -> int:
        return len(self.signup)

    @property
    def visible_from(self) -> np.ndarray:
        """When the customer's events can start: signup, or the window start for earlier signups."""
        return np.maximum(self.signup, 0.0)


@dataclass(frozen=True)
class _Orders:
    """All orders, rows grouped by customer and ascending in time within each customer."""

    customer: np.ndarray
    t: np.ndarray
    first: np.ndarray  # True on each customer's first order in the window
    amount: np.ndarray
    discount: np.ndarray
    discounted: np.ndarray
    items: np.ndarray
    channel: np.ndarray


def _draw_population(
    rng: np.random.Generator, cfg: SyntheticShopConfig, win: _Window, rng_campaigns: np.random.Generator
) -> _Population:
    """Customer-level traits. The price sensitivity comes from the second stream ``rng_campaigns``, so that
    every draw of the main stream stays what it was before the trait existed."""
    n, hours = cfg.customers, int(win.horizon)
    n_prior = int(rng.binomial(n, cfg.initial_share))
    prior_signup = -rng.random(n_prior) * cfg.prior_signup_days * HOURS_PER_DAY
    # New arrivals follow the shop's seasonality on top of exponential growth of the arrival rate.
    growth = np.exp(cfg.signup_growth * (np.arange(hours) + 0.5) / HOURS_PER_YEAR)
    signup_grid = _Grid.from_weight(win.grid.weight * growth)
    new_signup = signup_grid.invert(rng.random(n - n_prior) * signup_grid.cum[-1])
    # Ids ascend with signup time, as a shop's account numbers do.
    signup = np.concatenate((prior_signup, np.minimum(new_signup, np.nextafter(win.horizon, 0))))
    by_signup = np.argsort(signup, kind="stable")
    signup = signup[by_signup]
    is_new = (np.arange(n) >= n_prior)[by_signup]

    acquisition = rng.choice(len(ACQUISITION_CHANNELS), size=n, p=[c[1] for c in ACQUISITION_CHANNELS])
    member = rng.random(n) < cfg.loyalty_share
    never_orders = rng.random(n) < cfg.never_order_share
    dissatisfaction = rng.standard_normal(n)
    hazard = (
        rng.gamma(cfg.hazard_shape, 1.0 / cfg.hazard_shape, n)
        / (cfg.base_lifetime_days * HOURS_PER_DAY)
        * np.asarray([c[2] for c in ACQUISITION_CHANNELS])[acquisition]
        * np.where(member, cfg.loyalty_hazard_ratio, 1.0)
        * np.exp(cfg.dissatisfaction_hazard * dissatisfaction)
    )
    # New customers place their first order at (or soon after) signup and their lifetime starts there;
    # customers signed up before the window are alive at its start (lifetimes are memoryless).
    first_order = signup + rng.exponential(cfg.first_order_delay_days * HOURS_PER_DAY, n)
    life_start = np.where(is_new, np.where(never_orders, signup, first_order), 0.0)
    concentration = 4.0  # of the Beta distribution of e-mail open propensities
    price_sensitivity = rng_campaigns.standard_normal(n)
    if 0.0 < cfg.discount_prob < 1.0 and cfg.price_sensitivity_discount != 0:
        discount_prob = _sigmoid(_logit(cfg.discount_prob) + cfg.price_sensitivity_discount * price_sensitivity)
    else:
        discount_prob = np.full(n, cfg.discount_prob)
    return _Population(
        signup=signup,
        is_new=is_new,
        country=rng.choice(len(COUNTRIES), size=n, p=[c[1] for c in COUNTRIES]).astype(np.int8),
        acquisition=acquisition.astype(np.int8),
        opt_in=rng.random(n) < cfg.email_opt_in_share,
        member=member,
        never_orders=never_orders,
        dissatisfaction=dissatisfaction,
        purchase_rate=rng.gamma(cfg.purchase_rate_shape, cfg.purchase_rate_mean / cfg.purchase_rate_shape, n),
        spend_scale=cfg.spend_median * np.exp(cfg.spend_sigma * rng.standard_normal(n)),
        open_propensity=rng.beta(cfg.email_open_mean * concentration, (1 - cfg.email_open_mean) * concentration, n),
        preferred_channel=rng.choice(len(SALES_CHANNELS), size=n, p=[c[1] for c in SALES_CHANNELS]),
        first_order=first_order,
        life_start=life_start,
        death=life_start + rng.exponential(1.0, n) / hazard,
        price_sensitivity=price_sensitivity,
        discount_prob=discount_prob,
    )


def _draw_order_times(rng: np.random.Generator, win: _Window, pop: _Population) -> tuple[np.ndarray, np.ndarray]:
    """Every order's ``(customer, hour)``: the first order of in-window signups, then the repeat orders while
    alive. Not yet sorted."""
    buyers = np.flatnonzero(~pop.never_orders)
    alive_end = np.minimum(pop.death[buyers], win.horizon)
    row, repeat_t = _poisson_times(
        rng, win.grid, pop.life_start[buyers], alive_end, pop.purchase_rate[buyers] / HOURS_PER_YEAR
    )
    first_buyers = np.flatnonzero(pop.is_new & ~pop.never_orders & (pop.first_order < win.horizon))
    customer = np.concatenate((first_buyers, buyers[row])).astype(np.int32)
    t = np.concatenate((pop.first_order[first_buyers], repeat_t))
    return customer, t


def _draw_orders(
    rng: np.random.Generator,
    cfg: SyntheticShopConfig,
    win: _Window,
    pop: _Population,
    customer: np.ndarray,
    t: np.ndarray,
    spend_factor: np.ndarray | None,
) -> _Orders:
    """Sorts the orders ``(customer, hour)`` and draws their values; ``spend_factor`` (per order, None = 1)
    multiplies the gross value (a campaign's spend lift)."""
    span = int(win.horizon) * MS_PER_HOUR + 1
    if _fits_key(cfg.customers * span):
        # One packed int64 key (customer, millisecond) argsorts far faster than a two-key lexsort.
        by_customer = np.argsort(customer.astype(np.int64) * span + _ms(t))
    else:
        by_customer = np.lexsort((t, customer))
    customer, t = customer[by_customer], t[by_customer]
    n_orders = len(t)

    # Heavy tail: a lognormal per-customer scale times Gamma per-order noise (mean 1).
    noise = rng.gamma(cfg.order_noise_shape, 1 / cfg.order_noise_shape, n_orders)
    scale = pop.spend_scale[customer]
    if spend_factor is not None:
        scale *= spend_factor[by_customer]
    gross = _cents(np.maximum(scale * noise, 1.0))
    del scale
    # Price-sensitive customers' orders are discounted more often.
    discounted = rng.random(n_orders) < pop.discount_prob[customer]
    rate = np.asarray(DISCOUNT_RATES)[rng.integers(0, len(DISCOUNT_RATES), n_orders)]
    discount = np.where(discounted, _cents(gross * rate), 0.0)
    channel = np.where(
        rng.random(n_orders) < PREFERRED_CHANNEL_PROB,
        pop.preferred_channel[customer],
        rng.choice(len(SALES_CHANNELS), size=n_orders, p=[c[1] for c in SALES_CHANNELS]),
    )
    return _Orders(
        customer=customer,
        t=t,
        first=_group_starts(customer),
        amount=_cents(gross - discount),
        discount=discount,
        discounted=discounted,
        items=(1 + rng.poisson(gross / ITEM_PRICE)).astype(np.int64),
        channel=channel.astype(np.int8),
    )


def _draw_experience(
    rng: np.random.Generator,
    cfg: SyntheticShopConfig,
    win: _Window,
    pop: _Population,
    orders: _Orders,
    events: _Events,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns, support tickets, NPS answers, reviews and coupons: per-order draws. Returns the refunds as
    ``(order row, hour, amount)``; the rest goes to ``events``."""
    n_orders = len(orders.t)
    d = pop.dissatisfaction[orders.customer]
    returned = rng.random(n_orders) < _sigmoid(_logit(cfg.return_prob) + cfg.dissatisfaction_returns * d)
    ret_rows = np.flatnonzero(returned)
    ret_t = orders.t[ret_rows] + HOURS_PER_DAY * (1.0 + rng.gamma(2.0, 2.5, len(ret_rows)))
    paid = orders.amount[ret_rows]
    partial = rng.random(len(ret_rows)) < PARTIAL_REFUND_PROB
    ret_amount = np.where(partial, _cents(paid * rng.uniform(*PARTIAL_REFUND_SHARE, len(ret_rows))), paid)
    ret_amount = np.minimum(np.maximum(ret_amount, 0.01), paid)
    # Refunds after the window end are not in the export.
    inside = ret_t < win.horizon

    # A return makes a ticket likelier on top of the customer's own propensity.
    p_ticket = _sigmoid(_logit(cfg.ticket_prob) + cfg.dissatisfaction_tickets * d) + 0.25 * returned
    rows = np.flatnonzero(rng.random(n_orders) < p_ticket)
    events.add(
        "support_ticket",
        orders.customer[rows],
        orders.t[rows] + rng.exponential(3 * HOURS_PER_DAY, len(rows)),
    )
    # Answers a few days after an order: NPS centres on 8.2 for a typical customer and a review on 4.2
    # stars; each standard deviation of dissatisfaction and a return on that order pull them down.
    rows = np.flatnonzero(rng.random(n_orders) < cfg.nps_prob)
    score = np.round(8.2 - 1.8 * d[rows] - 2.5 * returned[rows] + rng.normal(0.0, 1.7, len(rows)))
    events.add(
        "nps",
        orders.customer[rows],
        orders.t[rows] + HOURS_PER_DAY * (3 + rng.exponential(4.0, len(rows))),
        np.clip(score, 0, 10),
    )
    rows = np.flatnonzero(rng.random(n_orders) < cfg.review_prob)
    rating = np.round(4.2 - 0.7 * d[rows] - 1.0 * returned[rows] + rng.normal(0.0, 0.7, len(rows)))
    events.add(
        "review",
        orders.customer[rows],
        orders.t[rows] + HOURS_PER_DAY * (5 + rng.exponential(5.0, len(rows))),
        np.clip(rating, 1, 5),
    )
    rows = np.flatnonzero(orders.discounted & (rng.random(n_orders) < cfg.coupon_share))
    events.add("coupon_redeemed", orders.customer[rows], orders.t[rows], orders.discount[rows])
    return ret_rows[inside], ret_t[inside], ret_amount[inside]


def _draw_loyalty(
    rng: np.random.Generator, cfg: SyntheticShopConfig, pop: _Population, orders: _Orders, events: _Events
) -> np.ndarray:
    """Members join at their first order (the programme starts with the window); the tier follows cumulative
    spend and never goes down. Adds the loyalty events; returns each customer's tier level at the end."""
    rows = np.flatnonzero(pop.member[orders.customer])
    customer, t, amount = orders.customer[rows], orders.t[rows], orders.amount[rows]
    first = orders.first[rows]
    spent = _cumsum_by_group(amount, first)
    level = 1 + np.searchsorted(np.asarray(cfg.tier_thresholds), spent, side="right")
    up = np.flatnonzero(level > _shift_in_group(level, first, 0))
    # One second after the order, so a time-ordered read shows the order before the tier change it caused.
    events.add("loyalty_tier_change", customer[up], t[up] + 1.0 / 3600.0, level[up])
    points = np.floor(amount * cfg.points_per_currency * np.asarray(TIER_POINTS_MULTIPLIER)[level])
    earned = np.flatnonzero(points > 0)
    events.add("loyalty_points_earned", customer[earned], t[earned], points[earned])
    # Every full block of points can be turned into a voucher; some members cash it in at once, the rest
    # let it lapse. So redeemed points never exceed the points earned so far.
    blocks = np.floor(_cumsum_by_group(points, first) / cfg.points_redeem_block)
    new_blocks = blocks - _shift_in_group(blocks, first, 0.0)
    redeem = np.flatnonzero((new_blocks > 0) & (rng.random(len(blocks)) < cfg.points_redeem_prob))
    events.add(
        "loyalty_points_redeemed",
        customer[redeem],
        t[redeem] + 2.0 / 60.0,
        new_blocks[redeem] * cfg.points_redeem_block,
    )
    final_level = np.zeros(pop.size, dtype=np.int8)
    last = np.ones_like(first)
    last[:-1] = first[1:]
    final_level[customer[last]] = level[last]
    return final_level


def _campaign_hours(cfg: SyntheticShopConfig, win: _Window) -> np.ndarray:
    """Send hours of the weekly campaigns: every ``email_weekday`` at EMAIL_SEND_HOUR within the window."""
    first_day = win.start.astype("datetime64[D]")
    days_ahead = (cfg.email_weekday - (first_day.astype(np.int64) + 3) % 7) % 7  # 1970-01-01 was a Thursday
    first = float((first_day + days_ahead - win.start) / np.timedelta64(1, "h")) + EMAIL_SEND_HOUR
    if first < 0:
        first += 7 * HOURS_PER_DAY
    return np.arange(first, win.horizon, 7 * HOURS_PER_DAY)


def _draw_email(
    rng: np.random.Generator, cfg: SyntheticShopConfig, win: _Window, pop: _Population, events: _Events
) -> tuple[np.ndarray, np.ndarray]:
    """Weekly campaigns to a random subset of opted-in, still-subscribed customers. Adds sent/open/click/
    unsubscribe events; returns the clicks ``(customer, hour)`` because each click starts a web session."""
    fade_hours = cfg.engagement_fade_days * HOURS_PER_DAY
    subscriber = np.flatnonzero(pop.opt_in)
    subscribed = np.ones(len(subscriber), dtype=bool)
    sub_from = pop.visible_from[subscriber]
    death = pop.death[subscriber]
    # Dissatisfaction raises unsubscribing as it raises drop-out.
    p_unsub = np.minimum(
        cfg.unsubscribe_prob * np.exp(cfg.dissatisfaction_hazard * pop.dissatisfaction[subscriber]), 1.0
    )
    # Heavy buyers open more; capped to stay a probability.
    buyer_factor = (pop.purchase_rate[subscriber] / cfg.purchase_rate_mean) ** 0.3
    p_open = np.minimum(pop.open_propensity[subscriber] * buyer_factor, 0.95)
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        "email_sent": [],
        "email_open": [],
        "email_click": [],
        "unsubscribe": [],
    }
    # The loop runs over campaigns (~52 a year), vectorised over recipients: who is still subscribed
    # carries over from one campaign to the next.
    for t_campaign in _campaign_hours(cfg, win):
        eligible = np.flatnonzero(subscribed & (sub_from <= t_campaign))
        got = eligible[rng.random(len(eligible)) < cfg.email_receive_prob]
        sent_t = t_campaign + rng.random(len(got)) * EMAIL_SEND_SPREAD_HOURS
        out["email_sent"].append((got, sent_t))
        engagement = _fade(sent_t, death[got], fade_hours, cfg.dropout_engagement)
        opened = rng.random(len(got)) < p_open[got] * engagement
        opener, open_t = got[opened], sent_t[opened] + rng.exponential(8.0, int(opened.sum()))
        out["email_open"].append((opener, open_t))
        clicked = rng.random(len(opener)) < cfg.email_click_prob
        click_t = open_t[clicked] + rng.exponential(0.05, int(clicked.sum()))
        out["email_click"].append((opener[clicked], click_t))
        factor = np.where(sent_t >= death[got], cfg.unsubscribe_dropout_factor, 1.0)
        unsub = rng.random(len(got)) < p_unsub[got] * factor
        out["unsubscribe"].append((got[unsub], sent_t[unsub] + rng.exponential(12.0, int(unsub.sum()))))
        subscribed[got[unsub]] = False
    clicks = (np.zeros(0, np.int32), np.zeros(0))
    for event_type, blocks in out.items():
        who = subscriber[np.concatenate([b[0] for b in blocks])] if blocks else np.zeros(0, np.int64)
        t = np.concatenate([b[1] for b in blocks]) if blocks else np.zeros(0)
        events.add(event_type, who, t)
        if event_type == "email_click":
            clicks = (who, t)
    return clicks


def _draw_web(
    rng: np.random.Generator,
    cfg: SyntheticShopConfig,
    win: _Window,
    pop: _Population,
    clicks: tuple[np.ndarray, np.ndarray],
    events: _Events,
) -> None:
    """Sessions (browsing at a rate tied to the purchase rate, plus one per e-mail click), their page views
    and add-to-carts. Browsing fades over ``engagement_fade_days`` before drop-out and stays at
    ``dropout_engagement`` of its rate afterwards."""
    fade_hours = cfg.engagement_fade_days * HOURS_PER_DAY
    rate = (cfg.sessions_base_per_year + cfg.sessions_per_order * pop.purchase_rate) / HOURS_PER_YEAR
    visible_from = pop.visible_from
    # While alive: sample at the full rate and thin by the fade (exact for a Poisson process).
    row, alive_t = _poisson_times(rng, win.grid, visible_from, np.minimum(pop.death, win.horizon), rate)
    kept = rng.random(len(row)) < _fade(alive_t, pop.death[row], fade_hours, cfg.dropout_engagement)
    alive_row, alive_t = row[kept], alive_t[kept]
    del row, kept
    # After drop-out: a trickle at the floor rate.
    dead_from, window_end = np.maximum(pop.death, visible_from), np.full(pop.size, win.horizon)
    dead_row, dead_t = _poisson_times(rng, win.grid, dead_from, window_end, rate * cfg.dropout_engagement)
    customer = np.concatenate((alive_row, dead_row, clicks[0].astype(np.int32)))
    t = np.concatenate((alive_t, dead_t, clicks[1] + 10.0 / 3600.0))
    del alive_row, alive_t, dead_row, dead_t
    events.add("session", customer, t)

    n_sessions = len(t)
    views = 1 + rng.poisson(cfg.page_views_per_session - 1.0, n_sessions)
    session = np.repeat(np.arange(n_sessions, dtype=np.int64), views)
    rank = np.arange(len(session)) - np.repeat(np.cumsum(views) - views, views)
    # About a minute per page, increasing within the session.
    events.add("page_view", customer[session], t[session] + (rank + rng.random(len(session))) / 60.0)
    del session, rank
    cart = np.flatnonzero(rng.random(n_sessions) < cfg.add_to_cart_prob)
    events.add("add_to_cart", customer[cart], t[cart] + rng.random(len(cart)) * views[cart] / 60.0)


# --------------------------------------------------------------------------------------------------------
# Past retention campaigns: who was contacted, what the action did, and the ground truth of its effect.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Campaign:
    campaign_id: str
    action: int  # index into CAMPAIGN_ACTIONS
    t0: float  # send hour; the contacts go out over the next EMAIL_SEND_SPREAD_HOURS


@dataclass(frozen=True)
class _Effect:
    """What an action does to each of a set of customers (one entry per customer)."""

    hazard_ratio: np.ndarray  # on the remaining drop-out hazard: the rest of the life lasts 1 / ratio as long
    order_lift: np.ndarray  # extra order rate (share of the customer's own) in the RESPONSE_DAYS after contact
    spend_lift: np.ndarray  # extra gross value (share) of the orders in the RESPONSE_DAYS after contact


@dataclass(frozen=True)
class _Contacts:
    """Every contact of the past campaigns, treatment and control, in campaign then customer order, with what
    the action does (or would do) to the customer and the ground truth of its effect."""

    campaign_ids: list[str]
    campaign: np.ndarray  # index into campaign_ids
    action: np.ndarray  # index into CAMPAIGN_ACTIONS
    customer: np.ndarray
    t: np.ndarray
    treated: np.ndarray
    remaining: np.ndarray  # hours from the contact to drop-out without the action; <= 0: dropped out already
    hazard_ratio: np.ndarray
    order_lift: np.ndarray
    spend_lift: np.ndarray
    price_sensitivity: np.ndarray
    truth: dict[str, np.ndarray]  # UPLIFT_COLUMNS


def _campaign_schedule(cfg: SyntheticShopConfig, win: _Window) -> list[_Campaign]:
    """``cfg.campaigns`` campaign days spread evenly from CAMPAIGN_FIRST_AT of the window to a gap before its
    end (so that the last one's follow-up fits), cycling through CAMPAIGN_ACTIONS, sent at EMAIL_SEND_HOUR.
    Ids are ``YYYY-MM-action``, with the day (and a number) added only where a short window needs them."""
    if cfg.campaigns == 0:
        return []
    days = win.horizon / HOURS_PER_DAY
    offsets = np.linspace(
        CAMPAIGN_FIRST_AT * days, days - min(CAMPAIGN_END_GAP_DAYS, CAMPAIGN_END_GAP_SHARE * days), cfg.campaigns
    )
    dates = (win.start + (offsets * HOURS_PER_DAY * 3600e6).astype("timedelta64[us]")).astype("datetime64[D]")
    t0 = (dates - win.start) / np.timedelta64(1, "h") + EMAIL_SEND_HOUR
    actions = [k % len(CAMPAIGN_ACTIONS) for k in range(cfg.campaigns)]
    for width in (7, 10):  # month, else day
        ids = [f"{str(d)[:width]}-{CAMPAIGN_ACTIONS[a][0]}" for d, a in zip(dates, actions, strict=True)]
        if len(set(ids)) == len(ids):
            break
    else:
        ids = [f"{campaign_id}-{k + 1}" for k, campaign_id in enumerate(ids)]
    return [_Campaign(i, a, float(t)) for i, a, t in zip(ids, actions, t0, strict=True)]


def _action_effect(
    cfg: SyntheticShopConfig, action: int, pop: _Population, who: np.ndarray, remaining: np.ndarray
) -> _Effect:
    """What ``action`` does to customers ``who``, ``remaining`` hours before their drop-out. Each effect is its
    knob's full size scaled by a strength in [0, 1], how well the customer fits the action's target (the
    hazard ratio as ratio ** strength). Customers who dropped out already are out of reach (ratio 1, no lift):
    nothing revives them."""
    name = CAMPAIGN_ACTIONS[action][0]
    d = pop.dissatisfaction[who]
    none = np.zeros(len(who))
    if name == "winback_email_coupon":
        # The coupon wins back price-sensitive customers who are drifting away (within the engagement fade
        # before their drop-out); for customers far from dropping out it mostly pays for orders they would
        # have placed anyway.
        drifting = remaining < cfg.engagement_fade_days * HOURS_PER_DAY
        strength = _sigmoid(2.0 * pop.price_sensitivity[who]) * np.where(drifting, 1.0, COUPON_SETTLED_STRENGTH)
        ratio, orders, spend = cfg.coupon_hazard_ratio**strength, cfg.coupon_order_lift * strength, none
    elif name == "loyalty_points_boost":
        # Bonus points keep the members who collect them (and a few others) and make everyone spend a little more.
        strength = np.where(pop.member[who], 1.0, LOYALTY_BOOST_NON_MEMBER_STRENGTH)
        ratio, orders = cfg.loyalty_boost_hazard_ratio**strength, cfg.loyalty_boost_order_lift * strength
        spend = none + cfg.loyalty_boost_spend_lift
    elif name == "personal_outreach":
        # A call keeps high-value customers (spend scale more than one SD above the median) and resolves the
        # issues of dissatisfied ones (more than one SD); it does little for the rest.
        value = np.log(pop.spend_scale[who] / cfg.spend_median) / cfg.spend_sigma if cfg.spend_sigma > 0 else none
        strength = 1.0 - (1.0 - _sigmoid(3.0 * (value - 1.0))) * (1.0 - _sigmoid(3.0 * (d - 1.0)))
        ratio, orders, spend = cfg.outreach_hazard_ratio**strength, cfg.outreach_order_lift * strength, none
    else:  # cross_sell_upsell
        # Frequent buyers add to their baskets; more selling slightly annoys dissatisfied customers.
        frequent = _sigmoid(3.0 * np.log(np.maximum(pop.purchase_rate[who], 1e-12) / cfg.purchase_rate_mean))
        ratio, orders = cfg.cross_sell_hazard_ratio ** _sigmoid(3.0 * (d - 1.0)), none
        spend = cfg.cross_sell_spend_lift * frequent
    alive = remaining > 0
    return _Effect(
        hazard_ratio=np.where(alive, ratio, 1.0),
        order_lift=np.where(alive, orders, 0.0),
        spend_lift=np.where(alive, spend, 0.0),
    )


def _true_effects(
    cfg: SyntheticShopConfig,
    win: _Window,
    pop: _Population,
    who: np.ndarray,
    t: np.ndarray,
    remaining: np.ndarray,
    effect: _Effect,
) -> dict[str, np.ndarray]:
    """The expected effect of the action on each contacted customer, treatment minus control, given their latent
    traits and remaining lifetime R (``remaining`` hours without the action, R / hazard ratio with it), for each
    horizon H of TRUTH_HORIZONS_DAYS, within the window.

    With m(x) = rate × (Λ(t + x) − Λ(t)) the expected orders of the x hours after contact (Λ the shop's
    integrated intensity) and r = RESPONSE_DAYS: expected orders in [t, t + H) are m(min(R, H)) without the
    action and m(min(R', H)) + order lift × m(min(R', H, r)) with it (R' = R / hazard ratio), so retention
    (P(at least one order), Poisson) is 1 − exp(−expected orders); revenue is expected orders × the expected
    net value of one order (gross scale less the expected discount and refund), × (1 + spend lift) within r.
    """
    rate = pop.purchase_rate[who] / HOURS_PER_YEAR
    left = np.maximum(remaining, 0.0)
    left_treated = left / effect.hazard_ratio
    at_contact = win.grid.cum_at(t)

    def expected_orders(hours: np.ndarray) -> np.ndarray:
        return rate * (win.grid.cum_at(t + hours) - at_contact)

    p_return = _sigmoid(_logit(cfg.return_prob) + cfg.dissatisfaction_returns * pop.dissatisfaction[who])
    refunded_share = 1.0 - PARTIAL_REFUND_PROB + PARTIAL_REFUND_PROB * float(np.mean(PARTIAL_REFUND_SHARE))
    per_order = (
        pop.spend_scale[who]
        * (1.0 - pop.discount_prob[who] * float(np.mean(DISCOUNT_RATES)))
        * (1.0 - p_return * refunded_share)
    )
    response_hours = RESPONSE_DAYS * HOURS_PER_DAY
    truth: dict[str, np.ndarray] = {}
    for days in TRUTH_HORIZONS_DAYS:
        hours = days * HOURS_PER_DAY
        control = expected_orders(np.minimum(left, hours))
        responding = expected_orders(np.minimum(left_treated, min(hours, response_hours)))
        treated = expected_orders(np.minimum(left_treated, hours)) + effect.order_lift * responding
        truth[f"true_uplift_retention_{days}d"] = np.exp(-control) - np.exp(-treated)
        # Orders in the response window are worth (1 + spend lift) each; the order lift's orders all are.
        extra_value = effect.spend_lift * (1.0 + effect.order_lift) * responding
        truth[f"true_uplift_revenue_{days}d"] = per_order * (treated - control + extra_value)
    return truth


def _action_cost(cfg: SyntheticShopConfig, name: str) -> float:
    """What one treated contact with the action costs (contact and incentive)."""
    return {
        "winback_email_coupon": cfg.coupon_cost,
        "loyalty_points_boost": cfg.loyalty_boost_cost,
        "personal_outreach": cfg.outreach_cost,
        "cross_sell_upsell": cfg.cross_sell_cost,
    }[name]


def _run_campaigns(
    rng: np.random.Generator,
    cfg: SyntheticShopConfig,
    win: _Window,
    pop: _Population,
    customer: np.ndarray,
    t: np.ndarray,
) -> tuple[_Population, np.ndarray, np.ndarray, np.ndarray | None, _Contacts]:
    """Runs the past campaigns in time order over the drawn orders ``(customer, hour)``.

    Each campaign contacts a random ``campaign_share`` of the eligible customers (an order before the send, no
    contact in the last ``campaign_cooldown_days``) and assigns a random ``campaign_treatment_share`` of them to
    treatment, the rest to control. A treated customer still alive lives the rest of their life 1 / hazard ratio
    times as long (exact for the exponential lifetimes here, which are memoryless); their orders from the
    contact on are redrawn at the same rate up to the new drop-out, plus the order lift's extra orders in the
    RESPONSE_DAYS after the contact, where the spend lift applies too. Returns the population with the new
    drop-out times, the orders ``(customer, hour, spend factor or None)`` and the contacts. With no campaigns
    the orders come back untouched."""
    schedule = _campaign_schedule(cfg, win)
    n = pop.size
    death = pop.death.copy()
    first_order = np.full(n, np.inf)
    if schedule:
        np.minimum.at(first_order, customer, t)
    last_contact = np.full(n, -np.inf)
    cooldown = cfg.campaign_cooldown_days * HOURS_PER_DAY
    response_hours = RESPONSE_DAYS * HOURS_PER_DAY
    first_acted = np.full(n, np.inf)  # the drawn orders from here on are replaced by a redraw
    redrawn: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (customer, hour, spend factor) per campaign
    parts: dict[str, list[np.ndarray]] = {}  # contact columns, one block per campaign

    for k, campaign in enumerate(schedule):
        eligible = np.flatnonzero((first_order < campaign.t0) & (last_contact <= campaign.t0 - cooldown))
        picked = rng.permutation(eligible)[: round(cfg.campaign_share * len(eligible))]
        treated = np.arange(len(picked)) < round(cfg.campaign_treatment_share * len(picked))
        by_customer = np.argsort(picked)
        who, treated = picked[by_customer], treated[by_customer]
        contact_t = campaign.t0 + rng.random(len(who)) * EMAIL_SEND_SPREAD_HOURS
        last_contact[who] = campaign.t0
        remaining = death[who] - contact_t
        effect = _action_effect(cfg, campaign.action, pop, who, remaining)
        block = {
            "campaign": np.full(len(who), k, dtype=np.int32),
            "action": np.full(len(who), campaign.action, dtype=np.int8),
            "customer": who,
            "t": contact_t,
            "treated": treated,
            "remaining": remaining,
            "hazard_ratio": effect.hazard_ratio,
            "order_lift": effect.order_lift,
            "spend_lift": effect.spend_lift,
            "price_sensitivity": pop.price_sensitivity[who],
            **_true_effects(cfg, win, pop, who, contact_t, remaining, effect),
        }
        for name, values in block.items():
            parts.setdefault(name, []).append(values)

        # The action: treated customers still alive live longer (or shorter), and their orders from the
        # contact on are redrawn.
        acted = treated & (remaining > 0)
        c, c_t = who[acted], contact_t[acted]
        death[c] = c_t + remaining[acted] / effect.hazard_ratio[acted]
        first_acted[c] = np.minimum(first_acted[c], c_t)
        since = np.full(n, np.inf)
        since[c] = c_t
        for i, (rc, rt, rf) in enumerate(redrawn):  # earlier campaigns' redraws
            stay = rt < since[rc]
            redrawn[i] = (rc[stay], rt[stay], rf[stay])
        rate, alive_end = pop.purchase_rate[c] / HOURS_PER_YEAR, np.minimum(death[c], win.horizon)
        row, new_t = _poisson_times(rng, win.grid, c_t, alive_end, rate)
        # The response: a Poisson process of extra orders on top (the sum is Poisson at the lifted rate).
        extra_row, extra_t = _poisson_times(
            rng, win.grid, c_t, np.minimum(alive_end, c_t + response_hours), rate * effect.order_lift[acted]
        )
        row, new_t = np.concatenate((row, extra_row)), np.concatenate((new_t, extra_t))
        lift = np.where(new_t < c_t[row] + response_hours, 1.0 + effect.spend_lift[acted][row], 1.0)
        redrawn.append((c[row], new_t, lift))

    def column(name: str, dtype: type = np.float64) -> np.ndarray:
        return np.concatenate(parts[name]) if schedule else np.zeros(0, dtype=dtype)

    contacts = _Contacts(
        campaign_ids=[c.campaign_id for c in schedule],
        campaign=column("campaign", np.int32),
        action=column("action", np.int8),
        customer=column("customer", np.int64),
        t=column("t"),
        treated=column("treated", bool),
        remaining=column("remaining"),
        hazard_ratio=column("hazard_ratio"),
        order_lift=column("order_lift"),
        spend_lift=column("spend_lift"),
        price_sensitivity=column("price_sensitivity"),
        truth={name: column(name) for name in UPLIFT_COLUMNS},
    )
    if not schedule:
        return pop, customer, t, None, contacts
    kept = t < first_acted[customer]
    customer = np.concatenate([customer[kept]] + [r[0] for r in redrawn]).astype(np.int32)
    spend_factor = np.concatenate([np.ones(int(kept.sum()))] + [r[2] for r in redrawn])
    t = np.concatenate([t[kept]] + [r[1] for r in redrawn])
    return replace(pop, death=death), customer, t, spend_factor, contacts


def generate_shop(config: SyntheticShopConfig | None = None) -> dict[str, pa.Table]:
    """Generate the synthetic shop described by ``config`` (defaults when None).

    Returns tables ``customers``, ``orders``, ``returns``, ``events``, ``contacts`` with exactly the contract's
    columns in its order: one row per customer / order / refund / event / campaign contact, amounts in currency
    rounded to cents, timestamps naive UTC ``timestamp[us]``; orders, returns, events and contacts within
    ``[start, end)``. Beside them, ``campaign_truth`` (not a contract table; columns :data:`TRUTH_COLUMNS`)
    holds the ground truth of every contact's effect, one row per ``contacts`` row in the same order.
    Same config (seed included) → identical tables. Big repeated string columns (customer ids outside
    ``customers``, categorical columns) are dictionary-encoded Arrow strings; written to Parquet without the
    Arrow schema they read back as plain strings. Row order: customers by ``customer_id`` (ids ascend with
    signup time), orders (numbered in time order) and returns by time, events by customer then time, contacts
    by campaign (in time order) then customer.
    """
    cfg = config or SyntheticShopConfig()
    rng = np.random.default_rng(cfg.seed)
    start, end = _parse_instant(cfg.start), _parse_instant(cfg.end)
    hours = int((end - start) // np.timedelta64(1, "h"))
    win = _Window(
        start=start,
        start_us=start.astype(np.int64),
        horizon=float(hours),
        grid=_Grid.from_weight(_calendar_weight(cfg, start, hours)),
    )
    events = _Events(win.horizon)
    # A second stream for the price sensitivity and the campaigns: the main stream's draws do not depend on
    # them, so `campaigns: 0` with `price_sensitivity_discount: 0` gives the shop without either, bit for bit.
    rng_campaigns = rng.spawn(1)[0]

    pop = _draw_population(rng, cfg, win, rng_campaigns)
    order_customer, order_t = _draw_order_times(rng, win, pop)
    # The campaigns pick customers by their orders so far and change the orders after them (and drop-out
    # times, which the engagement drawn below follows).
    pop, order_customer, order_t, spend_factor, contacts = _run_campaigns(
        rng_campaigns, cfg, win, pop, order_customer, order_t
    )
    orders = _draw_orders(rng, cfg, win, pop, order_customer, order_t, spend_factor)
    del order_customer, order_t, spend_factor
    ret_rows, ret_t, ret_amount = _draw_experience(rng, cfg, win, pop, orders, events)
    final_level = _draw_loyalty(rng, cfg, pop, orders, events)
    clicks = _draw_email(rng, cfg, win, pop, events)
    _draw_web(rng, cfg, win, pop, clicks, events)
    del clicks

    n = cfg.customers
    customer_ids = _zero_padded(np.arange(1, n + 1), max(7, len(str(n))))

    def customer_column(index: np.ndarray) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), customer_ids)

    customers = pa.table(
        {
            "customer_id": customer_ids,
            "signup_ts": _timestamps(win.start_us, pop.signup),
            "country": _categorical(pop.country, [c[0] for c in COUNTRIES]),
            "acquisition_channel": _categorical(pop.acquisition, [c[0] for c in ACQUISITION_CHANNELS]),
            "email_opt_in": pa.array(pop.opt_in),
            "loyalty_tier": _categorical(final_level, LOYALTY_TIERS),
        }
    )

    # Order numbers ascend with order time, as a shop's do; the table is in time order.
    n_orders = len(orders.t)
    by_time = np.argsort(orders.t, kind="stable")
    number = np.empty(n_orders, dtype=np.int64)
    number[by_time] = np.arange(1, n_orders + 1)
    order_ids = _zero_padded(number, max(8, len(str(n_orders))))
    orders_table = pa.table(
        {
            "customer_id": customer_column(orders.customer[by_time]),
            "order_id": order_ids.take(pa.array(by_time)),
            "order_ts": _timestamps(win.start_us, orders.t[by_time]),
            "amount": pa.array(orders.amount[by_time]),
            "discount_amount": pa.array(orders.discount[by_time]),
            "items": pa.array(orders.items[by_time]),
            "channel": _categorical(orders.channel[by_time], [c[0] for c in SALES_CHANNELS]),
        }
    )

    ret_by_time = np.argsort(ret_t, kind="stable")
    ret_rows, ret_t, ret_amount = ret_rows[ret_by_time], ret_t[ret_by_time], ret_amount[ret_by_time]
    returns = pa.table(
        {
            "customer_id": customer_column(orders.customer[ret_rows]),
            "order_id": order_ids.take(pa.array(ret_rows)),
            "return_ts": _timestamps(win.start_us, ret_t),
            "amount": pa.array(ret_amount),
        }
    )
    del pop, orders

    # Contacts in campaign then customer order; the ground truth row by row beside them.
    action_names = [a[0] for a in CAMPAIGN_ACTIONS]
    contact_columns = {
        "customer_id": customer_column(contacts.customer),
        "contact_ts": _timestamps(win.start_us, contacts.t),
        "action": _categorical(contacts.action, action_names),
        "group": _categorical(
            np.where(contacts.treated, CONTACT_GROUPS.index("treatment"), CONTACT_GROUPS.index("control")).astype(
                np.int8
            ),
            CONTACT_GROUPS,
        ),
        "campaign_id": _categorical(contacts.campaign, contacts.campaign_ids),
    }
    channel = np.asarray([CONTACT_CHANNELS.index(a[1]) for a in CAMPAIGN_ACTIONS], dtype=np.int8)[contacts.action]
    action_cost = np.asarray([_action_cost(cfg, name) for name in action_names])
    contacts_table = pa.table(
        {
            **contact_columns,
            "channel": _categorical(channel, CONTACT_CHANNELS),
            "cost": pa.array(np.where(contacts.treated, action_cost[contacts.action], 0.0)),
        }
    )
    truth = pa.table(
        {
            **{name: contact_columns[name] for name in ("customer_id", "campaign_id", "action", "group", "contact_ts")},
            "alive_at_contact": pa.array(contacts.remaining > 0),
            "hazard_ratio": pa.array(contacts.hazard_ratio),
            "order_lift": pa.array(contacts.order_lift),
            "spend_lift": pa.array(contacts.spend_lift),
            **{name: pa.array(contacts.truth[name]) for name in UPLIFT_COLUMNS},
            "price_sensitivity": pa.array(contacts.price_sensitivity),
            "days_to_dropout": pa.array(contacts.remaining / HOURS_PER_DAY),
        }
    )

    tables = {
        "customers": customers,
        "orders": orders_table,
        "returns": returns,
        "events": events.table(customer_ids, win.start_us),
        "contacts": contacts_table,
    }
    for spec in (CUSTOMERS, ORDERS, RETURNS, EVENTS, CONTACTS):
        if tuple(tables[spec.name].column_names) != spec.column_names:
            raise AssertionError(f"generator out of step with the contract for table {spec.name!r}")
    if not set(action_names) <= set(KNOWN_ACTIONS):
        raise AssertionError("generator out of step with the contract's KNOWN_ACTIONS")
    if tuple(truth.column_names) != TRUTH_COLUMNS:
        raise AssertionError("generator out of step with TRUTH_COLUMNS")
    tables["campaign_truth"] = truth
    return tables
