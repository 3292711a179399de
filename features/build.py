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

How it stays fast: DuckDB scans each source table once per group of measures (:func:`features.sql.reduce_groups`)
and reduces it to one row per (customer, slot), where slots are the intervals between the consecutive window
and horizon edges, of all cutoffs, that the group reads. numpy then turns those into running totals per
customer over slots, and every window of every cutoff is the difference of two running totals: no cutoff
rescans the data. DuckDB works on the next group in a background thread while numpy rolls up this one.

The connection passed in must expose views ``orders`` (required), and optionally ``returns``,
``customers`` and ``events``, with the validated contract's columns and types. While a build runs it uses
the connection from a background thread (one query at a time): do not share it with other threads meanwhile.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import KNOWN_EVENT_TYPES
from features.cutoffs import to_day
from features.definitions import AMOUNT_SCALE, MEASURES, OTHER_EVENTS, Measure
from features.derive import (
    BGNBD_FEATURES,
    CATEGORICAL_FEATURES,
    KEY_COLUMNS,
    LABELS,
    FeatureAssembler,
    FeatureConfig,
    SlotLayout,
    attribute_columns,
    eligible,
    fit_priors,
    measure_offsets,
)
from features.sql import FOLD, day_expr, reduce_groups, source_sql

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


_INT64 = np.iinfo(np.int64)
# "No row yet" for a running max / min timestamp: the identity of the fold.
_SENTINEL = {"max": int(_INT64.min), "min": int(_INT64.max)}


@dataclass(frozen=True)
class _Fold:
    """Measures of one reduce group that are read at the same slot edges (the same offsets), and those edges
    (fine slot indexes, ascending). Their fine slots are folded into one coarse slot per edge before numpy
    sees them: a measure read only at ``c`` keeps 13 rows per customer instead of ~100."""

    measures: tuple[Measure, ...]
    edges: np.ndarray


def _folds(measures: list[Measure], config: FeatureConfig, j_at: dict[int, np.ndarray]) -> list[_Fold]:
    by_offsets: dict[tuple[int, ...], list[Measure]] = {}
    for m in measures:
        by_offsets.setdefault(measure_offsets(m, config), []).append(m)
    return [
        _Fold(tuple(ms), np.unique(np.concatenate([j_at[o] for o in offsets]))) for offsets, ms in by_offsets.items()
    ]


def _fold_sql(reduced: str, coarse: str | None, measures: tuple[Measure, ...]) -> str:
    """One row per (customer, coarse slot) that has rows: sums never NULL (counts, or amounts in integer
    millionths), max/min timestamps with the fold's identity for "no row", ``last`` the value of the latest
    slot that has one (NULL for none). ``coarse`` (slot -> cs) folds the reduced slots; slots it lacks are
    never read and are dropped. Without it the reduced slots are the fold's own: the cells pass through."""
    cols = []
    for m in measures:
        x = f"r.{m.name}"
        folded = x if coarse is None else FOLD[m.rollup].format(x)
        if m.rollup == "sum":
            cols.append(f"CAST(coalesce({folded}, 0) AS {'INTEGER' if m.dtype == 'int32' else 'BIGINT'}) AS {m.name}")
        elif m.rollup in _SENTINEL:
            cols.append(f"coalesce({folded}, {_SENTINEL[m.rollup]}) AS {m.name}")
        else:
            cols.append(f"{folded}{'' if coarse is None else f' FILTER (WHERE {x} IS NOT NULL)'} AS {m.name}")
    if coarse is None:
        return f"SELECT r.cust_idx, r.slot AS cs, {', '.join(cols)} FROM {reduced} r"
    return (
        f"SELECT r.cust_idx, c.cs, {', '.join(cols)} FROM {reduced} r JOIN {coarse} c ON r.slot = c.slot "
        "GROUP BY r.cust_idx, c.cs"
    )


