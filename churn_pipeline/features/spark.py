"""Point-in-time features and labels on Apache Spark: the same definitions as the DuckDB engine, scaled out.

Grain, time boundaries and units are those of :mod:`features.build` (one row per (customer, cutoff); features
see rows ``< c``, labels ``[c, c + h)``; days and shop currency). Nothing here restates a feature:

1. the reduce and roll-up queries are :mod:`features.sql`'s DuckDB SQL, translated to Spark SQL by sqlglot,
   giving one row per (customer, cutoff) with the running value of every measure at every offset;
2. the BG/NBD prior of each cutoff is fitted on the driver (:func:`features.derive.fit_priors`) on the rows the
   in-memory engine would use (at most 100,000 per cutoff, evenly spaced in customer_id order: the sample is
   drawn on Spark, only it is collected);
3. every batch of rows goes through :class:`features.derive.FeatureAssembler` in ``mapInArrow`` on the
   executors: eligibility, windows, ratios, the prior, attributes and labels are the same numpy code.

Functions take and return Spark DataFrames (lazy) and never read or write files; the caller owns the session
and the I/O. The output is sorted by cutoff then customer_id, like the DuckDB engine's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from churn_pipeline.btyd import MAX_FIT_ROWS, BGNBDPrior, fit_sample_positions
from churn_pipeline.features.build import Sources, feature_manifest, skipped_sources
from churn_pipeline.features.cutoffs import to_day
from churn_pipeline.features.definitions import MEASURES, Measure
from churn_pipeline.features.derive import (
    BGNBD_INPUTS,
    CATEGORICAL_FEATURES,
    FeatureAssembler,
    FeatureConfig,
    SlotLayout,
    all_offsets,
    attribute_columns,
    eligible,
    fit_priors,
    measure_offsets,
    prior_fit_mask,
    running_column,
)
from churn_pipeline.features.sql import micros_expr, read_column, reduce_groups, running_sql, source_sql, to_spark

TABLES = ("orders", "returns", "customers", "events")


def inspect_spark_sources(tables: Mapping) -> Sources:
    """Which tables, columns and event types the Spark DataFrames have (one distinct scan of event types)."""
    present = frozenset(t for t in TABLES if t in tables)
    columns = {t: frozenset(tables[t].columns) for t in present}
    event_types: frozenset[str] = frozenset()
    if "events" in present:
        event_types = frozenset(r[0] for r in tables["events"].select("event_type").distinct().collect())
    return Sources(present, columns, event_types)


def _day_of(end: pd.Timestamp) -> int:
    return to_day(end) if pd.Timestamp(end) == pd.Timestamp(end).floor("D") else to_day(end) + 1


def build_feature_table_spark(
    spark,
    tables: Mapping,
    cutoffs: list[pd.Timestamp],
    end: pd.Timestamp,
    config: FeatureConfig,
    training: bool,
    keep_lapsed_at: tuple[pd.Timestamp, ...] = (),
):
    """The feature table of :func:`features.build.build_feature_table`, computed by Spark.

    ``tables``: Spark DataFrames of the validated contract tables by name (``orders`` required). Returns the
    (lazy) DataFrame sorted by cutoff then customer_id, and the manifest. Fitting the BG/NBD priors runs two
    small Spark jobs now (counts and the fit sample); the table itself is computed when it is written.
    """
    if not cutoffs:
        raise ValueError("no cutoffs to build features for")
    if "orders" not in tables:
        raise ValueError("no `orders` table: orders are required")
    sources = inspect_spark_sources(tables)
    for name in sources.tables:
        tables[name].createOrReplaceTempView(name)
    cutoffs = sorted({pd.Timestamp(c).floor("D") for c in cutoffs})
    layout = SlotLayout.of(np.array([to_day(c) for c in cutoffs], dtype=np.int64), config)
    cut_days, lo = layout.cut_days, layout.first_map_day
    spark.createDataFrame(layout.daymap.astype({"day": "int32"})).createOrReplaceTempView("_daymap")
    offsets = [int(o) for o in all_offsets(config)]
    reads = pd.DataFrame({"cutoff_day": cut_days.astype(np.int32)})
    for o in offsets:
        reads[read_column(o)] = layout.reads[o].astype(np.int32)
    reads["j_max"] = reads[[read_column(o) for o in offsets]].max(axis=1)
    spark.createDataFrame(reads).createOrReplaceTempView("_reads")

    measures = [m for m in MEASURES if sources.supports(m)]
    have = {m.name for m in measures}
    rolled = []
    for k, (source, ms) in enumerate(reduce_groups(measures)):
        spark.sql(to_spark(source_sql(source, ms, lo, by_index=False))).createOrReplaceTempView(f"_reduced_{k}")
        query = running_sql(f"_reduced_{k}", [(m, measure_offsets(m, config)) for m in ms])
        rolled.append(spark.sql(to_spark(query)))
    # reduce_groups puts orders first: every output row has an order before its cutoff.
    orders_base, base = rolled[0], rolled[0]
    for part in rolled[1:]:
        base = base.join(part, ["customer_id", "cutoff_day"], "left")
    attrs = _attribute_frame(spark, sources)
    if attrs is not None:
        base = base.join(attrs, "customer_id", "left")

    priors = _fit_priors(spark, orders_base, cut_days, config)
    drop_days = frozenset(int(d) for d in cut_days) - {to_day(c) for c in keep_lapsed_at} if training else frozenset()
    derive = _BatchDeriver(measures, have, config, _day_of(end), priors, drop_days, attrs is not None, sources)
    empty = derive.batch_table(pa.RecordBatch.from_pylist([], schema=base.limit(0).toArrow().schema))
    schema, family = empty.schema, derive.family
    from pyspark.sql.pandas.types import from_arrow_schema

    table = base.mapInArrow(derive, from_arrow_schema(schema, prefer_timestamp_ntz=True))
    table = table.orderBy("cutoff", "customer_id")
    manifest = feature_manifest(schema, family, config, cutoffs, end, skipped_sources(sources))
    return table, manifest


def _attribute_frame(spark, sources: Sources):
    """customer_id with the signup timestamp in microseconds and the categorical attributes, or None."""
    if "customers" not in sources.tables:
        return None
    cols = sources.columns["customers"]
    select = ["customer_id"]
    if "signup_ts" in cols:
        select.append(f"{micros_expr('signup_ts')} AS signup_us")
    select += [c for c in CATEGORICAL_FEATURES if c in cols]
    if len(select) == 1:
        return None
    return spark.sql(to_spark(f"SELECT {', '.join(select)} FROM customers"))


def _fit_priors(spark, orders_base, cut_days: np.ndarray, config: FeatureConfig) -> dict[int, BGNBDPrior | None]:
    """Per cutoff day, BG/NBD + Gamma-Gamma on the rows :func:`features.derive.fit_priors` would use: the
    cutoff's customers with an order before it (lapsed ones too), evenly spaced in customer_id order when there
    are more than 100,000."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    cols = ["customer_id", "cutoff_day", *(running_column(n, 0) for n in BGNBD_INPUTS)]

    def fit_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            now = {n: _floats(batch, running_column(n, 0)) for n in BGNBD_INPUTS}
            c_day = batch.column("cutoff_day").to_numpy(zero_copy_only=False).astype(np.int64)
            keep = (now["n_order_days"] > 0) & prior_fit_mask(now, c_day, config)
            yield batch.filter(pa.array(keep))

    candidates = orders_base.select(*cols)
    candidates = candidates.mapInArrow(fit_rows, candidates.schema)
    counts = dict(candidates.groupBy("cutoff_day").count().collect())
    wanted = [(int(day), int(p)) for day, n in counts.items() for p in fit_sample_positions(int(n), MAX_FIT_ROWS)]
    if not wanted:
        return {}
    positions = spark.createDataFrame(pd.DataFrame(wanted, columns=["cutoff_day", "position"]).astype("int32"))
    ranked = candidates.withColumn(
        "position", sf.row_number().over(Window.partitionBy("cutoff_day").orderBy("customer_id")) - 1
    )
    sample = ranked.join(positions, ["cutoff_day", "position"]).toPandas()
    sample = sample.sort_values(["cutoff_day", "customer_id"], kind="stable")
    now = {n: sample[running_column(n, 0)].to_numpy(np.float64) for n in BGNBD_INPUTS}
    return fit_priors(now, sample["cutoff_day"].to_numpy(np.int64), config)


