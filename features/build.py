"""Point-in-time features and labels for many cutoffs at once.

Grain: one row per (customer, cutoff). A customer is in the table at cutoff ``c`` when they have at least
one order before ``c``; in a training table customers whose last order is more than ``max_recency_days``
before ``c`` are left out (they are long gone, and keeping them only teaches the model the obvious),
while a scoring table keeps them with ``is_lapsed = True``.

Time boundaries (see :mod:`features.cutoffs`): features at ``c`` use rows with timestamp ``< c``; a window
of ``w`` days is ``[c - w, c)``; labels use ``[c, c + h)`` and are null when ``c + h`` is after the end of
the data. Durations are in days (fractional, from microsecond timestamps); money is in the shop's currency.

Feature family ``bgnbd``: BG/NBD and Gamma-Gamma (:mod:`models.baselines`) refitted at every cutoff on
that cutoff's customers who are not lapsed (their purchase history before ``c`` only; at most 100,000 of them),
then applied to every row: ``bgnbd_p_alive``, ``bgnbd_churn_probability`` (no order within the churn horizon),
``bgnbd_expected_orders`` and ``bgnbd_clv`` (over the CLV horizon) and ``bgnbd_order_value``. NaN at a cutoff
with fewer than 20 such customers. The models start from them (``train.*.offset``).

How it stays fast: DuckDB scans each source table once and reduces it to one row per (customer, slot),
where slots are the intervals between consecutive window and horizon edges of all cutoffs. numpy then
turns those into running totals per customer over slots, and every window of every cutoff is the
difference of two running totals: no cutoff rescans the data.

The connection passed in must expose views ``orders`` (required), and optionally ``returns``,
``customers`` and ``events``, with the validated contract's columns and types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import KNOWN_EVENT_TYPES
from features.cutoffs import slot_boundaries, slot_of_day, to_day
from features.definitions import MEASURES, OTHER_EVENTS, TRENDED, WINDOWED_COUNTS, Measure
from models.baselines import bgnbd_quantities

US_PER_DAY = 86_400_000_000
LABELS = ("churned", "future_orders", "future_revenue")
KEY_COLUMNS = ("customer_id", "cutoff")
CATEGORICAL_FEATURES = ("country", "acquisition_channel")
# Output name of each BG/NBD quantity (models.baselines.bgnbd_quantities): P(alive at c), P(no order in the
# churn horizon), expected orders and expected (gross) order revenue over the CLV horizon, expected order value.
BGNBD_FEATURES = {
    "p_alive": "bgnbd_p_alive",
    "churn_probability": "bgnbd_churn_probability",
    "expected_orders": "bgnbd_expected_orders",
    "order_value": "bgnbd_order_value",
    "clv": "bgnbd_clv",
}


@dataclass(frozen=True)
class FeatureConfig:
    """Windows and horizons, in days. ``max_recency_days`` None keeps every past customer in training."""

    windows_days: tuple[int, ...] = (30, 90, 180, 365)
    churn_horizon_days: int = 90
    clv_horizon_days: int = 180
    max_recency_days: int | None = 365

    def __post_init__(self) -> None:
        if not self.windows_days or any(w <= 0 for w in self.windows_days):
            raise ValueError(f"windows_days must be positive day counts, got {self.windows_days}")
        if len(set(self.windows_days)) != len(self.windows_days):
            raise ValueError(f"windows_days has duplicates: {self.windows_days}")
        if self.churn_horizon_days <= 0 or self.clv_horizon_days <= 0:
            raise ValueError("label horizons must be positive day counts")


@dataclass(frozen=True)
class Sources:
    """Which tables, columns and event types the data has; decides which measures can be built."""

    tables: frozenset[str]
    columns: dict[str, frozenset[str]] = field(default_factory=dict)
    event_types: frozenset[str] = frozenset()

    def supports(self, m: Measure) -> bool:
        if m.source not in self.tables:
            return False
        if not set(m.needs_columns) <= self.columns.get(m.source, frozenset()):
            return False
        if m.event_type == OTHER_EVENTS:
            return bool(self.event_types - set(KNOWN_EVENT_TYPES))
        return m.event_type is None or m.event_type in self.event_types


def inspect_sources(con: duckdb.DuckDBPyConnection) -> Sources:
    """Tables (views) present on the connection, their columns, and the distinct event types."""
    names = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    names |= {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    tables = frozenset(t for t in ("orders", "returns", "customers", "events") if t in names)
    columns = {t: frozenset(c[0] for c in con.execute(f"DESCRIBE {t}").fetchall()) for t in tables}
    event_types: frozenset[str] = frozenset()
    if "events" in tables:
        event_types = frozenset(r[0] for r in con.execute("SELECT DISTINCT event_type FROM events").fetchall())
    return Sources(tables, columns, event_types)


def _skipped(sources: Sources) -> list[str]:
    """What the data lacks, by name: absent tables, absent optional columns (``orders.items``), absent
    event types; the features built from them are not in the table."""
    missing = {t for t in ("returns", "customers", "events") if t not in sources.tables}
    for m in MEASURES:
        if sources.supports(m):
            continue
        if m.source not in sources.tables:
            if m.event_type and m.event_type != OTHER_EVENTS:
                missing.add(m.event_type)
            continue
        absent_cols = set(m.needs_columns) - sources.columns.get(m.source, frozenset())
        missing |= {f"{m.source}.{c}" for c in absent_cols}
        if not absent_cols and m.event_type and m.event_type != OTHER_EVENTS:
            missing.add(m.event_type)
    return sorted(missing)


def _day_expr(ts: str) -> str:
    return f"date_diff('day', DATE '1970-01-01', CAST({ts} AS DATE))"


def _measure_sql(m: Measure) -> str:
    stored = "DOUBLE" if m.rollup == "last" else _STORED_TYPE[m.dtype]
    return f"CAST({_aggregate_sql(m)} AS {stored}) AS {m.name}"


# Narrow types for the reduced (customer, slot) table: counts fit INTEGER, per-slot money sums fit
# DECIMAL(18, 6) (still exact), so the table DuckDB keeps between the scan and the roll-up stays small.
_STORED_TYPE = {"int32": "INTEGER", "int64": "BIGINT", "float64": "DECIMAL(18, 6)"}


def _aggregate_sql(m: Measure) -> str:
    if m.source != "events":
        return m.expr
    if m.event_type == OTHER_EVENTS:
        known = ", ".join(f"'{t}'" for t in KNOWN_EVENT_TYPES)
        cond = f"event_type NOT IN ({known})"
    else:
        cond = f"event_type = '{m.event_type}'"
    if m.rollup == "last":
        # The latest row's value; ties on the timestamp go to the larger value so the result is deterministic.
        return f"arg_max({m.expr}, (ts_us, {m.expr})) FILTER (WHERE {cond} AND {m.expr} IS NOT NULL)"
    return f"{m.expr} FILTER (WHERE {cond})"


def _source_sql(source: str, measures: list[Measure], sources: Sources, first_map_day: int) -> str:
    ts = {"orders": "order_ts", "returns": "return_ts", "events": "event_ts"}[source]
    extra = ""
    if source == "orders":
        # The gap to the customer's previous order belongs to the later order, so it is known once that
        # order is; ties on the timestamp are broken by order_id so the gap is deterministic.
        extra = (
            f", (epoch_us({ts}) - lag(epoch_us({ts})) OVER (PARTITION BY customer_id ORDER BY {ts}, order_id))"
            f" / {US_PER_DAY}.0 AS gap_days"
        )
    where = ""
    if source == "events":
        types = sorted({m.event_type for m in measures if m.event_type != OTHER_EVENTS})
        if not any(m.event_type == OTHER_EVENTS for m in measures):
            where = "WHERE event_type IN (" + ", ".join(f"'{t}'" for t in types) + ")"
    aggs = ",\n       ".join(_measure_sql(m) for m in measures)
    return f"""
