"""The measures of :mod:`features.definitions` as SQL: written once, in DuckDB's dialect; Spark gets a translation.

Queries per source table (``orders``, ``returns``, ``events``):

- :func:`source_sql`, the *reduce*: one scan of the table, one row per (customer, slot) with every measure
  aggregated over the rows whose day falls in that slot (slots: the intervals between consecutive window and
  horizon edges of all cutoffs, from a ``_daymap`` table of day -> slot). The Spark engine runs it.
- :func:`rows_sql`, for an engine that aggregates in memory (the DuckDB engine, in numpy: :mod:`features.build`):
  the same scan, but one row per source row with each measure's per-row contribution
  (:attr:`features.definitions.Measure.row_expr`); both come from the one definition of each measure.
- :func:`running_sql`, the *roll-up* for engines without that numpy step: for every (customer, cutoff) the
  running value of each measure at each offset the features need (:func:`features.derive.measure_offsets`),
  as conditional aggregates over the reduced rows joined to a small ``_reads`` table (one row per cutoff; the
  last slot each offset may read). Rows are joined to a cutoff only up to its last edge, so the join is at
  most (reduced rows x cutoffs), never (raw rows x cutoffs).

:func:`to_spark` translates the reduce and the roll-up with sqlglot, the maintained SQL transpiler, so the
feature logic has one source of truth. Only portable constructs are used: ``count``/``sum``/``max``/``min``,
``FILTER``, ``arg_max`` (Spark ``max_by``) over a struct for deterministic ties, ``lag`` over a window, 64-bit
integer sums of amounts in millionths (exact, so the order rows are added in cannot change a feature),
microsecond and day differences.
"""

from __future__ import annotations

from churn_pipeline.features.contract import KNOWN_EVENT_TYPES
from churn_pipeline.features.definitions import AMOUNT_SCALE, OTHER_EVENTS, Measure
from churn_pipeline.features.derive import US_PER_DAY, running_column

TIMESTAMP_OF = {"orders": "order_ts", "returns": "return_ts", "events": "event_ts"}

# Folding reduced rows into running values: the same aggregate again (the latest slot wins for ``last``).
FOLD = {"sum": "sum({0})", "max": "max({0})", "min": "min({0})", "last": "arg_max({0}, r.slot)"}

# Types of the reduced (customer, slot) table: counts INTEGER, timestamps and amount sums (integer millionths,
# features.definitions.exact_sum) BIGINT.
_STORED_TYPE = {"int32": "INTEGER", "int64": "BIGINT", "float64": "BIGINT"}


def day_expr(ts: str) -> str:
    """Day number (days since 1970-01-01) of a naive-UTC timestamp column."""
    return f"date_diff('day', DATE '1970-01-01', CAST({ts} AS DATE))"


def micros_expr(ts: str) -> str:
    """Microseconds since 1970-01-01 of a naive-UTC timestamp column."""
    return f"date_diff('microsecond', TIMESTAMP '1970-01-01 00:00:00', {ts})"


def _event_condition(m: Measure) -> str:
    if m.event_type == OTHER_EVENTS:
        known = ", ".join(f"'{t}'" for t in KNOWN_EVENT_TYPES)
        return f"event_type NOT IN ({known})"
    return f"event_type = '{m.event_type}'"


def aggregate_sql(m: Measure) -> str:
    """The measure's aggregate over one group of source rows."""
    if m.source != "events":
        return m.expr
    cond = _event_condition(m)
    if m.rollup == "last":
        # The latest row's value; ties on the timestamp go to the larger value so the result is deterministic.
        latest = f"struct_pack(t := ts_us, v := {m.expr})"
        return f"arg_max({m.expr}, {latest}) FILTER (WHERE {cond} AND {m.expr} IS NOT NULL)"
    return f"{m.expr} FILTER (WHERE {cond})"


