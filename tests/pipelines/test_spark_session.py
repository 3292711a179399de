"""The Spark side of the stages (pipelines/spark.py): bad input is refused by name and nothing is half written."""

from __future__ import annotations

import pandas as pd
import pytest

from churn_pipeline.errors import DataContractError, ParamsError
from churn_pipeline.pipelines import features as features_stage
from churn_pipeline.pipelines.spark import read_tables, shuffle_partitions, write_parquet

pytestmark = pytest.mark.spark

ORDERS = pd.DataFrame(
    {
        "customer_id": ["a", "b"],
        "order_id": ["o1", "o2"],
        "order_ts": pd.to_datetime(["2025-01-05", "2025-02-07"]).astype("datetime64[us]"),
        "amount": [10.0, 20.0],
    }
)


def _write(directory, frame, name="orders"):
    directory.mkdir(exist_ok=True)
    frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory


def test_a_directory_without_orders_asks_for_churn_validate(spark, tmp_path):
    with pytest.raises(DataContractError, match=r"no orders\.parquet.*churn validate"):
        read_tables(spark, tmp_path)


def test_a_missing_required_column_is_named(spark, tmp_path):
    data = _write(tmp_path / "d", ORDERS.drop(columns=["amount"]))
    with pytest.raises(DataContractError, match=r"required column.*amount.*orders"):
        read_tables(spark, data)


def test_a_timestamp_stored_as_text_is_refused(spark, tmp_path):
    data = _write(tmp_path / "d", ORDERS.assign(order_ts=ORDERS["order_ts"].astype(str)))
    with pytest.raises(DataContractError, match="order_ts is string, expected a naive-UTC timestamp"):
        read_tables(spark, data)


def test_repeated_customer_ids_are_refused_by_name(spark, tmp_path):
    data = _write(tmp_path / "d", ORDERS)
    customers = pd.DataFrame(
        {"customer_id": ["a", "b", "a"], "signup_ts": pd.to_datetime(["2024-01-01"] * 3).astype("datetime64[us]")}
    )
    _write(data, customers, "customers")
    with pytest.raises(DataContractError, match=r"customers\.parquet: column customer_id repeats in 1 of 3 rows"):
        read_tables(spark, data)


def test_an_empty_orders_file_is_refused_and_nothing_is_written(spark, tmp_path):
    data = _write(tmp_path / "d", ORDERS.iloc[:0])
    out = tmp_path / "f.parquet"
    with pytest.raises(DataContractError, match="no rows"):
        features_stage.run_one(data=data, as_of=None, out=out, params_path=tmp_path / "none.yaml", engine="spark")
    assert not out.exists()


def test_a_failed_write_keeps_the_previous_output_whole(spark, tmp_path):
    out = tmp_path / "t.parquet"
    write_parquet(spark.createDataFrame(ORDERS), out)
    before = sorted(p.name for p in out.iterdir())
    failing = spark.createDataFrame(ORDERS).selectExpr("customer_id", "assert_true(amount < 0) AS boom")
    with pytest.raises(Exception, match="amount < 0"):
        write_parquet(failing, out)
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


@pytest.mark.parametrize("value", ["abc", "0", "-4", "2.5"])
def test_a_bad_shuffle_partition_count_is_refused_by_name_before_spark_starts(monkeypatch, value):
    monkeypatch.setenv("CHURN_SPARK_SHUFFLE_PARTITIONS", value)
    with pytest.raises(ParamsError, match="CHURN_SPARK_SHUFFLE_PARTITIONS"):
        shuffle_partitions()


def test_the_shuffle_partition_count_defaults_to_sparks_own(monkeypatch):
    monkeypatch.delenv("CHURN_SPARK_SHUFFLE_PARTITIONS", raising=False)
    assert shuffle_partitions() == 200
    monkeypatch.setenv("CHURN_SPARK_SHUFFLE_PARTITIONS", "64")
    assert shuffle_partitions() == 64