def _reduce_and_fold(
    con: duckdb.DuckDBPyConnection,
    k: int,
    source: str,
    measures: list[Measure],
    folds: list[_Fold],
    daymap: pd.DataFrame,
    first_map_day: int,
) -> list[dict[str, np.ndarray]]:
    """The DuckDB side of one reduce group: the reduce query once (one scan of the source table) into the
    group's own slots (one per edge its measures read; ``daymap``: day -> fine slot), then per edge set the
    cells of its measures, folded where the set is coarser than the group's; each as Arrow."""
    edges = np.unique(np.concatenate([f.edges for f in folds]))
    days = daymap[daymap["slot"] <= edges[-1]]
    con.register("_daymap_df", pd.DataFrame({"day": days["day"], "slot": np.searchsorted(edges, days["slot"])}))
    # A table, not the registered frame: DuckDB then knows it is small and builds the join's hash table on it
    # (on an unsized frame it may hash the source rows instead, and run out of memory).
    con.execute(f"CREATE OR REPLACE TEMP TABLE _daymap_{k} AS SELECT * FROM _daymap_df")
    con.unregister("_daymap_df")
    reduced = f"_reduced_{k}"
    query = source_sql(source, measures, first_map_day, daymap=f"_daymap_{k}")
    if len(folds) == 1 and np.array_equal(folds[0].edges, edges):
        # The usual case for events: the group's slots are its measures' own; the cells stream straight out.
        try:
            return [_owned(con.sql(_fold_sql(f"({query})", None, folds[0].measures)).to_arrow_table())]
        finally:
            con.execute(f"DROP TABLE IF EXISTS _daymap_{k}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {reduced} AS {query}")
    try:
        cells = []
        for fold in folds:
            if np.array_equal(fold.edges, edges):
                cells.append(_owned(con.sql(_fold_sql(reduced, None, fold.measures)).to_arrow_table()))
                continue
            inside = edges <= fold.edges[-1]
            coarse = np.searchsorted(fold.edges, edges[inside]).astype(np.int32)
            con.register("_coarse_df", pd.DataFrame({"slot": np.flatnonzero(inside), "cs": coarse}))
            cells.append(_owned(con.sql(_fold_sql(reduced, "_coarse_df", fold.measures)).to_arrow_table()))
            con.unregister("_coarse_df")
        return cells
    finally:
        con.execute(f"DROP TABLE IF EXISTS {reduced}")
        con.execute(f"DROP TABLE IF EXISTS _daymap_{k}")


def _owned(cells: pa.Table) -> dict[str, np.ndarray]:
    """A fold's cells as numpy arrays the interpreter owns (``<column>:valid`` where a column has NULLs): an
    Arrow result of DuckDB counts against DuckDB's memory limit for as long as it lives, and the next group is
    being reduced while this one waits for numpy."""
    out = {}
    for name in cells.column_names:
        col = cells.column(name).combine_chunks()
        if col.null_count:
            out[f"{name}:valid"] = col.is_valid().to_numpy(zero_copy_only=False)
        out[name] = np.array(col.to_numpy(zero_copy_only=False), copy=True)
    return out


class _Scratch:
    """Reusable memory for the running arrays, one measure after another: a fresh 0.4-0.8 GB array per measure
    costs its page faults every time (about a tenth of the roll-up on the 1M shop). An array handed out is
    valid until the next call for the same buffer."""

    def __init__(self) -> None:
        self.buffers: dict[int, np.ndarray] = {}

    def array(self, buffer: int, shape: tuple[int, int], dtype: type, fill: float) -> np.ndarray:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if buffer not in self.buffers or self.buffers[buffer].size < size:
            self.buffers[buffer] = np.empty(size, dtype=np.uint8)
        out = self.buffers[buffer][:size].view(dtype).reshape(shape)
        out.fill(fill)
        return out

    @staticmethod
    def fresh(buffer: int, shape: tuple[int, int], dtype: type, fill: float) -> np.ndarray:
        return np.full(shape, fill, dtype=dtype)


