"""Point-in-time features and labels for many cutoffs at once.

Grain: one row per (customer, cutoff). A customer is in the table at cutoff ``c`` when they have at least
one order before ``c``; in a training table customers whose last order is more than ``max_recency_days``
before ``c`` are left out (they are long gone, and keeping them only teaches the model the obvious),
while a scoring table keeps them with ``is_lapsed = True``.

Time boundaries (see :mod:`features.cutoffs`): features at ``c`` use rows with timestamp ``< c``; a window
of ``w`` days is ``[c - w, c)``; labels use ``[c, c + h)`` and are null when ``c + h`` is after the end of
the data; the next-order labels use ``[c, c + e)`` for the edges ``e`` of ``FeatureConfig.next_order_days``
that the data reach (:mod:`features.derive`). Durations are in days (fractional, from microsecond timestamps);
money is in the shop's currency.

Feature family ``bgnbd``: BG/NBD and Gamma-Gamma (:mod:`churn_pipeline.btyd`) refitted at every cutoff on
that cutoff's customers who are not lapsed (their purchase history before ``c`` only; at most 100,000 of them),
then applied to every row: ``bgnbd_p_alive``, ``bgnbd_churn_probability`` (no order within the churn horizon),
``bgnbd_expected_orders`` and ``bgnbd_clv`` (over the CLV horizon) and ``bgnbd_order_value``. NaN at a cutoff
with fewer than 20 such customers. The models start from them (``train.*.offset``).

How it stays fast: DuckDB scans each source table once (:func:`features.sql.rows_sql`: the customer's index,
the day, the event type and each measure's per-row contribution) and streams the rows out as Arrow batches;
numpy aggregates them with unbuffered ufuncs straight into each measure's own slots, where slots are the
intervals between the window and horizon edges, of all cutoffs, that the measure is read at. The running
values per customer over slots follow, and every window of every cutoff is the difference of two of them: no
cutoff rescans the data. DuckDB scans the next table in a background thread while numpy rolls up this one,
the BG/NBD fits run in a thread of their own, and the table is made one cutoff block at a time so a writer
can store each block while the next is made. Memory: about 6 bytes per source row (plus 8 per value a
measure reads), one (slots x customers) array at a time, and the output.

The connection passed in must expose views ``orders`` (required), and optionally ``returns``,
``customers`` and ``events``, with the validated contract's columns and types. While a build runs it uses
the connection from a background thread (one query at a time): do not share it with other threads meanwhile.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from churn_pipeline.btyd import MAX_FIT_ROWS, fit_sample_positions
from churn_pipeline.features.contract import KNOWN_EVENT_TYPES
from churn_pipeline.features.cutoffs import to_day
from churn_pipeline.features.definitions import AMOUNT_SCALE, MEASURES, OTHER_EVENTS, Measure
from churn_pipeline.features.derive import (
    BGNBD_FEATURES,
    BGNBD_INPUTS,
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
from churn_pipeline.features.sql import day_expr, event_codes, row_columns, rows_sql

__all__ = [
    "BGNBD_FEATURES",
    "CATEGORICAL_FEATURES",
    "KEY_COLUMNS",
    "LABELS",
    "FeatureConfig",
    "Sources",
    "build_feature_blocks",
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
# Rows per Arrow batch streamed out of DuckDB: bounds the memory of the batch in flight.
_BATCH_ROWS = 1 << 20

# A source table's rows as numpy, by part (event type code, :func:`features.sql.event_codes`; 0 for orders
# and returns): ``cust_idx``, ``day_idx`` and the row columns the part's measures read, with a
# ``<column>:valid`` mask where a column has NULLs.
Parts = dict[int, dict[str, np.ndarray]]


@dataclass(frozen=True)
class _Slots:
    """The coarse slots one measure is read at: ``edges`` (fine slot indexes of the :class:`SlotLayout`,
    ascending: one per offset the measure is read at, per cutoff), and ``of_day[day_idx]``, the coarse slot
    of a row on day ``first_map_day + day_idx`` (-1 after the last edge: never read). A measure read only at
    ``c`` keeps one slot per cutoff and customer instead of ~100."""

    edges: np.ndarray
    of_day: np.ndarray

    @classmethod
    def of(cls, offsets: tuple[int, ...], layout: SlotLayout) -> _Slots:
        edges = np.unique(np.concatenate([layout.reads[o] for o in offsets]))
        fine = layout.daymap["slot"].to_numpy()
        return cls(edges, np.where(fine <= edges[-1], np.searchsorted(edges, fine), -1).astype(np.int32))


def _part_of(m: Measure, codes: dict[str, int]) -> int:
    return codes[m.event_type] if m.source == "events" else 0


def _part_columns(measures: list[Measure]) -> dict[int, list[str]]:
    """The columns each part keeps: the customer and day, its measures' row columns, and ``ts_us`` where a
    ``last`` measure needs the rows' order."""
    columns, codes = row_columns(measures), event_codes(measures)
    keep: dict[int, list[str]] = {}
    for m in measures:
        part = keep.setdefault(_part_of(m, codes), ["cust_idx", "day_idx"])
        exprs = ([m.row_expr] if m.row_expr is not None else []) + (["ts_us"] if m.rollup == "last" else [])
        part += [columns[e] for e in exprs if columns[e] not in part]
    return keep