WITH src AS (
  SELECT *, epoch_us({ts}) AS ts_us, {_day_expr(ts)} AS day{extra}
  FROM {source} {where}
)
SELECT k.cust_idx, d.slot,
       {aggs}
FROM src
JOIN _cust k ON src.customer_id = k.customer_id
JOIN _daymap d ON greatest(src.day, {first_map_day}) = d.day
GROUP BY k.cust_idx, d.slot"""


class _Running:
    """Running value of one measure per (customer, slot): a running total, max or min, or the latest value.

    Built from the measure's non-empty (customer, slot) cells only; ``at`` reads it at the given customers
    and slot indexes. Counts use int32 and timestamps int64, so the dense array costs 4-8 bytes a cell.
    """

    def __init__(
        self, shape: tuple[int, int], cust: np.ndarray, slot: np.ndarray, values: np.ndarray, rollup: str, integer: bool
    ):
        self.rollup = rollup
        if rollup == "sum":
            self.dense = np.zeros(shape, dtype=np.int32 if integer else np.float64)
            self.dense[cust, slot] = values
            np.cumsum(self.dense, axis=1, out=self.dense)
        elif rollup in ("max", "min"):
            self.sentinel = np.iinfo(np.int64).min if rollup == "max" else np.iinfo(np.int64).max
            self.dense = np.full(shape, self.sentinel, dtype=np.int64)
            self.dense[cust, slot] = values.astype(np.int64)
            (np.maximum if rollup == "max" else np.minimum).accumulate(self.dense, axis=1, out=self.dense)
        else:
            # last: remember which slot last had a value, and read the value there.
            self.dense = np.full(shape, np.nan)
            self.dense[cust, slot] = values
            self.last = np.full(shape, -1, dtype=np.int32)
            self.last[cust, slot] = slot.astype(np.int32)
            np.maximum.accumulate(self.last, axis=1, out=self.last)

    def at(self, rc: np.ndarray, j: np.ndarray) -> np.ndarray:
        # Flat take on the row-major array: about twice as fast as 2-D fancy indexing.
        flat = rc * self.dense.shape[1] + j
        if self.rollup == "sum":
            return np.take(self.dense.ravel(), flat).astype(np.float64)
        if self.rollup in ("max", "min"):
            raw = np.take(self.dense.ravel(), flat)
            out = raw.astype(np.float64)
            out[raw == self.sentinel] = np.nan
            return out
        i = np.take(self.last.ravel(), flat)
        out = np.take(self.dense.ravel(), rc * self.dense.shape[1] + np.maximum(i, 0))
        out[i < 0] = np.nan
        return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def build_feature_table(
    con: duckdb.DuckDBPyConnection,
    cutoffs: list[pd.Timestamp],
    end: pd.Timestamp,
    config: FeatureConfig,
    training: bool,
    keep_lapsed_at: tuple[pd.Timestamp, ...] = (),
) -> tuple[pa.Table, dict]:
    """Features (and labels) for every eligible customer at every cutoff, plus a manifest.

    ``end`` is the end of the data (labels whose horizon passes it are null). ``training`` drops lapsed
    customers (see ``FeatureConfig.max_recency_days``) except at the cutoffs in ``keep_lapsed_at`` (a
    scoring cutoff built in the same pass); otherwise they stay, flagged ``is_lapsed``.
    Returns the table sorted by cutoff then customer_id, and a manifest naming the features produced,
    the families skipped and why.
    """
    if not cutoffs:
        raise ValueError("no cutoffs to build features for")
    sources = inspect_sources(con)
    if "orders" not in sources.tables:
        raise ValueError("the connection has no `orders` view: orders are required")
    cutoffs = sorted({pd.Timestamp(c).floor("D") for c in cutoffs})
    cut_days = np.array([to_day(c) for c in cutoffs], dtype=np.int64)
    windows = tuple(sorted(config.windows_days))
    horizons = (config.churn_horizon_days, config.clv_horizon_days)
    offsets = np.array(sorted({0, *(-w for w in windows), *(-2 * w for w in windows), *horizons}), dtype=np.int64)
    bounds = slot_boundaries(cut_days, offsets)

    first_day = con.execute(f"SELECT min({_day_expr('order_ts')}) FROM orders").fetchall()[0][0]
    if first_day is None:
        raise ValueError("the orders table is empty")
    # Every day before the first edge falls in slot 0: such rows are mapped onto the day before that edge.
    lo = int(bounds[0]) - 1
    days = np.arange(lo, int(bounds[-1]), dtype=np.int64)
    con.register("_daymap_df", pd.DataFrame({"day": days, "slot": slot_of_day(days, bounds)}))
    con.execute("CREATE OR REPLACE TEMP TABLE _daymap AS SELECT * FROM _daymap_df")
    # Customers are numbered in customer_id order, so output rows come out sorted by customer within a cutoff.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cust AS SELECT customer_id, "
        "(row_number() OVER (ORDER BY customer_id) - 1)::INTEGER AS cust_idx "
        "FROM (SELECT DISTINCT customer_id FROM orders)"
    )
    cust_ids = con.sql("SELECT customer_id FROM _cust ORDER BY cust_idx").to_arrow_table().column(0).combine_chunks()
    n_cust, n_slots = len(cust_ids), len(bounds)
    j_of = {int(b): i for i, b in enumerate(bounds)}

    measures = [m for m in MEASURES if sources.supports(m)]
    skipped = _skipped(sources)
    have = {m.name for m in measures}
    j_at = {int(o): np.array([j_of[int(c + o)] for c in cut_days], dtype=np.int64) for o in offsets}

    out: dict[str, np.ndarray] = {}
    family: dict[str, str] = {}
    base: dict[tuple[str, int], np.ndarray] = {}
    rows: dict[str, np.ndarray] = {}

    def put(name: str, values: np.ndarray, fam: str, dtype: str = "float32") -> None:
        out[name] = values.astype(dtype, copy=False)
        family[name] = fam

    windowed = dict((m, p) for p, m in WINDOWED_COUNTS)
    label_offsets = {
        "n_orders": (config.churn_horizon_days, config.clv_horizon_days),
        "revenue": (config.clv_horizon_days,),
        "return_value": (config.clv_horizon_days,),
    }

    # One source at a time, one measure at a time: each running array lives only until its columns are cut
    # out of it, which keeps peak memory near one (customers x slots) array plus the output.
    def offsets_for(m: Measure) -> set[int]:
        needed = {0, *label_offsets.get(m.name, ())}
        if m.name in windowed:
            needed |= {-w for w in windows}
            if windowed[m.name] in TRENDED:
                needed |= {-2 * w for w in windows}
        return needed

    for source in ("orders", "returns", "events"):
        ms = [m for m in measures if m.source == source]
        if not ms:
            continue
        # The reduced table stays inside DuckDB; each measure fetches only its non-empty cells.
        con.execute(f"CREATE OR REPLACE TEMP TABLE _reduced AS {_source_sql(source, ms, sources, lo)}")

        def running(m: Measure) -> tuple[_Running, dict[int, np.ndarray]]:
            """The measure's running values over its own coarse slots, and per offset the coarse index to
            read for each cutoff. A measure needs only the edges its windows and labels use, so the fine
            slots between two such edges are folded together (in DuckDB, over the measure's non-empty cells
            only: most measures are sparse) before numpy sees them."""
            needed = offsets_for(m)
            edges = np.unique(np.concatenate([j_at[o] for o in needed]))
            coarse = np.searchsorted(edges, np.arange(n_slots), side="left").astype(np.int32)
            con.register("_coarse_df", pd.DataFrame({"slot": np.arange(n_slots, dtype=np.int32), "cs": coarse}))
            keep = f"{m.name} IS NOT NULL" + (f" AND {m.name} <> 0" if m.rollup == "sum" else "")
            cells = con.sql(
                f"SELECT r.cust_idx, c.cs, CAST({_FOLD[m.rollup].format(m.name)} AS DOUBLE) AS v "
                f"FROM _reduced r JOIN _coarse_df c ON r.slot = c.slot WHERE {keep} GROUP BY r.cust_idx, c.cs"
            ).to_arrow_table()
            run = _Running(
                (n_cust, len(edges) + 1),
                cells.column("cust_idx").to_numpy(),
                cells.column("cs").to_numpy(),
                cells.column("v").to_numpy(),
                m.rollup,
                integer=m.dtype == "int32",
            )
            return run, {o: np.searchsorted(edges, j_at[o]) for o in needed}

        if source == "orders":
            # Eligibility per cutoff: at least one order before c; in training, not lapsed.
            n_run, n_j = running(next(m for m in ms if m.name == "n_orders"))
            last_run, last_j = running(next(m for m in ms if m.name == "last_order_us"))
            picks = []
            keep_days = {to_day(c) for c in keep_lapsed_at}
            for k, c in enumerate(cut_days):
                ok = n_run.dense[:, n_j[0][k]] > 0
                if training and config.max_recency_days is not None and int(c) not in keep_days:
                    last_us = last_run.dense[:, last_j[0][k]].astype(np.float64)
                    ok &= (c * US_PER_DAY - last_us) / US_PER_DAY <= config.max_recency_days
                picks.append(np.flatnonzero(ok))
            del n_run, last_run
            rows["cust"] = np.concatenate(picks)
            rows["k"] = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(picks)])
        rc, rk = rows["cust"], rows["k"]
        for m in ms:
            run, jj = running(m)

            def at(o: int, run: _Running = run, jj: dict = jj, rc: np.ndarray = rc, rk: np.ndarray = rk) -> np.ndarray:
                return run.at(rc, jj[o][rk])

            now = at(0)
            if m.name not in windowed or m.name in _TOTALS_USED:
                base[(m.name, 0)] = now
            for h in label_offsets.get(m.name, ()):
                base[(m.name, h)] = at(h)
            if m.name in windowed:
                prefix = windowed[m.name]
                fam = _FAMILY_OF_MEASURE.get(m.name, "engagement")
                # float32 features (money too): a tree model bins them anyway; labels stay float64.
                dtype = "int32" if m.dtype == "int32" else "float32"
                for w in windows:
                    before = at(-w)
                    put(f"{prefix}_{w}d", now - before, fam, dtype)
                    if prefix in TRENDED:
                        put(f"{prefix}_trend_{w}d", (now - before) - (before - at(-2 * w)), fam, dtype)
            del run
        con.execute("DROP TABLE _reduced")

    # Windowed columns in definition order, whatever order the groups were folded in.
    ordered = [n for m in measures if m.name in windowed for n in _windowed_names(windowed[m.name], windows)]
    out = {n: out[n] for n in ordered if n in out}

    rc, rk = rows["cust"], rows["k"]
    c_day = cut_days[rk]
    c_us = (c_day * US_PER_DAY).astype(np.float64)
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
    if "n_returns" in have:
        put("returns_total", now["n_returns"], "purchase", "int32")
        put("returns_value_total", now["return_value"], "purchase")
        put("return_rate", _ratio(now["return_value"], revenue_total), "purchase")

    # BG/NBD + Gamma-Gamma, fitted afresh at each cutoff on that cutoff's customers (only data < c): a
    # structural prior that the boosters can start from (models.churn / models.clv ``offset``). Fitted on the
    # customers who are not lapsed, in training and scoring tables alike, so the parameters at a cutoff do
    # not depend on which kind of table is built; applied to every row.
    fit_rows = recency <= config.max_recency_days if config.max_recency_days is not None else np.ones(len(rc), bool)
    bg = {n: np.full(len(rc), np.nan, dtype=np.float32) for n in BGNBD_FEATURES.values()}
    for k in range(len(cut_days)):
        at_k = np.flatnonzero(rk == k)
        q = bgnbd_quantities(
            frequency=orders_total[at_k] - 1,
            t_x=(now["last_order_us"][at_k] - now["first_order_us"][at_k]) / US_PER_DAY,
            T=(c_us[at_k] - now["first_order_us"][at_k]) / US_PER_DAY,
            orders_total=orders_total[at_k],
            monetary_value=_ratio(revenue_total[at_k], orders_total[at_k]),
            churn_horizon_days=config.churn_horizon_days,
            clv_horizon_days=config.clv_horizon_days,
            fit_mask=fit_rows[at_k],
        )
        for key, name in BGNBD_FEATURES.items():
            bg[name][at_k] = q[key]
    for name, values in bg.items():
        put(name, values, "bgnbd")
    del bg

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

    # Labels: [c, c + h); null where c + h is after the end of the data.
    end_day = to_day(end) if pd.Timestamp(end) == pd.Timestamp(end).floor("D") else to_day(end) + 1
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
    }
    del base, now

    columns: dict[str, pa.Array] = {
        "customer_id": pa.DictionaryArray.from_arrays(pa.array(rc.astype(np.int32)), cust_ids).cast(pa.string()),
        "cutoff": pa.array(c_day.astype("datetime64[D]").astype("datetime64[us]")),
        "is_lapsed": pa.array(
            recency > config.max_recency_days if config.max_recency_days is not None else np.zeros(len(rc), dtype=bool)
        ),
    }
    for name in list(out):
        columns[name] = pa.array(out.pop(name), from_pandas=True)
    for name, values in _customer_attributes(con, sources, rc, c_day).items():
        columns[name] = values
        family[name] = "attributes"
    columns.update(labels)
    table = pa.table(columns)
    features = [c for c in table.column_names if c in family]
    manifest = {
        "features": features,
        "families": {f: family[f] for f in features},
        "categorical": [c for c in CATEGORICAL_FEATURES if c in table.column_names],
        "labels": list(LABELS),
        "keys": list(KEY_COLUMNS),
        "windows_days": list(windows),
        "churn_horizon_days": h_churn,
        "clv_horizon_days": h_clv,
        "cutoffs": [str(c.date()) for c in cutoffs],
        "data_end": str(pd.Timestamp(end).date()),
        "skipped_sources": skipped,
    }
    return table, manifest


def _windowed_names(prefix: str, windows: tuple[int, ...]) -> list[str]:
    names = []
    for w in windows:
        names.append(f"{prefix}_{w}d")
        if prefix in TRENDED:
            names.append(f"{prefix}_trend_{w}d")
    return names


# Windowed measures whose all-history total derived features or labels also need.
_TOTALS_USED = frozenset(
    {"n_orders", "revenue", "n_returns", "return_value", "points_earned", "points_redeemed", "n_support_ticket"}
)

# Folding fine slots into a measure's coarse slots: the same aggregate again (the latest slot wins for last).
_FOLD = {"sum": "sum({0})", "max": "max({0})", "min": "min({0})", "last": "arg_max({0}, r.slot)"}

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


def _customer_attributes(
    con: duckdb.DuckDBPyConnection, sources: Sources, rc: np.ndarray, c_day: np.ndarray
) -> dict[str, pa.Array]:
    """Static attributes per output row: country and acquisition channel (text), signup age in days at c.

    ``email_opt_in`` and ``loyalty_tier`` in the customers table describe the export time, not the cutoff,
    so they would leak the future into historic rows; the event history carries both instead.
    """
    if "customers" not in sources.tables:
        return {}
    cols = sources.columns["customers"]
    wanted = [c for c in ("signup_ts", *CATEGORICAL_FEATURES) if c in cols]
    if not wanted:
        return {}
    select = ", ".join(f"c.{w}" for w in wanted)
    attrs = con.sql(
        f"SELECT k.cust_idx, {select} FROM _cust k LEFT JOIN customers c USING (customer_id) ORDER BY k.cust_idx"
    ).to_arrow_table()
    result: dict[str, pa.Array] = {}
    idx = pa.array(rc)
    if "signup_ts" in wanted:
        signup_us = attrs.column("signup_ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
        signup_us = np.asarray(signup_us, dtype=np.float64)[rc]
        age = (c_day * float(US_PER_DAY) - signup_us) / US_PER_DAY
        # A signup at or after the cutoff is unknown at the cutoff (features see only < c): missing.
        result["signup_age_days"] = pa.array(np.where(age > 0, age, np.nan).astype(np.float32), from_pandas=True)
    for c in CATEGORICAL_FEATURES:
        if c in wanted:
            result[c] = attrs.column(c).combine_chunks().cast(pa.string()).take(idx)
    return result