def _source_cte(source: str, measures: list[Measure]) -> str:
    """``src``: the source table's rows the measures read, with ``ts_us`` (microseconds), ``day`` (day number)
    and, for orders, ``gap_days`` and ``new_day``."""
    ts = TIMESTAMP_OF[source]
    extra = ""
    day = day_expr(ts)
    if source == "orders":
        # The gap to the customer's previous order belongs to the later order, so it is known once that
        # order is; ties on the timestamp are broken by order_id so the gap is deterministic.
        extra = (
            f", ({micros_expr(ts)} - lag({micros_expr(ts)}) OVER (PARTITION BY customer_id ORDER BY {ts}, order_id))"
            # Floating-point division in both engines (a decimal literal would divide as DECIMAL, by each
            # engine's own precision rules).
            f" / CAST({US_PER_DAY} AS DOUBLE) AS gap_days"
            # 1 on the customer's first order of each day, else NULL: counted before c, the number of days with
            # an order before c (purchase occasions). It only looks back, at the previous order.
            f", CASE WHEN lag({day}) OVER (PARTITION BY customer_id ORDER BY {ts}, order_id) = {day} THEN NULL"
            f" ELSE 1 END AS new_day"
        )
    where = ""
    if source == "events":
        types = sorted({m.event_type for m in measures if m.event_type != OTHER_EVENTS})
        if not any(m.event_type == OTHER_EVENTS for m in measures):
            where = "WHERE event_type IN (" + ", ".join(f"'{t}'" for t in types) + ")"
    return f"""WITH src AS (
  SELECT *, {micros_expr(ts)} AS ts_us, {day_expr(ts)} AS day{extra}
  FROM {source} {where}
)"""


def source_sql(
    source: str, measures: list[Measure], first_map_day: int, by_index: bool = True, daymap: str = "_daymap"
) -> str:
    """The reduce query of one source table: one row per (customer, slot), a column per measure.

    ``first_map_day``: rows on earlier days are counted in the first slot (they are before every edge).
    ``by_index``: key rows by ``cust_idx`` from a ``_cust`` table (customer_id -> dense index), else by
    ``customer_id`` itself. ``daymap``: the (day, slot) table; rows on days it lacks are left out (an engine
    may use coarser slots, or stop at the last edge its measures read).
    """
    aggs = ",\n       ".join(
        f"CAST({aggregate_sql(m)} AS {'DOUBLE' if m.rollup == 'last' else _STORED_TYPE[m.dtype]}) AS {m.name}"
        for m in measures
    )
    key, join = ("src.customer_id", "")
    if by_index:
        key, join = "k.cust_idx", "JOIN _cust k ON src.customer_id = k.customer_id"
    return f"""
{_source_cte(source, measures)}
SELECT {key}, d.slot,
       {aggs}
FROM src
{join}
JOIN {daymap} d ON greatest(src.day, {first_map_day}) = d.day
GROUP BY {key}, d.slot"""


def event_codes(measures: list[Measure]) -> dict[str, int]:
    """A small integer per event type the measures name (sorted), and the next one for :data:`OTHER_EVENTS`."""
    types = sorted({m.event_type for m in measures if m.event_type not in (None, OTHER_EVENTS)})
    return {**{t: i for i, t in enumerate(types)}, OTHER_EVENTS: len(types)}


def row_columns(measures: list[Measure]) -> dict[str, str]:
    """Column alias of each distinct :attr:`Measure.row_expr` of the measures (and of ``ts_us`` when a
    ``last`` measure needs the rows' order), in :func:`rows_sql`."""
    exprs = [e for m in measures for e in (m.row_expr, _order_expr(m)) if e is not None]
    return {e: f"a{i}" for i, e in enumerate(dict.fromkeys(exprs))}


