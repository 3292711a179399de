"""Multi-period customer lifetime value: the CLV model's first period chained on by the survival model.

Grain: one value per scored customer; pure, vectorised functions, no I/O.

The CLV model predicts ``predicted_clv``, the expected net revenue (shop currency) over one period of
``period_days`` after the as-of date (the CLV horizon, 180 days by default); it already counts the chance that
the customer leaves within it. The next-order (survival) model gives ``q``, the probability of at least one order
within ``period_days``: the chance that a customer active in one period is still active in the next. Assuming
``q`` stays the same for a customer from period to period (a geometric retention model: Gupta & Lehmann 2003,
"Customers as assets", Journal of Interactive Marketing 17(1)), period ``k = 0 .. K-1`` brings

    revenue_k = predicted_clv * q ** k

and the lifetime value is the gross margin of those revenues, discounted to the as-of date with cash at the
middle of each period::

    value = margin * sum_k revenue_k * (1 + annual_discount_rate) ** (-(k + 0.5) * period_days / 365.25)
          = margin * predicted_clv * sqrt(d) * (1 - (q d) ** K) / (1 - q d),   d = (1 + rate) ** (-period_days / 365.25)

(``K * margin * predicted_clv`` when ``q d = 1``, i.e. ``q = 1`` and no discounting), with
``K = max(1, round(horizon_months * 30.4375 / period_days))`` periods (half a period rounds up): 36 months of
180 days are 6 periods (1,080 days). The closed form is evaluated as ``expm1(K log x) / expm1(log x)``, exact
to rounding also where ``q d`` is close to 1.

Missing inputs: a NaN ``predicted_clv`` or ``retention_probability`` gives NaN for that customer only (the other
rows are computed as usual); the scores schema refuses a NaN ``lifetime_value``, so a missing input can never
reach a CRM file. Everything else that is out of range (a probability outside [0, 1], an infinite CLV, a margin
outside (0, 1], a negative or non-finite rate, a horizon under one month, a non-positive period) raises
``ValueError`` naming the argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "DAYS_PER_MONTH",
    "DAYS_PER_YEAR",
    "LifetimeValueParams",
    "discounted_lifetime_value",
    "lifetime_assumptions",
    "period_count",
]

# Mean Gregorian month and year, days.
DAYS_PER_MONTH = 30.4375
DAYS_PER_YEAR = 365.25


def _check_scalars(*, period_days: float, margin: float, annual_discount_rate: float, horizon_months: float) -> None:
    """``ValueError`` naming the first scalar argument out of range."""
    for name, value in (
        ("period_days", period_days),
        ("margin", margin),
        ("annual_discount_rate", annual_discount_rate),
        ("horizon_months", horizon_months),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    if period_days <= 0:
        raise ValueError(f"period_days must be > 0 days, got {period_days}")
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"margin must be a share of net revenue in (0, 1], got {margin}")
    if annual_discount_rate < 0:
        raise ValueError(f"annual_discount_rate must be >= 0 (0.1 = 10 % a year), got {annual_discount_rate}")
    if horizon_months < 1:
        raise ValueError(f"horizon_months must be at least 1 month, got {horizon_months}")


def period_count(horizon_months: float, period_days: float) -> int:
    """``K``: how many periods of ``period_days`` days the horizon of ``horizon_months`` months holds, rounded to
    the nearest whole number (halves up), at least 1 (36 months of 180 days: 1095.75 / 180 = 6.09 -> 6)."""
    return max(1, math.floor(horizon_months * DAYS_PER_MONTH / period_days + 0.5))


def discounted_lifetime_value(
    predicted_clv: ArrayLike,
    retention_probability: ArrayLike,
    *,
    period_days: float,
    margin: float,
    annual_discount_rate: float,
    horizon_months: float,
) -> np.ndarray:
    """Discounted gross-margin lifetime value per customer, shop currency (module docstring for the formula).

    ``predicted_clv``: expected net revenue over the first ``period_days`` days after the as-of date (shop
    currency); ``retention_probability``: P(at least one order within ``period_days`` days), 0-1, the chance of
    staying active from one period to the next; both row-aligned (broadcast against each other).
    ``period_days``: length of a period, days; ``margin``: gross margin per unit of net revenue, in (0, 1];
    ``annual_discount_rate``: per year, >= 0 (0.1 = 10 %); ``horizon_months``: months, >= 1.

    Returns float64 values in shop currency; NaN where an input is NaN (module docstring)."""
    _check_scalars(
        period_days=period_days, margin=margin, annual_discount_rate=annual_discount_rate, horizon_months=horizon_months
    )
    clv, q = np.broadcast_arrays(
        np.asarray(predicted_clv, dtype=np.float64), np.asarray(retention_probability, dtype=np.float64)
    )
    if np.isinf(clv).any():
        raise ValueError(f"predicted_clv must be finite (NaN = unknown), got {int(np.isinf(clv).sum()):,} infinite")
    outside = ~np.isnan(q) & ((q < 0.0) | (q > 1.0))
    if outside.any():
        raise ValueError(
            f"retention_probability must lie in [0, 1] (NaN = unknown), got {int(outside.sum()):,} outside"
        )
    periods = period_count(horizon_months, period_days)
    # Discount factor of one period, and the growth factor of the geometric series.
    log_d = -math.log1p(annual_discount_rate) * period_days / DAYS_PER_YEAR
    with np.errstate(divide="ignore", invalid="ignore"):
        log_x = np.log(q) + log_d  # -inf where q = 0: the series is its first term
        series = np.where(log_x == 0.0, float(periods), np.expm1(periods * log_x) / np.expm1(log_x))
    return margin * clv * math.exp(0.5 * log_d) * series


@dataclass(frozen=True)
class LifetimeValueParams:
    """params.yaml ``score.lifetime_value``: ``margin`` (gross margin per unit of net revenue, (0, 1]),
    ``annual_discount_rate`` (per year, >= 0), ``horizon_months`` (months, whole, >= 1)."""

    margin: float = 0.3
    annual_discount_rate: float = 0.1
    horizon_months: int = 36

    def __post_init__(self) -> None:
        if isinstance(self.horizon_months, bool) or not isinstance(self.horizon_months, int | np.integer):
            raise ValueError(f"horizon_months must be a whole number of months, got {self.horizon_months!r}")
        _check_scalars(
            period_days=1.0,
            margin=self.margin,
            annual_discount_rate=self.annual_discount_rate,
            horizon_months=self.horizon_months,
        )


def _number(value: float) -> str:
    """``0.3`` -> ``"30 %"``-style text without trailing zeros."""
    return f"{value * 100:.6g} %"


def lifetime_assumptions(params: LifetimeValueParams, period_days: float) -> list[str]:
    """The assumptions behind ``lifetime_value`` as plain sentences, for the report and the docs."""
    _check_scalars(
        period_days=period_days,
        margin=params.margin,
        annual_discount_rate=params.annual_discount_rate,
        horizon_months=params.horizon_months,
    )
    periods = period_count(params.horizon_months, period_days)
    days = f"{period_days:g}"
    return [
        f"Lifetime value covers {params.horizon_months} months after the as-of date as {periods} period(s) of "
        f"{days} days each, the CLV horizon ({periods * period_days:,.0f} days in all).",
        "The first period brings the CLV model's predicted_clv, which already counts the chance that the customer "
        "leaves within it.",
        f"Each later period brings the previous period's revenue times the customer's chance of an order within "
        f"{days} days from the next-order (survival) model, taken as the chance of staying active from one period "
        f"to the next and the same in every period (a geometric retention model, Gupta & Lehmann 2003).",
        "Spend per active period stays as the CLV model predicts it for the first period; a customer who stops "
        "ordering does not come back.",
        f"Value is the gross margin, {_number(params.margin)} of net revenue for every customer and product.",
        f"Revenue arrives in the middle of each period and is discounted to the as-of date at "
        f"{_number(params.annual_discount_rate)} a year.",
        "No costs of acquiring, serving or retaining the customer are subtracted beyond the margin.",
    ]
