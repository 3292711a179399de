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
from features.definitions import MEASURES, OTHER_EVENTS, Measure
from features.derive import (
    BGNBD_FEATURES,
    CATEGORICAL_FEATURES,
    KEY_COLUMNS,
    LABELS,
    FeatureAssembler,
    FeatureConfig,
    all_offsets,
    attribute_columns,
    eligible,
    measure_offsets,
)
from features.sql import FOLD, day_expr, source_sql

__all__ = [
    "BGNBD_FEATURES",
    "CATEGORICAL_FEATURES",
    "KEY_COLUMNS",
    "LABELS",
    "FeatureConfig",
    "Sources",
    "build_feature_table",
    "inspect_sources",
]


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


def skipped_sources(sources: Sources) -> list[str]:
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
    bounds = slot_boundaries(cut_days, all_offsets(config))

    first_day = con.execute(f"SELECT min({day_expr('order_ts')}) FROM orders").fetchall()[0][0]
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
    skipped = skipped_sources(sources)
    have = {m.name for m in measures}
    j_at = {int(o): np.array([j_of[int(c + o)] for c in cut_days], dtype=np.int64) for o in all_offsets(config)}
    keep_days = {to_day(c) for c in keep_lapsed_at}
    assembler: FeatureAssembler | None = None
    rc = rk = np.empty(0, dtype=np.int64)

    # One source at a time, one measure at a time: each running array lives only until its columns are cut
    # out of it, which keeps peak memory near one (customers x slots) array plus the output.
    for source in ("orders", "returns", "events"):
        ms = [m for m in measures if m.source == source]
        if not ms:
            continue
        # The reduced table stays inside DuckDB; each measure fetches only its non-empty cells.
        con.execute(f"CREATE OR REPLACE TEMP TABLE _reduced AS {source_sql(source, ms, lo)}")

        def running(m: Measure) -> tuple[_Running, dict[int, np.ndarray]]:
            """The measure's running values over its own coarse slots, and per offset the coarse index to
            read for each cutoff. A measure needs only the edges its windows and labels use, so the fine
            slots between two such edges are folded together (in DuckDB, over the measure's non-empty cells
            only: most measures are sparse) before numpy sees them."""
            needed = measure_offsets(m, config)
            edges = np.unique(np.concatenate([j_at[o] for o in needed]))
            coarse = np.searchsorted(edges, np.arange(n_slots), side="left").astype(np.int32)
            con.register("_coarse_df", pd.DataFrame({"slot": np.arange(n_slots, dtype=np.int32), "cs": coarse}))
            keep = f"{m.name} IS NOT NULL" + (f" AND {m.name} <> 0" if m.rollup == "sum" else "")
            cells = con.sql(
                f"SELECT r.cust_idx, c.cs, CAST({FOLD[m.rollup].format(m.name)} AS DOUBLE) AS v "
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
            # Eligibility per cutoff (features.derive.eligible), read off the running arrays for every customer.
            n_run, n_j = running(next(m for m in ms if m.name == "n_orders"))
            last_run, last_j = running(next(m for m in ms if m.name == "last_order_us"))
            everyone = np.arange(n_cust)
            picks = []
            for k, c in enumerate(cut_days):
                ok = eligible(
                    n_run.at(everyone, np.full(n_cust, n_j[0][k])),
                    last_run.at(everyone, np.full(n_cust, last_j[0][k])),
                    np.full(n_cust, c),
                    config,
                    drop_lapsed=training and int(c) not in keep_days,
                )
                picks.append(np.flatnonzero(ok))
            del n_run, last_run
            rc = np.concatenate(picks)
            rk = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(picks)])
            assembler = FeatureAssembler(cut_days[rk], config, have)
        for m in ms:
            run, jj = running(m)

            def at(o: int, run: _Running = run, jj: dict = jj, rc: np.ndarray = rc, rk: np.ndarray = rk) -> np.ndarray:
                return run.at(rc, jj[o][rk])

            assembler.add(m, at)
            del run
        con.execute("DROP TABLE _reduced")

    c_day = cut_days[rk]
    end_day = to_day(end) if pd.Timestamp(end) == pd.Timestamp(end).floor("D") else to_day(end) + 1
    columns: dict[str, pa.Array] = {
        "customer_id": pa.DictionaryArray.from_arrays(pa.array(rc.astype(np.int32)), cust_ids).cast(pa.string())
    }
    rest, family = assembler.finish(end_day, attributes=_customer_attributes(con, sources, rc, c_day))
    columns.update(rest)
    table = pa.table(columns)
    manifest = feature_manifest(table, family, config, cutoffs, end, skipped)
    return table, manifest


def feature_manifest(
    table: pa.Table | pa.Schema,
    family: dict[str, str],
    config: FeatureConfig,
    cutoffs: list[pd.Timestamp],
    end: pd.Timestamp,
    skipped: list[str],
) -> dict:
    """What the table holds: features in column order with their family, categoricals, labels, keys,
    windows and horizons, cutoffs, the end of the data and the sources the data lacks."""
    names = table.names if isinstance(table, pa.Schema) else table.column_names
    features = [c for c in names if c in family]
    return {
        "features": features,
        "families": {f: family[f] for f in features},
        "categorical": [c for c in CATEGORICAL_FEATURES if c in names],
        "labels": list(LABELS),
        "keys": list(KEY_COLUMNS),
        "windows_days": list(config.windows),
        "churn_horizon_days": config.churn_horizon_days,
        "clv_horizon_days": config.clv_horizon_days,
        "cutoffs": [str(pd.Timestamp(c).date()) for c in cutoffs],
        "data_end": str(pd.Timestamp(end).date()),
        "skipped_sources": skipped,
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
    signup_us = None
    if "signup_ts" in wanted:
        signup_us = attrs.column("signup_ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
        signup_us = np.asarray(signup_us, dtype=np.float64)[rc]
    idx = pa.array(rc)
    categoricals = {
        c: attrs.column(c).combine_chunks().cast(pa.string()).take(idx) for c in CATEGORICAL_FEATURES if c in wanted
    }
    return attribute_columns(c_day, signup_us, categoricals)
