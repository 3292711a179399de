"""Stage `score` on Spark (``churn score --engine spark``): the same scores, computed where the data lives.

Same params, models and schema as :mod:`pipelines.score`; the steps that differ:

1. features come from the Spark engine (:mod:`features.spark`) at the as-of date;
2. the registered models are applied with ``mlflow.pyfunc.spark_udf`` (the models' own pyfunc, signature
   enforced, on the executors): churn_probability, predicted_clv, expected_orders;
3. value_if_retained (models.evaluation.value_if_retained, in a pandas UDF so the formula is the one the default
   engine uses), then the three percentiles rank the whole population: a window ordered by the value counts the
   customers at or below each one. It is the only step that sees every row in one task (a sort of three numbers per
   customer, fine for tens of millions; everything else is parallel);
4. tiers, reasons, actions and the control group are :func:`models.scoring.decide` in ``mapInArrow`` (the
   estimators travel with the task; the reason method is fixed from the total row count), each batch
   validated against the scores schema there;
5. the scores are written as Parquet partitioned by ``as_of_date`` (``<out>/as_of_date=YYYY-MM-DD/``), with
   the run summary in ``<out stem>.summary.json`` and the drift report in ``<out stem>.drift.json`` beside it.
   Drift is computed on at most 200,000 customers, picked by a hash of customer_id (PSI over ten bins does
   not need more). ``churn export --scores <out>`` reads it like a single file.

``risk_tiers.method: share`` ranks all customers to cut tiers; it is not supported here (use ``probability``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # module level: Spark resolves the pandas UDF's (string) type hints in this module

from churn_pipeline.errors import DataContractError, ParamsError
from churn_pipeline.features.build import LABELS
from churn_pipeline.features.contract import KNOWN_EVENT_TYPES
from churn_pipeline.features.cutoffs import data_end, scoring_cutoff
from churn_pipeline.models import reasons as rsn
from churn_pipeline.models.evaluation import Campaign, value_if_retained
from churn_pipeline.models.scores_schema import arrow_schema, summary_path
from churn_pipeline.models.scoring import (
    PERCENTILES,
    PREDICTIONS,
    BatchDecider,
    LoadedModel,
    categorical_columns,
    check_model_features,
    contact_line,
    contact_record,
    drift_report,
    retention_days,
    run_summary,
    unseen_event_types,
    unseen_lines,
    unseen_summary,
)
from churn_pipeline.models.tiers import RiskTiers
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.io import parse_day
from churn_pipeline.pipelines.params import ScoreParams, campaign_economics, load_params, load_section
from churn_pipeline.pipelines.registry import load_checked_models, split_uplift, tracking_uri
from churn_pipeline.pipelines.spark import spark_span

DRIFT_SAMPLE_ROWS = 200_000


def with_value_if_retained(frame, min_stay_probability: float):
    """Column ``value_if_retained`` from ``predicted_clv`` and ``churn_probability``: the default engine's own
    function (models.evaluation) in a pandas UDF, so both engines give the same numbers."""
    from pyspark.sql import functions as sf

    @sf.pandas_udf("double")
    def retained(clv: pd.Series, p: pd.Series) -> pd.Series:
        return pd.Series(value_if_retained(clv.to_numpy(), p.to_numpy(), min_stay_probability), index=clv.index)

    return frame.withColumn("value_if_retained", retained("predicted_clv", "churn_probability"))


def with_percentiles(frame):
    """``churn_percentile``, ``clv_percentile`` and ``value_percentile``: ceil(100 x (customers at or below) /
    customers), as :func:`models.scoring.percentile_1_100` (ties share the higher percentile)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    n = sf.count(sf.lit(1)).over(Window.partitionBy())
    for name, score in PERCENTILES.items():
        at_or_below = sf.count(sf.lit(1)).over(
            Window.orderBy(score).rangeBetween(Window.unboundedPreceding, Window.currentRow)
        )
        pct = sf.ceil(sf.lit(100.0) * at_or_below / n)
        frame = frame.withColumn(name, sf.least(sf.greatest(pct, sf.lit(1)), sf.lit(100)).cast("short"))
    return frame