def _floats(batch: pa.RecordBatch, name: str) -> np.ndarray:
    return batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64)


class _BatchDeriver:
    """``mapInArrow`` function: running values in, feature table rows out (picklable, shipped to executors)."""

    def __init__(
        self,
        measures: list[Measure],
        have: set[str],
        config: FeatureConfig,
        end_day: int,
        priors: dict[int, BGNBDPrior | None],
        drop_days: frozenset[int],
        with_attributes: bool,
        sources: Sources,
    ):
        self.measures, self.have, self.config = measures, have, config
        self.end_day, self.priors, self.drop_days = end_day, priors, drop_days
        self.with_attributes = with_attributes
        self.categoricals = [c for c in CATEGORICAL_FEATURES if c in sources.columns.get("customers", ())]
        self.family: dict[str, str] = {}

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            table = self.batch_table(batch)
            if table.num_rows:
                yield from table.to_batches()

    def batch_table(self, batch: pa.RecordBatch) -> pa.Table:
        c_day = batch.column("cutoff_day").to_numpy(zero_copy_only=False).astype(np.int64)
        keep = eligible(
            np.nan_to_num(_floats(batch, running_column("n_orders", 0))),
            _floats(batch, running_column("last_order_us", 0)),
            c_day,
            self.config,
            drop_lapsed=np.isin(c_day, list(self.drop_days)),
        )
        batch = batch.filter(pa.array(keep))
        c_day = c_day[keep]
        assembler = FeatureAssembler(c_day, self.config, self.have)
        for m in self.measures:

            def at(o: int, m: Measure = m) -> np.ndarray:
                values = _floats(batch, running_column(m.name, o))
                # A customer without rows of this source before the edge: no row joined, a zero count.
                return np.nan_to_num(values, nan=0.0) if m.rollup == "sum" else values

            assembler.add(m, at)
        attributes = {}
        if self.with_attributes:
            signup = _floats(batch, "signup_us") if "signup_us" in batch.schema.names else None
            cats = {c: batch.column(c).cast(pa.string()) for c in self.categoricals}
            attributes = attribute_columns(c_day, signup, cats)
        columns, self.family = assembler.finish(self.end_day, self.priors, attributes)
        return pa.table({"customer_id": batch.column("customer_id").cast(pa.string()), **columns})