def rows_sql(source: str, measures: list[Measure], first_map_day: int, stop_day: int) -> str:
    """The row query of one source table, for an engine that aggregates the rows itself (the DuckDB engine
    does, in numpy): one scan, one row per source row of a customer in ``_cust`` on a day before ``stop_day``
    (later rows are never read), with ``cust_idx``, ``day_idx`` (days since ``first_map_day``; earlier rows
    count as 0: they are before every edge), for events ``type_code`` (:func:`event_codes`), and each
    measure's contribution in the column :func:`row_columns` names."""
    cols = [f"(greatest(src.day, {first_map_day}) - {first_map_day})::{_day_type(first_map_day, stop_day)} AS day_idx"]
    ctes, rows = _source_cte(source, measures), "src"
    if source == "events":
        codes = event_codes(measures)
        whens = " ".join(f"WHEN '{t}' THEN {c}" for t, c in codes.items() if t != OTHER_EVENTS)
        ctes += f""",
typed AS (SELECT *, (CASE event_type {whens} ELSE {codes[OTHER_EVENTS]} END)::UTINYINT AS type_code FROM src)"""
        rows = "typed"
        cols.append("src.type_code")
    for expr, alias in row_columns(measures).items():
        if source == "events":
            # Evaluated only on the rows of the types that read it: most events have no value, and a cast
            # that fails (NaN to BIGINT) is slow even as TRY_CAST.
            reading = sorted({codes[m.event_type] for m in measures if expr in (m.row_expr, _order_expr(m))})
            if len(reading) < len(codes):
                expr = f"CASE WHEN src.type_code IN ({', '.join(map(str, reading))}) THEN {expr} END"
        cols.append(f"{expr} AS {alias}")
    return f"""
{ctes}
SELECT k.cust_idx, {", ".join(cols)}
FROM {rows} src
JOIN _cust k ON src.customer_id = k.customer_id
WHERE src.day < {stop_day}"""


def _order_expr(m: Measure) -> str | None:
    """The row column a measure orders its rows by: ``ts_us`` for ``last``."""
    return "ts_us" if m.rollup == "last" else None


def _day_type(first_map_day: int, stop_day: int) -> str:
    return "SMALLINT" if stop_day - first_map_day <= 32_767 else "INTEGER"


def reduce_groups(measures: list[Measure]) -> list[tuple[str, list[Measure]]]:
    """The reduce queries to run, as (source, measures), orders first: one per source table, except that the
    event measures reading ``value`` (reviews, NPS, loyalty points and tiers) get their own query: they scan
    only their own event types, and the frequent types' groups carry counts and timestamps only."""
    groups: list[tuple[str, list[Measure]]] = []
    for source in ("orders", "returns", "events"):
        ms = [m for m in measures if m.source == source]
        if source != "events":
            groups += [(source, ms)] if ms else []
            continue
        for reads_value in (False, True):
            part = [m for m in ms if ("value" in m.needs_columns) == reads_value]
            groups += [(source, part)] if part else []
    return groups


def read_column(offset: int) -> str:
    """Column of ``_reads`` holding, per cutoff, the last slot a running value at ``c + offset`` may read."""
    return f"j_{'m' if offset < 0 else 'p'}{abs(offset)}"


def running_sql(reduced: str, measures_offsets: list[tuple[Measure, tuple[int, ...]]]) -> str:
    """The roll-up of one reduced table (a relation named ``reduced``) into running values per (customer,
    cutoff): column ``{measure}__{m|p}{days}`` (see :func:`features.derive.running_column`) is the measure
    over the customer's rows before ``c + offset``. Sums are 0 and max/min/last NULL when nothing is there."""
    cols = []
    for m, offsets in measures_offsets:
        for o in offsets:
            name = running_column(m.name, o)
            cond = f"r.slot <= q.{read_column(o)}" + (f" AND r.{m.name} IS NOT NULL" if m.rollup == "last" else "")
            agg = f"{FOLD[m.rollup].format('r.' + m.name)} FILTER (WHERE {cond})"
            if m.rollup == "sum":
                agg = f"CAST(coalesce({agg}, 0) AS DOUBLE)"
                if m.dtype == "float64":
                    agg = f"{agg} / CAST({AMOUNT_SCALE} AS DOUBLE)"
            cols.append(f"CAST({agg} AS DOUBLE) AS {name}")
    body = ",\n       ".join(cols)
    return f"""
SELECT r.customer_id, q.cutoff_day,
       {body}
FROM {reduced} r
JOIN _reads q ON r.slot <= q.j_max
GROUP BY r.customer_id, q.cutoff_day"""


def to_spark(sql: str) -> str:
    """The same query in Spark SQL (sqlglot, DuckDB -> Spark)."""
    import sqlglot  # the `spark` extra: only Spark needs the translation

    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]