def run(data: str, out: str, params_path: Path, as_of: str | None = None, model_uris: list[str] | None = None) -> None:
    """Score every customer of ``data`` at ``as_of`` into the Parquet directory ``out`` (module docstring)."""
    import mlflow
    from pyspark.sql import functions as sf

    from churn_pipeline.features.spark import build_feature_table_spark
    from churn_pipeline.pipelines.spark import read_tables, spark_session, write_parquet, write_text

    params = load_section(ScoreParams, "score", params_path)
    tiers = load_section(RiskTiers, "risk_tiers", params_path)
    if tiers.method != "probability":
        raise ParamsError(
            f"{params_path}: risk_tiers.method {tiers.method!r} ranks the whole population; the Spark engine "
            f"supports method: probability (set it, or score with the default engine)."
        )
    feats, config = load_params(params_path)
    spark = spark_session()
    tables = read_tables(spark, data)
    campaign = campaign_economics(params_path)
    models, params = load_checked_models(model_uris, params, params_path, "score (spark)")
    core, _ = split_uplift(models)

    first, last = spark_span(tables["orders"])
    day = parse_day(as_of, "--as-of") if as_of is not None else None
    cutoff = scoring_cutoff(feats.cutoffs, last, as_of=day, first_ts=first, source=data)
    with step("score (spark): features, models, reasons, actions") as s:
        frame, manifest = build_feature_table_spark(spark, tables, [cutoff], data_end(last), config, training=False)
        frame = frame.drop(*LABELS)
        check_model_features(frame.columns, models, data)
        frame = frame.persist()
        n_rows = frame.count()
        if n_rows == 0:
            raise DataContractError(f"no customer of {data} has an order before {cutoff.date()}: nothing to score.")
        ids = tables["orders"].select("customer_id")
        if "customers" in tables:
            ids = ids.union(tables["customers"].select("customer_id"))
        left_out = ids.distinct().count() - n_rows

        mlflow.set_tracking_uri(tracking_uri())
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per model, twice, in a log
        timing = [f"order_probability_{int(e)}d" for e in models["next_order"].estimator.grid_]
        timing.append("days_to_next_order")
        result_types = {
            "churn": "double",
            "clv": "predicted_clv double, expected_orders double",
            "next_order": ", ".join(f"{c} double" for c in timing),
        }
        udf = {
            kind: mlflow.pyfunc.spark_udf(
                spark, f"models:/{m.name}/{m.version}", result_type=result_types[kind], env_manager="local"
            )
            for kind, m in core.items()
        }
        inputs = {kind: sf.struct(*m.estimator.features_) for kind, m in core.items()}
        scored = frame.withColumn("churn_probability", udf["churn"](inputs["churn"]))
        scored = scored.withColumn("_clv", udf["clv"](inputs["clv"]))
        scored = scored.select("*", "_clv.predicted_clv", "_clv.expected_orders").drop("_clv")
        scored = scored.withColumn("_next", udf["next_order"](inputs["next_order"]))
        scored = scored.select("*", *(f"_next.{c}" for c in timing)).drop("_next")
        # The lifetime value's retention: P(an order within the CLV horizon's grid edge), as the default engine.
        scored = scored.withColumn("retention_probability", sf.col(f"order_probability_{retention_days(models)}d"))
        scored = with_percentiles(with_value_if_retained(scored, params.min_stay_probability))
        method = rsn.resolved_method(params.reasons.method, n_rows, params.reasons.shap_max_rows)
        from pyspark.sql.pandas.types import from_arrow_schema

        decider = BatchDecider(models, params, tiers, cutoff, method, campaign)
        scores = scored.mapInArrow(decider, from_arrow_schema(arrow_schema()))
        write_parquet(scores.orderBy("customer_id"), out, partition_by=("as_of_date",))
        s.rows = n_rows
        s.detail = f"as of {cutoff.date()}, reasons by {method}, written to {out}"

    with step("score (spark): summary and drift") as s:
        written = spark.read.parquet(str(out))
        tiers_count = dict(written.groupBy("risk_tier").count().collect())
        intended = dict(written.groupBy("intended_action").count().collect())
        control_n = written.filter("control_group").count()
        summary = run_summary(
            cutoff, n_rows, int(left_out), models, tiers_count, intended, int(control_n), params, method
        )
        summary.update(data_end=manifest["data_end"], engine="spark")
        summary["contact"] = _contact_summary(written, n_rows, campaign)
        drift = _drift(scored, core, params.drift.psi_warning, n_rows)
        drift["unseen_event_types"] = unseen_event_types(*_unseen_event_types(tables, cutoff), core)
        summary.update(unseen_summary(drift))
        drift_doc = {"as_of_date": summary["as_of_date"], "model_version": summary["model_version"], **drift}
        write_text(spark, json.dumps(summary, indent=2, sort_keys=True) + "\n", summary_path(out))
        write_text(spark, json.dumps(drift_doc, indent=2, sort_keys=True) + "\n", _sibling(out, ".drift.json"))
        frame.unpersist()
        s.detail = f"{len(drift['warnings'])} drift warning(s)"
    for line in unseen_lines(drift):
        console.print(f"[yellow]{line}[/yellow]", soft_wrap=True)
    console.print(
        f"scores (spark): {n_rows:,} customers as of {summary['as_of_date']} "
        f"({', '.join(f'{t} {n:,}' for t, n in summary['tiers'].items())}); control group {control_n:,}; "
        f"{left_out:,} customers without an order before the as-of date left out; {summary['model_version']} -> {out}",
        soft_wrap=True,
    )
    console.print(contact_line(summary["contact"]), soft_wrap=True)