def _scan_rows(con: duckdb.DuckDBPyConnection, source: str, measures: list[Measure], layout: SlotLayout) -> Parts:
    """One scan of a source table (:func:`features.sql.rows_sql`), streamed out of DuckDB in Arrow batches and
    kept as numpy by part. Memory: 6 bytes per row (customer index and day) plus 8 per value a measure reads;
    the aggregation is left to numpy (:class:`_Running`), straight into each measure's own slots."""
    stop_day = layout.first_map_day + len(layout.daymap)
    keep = _part_columns(measures)
    pieces: dict[tuple[int, str], list[tuple[np.ndarray, np.ndarray | None]]] = {
        (c, name): [] for c, names in keep.items() for name in names
    }
    needed = sorted({name for names in keep.values() for name in names})
    for batch in con.sql(rows_sql(source, measures, layout.first_map_day, stop_day)).to_arrow_reader(_BATCH_ROWS):
        rows: dict[int, np.ndarray | None] = {0: None}
        if source == "events":
            # Rows grouped by type code with one stable sort of a byte column, then sliced per part.
            code = batch.column("type_code").to_numpy()
            counts = np.bincount(code, minlength=max(keep) + 1)
            stops, order = np.cumsum(counts), np.argsort(code, kind="stable")
            rows = {c: order[stops[c] - counts[c] : stops[c]] for c in keep}
        arrays = {name: _numpy(batch.column(name)) for name in needed}
        for c, at in rows.items():
            for name in keep[c]:
                values, mask = arrays[name]
                if at is not None:
                    values, mask = values[at], None if mask is None else mask[at]
                pieces[(c, name)].append((values, mask))
    parts: Parts = {c: {} for c in keep}
    for (c, name), got in pieces.items():
        parts[c][name] = np.concatenate([v for v, _ in got]) if got else np.empty(0, dtype=np.int64)
        if any(mask is not None for _, mask in got):
            parts[c][f"{name}:valid"] = np.concatenate([np.ones(len(v), bool) if k is None else k for v, k in got])
        got.clear()
    return parts