class _Running:
    """Running value of one measure at every (coarse slot, customer): a running total, max or min, or the
    latest value.

    Slot-major, so the customers of one cutoff (in customer order) at one slot are one row read in order:
    that keeps the reads cache-friendly. Filled from the fold's cells (at most one per (customer, coarse
    slot)); the running step is a loop over the coarse slots, each step a vectorised row operation, so it works
    in place (a whole-array accumulate would copy the array first). Sums are integers (counts, or amounts in
    millionths) and so exact; timestamps int64 microseconds with a sentinel for "none yet".
    """

    def __init__(
        self, cells: dict[str, np.ndarray], m: Measure, n_cust: int, n_rows: int, scratch: _Scratch | None = None
    ):
        cust, slot, values = cells["cust_idx"], cells["cs"], cells[m.name]
        shape = (n_rows, n_cust)
        new = scratch.array if scratch is not None else _Scratch.fresh
        self.rollup, self.n_cust = m.rollup, n_cust
        self.scale = AMOUNT_SCALE if m.rollup == "sum" and m.dtype == "float64" else 1
        if m.rollup == "sum":
            self.dense = new(0, shape, np.int32 if m.dtype == "int32" else np.int64, 0)
            self.dense[slot, cust] = values
            step = np.add
        elif m.rollup in _SENTINEL:
            self.dense = new(0, shape, np.int64, _SENTINEL[m.rollup])
            self.dense[slot, cust] = values
            step = np.maximum if m.rollup == "max" else np.minimum
        else:
            # last: the coarse slot that last had a value, rolled forward; the value is read at that slot.
            ok = cells.get(f"{m.name}:valid", np.ones(len(values), dtype=bool))
            self.values = new(1, shape, np.float64, np.nan)
            self.values[slot[ok], cust[ok]] = values[ok]
            self.dense = new(0, shape, np.int32, -1)
            self.dense[slot[ok], cust[ok]] = slot[ok]
            step = np.maximum
        for j in range(1, n_rows):
            step(self.dense[j - 1], self.dense[j], out=self.dense[j])

    def read(self, rc: np.ndarray, blocks: list[tuple[int, int]], rows: np.ndarray) -> np.ndarray:
        """Running values (float64; NaN where a max, min or last has no row yet) of customers ``rc``, block
        ``b`` of them (a cutoff's customers, ascending) through coarse slot ``rows[b]``."""
        out = np.empty(len(rc))
        for (start, stop), j in zip(blocks, rows, strict=True):
            idx = rc[start:stop]
            if self.rollup == "last":
                at = self.dense[j][idx]
                values = np.take(self.values.ravel(), np.maximum(at, 0) * self.n_cust + idx)
                values[at < 0] = np.nan
                out[start:stop] = values
            else:
                out[start:stop] = self.dense[j][idx]
        if self.rollup in _SENTINEL:
            out[out == float(_SENTINEL[self.rollup])] = np.nan
        elif self.scale != 1:
            out /= self.scale
        return out


class _Reader:
    """``at(offset)`` for :meth:`FeatureAssembler.add`: a measure's running values for the output rows
    (customers ``rc``, one block per cutoff) at each cutoff's edge for that offset."""

    def __init__(self, run: _Running, fold: _Fold, j_at: dict, rc: np.ndarray, blocks: list[tuple[int, int]]):
        self.run, self.rc, self.blocks = run, rc, blocks
        self.rows = {o: np.searchsorted(fold.edges, j) for o, j in j_at.items()}

    def __call__(self, offset: int) -> np.ndarray:
        return self.run.read(self.rc, self.blocks, self.rows[offset])