def _contact_summary(written, n_rows: int, campaign: Campaign) -> dict[str, Any]:
    """:func:`models.scoring.contact_record` of the written scores, aggregated by Spark."""
    from pyspark.sql import functions as sf

    contacted = written.filter("contact")
    rows = contacted.groupBy("recommended_action").agg(sf.count("*").alias("n"), sf.sum("expected_profit").alias("p"))
    by_action = {r["recommended_action"]: (int(r["n"]), float(r["p"])) for r in rows.collect()}
    modelled = written.filter(sf.col("expected_uplift").isNotNull()).select("intended_action").distinct().collect()
    n_contact = sum(n for n, _ in by_action.values())
    total = sum(p for _, p in by_action.values())
    return contact_record(n_rows, n_contact, total, by_action, [r["intended_action"] for r in modelled], campaign)


def _sibling(out: str | Path, suffix: str) -> str:
    text = str(out).rstrip("/")
    return text.removesuffix(".parquet") + suffix


def _drift(scored, models: dict[str, LoadedModel], threshold: float, n_rows: int) -> dict[str, Any]:
    """:func:`models.scoring.drift_report` on at most DRIFT_SAMPLE_ROWS customers (hash of customer_id)."""
    from pyspark.sql import functions as sf

    wanted = {"customer_id", "is_lapsed", *PREDICTIONS}
    for m in models.values():
        if m.drift_reference is not None:
            wanted |= set(m.drift_reference["features"])
    sample = scored.select(*[c for c in scored.columns if c in wanted])
    if n_rows > DRIFT_SAMPLE_ROWS:
        # xxhash64 is deterministic: the same customers are compared on every run.
        buckets = 1_000_000
        keep = int(buckets * DRIFT_SAMPLE_ROWS / n_rows)
        sample = sample.filter(sf.pmod(sf.xxhash64("customer_id"), sf.lit(buckets)) < keep)
    frame = sample.toPandas()
    raw = {k: frame[k].to_numpy(np.float64) for k in PREDICTIONS}
    # Unseen levels on every scored customer, not the sample: a rare new level is what it is there to find.
    levels = {}
    for c in categorical_columns(models):
        counts = scored.filter(sf.col(c).isNotNull()).groupBy(sf.col(c).cast("string").alias("level")).count()
        pairs = counts.collect()
        levels[c] = pd.Series({r["level"]: int(r["count"]) for r in pairs}, dtype="int64")
    report = drift_report(frame, raw, models, threshold, levels=levels)
    report["rows_sampled"] = len(frame)
    return report


def _unseen_event_types(tables: dict, cutoff) -> tuple[list[tuple[str, int, int]], int]:
    """:func:`pipelines.score._unseen_event_types_duckdb` on Spark: event types outside the contract's list."""
    from pyspark.sql import functions as sf

    if "events" not in tables:
        return [], 0
    before = sf.col("event_ts") < sf.to_timestamp(sf.lit(str(cutoff)))  # str(Timestamp): "YYYY-MM-DD 00:00:00"
    odd = tables["events"].filter(~sf.col("event_type").isin(list(KNOWN_EVENT_TYPES)) & before)
    rows = odd.groupBy("event_type").agg(sf.countDistinct("customer_id").alias("c"), sf.count("*").alias("e"))
    found = [(str(r["event_type"]), int(r["c"]), int(r["e"])) for r in rows.collect()]
    total = odd.select("customer_id").distinct().count() if found else 0
    return found, int(total)
