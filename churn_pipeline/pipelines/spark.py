"""The Spark side of the stages: a session, the contract tables read from any path Spark can read, atomic writes.

Where the session comes from, in order: an active session (``spark-submit``, a notebook, Databricks), else a
new one whose master is ``CHURN_SPARK_MASTER`` (e.g. ``spark://host:7077``, ``yarn``, ``k8s://...``), else
``local[*]`` on this machine. Extra settings go in the usual places (``spark-defaults.conf``,
``PYSPARK_SUBMIT_ARGS``); ``CHURN_SPARK_DRIVER_MEMORY`` sets a new local session's driver memory (default 4g)
and ``CHURN_SPARK_SHUFFLE_PARTITIONS`` its shuffle partitions (default Spark's 200, which adaptive execution
coalesces on small data; 2 x cores put millions of wide rows in each task on the 1M-customer shop).
Session time zone is UTC: the contract's timestamps are naive UTC, and day arithmetic must not move them.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pandas as pd

from churn_pipeline.errors import DataContractError, ParamsError, repeated_customers, validate_first
from churn_pipeline.pipelines.io import (
    atomic_path,
)

TABLES = ("orders", "returns", "customers", "events")
# PySpark 4 warns on every Arrow conversion that it does not claim pandas 3 support; the Arrow paths used here
# (mapInArrow, toArrow, spark_udf) are exercised by the engine-equality tests.
_PANDAS_3_WARNING = "PySpark does not yet fully support pandas"


def spark_session(app_name: str = "churn-pipeline"):
    """The active Spark session, or a new one (see the module docstring for how the master is chosen).

    Starting the Spark engine also hides PySpark's pandas-3 FutureWarning for the rest of the process (it is
    printed at every Arrow conversion otherwise); importing this module changes no warnings filter."""
    warnings.filterwarnings("ignore", message=_PANDAS_3_WARNING, category=FutureWarning)
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise DataContractError(
            "the Spark engine needs PySpark: install the project with its `spark` extra "
            "(`pip install -e '.[spark]'`) and Java 17 or newer, or use the default engine."
        ) from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        active.conf.set("spark.sql.session.timeZone", "UTC")
        return active
    master = os.environ.get("CHURN_SPARK_MASTER", "local[*]")
    builder = SparkSession.builder.appName(app_name).master(master).config("spark.sql.session.timeZone", "UTC")
    if master.startswith("local"):
        # Python workers run this interpreter (the project's virtualenv), not whatever `python3` is first on PATH,
        # and inherit the filter for PySpark's pandas-3 warning (printed once per worker otherwise).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYTHONWARNINGS", f"ignore:{_PANDAS_3_WARNING}:FutureWarning")
        builder = (
            builder.config("spark.driver.memory", os.environ.get("CHURN_SPARK_DRIVER_MEMORY", "4g"))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", str(shuffle_partitions()))
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("CHURN_SPARK_LOG_LEVEL", "ERROR"))
    return spark


def shuffle_partitions() -> int:
    """``CHURN_SPARK_SHUFFLE_PARTITIONS`` (default 200), checked before Spark starts: a positive whole number."""
    text = os.environ.get("CHURN_SPARK_SHUFFLE_PARTITIONS", "200")
    if not text.strip().isdigit() or int(text) < 1:
        raise ParamsError(
            f"CHURN_SPARK_SHUFFLE_PARTITIONS={text!r} is not a positive whole number of shuffle partitions: "
            "unset it (Spark's 200) or set e.g. 64."
        )
    return int(text)


def is_local(path: str | Path) -> bool:
    """A path on this machine's file system (no ``scheme://``, or ``file:``)."""
    text = str(path)
    return "://" not in text or text.startswith("file:")


def read_tables(spark, data: str | Path) -> dict:
    """The validated contract tables under ``data`` (``<table>.parquet``, a file or a Spark directory) as
    DataFrames; ``orders`` is required. Each table must have the contract's required columns and a timestamp
    column of a timestamp type (DataContractError naming the table, column and fix otherwise)."""
    root = str(data).rstrip("/")
    if is_local(root):
        local = Path(root.removeprefix("file:"))
        if not (local / "orders.parquet").exists():
            raise DataContractError(
                f"{local} has no orders.parquet. The Spark engine reads validated data: "
                f"{validate_first(local, raw=local.is_dir())}"
            )
    from pyspark.errors import AnalysisException

    tables = {}
    for name in TABLES:
        try:
            tables[name] = spark.read.parquet(f"{root}/{name}.parquet")
        except AnalysisException as exc:
            if "PATH_NOT_FOUND" not in str(exc) and "Path does not exist" not in str(exc):
                raise
    if "orders" not in tables:
        raise DataContractError(f"{root}/orders.parquet is not readable by Spark: orders are required.")
    for name, frame in tables.items():
        check_contract(name, frame.schema, f"{root}/{name}.parquet")
    if "customers" in tables:
        rows, ids, distinct = (
            tables["customers"].selectExpr("count(*)", "count(customer_id)", "count(DISTINCT customer_id)").collect()[0]
        )
        if ids != distinct:
            raise repeated_customers(f"{root}/customers.parquet", ids - distinct, rows)
    return tables


def check_contract(name: str, schema, where: str) -> None:
    """Required columns present and the main timestamp typed as a timestamp (what `churn validate` writes)."""
    from churn_pipeline.features.contract import TABLES as SPECS

    spec = SPECS[name]
    types = {f.name: f.dataType.typeName() for f in schema.fields}
    missing = [c for c in spec.required_columns if c not in types]
    if missing:
        raise DataContractError(
            f"{where} lacks the required column(s) {', '.join(missing)} of table {name}: run `churn validate` on "
            f"the raw data and point --data at its output."
        )
    if spec.timestamp and types.get(spec.timestamp) not in ("timestamp", "timestamp_ntz"):
        raise DataContractError(
            f"{where}: column {spec.timestamp} is {types.get(spec.timestamp)}, expected a naive-UTC timestamp. "
            f"Run `churn validate` on the raw data and point --data at its output."
        )


def write_parquet(frame, out: str | Path, partition_by: tuple[str, ...] = ()) -> None:
    """Write a Spark DataFrame as a Parquet directory. On a local path it is staged beside ``out`` and
    renamed into place (:func:`pipelines.io.atomic_path`), so a failed job leaves the previous output whole;
    elsewhere Spark's output committer applies (the job writes to ``_temporary`` and commits at the end)."""
    writer = frame.write.mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if not is_local(out):
        writer.parquet(str(out))
        return
    with atomic_path(Path(str(out).removeprefix("file:"))) as staged:
        writer.parquet(str(staged))


def write_text(spark, text: str, out: str | Path) -> None:
    """A small text file (a manifest) at a local path (atomically) or any path Spark's file systems reach."""
    if is_local(out):
        with atomic_path(Path(str(out).removeprefix("file:"))) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return
    # Hadoop's FileSystem through the session's JVM: the same credentials and schemes (s3a, abfs, hdfs) as the data.
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(str(out))
    stream = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def spark_span(orders) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last order timestamps, computed by Spark."""
    first, last, n = orders.selectExpr("min(order_ts)", "max(order_ts)", "count(*)").collect()[0]
    if n == 0:
        raise DataContractError("orders.parquet has no rows: nothing to build features from.")
    return pd.Timestamp(first), pd.Timestamp(last)