def _eligible_rows(
    orders: list[tuple[Measure, _Fold, dict[str, np.ndarray]]],
    j_now: np.ndarray,
    n_cust: int,
    cut_days: np.ndarray,
    config: FeatureConfig,
    training: bool,
    keep_days: set[int],
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The output rows: customer indexes, cutoff by cutoff and ascending within one, and each cutoff's block of
    them. :func:`features.derive.eligible`, read off the orders' running arrays for every customer."""
    everyone = np.arange(n_cust)
    now = {}
    for m, fold, cells in orders:
        if m.name in ("n_orders", "last_order_us"):
            run = _Running(cells, m, n_cust, len(fold.edges))
            rows = np.searchsorted(fold.edges, j_now)
            now[m.name] = [run.read(everyone, [(0, n_cust)], rows[k : k + 1]) for k in range(len(cut_days))]
    picks = []
    for k, c in enumerate(cut_days):
        drop = training and int(c) not in keep_days
        ok = eligible(now["n_orders"][k], now["last_order_us"][k], np.full(n_cust, c), config, drop_lapsed=drop)
        picks.append(np.flatnonzero(ok))
    stops = np.cumsum([len(p) for p in picks])
    blocks = [(int(stop - len(p)), int(stop)) for p, stop in zip(picks, stops, strict=True)]
    return np.concatenate(picks), blocks


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
    layout = SlotLayout.of(np.array([to_day(c) for c in cutoffs], dtype=np.int64), config)
    cut_days, j_at = layout.cut_days, layout.reads

    first_day = con.execute(f"SELECT min({day_expr('order_ts')}) FROM orders").fetchall()[0][0]
    if first_day is None:
        raise ValueError("the orders table is empty")
    # Customers are numbered in customer_id order, so output rows come out sorted by customer within a cutoff.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cust AS SELECT customer_id, "
        "(row_number() OVER (ORDER BY customer_id) - 1)::INTEGER AS cust_idx "
        "FROM (SELECT DISTINCT customer_id FROM orders)"
    )
    cust_ids = con.sql("SELECT customer_id FROM _cust ORDER BY cust_idx").to_arrow_table().column(0).combine_chunks()
    n_cust = len(cust_ids)

    measures = [m for m in MEASURES if sources.supports(m)]
    skipped = skipped_sources(sources)
    have = {m.name for m in measures}
    keep_days = {to_day(c) for c in keep_lapsed_at}
    assembler: FeatureAssembler | None = None
    rc = rk = np.empty(0, dtype=np.int64)
    blocks: list[tuple[int, int]] = []

    # One reduce group at a time, one measure at a time: each running array lives only until its columns are
    # cut out of it, which keeps peak memory near one (slots x customers) array plus the output. DuckDB reduces
    # the next group in a background thread (it releases the GIL) while numpy rolls up this one; nothing else
    # touches the connection until every group is fetched.
    by_offsets = reduce_groups(measures, lambda m: measure_offsets(m, config))
    groups = [(source, ms, _folds(ms, config, j_at), layout.daymap, layout.first_map_day) for source, ms in by_offsets]
    priors = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="churn-reduce") as pool:
        # Every group is queued at once, so DuckDB never waits for numpy; each future is dropped once read, so
        # it does not keep its cells alive (the cells are numpy copies, outside DuckDB's memory limit).
        pending = deque(pool.submit(_reduce_and_fold, con, k, *group) for k, group in enumerate(groups))
        scratch = _Scratch()
        try:
            for source, _, folds, *_ in groups:
                cells_of = pending.popleft().result()
                items = [(m, fold, cells) for fold, cells in zip(folds, cells_of, strict=True) for m in fold.measures]
                del cells_of
                if source == "orders":
                    rc, blocks = _eligible_rows(items, j_at[0], n_cust, cut_days, config, training, keep_days)
                    rk = np.repeat(np.arange(len(cut_days)), [stop - start for start, stop in blocks])
                    assembler = FeatureAssembler(cut_days[rk], config, have)
                while items:
                    m, fold, cells = items.pop(0)
                    run = _Running(cells, m, n_cust, len(fold.edges), scratch)
                    assembler.add(m, _Reader(run, fold, j_at, rc, blocks))
                    del cells, run
                if source == "orders":
                    # The per-cutoff BG/NBD fits need only the orders' running values: fitted here, they run
                    # while DuckDB reduces the events.
                    priors = fit_priors(assembler.now(), cut_days[rk], config)
        finally:
            for fetch in pending:
                fetch.cancel()

    del scratch
    c_day = cut_days[rk]
    end_day = to_day(end) if pd.Timestamp(end) == pd.Timestamp(end).floor("D") else to_day(end) + 1
    columns: dict[str, pa.Array] = {
        "customer_id": pa.DictionaryArray.from_arrays(pa.array(rc.astype(np.int32)), cust_ids).cast(pa.string())
    }
    rest, family = assembler.finish(end_day, priors, attributes=_customer_attributes(con, sources, rc, c_day))
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