def _numpy(column: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """An Arrow column as numpy values and, when it has NULLs, a validity mask (NULLs are then 0)."""
    if not column.null_count:
        return column.to_numpy(zero_copy_only=False), None
    zero = pa.scalar(0, pa.int8()).cast(column.type)
    return column.fill_null(zero).to_numpy(zero_copy_only=False), column.is_valid().to_numpy(zero_copy_only=False)


class _Scratch:
    """Reusable memory for the running arrays, one measure after another: a fresh 0.4-0.8 GB array per measure
    costs its page faults every time (about a tenth of the roll-up on the 1M shop). An array handed out is
    valid until the next call for the same buffer."""

    def __init__(self) -> None:
        self.buffers: dict[int, np.ndarray] = {}

    def array(self, buffer: int, shape: tuple[int, ...], dtype: type, fill: float) -> np.ndarray:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if buffer not in self.buffers or self.buffers[buffer].size < size:
            self.buffers[buffer] = np.empty(size, dtype=np.uint8)
        out = self.buffers[buffer][:size].view(dtype).reshape(shape)
        out.fill(fill)
        return out

    @staticmethod
    def fresh(buffer: int, shape: tuple[int, ...], dtype: type, fill: float) -> np.ndarray:
        return np.full(shape, fill, dtype=dtype)


class _Running:
    """Running value of one measure at every (coarse slot, customer): a running total, max or min, or the
    latest value.

    Aggregated straight from the source rows of the measure's part (:func:`_scan_rows`) into its own coarse
    slots (:class:`_Slots`) with unbuffered ufuncs (``np.add.at``, ``np.maximum.at``), then rolled forward
    slot by slot. Slot-major, so the customers of one cutoff (in customer order) at one slot are one row read
    in order; each running step is a vectorised row operation in place. Sums are integers (counts, or amounts
    in millionths) and so exact whatever the order of the rows; timestamps int64 microseconds with a sentinel
    for "none yet"; ``last`` takes the latest row, ties on the timestamp to the larger value (NaN largest),
    as the SQL definition's ``arg_max`` over (timestamp, value) does.
    """

    def __init__(
        self,
        part: dict[str, np.ndarray],
        m: Measure,
        columns: dict[str, str],
        slots: _Slots,
        n_cust: int,
        scratch: _Scratch | None = None,
    ):
        shape = (len(slots.edges), n_cust)
        new = scratch.array if scratch is not None else _Scratch.fresh
        self.rollup, self.n_cust = m.rollup, n_cust
        self.scale = AMOUNT_SCALE if m.agg == "sum" else 1
        cs = slots.of_day[part["day_idx"]]
        keep = cs >= 0
        values = None
        if m.row_expr is not None:
            name = columns[m.row_expr]
            values = part[name]
            if f"{name}:valid" in part:
                keep &= part[f"{name}:valid"]
            if m.agg == "count":
                keep &= values
                values = None
        cs = cs[keep]
        flat = cs.astype(np.int64) * n_cust + part["cust_idx"][keep]
        if m.rollup == "sum":
            dtype = np.int32 if m.dtype == "int32" else np.int64
            self.dense = new(0, shape, dtype, 0)
            np.add.at(self.dense.reshape(-1), flat, dtype(1) if values is None else values[keep].astype(dtype))
            step = np.add
        elif m.rollup in _SENTINEL:
            self.dense = new(0, shape, np.int64, _SENTINEL[m.rollup])
            ufunc = np.maximum if m.rollup == "max" else np.minimum
            ufunc.at(self.dense.reshape(-1), flat, values[keep])
            step = ufunc
        else:
            # last: the latest timestamp per cell, then the largest value among the rows at it.
            ts, values = part[columns["ts_us"]][keep], values[keep]
            latest = new(2, (shape[0] * shape[1],), np.int64, _SENTINEL["max"])
            np.maximum.at(latest, flat, ts)
            at_latest = ts == latest[flat]
            self.values = new(1, shape, np.float64, -np.inf)
            with np.errstate(invalid="ignore"):  # a NaN value is the largest, as in SQL: no warning
                np.maximum.at(self.values.reshape(-1), flat[at_latest], values[at_latest])
            # The coarse slot that last had a value, rolled forward; the value is read at that slot.
            self.dense = new(0, shape, np.int32, -1)
            self.dense.reshape(-1)[flat] = cs
            step = np.maximum
        for j in range(1, shape[0]):
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

    def __init__(self, run: _Running, slots: _Slots, j_at: dict, rc: np.ndarray, blocks: list[tuple[int, int]]):
        self.run, self.rc, self.blocks = run, rc, blocks
        self.rows = {o: np.searchsorted(slots.edges, j) for o, j in j_at.items()}

    def __call__(self, offset: int) -> np.ndarray:
        return self.run.read(self.rc, self.blocks, self.rows[offset])


def _eligible_rows(
    orders: Parts,
    measures: list[Measure],
    slots_of: Callable[[Measure], _Slots],
    layout: SlotLayout,
    n_cust: int,
    config: FeatureConfig,
    training: bool,
    keep_days: set[int],
) -> tuple[np.ndarray, list[tuple[int, int]], dict[str, np.ndarray]]:
    """The output rows: customer indexes, cutoff by cutoff and ascending within one, and each cutoff's block of
    them (:func:`features.derive.eligible`, read off the orders' running arrays for every customer); and the
    BG/NBD fit rows: the running inputs (plus ``c_day``) of the customers :func:`features.derive.fit_priors`
    fits each cutoff's prior on, every customer with an order before it (lapsed ones too, whatever the table
    keeps), already thinned to the evenly spaced ``MAX_FIT_ROWS`` in customer order a capped fit takes."""
    everyone, cut_days = np.arange(n_cust), layout.cut_days
    columns = row_columns(measures)
    by_name = {m.name: m for m in measures}
    # One buffer for these running arrays: each is read before the next is made (page faults of fresh arrays
    # cost more than the roll-up itself at 1M customers).
    scratch = _Scratch()

    def running(name: str) -> tuple[_Running, np.ndarray]:
        m = by_name[name]
        return _Running(orders[0], m, columns, slots_of(m), n_cust, scratch), np.searchsorted(
            slots_of(m).edges, layout.reads[0]
        )

    now = {}
    for name in ("n_orders", "last_order_us"):
        run, rows = running(name)
        now[name] = [run.read(everyone, [(0, n_cust)], rows[k : k + 1]) for k in range(len(cut_days))]
    picks, fit_rows = [], []
    for k, c in enumerate(cut_days):
        drop = training and int(c) not in keep_days
        ok = eligible(now["n_orders"][k], now["last_order_us"][k], np.full(n_cust, c), config, drop_lapsed=drop)
        picks.append(np.flatnonzero(ok))
        customers = np.flatnonzero(now["n_orders"][k] > 0)
        fit_rows.append(customers[fit_sample_positions(len(customers), MAX_FIT_ROWS)])
    stops = np.cumsum([len(p) for p in picks])
    blocks = [(int(stop - len(p)), int(stop)) for p, stop in zip(picks, stops, strict=True)]
    # The fit-only inputs are read at the fit rows alone.
    fit_rc = np.concatenate(fit_rows)
    fit_stops = np.cumsum([len(r) for r in fit_rows])
    fit_blocks = [(int(stop - len(r)), int(stop)) for r, stop in zip(fit_rows, fit_stops, strict=True)]
    fit = {"last_order_us": np.concatenate([now["last_order_us"][k][r] for k, r in enumerate(fit_rows)])}
    for name in BGNBD_INPUTS:
        if name not in fit:
            run, rows = running(name)
            fit[name] = run.read(fit_rc, fit_blocks, rows)
    fit["c_day"] = np.repeat(cut_days.astype(np.int64), [len(r) for r in fit_rows])
    return np.concatenate(picks), blocks, fit


def build_feature_blocks(
    con: duckdb.DuckDBPyConnection,
    cutoffs: list[pd.Timestamp],
    end: pd.Timestamp,
    config: FeatureConfig,
    training: bool,
    keep_lapsed_at: tuple[pd.Timestamp, ...] = (),
) -> Iterator[tuple[pd.Timestamp, pa.Table, dict]]:
    """Features (and labels) for every eligible customer at every cutoff, one block per cutoff.

    ``end`` is the end of the data (labels whose horizon passes it are null). ``training`` drops lapsed
    customers (see ``FeatureConfig.max_recency_days``) except at the cutoffs in ``keep_lapsed_at`` (a
    scoring cutoff built in the same pass); otherwise they stay, flagged ``is_lapsed``.
    Yields ``(cutoff, block, manifest)`` in cutoff order: the cutoff's rows sorted by customer_id (possibly
    none, with the same columns), and the manifest naming the features produced, the families skipped and
    why (the same for every block). Every source row is read before the first block; each block is made as
    it is asked for, so a writer can store one while the next is made.
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

    # One source table at a time, one measure at a time: each running array lives only until its columns are
    # cut out of it, which keeps peak memory near one (slots x customers) array plus the output. DuckDB scans
    # the next table in a background thread (it releases the GIL) while numpy rolls up this one; nothing else
    # touches the connection until every scan is fetched.
    groups = [(s, [m for m in measures if m.source == s]) for s in ("orders", "returns", "events")]
    groups = [(s, ms) for s, ms in groups if ms]
    slots_cache: dict[tuple[int, ...], _Slots] = {}

    def slots_of(m: Measure) -> _Slots:
        offsets = measure_offsets(m, config)
        if offsets not in slots_cache:
            slots_cache[offsets] = _Slots.of(offsets, layout)
        return slots_cache[offsets]

    fitting = None
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="churn-scan") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="churn-bgnbd") as fits,
    ):
        # Every scan is queued at once, so DuckDB never waits for numpy; each future is dropped once read, so
        # it does not keep its rows alive after their measures are rolled up.
        pending = deque(pool.submit(_scan_rows, con, source, ms, layout) for source, ms in groups)
        scratch = _Scratch()
        try:
            for source, ms in groups:
                parts = pending.popleft().result()
                columns, codes = row_columns(ms), event_codes(ms)
                if source == "orders":
                    rc, blocks, fit = _eligible_rows(parts, ms, slots_of, layout, n_cust, config, training, keep_days)
                    rk = np.repeat(np.arange(len(cut_days)), [stop - start for start, stop in blocks])
                    assembler = FeatureAssembler(cut_days[rk], config, have)
                left = Counter(_part_of(m, codes) for m in ms)
                for m in sorted(ms, key=lambda m: _part_of(m, codes)):
                    code = _part_of(m, codes)
                    run = _Running(parts[code], m, columns, slots_of(m), n_cust, scratch)
                    assembler.add(m, _Reader(run, slots_of(m), j_at, rc, blocks))
                    del run
                    left[code] -= 1
                    if not left[code]:
                        del parts[code]
                if source == "orders":
                    # The per-cutoff BG/NBD fits need only the orders' running values of their fit rows (every
                    # customer with an order, lapsed or not): fitted in a thread of their own, they run while
                    # DuckDB scans the events and numpy rolls them up.
                    fitting = fits.submit(fit_priors, fit, fit.pop("c_day"), config)
        finally:
            for fetch in pending:
                fetch.cancel()
        priors = fitting.result()

    del scratch
    c_day = cut_days[rk]
    end_day = to_day(end) if pd.Timestamp(end) == pd.Timestamp(end).floor("D") else to_day(end) + 1
    customer_id = pa.DictionaryArray.from_arrays(pa.array(rc.astype(np.int32)), cust_ids).cast(pa.string())
    attributes = _customer_attributes(con, sources, rc, c_day, n_cust)
    manifest = None
    for cutoff, (start, stop) in zip(cutoffs, blocks, strict=True):
        rows = {name: values.slice(start, stop - start) for name, values in attributes.items()}
        columns = {"customer_id": customer_id.slice(start, stop - start)}
        columns.update(assembler.finish_rows(slice(start, stop), end_day, priors, rows))
        block = pa.table(columns)
        if manifest is None:
            manifest = feature_manifest(block, assembler.family, config, cutoffs, end, skipped)
        yield cutoff, block, manifest


def build_feature_table(
    con: duckdb.DuckDBPyConnection,
    cutoffs: list[pd.Timestamp],
    end: pd.Timestamp,
    config: FeatureConfig,
    training: bool,
    keep_lapsed_at: tuple[pd.Timestamp, ...] = (),
) -> tuple[pa.Table, dict]:
    """Features (and labels) for every eligible customer at every cutoff, as one table sorted by cutoff then
    customer_id, plus a manifest naming the features produced, the families skipped and why. Arguments as
    :func:`build_feature_blocks`, whose blocks this concatenates."""
    made = list(build_feature_blocks(con, cutoffs, end, config, training, keep_lapsed_at))
    return pa.concat_tables([block for _, block, _ in made]), made[0][2]


def feature_manifest(
    table: pa.Table | pa.Schema,
    family: dict[str, str],
    config: FeatureConfig,
    cutoffs: list[pd.Timestamp],
    end: pd.Timestamp,
    skipped: list[str],
) -> dict:
    """What the table holds: features in column order with their family, categoricals, labels, keys,
    windows and horizons (``next_order_days``: the next-order labels' grid edges, days), cutoffs, the end of
    the data and the sources the data lacks."""
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
        "next_order_days": list(config.next_order_days),
        "cutoffs": [str(pd.Timestamp(c).date()) for c in cutoffs],
        "data_end": str(pd.Timestamp(end).date()),
        "skipped_sources": skipped,
    }


def _customer_attributes(
    con: duckdb.DuckDBPyConnection, sources: Sources, rc: np.ndarray, c_day: np.ndarray, n_cust: int
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
    if attrs.num_rows != n_cust:
        # One row per customer is what lines the attributes up with the customers: refuse rather than shift.
        raise ValueError("the customers table has duplicate customer_id rows: deduplicate it (`churn validate`)")
    signup_us = None
    if "signup_ts" in wanted:
        signup_us = attrs.column("signup_ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
        signup_us = np.asarray(signup_us, dtype=np.float64)[rc]
    idx = pa.array(rc)
    categoricals = {
        c: attrs.column(c).combine_chunks().cast(pa.string()).take(idx) for c in CATEGORICAL_FEATURES if c in wanted
    }
    return attribute_columns(c_day, signup_us, categoricals)
