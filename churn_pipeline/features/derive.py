"""Features and labels from running measure values: the one definition every engine shares.

An engine (DuckDB + numpy in :mod:`features.build`, Spark in :mod:`features.spark`) computes, for each output
row (customer, cutoff ``c``) and each measure of :mod:`features.definitions`, the measure's *running value*
at ``c + o`` days: its aggregate over the customer's rows with timestamp ``< c + o``, for the offsets ``o``
that :func:`measure_offsets` names (``0``, ``-w`` and ``-2w`` for the windows, ``+h`` for the label horizons
and the next-order grid's edges).
Everything else is computed here, by the same numpy code whatever the engine:

- eligibility (:func:`eligible`): at least one order before ``c``; in training, not lapsed;
- windows ``[c - w, c)`` as differences of running values, trends (this window minus the one before);
- recency, tenure, gaps, ratios (sales-channel shares among them), rates, balances, calendar;
- the BG/NBD + Gamma-Gamma prior (:func:`fit_priors`, one fit per cutoff, then applied to any batch of rows);
- labels over ``[c, c + h)``, null when ``c + h`` is after the end of the data;
- next-order (survival) labels on a discrete-time grid of edges ``e_1 < ... < e_K`` days after ``c``
  (``FeatureConfig.next_order_days``; interval ``k`` is ``[c + e_{k-1}, c + e_k)`` with ``e_0 = 0``), read from
  the running ``n_orders`` at every edge, so they see only ``[c, c + e_K)``:

  * ``next_order_days``: the edge ``e_k`` closing the first interval with an order of the customer, i.e. the
    smallest observed edge ``e`` with an order in ``[c, c + e)``; null when none is seen in the follow-up;
  * ``next_order_followup_days``: the follow-up, the largest edge ``e`` with ``c + e <=`` the end of the data
    (the same completeness rule as the other labels); 0 when even ``c + e_1`` is after it.

  A row with follow-up ``F`` and ``next_order_days`` null is right-censored at ``F`` (no order in ``[c, c + F)``;
  orders in ``[c + F, end)`` are not looked at: their interval is not fully observed); a row with
  ``next_order_days = e_k`` is an event in interval ``k`` (``e_k <= F`` always).

Units: timestamps in microseconds since 1970-01-01 UTC, durations in (fractional) days, money in the shop's
currency. Features are float32 or int32 (a tree model bins them anyway); labels stay float64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
import pyarrow as pa

from churn_pipeline.btyd import MAX_FIT_ROWS, BGNBDPrior, fit_bgnbd_prior
from churn_pipeline.features.cutoffs import slot_boundaries, slot_of_day
from churn_pipeline.features.definitions import (
    MEASURES,
    SALES_CHANNELS,
    TRENDED,
    WINDOWED_COUNTS,
    Measure,
    channel_measure,
)

US_PER_DAY = 86_400_000_000
# The next-order (survival) labels come after the churn and CLV labels, in this order.
NEXT_ORDER_LABELS = ("next_order_days", "next_order_followup_days")
LABELS = ("churned", "future_orders", "future_revenue", *NEXT_ORDER_LABELS)
KEY_COLUMNS = ("customer_id", "cutoff")
CATEGORICAL_FEATURES = ("country", "acquisition_channel")
# Output name of each BG/NBD quantity (btyd.BGNBDPrior.quantities): P(alive at c), P(no order in
# the churn horizon), expected orders and expected (gross) order revenue over the CLV horizon, expected order value.
BGNBD_FEATURES = {
    "p_alive": "bgnbd_p_alive",
    "churn_probability": "bgnbd_churn_probability",
    "expected_orders": "bgnbd_expected_orders",
    "order_value": "bgnbd_order_value",
    "clv": "bgnbd_clv",
}
# The running values the BG/NBD fit reads (at offset 0).
BGNBD_INPUTS = ("n_order_days", "revenue", "first_order_us", "last_order_us")


@dataclass(frozen=True)
class FeatureConfig:
    """Windows and horizons, in days. ``max_recency_days`` None keeps every past customer in training.
    ``next_order_days``: the edges (days after the cutoff) of the next-order labels' grid, positive and strictly
    increasing."""

    windows_days: tuple[int, ...] = (30, 90, 180, 365)
    churn_horizon_days: int = 90
    clv_horizon_days: int = 180
    max_recency_days: int | None = 365
    next_order_days: tuple[int, ...] = (14, 30, 60, 90, 120, 180)

    def __post_init__(self) -> None:
        if not self.windows_days or any(w <= 0 for w in self.windows_days):
            raise ValueError(f"windows_days must be positive day counts, got {self.windows_days}")
        if len(set(self.windows_days)) != len(self.windows_days):
            raise ValueError(f"windows_days has duplicates: {self.windows_days}")
        if self.churn_horizon_days <= 0 or self.clv_horizon_days <= 0:
            raise ValueError("label horizons must be positive day counts")
        grid = tuple(self.next_order_days)
        if not grid or any(e <= 0 for e in grid):
            raise ValueError(f"next_order_days must be positive day counts, got {list(grid)}")
        if len(set(grid)) != len(grid):
            raise ValueError(f"next_order_days has duplicates: {list(grid)}")
        if any(b <= a for a, b in pairwise(grid)):
            raise ValueError(f"next_order_days must be strictly increasing, got {list(grid)}")

    @property
    def windows(self) -> tuple[int, ...]:
        return tuple(sorted(self.windows_days))


WINDOWED = {m: p for p, m in WINDOWED_COUNTS}
# Windowed measures whose all-history total derived features or labels also need.
_TOTALS_USED = frozenset(
    {"n_orders", "revenue", "n_returns", "return_value", "points_earned", "points_redeemed", "n_support_ticket"}
)
_FAMILY_OF_MEASURE = {
    "n_orders": "purchase",
    "revenue": "purchase",
    "n_returns": "purchase",
    "return_value": "purchase",
    "n_support_ticket": "experience",
    "points_earned": "loyalty",
    "points_redeemed": "loyalty",
    "n_coupon_redeemed": "loyalty",
}


def _horizon_offsets(config: FeatureConfig) -> dict[str, tuple[int, ...]]:
    """The running values after the cutoff that the churn and CLV labels read, kept per row until
    :meth:`FeatureAssembler.finish_rows` (the next-order grid's are reduced as they arrive)."""
    return {
        "n_orders": tuple(sorted({config.churn_horizon_days, config.clv_horizon_days})),
        "revenue": (config.clv_horizon_days,),
        "return_value": (config.clv_horizon_days,),
    }


def label_offsets(config: FeatureConfig) -> dict[str, tuple[int, ...]]:
    """Measures the labels read after the cutoff, and at which horizons (days, ascending): orders at the churn
    and CLV horizons and at every edge of the next-order grid, revenue and refunds at the CLV horizon."""
    offsets = _horizon_offsets(config)
    offsets["n_orders"] = tuple(sorted({*offsets["n_orders"], *config.next_order_days}))
    return offsets


def measure_offsets(m: Measure, config: FeatureConfig) -> tuple[int, ...]:
    """The offsets (days from the cutoff) at which an engine must give the running value of ``m``."""
    needed = {0, *label_offsets(config).get(m.name, ())}
    if m.name in WINDOWED:
        needed |= {-w for w in config.windows}
        if WINDOWED[m.name] in TRENDED:
            needed |= {-2 * w for w in config.windows}
    return tuple(sorted(needed))


def all_offsets(config: FeatureConfig) -> np.ndarray:
    """Every offset any measure may need: the slot edges around each cutoff (windows, label horizons and the
    next-order grid's edges)."""
    horizons = {h for hs in label_offsets(config).values() for h in hs}
    windows = config.windows
    return np.array(sorted({0, *(-w for w in windows), *(-2 * w for w in windows), *horizons}), dtype=np.int64)


@dataclass(frozen=True)
class SlotLayout:
    """The day slots one build shares across its cutoffs, for every engine.

    Slots are the intervals between consecutive edges ``c + o`` (every cutoff ``c``, every offset ``o`` of
    :func:`all_offsets`); a running value "at ``c + o``" is the aggregate over slots ``<= reads[o][k]``.
    ``daymap`` maps each day from ``first_map_day`` to the last edge onto its slot; rows on earlier days are
    counted on ``first_map_day`` (slot 0, before every edge), rows from the last edge on are never read.
    """

    cut_days: np.ndarray
    first_map_day: int
    daymap: pd.DataFrame
    reads: dict[int, np.ndarray]

    @classmethod
    def of(cls, cut_days: np.ndarray, config: FeatureConfig) -> SlotLayout:
        """The layout of cutoffs ``cut_days`` (days since 1970-01-01, ascending)."""
        cut_days = np.asarray(cut_days, dtype=np.int64)
        bounds = slot_boundaries(cut_days, all_offsets(config))
        first = int(bounds[0]) - 1
        days = np.arange(first, int(bounds[-1]), dtype=np.int64)
        j_of = {int(b): i for i, b in enumerate(bounds)}
        reads = {int(o): np.array([j_of[int(c + o)] for c in cut_days], dtype=np.int64) for o in all_offsets(config)}
        return cls(cut_days, first, pd.DataFrame({"day": days, "slot": slot_of_day(days, bounds)}), reads)


def running_column(measure: str, offset: int) -> str:
    """Column name of a running value in an engine's table (Spark): ``n_orders__m30`` is n_orders at c - 30."""
    return f"{measure}__{'m' if offset < 0 else 'p'}{abs(offset)}"


def eligible(
    n_orders_now: np.ndarray,
    last_order_us_now: np.ndarray,
    c_day: np.ndarray,
    config: FeatureConfig,
    drop_lapsed: np.ndarray | bool,
) -> np.ndarray:
    """Rows that belong in the table: at least one order before ``c``; where ``drop_lapsed``, also a last
    order at most ``max_recency_days`` before ``c`` (training leaves long-gone customers out)."""
    ok = np.asarray(n_orders_now) > 0
    if config.max_recency_days is None:
        return ok
    with np.errstate(invalid="ignore"):
        recent = (c_day * float(US_PER_DAY) - np.asarray(last_order_us_now, dtype=np.float64)) / US_PER_DAY <= (
            config.max_recency_days
        )
    return ok & (recent | ~np.asarray(drop_lapsed, dtype=bool))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den where den > 0, else NaN (float64)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.full(num.shape, np.nan)
    with np.errstate(invalid="ignore"):
        np.divide(num, den, out=out, where=den > 0)
    return out


def bgnbd_inputs_at(now: Mapping[str, np.ndarray], c_day: np.ndarray) -> dict[str, np.ndarray]:
    """BG/NBD inputs from running values at ``c``: repeat purchase days, days from first to last order, days
    from first order to ``c``, purchase days, mean revenue per purchase day.

    A purchase occasion is a day with an order, as ``lifetimes`` counts periods: real shops' orders come in
    bursts (wholesalers split one purchase into several invoices on one day), which BG/NBD's Poisson purchase
    process would read as a high rate that then stops. Measured on Online Retail II as of 2011-06-10 (all
    customers, 10 % of whose orders share a day with another): the prior's churn ROC AUC 0.8056 -> 0.8100,
    Brier 0.1792 -> 0.1774.
    """
    c_us = c_day * float(US_PER_DAY)
    orders = now["n_order_days"]
    return {
        "frequency": orders - 1,
        "t_x": (now["last_order_us"] - now["first_order_us"]) / US_PER_DAY,
        "T": (c_us - now["first_order_us"]) / US_PER_DAY,
        "orders_total": orders,
        "monetary_value": _ratio(now["revenue"], orders),
    }


def prior_fit_mask(now: Mapping[str, np.ndarray], c_day: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Rows a cutoff's BG/NBD is fitted on: every customer with an order before it, lapsed ones included,
    whatever kind of table is built (training tables drop long-lapsed rows, scoring tables keep them), so
    the parameters at a cutoff do not depend on it. The dropout process is learnt from the customers who
    stopped: fitted without the lapsed ones, BG/NBD sees too few deaths (measured on Online Retail II as of
    2011-06-10: churn Brier 0.1817 fitted on customers with an order in the last 365 days, 0.1774 on all).
    ``config`` is unused: kept so both engines call one signature."""
    del c_day, config
    return np.asarray(now["n_order_days"]) > 0


def fit_priors(
    now: Mapping[str, np.ndarray], c_day: np.ndarray, config: FeatureConfig, max_fit_rows: int | None = MAX_FIT_ROWS
) -> dict[int, BGNBDPrior | None]:
    """One BG/NBD + Gamma-Gamma per cutoff day, fitted on that cutoff's rows only (data ``< c``): every
    customer with an order before it (:func:`prior_fit_mask`), which the engines pass whatever table they build.

    Rows must be in customer_id order within a cutoff: a capped fit takes evenly spaced rows in that order
    (:func:`churn_pipeline.btyd.fit_sample_positions`), which an engine can draw without collecting every row.
    """
    fit = prior_fit_mask(now, c_day, config)
    priors: dict[int, BGNBDPrior | None] = {}
    for day in np.unique(c_day):
        at = np.flatnonzero(c_day == day)
        inputs = bgnbd_inputs_at({k: now[k][at] for k in BGNBD_INPUTS}, c_day[at])
        priors[int(day)] = fit_bgnbd_prior(**inputs, fit_mask=fit[at], max_fit_rows=max_fit_rows)
    return priors


def windowed_names(prefix: str, windows: tuple[int, ...]) -> list[str]:
    names = []
    for w in windows:
        names.append(f"{prefix}_{w}d")
        if prefix in TRENDED:
            names.append(f"{prefix}_trend_{w}d")
    return names


class FeatureAssembler:
    """Collects running values measure by measure and turns them into the feature table's columns.

    ``c_day``: each output row's cutoff (days since 1970-01-01); ``have``: the measures the data supports.
    Call :meth:`add` once per supported measure with a function giving its running values at an offset (for
    the output rows, float64, NaN where a max/min/last has no row yet), then :meth:`finish`. Windowed columns
    are cut out as each measure arrives, so an engine can free a measure's arrays before fetching the next.
    """

    def __init__(self, c_day: np.ndarray, config: FeatureConfig, have: set[str]):
        self.c_day = np.asarray(c_day, dtype=np.int64)
        self.config = config
        self.have = set(have)
        self.out: dict[str, np.ndarray] = {}
        self.family: dict[str, str] = {}
        self.base: dict[tuple[str, int], np.ndarray] = {}
        # Per row, the index of the first next-order grid edge e with an order in [c, c + e) (len(grid): none up
        # to the last edge), whether or not the data reach that edge: two bytes per row instead of the running
        # order count at every edge.
        self.first_order_edge = np.empty(0, dtype=np.int16)

    def _put(self, name: str, values: np.ndarray, fam: str, dtype: str = "float32") -> None:
        self.out[name] = values.astype(dtype, copy=False)
        self.family[name] = fam

    def add(self, m: Measure, at: Callable[[int], np.ndarray]) -> None:
        now = at(0)
        if m.name not in WINDOWED or m.name in _TOTALS_USED:
            self.base[(m.name, 0)] = now
        kept = _horizon_offsets(self.config).get(m.name, ())
        grid = self.config.next_order_days if m.name == "n_orders" else ()
        if grid:
            self.first_order_edge = np.full(len(now), len(grid), dtype=np.int16)
        # Latest edge first, so the smallest edge with an order is written last and wins.
        for h in sorted(label_offsets(self.config).get(m.name, ()), reverse=True):
            later = at(h)
            if h in kept:
                self.base[(m.name, h)] = later
            if h in grid:
                self.first_order_edge[later > now] = grid.index(h)
        if m.name in WINDOWED:
            prefix = WINDOWED[m.name]
            fam = _FAMILY_OF_MEASURE.get(m.name, "engagement")
            dtype = "int32" if m.dtype == "int32" else "float32"
            for w in self.config.windows:
                before = at(-w)
                self._put(f"{prefix}_{w}d", now - before, fam, dtype)
                if prefix in TRENDED:
                    self._put(f"{prefix}_trend_{w}d", (now - before) - (before - at(-2 * w)), fam, dtype)

    def now(self) -> dict[str, np.ndarray]:
        return {name: v for (name, o), v in self.base.items() if o == 0}

    def finish(
        self,
        end_day: int,
        priors: Mapping[int, BGNBDPrior | None] | None = None,
        attributes: Mapping[str, pa.Array] | None = None,
    ) -> tuple[dict[str, pa.Array], dict[str, str]]:
        """The table's columns after ``customer_id``, in order (``cutoff``, ``is_lapsed``, features,
        attributes, labels), and each feature's family, for every row; the collected values are released.
        ``priors`` per cutoff day (default: fitted here on these rows, which must then be every row of their
        cutoffs). ``end_day``: the end of the data."""
        if priors is None:
            priors = fit_priors(self.now(), self.c_day, self.config)
        columns = self.finish_rows(slice(None), end_day, priors, attributes)
        self.out, self.base, self.first_order_edge = {}, {}, np.empty(0, dtype=np.int16)
        return columns, dict(self.family)

    def finish_rows(
        self,
        rows: slice,
        end_day: int,
        priors: Mapping[int, BGNBDPrior | None],
        attributes: Mapping[str, pa.Array] | None = None,
    ) -> dict[str, pa.Array]:
        """:meth:`finish` for the rows ``rows`` only (``attributes`` given for those rows), keeping the
        collected values: an engine can turn a table into columns block by block, and write each block while
        the next is made. :attr:`family` names each feature's family once a block is made."""
        config, have, c_day = self.config, self.have, self.c_day[rows]
        windows = config.windows
        measures = [m for m in MEASURES if m.name in have]
        # Windowed columns in definition order, whatever order the measures arrived in.
        ordered = [n for m in measures if m.name in WINDOWED for n in windowed_names(WINDOWED[m.name], windows)]
        out = {n: self.out[n][rows] for n in ordered if n in self.out}
        base = {key: values[rows] for key, values in self.base.items()}

        def put(name: str, values: np.ndarray, fam: str, dtype: str = "float32") -> None:
            out[name] = values.astype(dtype, copy=False)
            self.family[name] = fam

        c_us = c_day * float(US_PER_DAY)
        now = {name: v for (name, o), v in base.items() if o == 0}

        # Purchase behaviour (all history before c).
        recency = (c_us - now["last_order_us"]) / US_PER_DAY
        orders_total, revenue_total = now["n_orders"], now["revenue"]
        put("recency_days", recency, "purchase")
        put("tenure_days", (c_us - now["first_order_us"]) / US_PER_DAY, "purchase")
        put("orders_total", orders_total, "purchase", "int32")
        put("frequency", orders_total - 1, "purchase", "int32")
        put("revenue_total", revenue_total, "purchase")
        put("monetary_value", _ratio(revenue_total, orders_total), "purchase")
        gap_n = now["gap_n"]
        gap_mean = _ratio(now["gap_sum"], gap_n)
        gap_var = _ratio(now["gap_sq"], gap_n) - gap_mean**2
        put("gap_mean_days", gap_mean, "purchase")
        put("gap_std_days", np.where(gap_n >= 2, np.sqrt(np.clip(gap_var, 0, None)), np.nan), "purchase")
        put("overdue_ratio", _ratio(recency, gap_mean), "purchase")
        for w in windows:
            put(f"aov_{w}d", _ratio(out[f"revenue_{w}d"], out[f"orders_{w}d"]), "purchase")
        if "discount" in have:
            put("discount_share", _ratio(now["discount"], revenue_total + now["discount"]), "purchase")
        if "items" in have:
            put("items_per_order", _ratio(now["items"], orders_total), "purchase")
        for channel in SALES_CHANNELS:
            # Share of all orders before c placed via the channel; orders via other channels, or none recorded,
            # count in the denominator only.
            if channel_measure(channel) in have:
                put(f"{channel}_order_share", _ratio(now[channel_measure(channel)], orders_total), "purchase")
        if "n_returns" in have:
            put("returns_total", now["n_returns"], "purchase", "int32")
            put("returns_value_total", now["return_value"], "purchase")
            put("return_rate", _ratio(now["return_value"], revenue_total), "purchase")

        # BG/NBD + Gamma-Gamma, fitted afresh at each cutoff on that cutoff's customers (only data < c): a
        # structural prior the boosters start from (models.churn / models.clv ``offset``).
        inputs = bgnbd_inputs_at(now, c_day)
        bg = {n: np.full(len(c_day), np.nan, dtype=np.float32) for n in BGNBD_FEATURES.values()}
        for day in np.unique(c_day):
            prior = priors.get(int(day))
            if prior is None:
                continue
            at = np.flatnonzero(c_day == day)
            q = prior.quantities(
                **{k: v[at] for k, v in inputs.items()},
                churn_horizon_days=config.churn_horizon_days,
                clv_horizon_days=config.clv_horizon_days,
            )
            for key, name in BGNBD_FEATURES.items():
                bg[name][at] = q[key]
        for name, values in bg.items():
            put(name, values, "bgnbd")
        del bg, inputs

        # Engagement.
        if "n_email_sent" in have:
            for w in windows:
                sent = out[f"emails_sent_{w}d"]
                if "n_email_open" in have:
                    put(f"email_open_rate_{w}d", _ratio(out[f"email_opens_{w}d"], sent), "engagement")
                if "n_email_click" in have:
                    put(f"email_click_rate_{w}d", _ratio(out[f"email_clicks_{w}d"], sent), "engagement")
        for name, m in (
            ("days_since_last_session", "last_session_us"),
            ("days_since_last_email_open", "last_email_open_us"),
            ("days_since_last_email_click", "last_email_click_us"),
        ):
            if m in have:
                put(name, (c_us - now[m]) / US_PER_DAY, "engagement")
        if "n_unsubscribe" in have:
            put("unsubscribes_total", now["n_unsubscribe"], "engagement", "int32")

        # Experience and loyalty.
        if "n_support_ticket" in have:
            put("support_tickets_total", now["n_support_ticket"], "experience", "int32")
        for kind in ("review", "nps"):
            if f"n_{kind}" in have:
                put(f"{kind}_last", now[f"{kind}_last"], "experience")
                put(f"{kind}_avg", _ratio(now[f"{kind}_sum"], now[f"n_{kind}"]), "experience")
        if "loyalty_tier_last" in have:
            put("loyalty_tier_level", np.nan_to_num(now["loyalty_tier_last"], nan=0.0), "loyalty")
        if "points_earned" in have or "points_redeemed" in have:
            earned = now.get("points_earned", 0.0)
            redeemed = now.get("points_redeemed", 0.0)
            put("loyalty_points_balance", earned - redeemed, "loyalty")

        # Cutoff calendar: seasonality is a property of the cutoff, known in advance.
        cut_ts = pd.to_datetime(c_day, unit="D")
        put("cutoff_month", np.asarray(cut_ts.month), "calendar", "int32")
        put("cutoff_day_of_year", np.asarray(cut_ts.day_of_year), "calendar", "int32")

        # Labels: [c, c + h); null where c + h is after the end of the data. Next-order labels: [c, c + e) for
        # the grid's edges e up to the follow-up (next_order_labels).
        h_churn, h_clv = config.churn_horizon_days, config.clv_horizon_days
        churn_missing = c_day + h_churn > end_day
        clv_missing = c_day + h_clv > end_day
        future_revenue = base[("revenue", h_clv)] - revenue_total
        if "return_value" in have:
            future_revenue = future_revenue - (base[("return_value", h_clv)] - now["return_value"])
        labels = {
            "churned": pa.array(base[("n_orders", h_churn)] - orders_total == 0, mask=churn_missing),
            "future_orders": pa.array((base[("n_orders", h_clv)] - orders_total).astype(np.int32), mask=clv_missing),
            "future_revenue": pa.array(np.round(future_revenue, 6), mask=clv_missing),
            **next_order_labels(self.first_order_edge[rows], c_day, end_day, config.next_order_days),
        }

        columns: dict[str, pa.Array] = {
            "cutoff": pa.array(c_day.astype("datetime64[D]").astype("datetime64[us]")),
            "is_lapsed": pa.array(
                recency > config.max_recency_days if config.max_recency_days is not None else np.zeros(len(c_day), bool)
            ),
        }
        for name in list(out):
            columns[name] = pa.array(out.pop(name), from_pandas=True)
        for name, values in (attributes or {}).items():
            columns[name] = values
            self.family[name] = "attributes"
        columns.update(labels)
        return columns


def next_order_labels(
    first_edge: np.ndarray, c_day: np.ndarray, end_day: int, grid_days: tuple[int, ...]
) -> dict[str, pa.Array]:
    """The next-order labels per row (float64 days): ``next_order_days``, the edge closing the first interval
    with an order when the data reach that edge, else null; ``next_order_followup_days``, the largest edge ``e``
    with ``c + e <= end_day`` (0 when there is none).

    ``first_edge``: per row, the index of the first grid edge ``e`` with an order in ``[c, c + e)``
    (``len(grid_days)``: none); ``c_day``: the cutoffs, ``end_day``: the end of the data (days since
    1970-01-01). An edge after the end of the data is never an event: its interval is not fully observed.
    """
    grid = np.asarray(grid_days, dtype=np.int64)
    # Edges with c + e <= end_day: the grid is increasing, so they are its first `observed` ones.
    observed = np.searchsorted(grid, end_day - np.asarray(c_day, dtype=np.int64), side="right")
    followup = np.where(observed > 0, grid[np.maximum(observed - 1, 0)], 0).astype(np.float64)
    first = np.asarray(first_edge, dtype=np.int64)
    seen = first < observed
    event = grid[np.minimum(first, len(grid) - 1)].astype(np.float64)
    return {"next_order_days": pa.array(event, mask=~seen), "next_order_followup_days": pa.array(followup)}


def attribute_columns(
    c_day: np.ndarray, signup_us: np.ndarray | None, categoricals: Mapping[str, pa.Array]
) -> dict[str, pa.Array]:
    """Static attributes per output row: signup age in days at ``c`` (from the signup timestamp in
    microseconds, NaN when unknown), then the categorical attributes as given (text)."""
    result: dict[str, pa.Array] = {}
    if signup_us is not None:
        age = (c_day * float(US_PER_DAY) - np.asarray(signup_us, dtype=np.float64)) / US_PER_DAY
        # A signup at or after the cutoff is unknown at the cutoff (features see only < c): missing.
        result["signup_age_days"] = pa.array(np.where(age > 0, age, np.nan).astype(np.float32), from_pandas=True)
    for c in CATEGORICAL_FEATURES:
        if c in categoricals:
            result[c] = categoricals[c]
    return result