def sample_panel(panel, rows_per_cutoff: int, seed: int = 0):
    """A training sample of a panel, stratified by cutoff: at most about ``rows_per_cutoff`` rows of each
    cutoff, each cutoff sampled uniformly (its churn rate and value mix are kept; the model sees the same number
    of rows from a big month as from a small one).

    Rows are kept by a hash of (customer_id, seed) under a per-cutoff threshold, so a customer is kept at every
    cutoff or at none within a cutoff's share: their history stays whole, the sample is the same on every run
    and on any number of executors, and growing ``rows_per_cutoff`` only adds rows.
    """
    from pyspark.sql import functions as sf

    if rows_per_cutoff < 1:
        raise ValueError(f"rows_per_cutoff must be >= 1, got {rows_per_cutoff}")
    counts = panel.groupBy("cutoff").count().withColumnRenamed("count", "_rows")
    buckets = 1 << 30
    share = sf.least(sf.lit(1.0), sf.lit(float(rows_per_cutoff)) / sf.col("_rows"))
    bucket = sf.pmod(sf.xxhash64(sf.col("customer_id"), sf.lit(int(seed))), sf.lit(buckets))
    sampled = panel.join(sf.broadcast(counts), "cutoff").filter(bucket < share * buckets)
    return sampled.select(*panel.columns).orderBy("cutoff", "customer_id")
