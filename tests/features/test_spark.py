"""The Spark engine against the DuckDB engine: the same feature table from the same data.

One small synthetic shop (every table and event type) and an orders-only copy; training mode with a scoring
cutoff built in the same pass (lapsed customers kept there only), as the features stage builds them. Values
must agree within floating-point tolerance (amount sums are exact 64-bit integer millionths in both engines,
so only derived floating-point arithmetic may differ in the last bits).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn_pipeline.features.build import FeatureConfig, build_feature_table
from churn_pipeline.features.definitions import MEASURES, exact_sum
from churn_pipeline.features.spark import build_feature_table_spark
from churn_pipeline.features.sql import running_sql, source_sql, to_spark
from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop
from churn_pipeline.pipelines import features as features_stage
from churn_pipeline.pipelines import io as pipeline_io

pytestmark = pytest.mark.spark

CUTOFFS = [pd.Timestamp("2025-04-01"), pd.Timestamp("2025-07-01"), pd.Timestamp("2025-10-01")]
END = pd.Timestamp("2026-01-01")
CONFIG = FeatureConfig(windows_days=(30, 90, 365))


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory):
    """A 400-customer shop written as the validated contract's Parquet files."""
    root = tmp_path_factory.mktemp("spark_shop")
    shop = generate_shop(SyntheticShopConfig(customers=400, seed=5))
    for name, table in shop.items():
        plain = pa.table(
            {
                n: c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c
                for n, c in zip(table.column_names, table.columns, strict=True)
            }
        )
        pq.write_table(plain, root / f"{name}.parquet")
    (root / "report.json").write_text("{}")
    orders_only = tmp_path_factory.mktemp("spark_orders_only")
    (orders_only / "orders.parquet").write_bytes((root / "orders.parquet").read_bytes())
    return root, orders_only


def _both(spark, data, training=True):
    from churn_pipeline.pipelines.spark import read_tables

    cutoffs = [*CUTOFFS, END]
    ref, ref_manifest = build_feature_table(
        pipeline_io.connect(data), cutoffs, END, CONFIG, training=training, keep_lapsed_at=(END,)
    )
    frame, manifest = build_feature_table_spark(
        spark, read_tables(spark, data), cutoffs, END, CONFIG, training=training, keep_lapsed_at=(END,)
    )
    return ref, ref_manifest, frame.toArrow(), manifest


def assert_same_table(ref: pa.Table, got: pa.Table) -> None:
    assert got.column_names == ref.column_names
    assert got.num_rows == ref.num_rows
    for name in ref.column_names:
        a, b = ref.column(name).combine_chunks(), got.column(name).combine_chunks()
        assert a.null_count == b.null_count, name
        if pa.types.is_floating(a.type) or pa.types.is_integer(a.type):
            x = a.to_numpy(zero_copy_only=False).astype(np.float64)
            y = b.to_numpy(zero_copy_only=False).astype(np.float64)
            np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=name)
        else:
            assert a.cast(b.type).equals(b), name


def test_spark_builds_the_same_feature_table_as_duckdb(spark, shop_dir):
    ref, ref_manifest, got, manifest = _both(spark, shop_dir[0])
    assert ref.num_rows > 500 and len(ref_manifest["features"]) > 90
    # the sales-channel shares and the next-order labels (running orders at every grid edge) are compared too
    new = {"web_order_share", "store_order_share", "next_order_days", "next_order_followup_days"}
    assert new <= set(ref.column_names)
    assert_same_table(ref, got)
    assert manifest == ref_manifest


def test_spark_builds_the_same_table_from_an_orders_only_directory(spark, shop_dir):
    ref, ref_manifest, got, manifest = _both(spark, shop_dir[1], training=False)
    assert "events" in ref_manifest["skipped_sources"]
    assert_same_table(ref, got)
    assert manifest == ref_manifest


def test_amount_sums_are_the_same_integers_on_spark_as_in_duckdb(spark):
    import duckdb

    amounts = [0.1, 0.2, float("nan"), float("inf"), -2.5, 3.0000004, 1234.5678, None]
    frame = pd.DataFrame({"amount": amounts}, dtype="float64")
    con = duckdb.connect()
    con.register("frame", frame)
    expected = con.sql(f"SELECT {exact_sum('amount')} AS s FROM frame").fetchall()[0][0]
    spark.createDataFrame(frame).createOrReplaceTempView("frame")
    got = spark.sql(to_spark(f"SELECT {exact_sum('amount')} AS s FROM frame")).collect()[0][0]
    assert got == expected == 1_235_367_800


def test_every_measure_query_translates_to_spark_sql_without_duckdb_only_functions():
    measures = [m for m in MEASURES if m.source == "events"]
    sql = to_spark(source_sql("events", measures, 0, by_index=False))
    rolled = to_spark(running_sql("_reduced_events", [(m, (0, -30)) for m in measures]))
    for duckdb_only in ("EPOCH_US", "ARG_MAX", "STRUCT_PACK"):
        assert duckdb_only not in sql.upper() and duckdb_only not in rolled.upper()
    assert "MAX_BY" in sql.upper() and "FILTER(WHERE" in rolled.upper().replace(" (", "(")
    # the orders' measures: the sales-channel counts are plain CASE / LOWER / TRIM in Spark SQL too
    orders = [m for m in MEASURES if m.source == "orders"]
    sql = to_spark(source_sql("orders", orders, 0, by_index=False)).upper()
    assert "LOWER(TRIM(CHANNEL)) = 'WEB'" in sql and "EPOCH_US" not in sql


def test_the_stage_writes_spark_tables_the_training_stage_can_read(spark, shop_dir, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "features:\n  engine: spark\n  cutoffs: {frequency: monthly, count: 3}\n  windows_days: [30, 90, 365]\n"
    )
    features_stage.run(data=shop_dir[0], out_dir=tmp_path / "out", params_path=params)
    manifest = pipeline_io.read_manifest(tmp_path / "out" / "panel.parquet")
    panel = pq.read_table(tmp_path / "out" / "panel.parquet")
    assert (tmp_path / "out" / "panel.parquet").is_dir()
    assert panel.column_names[:2] == ["customer_id", "cutoff"]
    assert sum(manifest["rows_per_cutoff"].values()) == panel.num_rows
    keys = panel.select(["cutoff", "customer_id"]).to_pandas()
    assert keys.equals(keys.sort_values(["cutoff", "customer_id"], ignore_index=True))


def test_a_sample_keeps_each_cutoff_near_its_cap_and_whole_customer_histories(spark):
    from churn_pipeline.features.spark import sample_panel

    rows = [(f"c{i:04d}", pd.Timestamp(c), float(i)) for c in ("2025-01-01", "2025-02-01") for i in range(2000)]
    rows += [(f"c{i:04d}", pd.Timestamp("2025-03-01"), float(i)) for i in range(300)]
    panel = spark.createDataFrame(pd.DataFrame(rows, columns=["customer_id", "cutoff", "x"]))
    sample = sample_panel(panel, rows_per_cutoff=500, seed=3).toPandas()
    per_cutoff = sample.groupby("cutoff").size()
    assert 400 <= per_cutoff[pd.Timestamp("2025-01-01")] <= 600
    assert per_cutoff[pd.Timestamp("2025-03-01")] == 300  # a cutoff under the cap is kept whole
    jan, feb = (set(sample.loc[sample["cutoff"] == pd.Timestamp(c), "customer_id"]) for c in ("2025-01", "2025-02"))
    assert jan == feb  # the same share at both cutoffs: the same customers
    assert sample.equals(sample_panel(panel, rows_per_cutoff=500, seed=3).toPandas())
    assert list(sample.columns) == ["customer_id", "cutoff", "x"]


def test_spark_features_at_a_cutoff_ignore_every_row_at_or_after_it(spark, shop_dir, tmp_path):
    from churn_pipeline.pipelines.spark import read_tables

    cutoff = pd.Timestamp("2025-07-01")
    cut = tmp_path / "cut"
    cut.mkdir()
    for name, ts in (("orders", "order_ts"), ("returns", "return_ts"), ("events", "event_ts"), ("customers", None)):
        table = pq.read_table(shop_dir[0] / f"{name}.parquet")
        if ts is not None:  # every row at or after the cutoff deleted
            table = table.filter(
                pa.compute.less(table.column(ts), pa.scalar(cutoff.to_datetime64(), table.schema.field(ts).type))
            )
        pq.write_table(table, cut / f"{name}.parquet")
    frames = [
        build_feature_table_spark(spark, read_tables(spark, d), [cutoff], END, CONFIG, training=False)
        for d in (shop_dir[0], cut)
    ]
    full, before = (f.toArrow() for f, _ in frames)
    features = [c for c in frames[0][1]["features"]]
    assert_same_table(full.select(["customer_id", *features]), before.select(["customer_id", *features]))
    # The labels do see [c, c + h): with every later order gone, everyone churned.
    assert not all(full.column("churned").to_pylist()) and all(before.column("churned").to_pylist())
