"""Stage `score`: churn risk, value, reasons and a recommended action for every customer, at one cutoff.

Reads params sections ``score`` (models, reasons, control group, drift, action rules), ``risk_tiers`` and, for the
features, ``features`` and ``labels`` (the same windows the models were trained with). Input: a validated data
directory (``churn validate`` output). Steps:

1. load the churn and CLV models from the MLflow registry (``models:/churn@<score.model_alias>`` and
   ``models:/clv@...``, or ``--model-uri``; pipelines.registry), before any heavy work, so a wrong alias fails in
   seconds;
2. build the features at the as-of date (``--as-of``, else ``features.cutoffs.scoring_date``, by default the end of
   the data: features.cutoffs.scoring_cutoff) for every customer with at least one order before it (the engine's
   scoring mode, which keeps lapsed customers, flagged); customers without one are left out and counted;
3. score (models.scoring): calibrated churn probability, predicted CLV and orders, value if retained, percentiles,
   risk tier, value at risk, three reasons (models.reasons), the rule table's action (models.actions) and the
   control group. Action rules whose reason features the churn model lacks (e.g. e-mail rules for a model trained
   without events) are skipped with one warning each;
4. drift: PSI of the models' main features and of the scores against each model's training rows (the reference
   shipped with the model; models.drift), written beside the scores as ``<out stem>.drift.json``, with the
   categorical levels each model never learnt (per feature: customers, levels, the most common; all scored
   customers) and the event types outside the data contract, both also in the summary and printed;
5. validate against the scores schema (models.scores_schema) and write the Parquet file atomically, with the
   run's summary in its metadata (key ``churn.scores``), which ``churn export`` copies into the CRM manifest.

Nothing is written unless every step succeeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn_pipeline.errors import DataContractError, validate_first
from churn_pipeline.features.build import LABELS, build_feature_table
from churn_pipeline.features.contract import KNOWN_EVENT_TYPES
from churn_pipeline.features.cutoffs import data_end, scoring_cutoff
from churn_pipeline.models.scores_schema import summary_from_metadata, summary_path, validate_scores
from churn_pipeline.models.scoring import (
    check_model_features,
    contact_line,
    contact_summary,
    drift_report,
    run_summary,
    score_frame,
    tier_counts,
    to_arrow,
    unseen_event_types,
    unseen_lines,
    unseen_summary,
)
from churn_pipeline.models.tiers import RiskTiers
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.io import atomic_path, check_file_target, check_tables, connect, data_span, parse_day
from churn_pipeline.pipelines.params import ScoreParams, campaign_economics, check_engine, load_params, load_section
from churn_pipeline.pipelines.registry import load_checked_models, split_uplift

__all__ = ["build_features", "drift_path", "read_summary", "run", "summary_path"]


# ------------------------------------------------------------------ input
def _check_data(data: Path) -> None:
    data = Path(data)
    if not data.is_dir():
        raise DataContractError(
            f"data directory {data} does not exist. `churn score` reads validated data: {validate_first(data)}"
        )
    if not (data / "report.json").is_file() or not (data / "orders.parquet").is_file():
        present = sorted(p.name for p in data.iterdir())[:10]
        raise DataContractError(
            f"{data} is not a validated data directory (it has no report.json and orders.parquet; found "
            f"{present or 'nothing'}). If it holds the raw tables, {validate_first(data, raw=True)}"
        )
    # Required columns present and not empty in every table: read from the Parquet footers, before the models.
    check_tables(data)


def build_features(
    data: Path, as_of: str | None, params_path: Path
) -> tuple[pd.DataFrame, pd.Timestamp, int, dict[str, Any]]:
    """Features of every customer with an order before the as-of date (``--as-of``, else params
    ``features.cutoffs.scoring_date``, else the end of the data: features.cutoffs.scoring_cutoff); also the as-of
    date, the number of known customers left out (no order before it) and the feature manifest. ``data`` is
    checked by the caller."""
    feats, config = load_params(params_path)
    try:
        con = connect(data)
        first, last = data_span(con)
    except duckdb.Error as exc:
        raise DataContractError(
            f"{data} cannot be read ({str(exc).splitlines()[0]}). Re-run `churn validate` into a fresh directory."
        ) from exc
    day = parse_day(as_of, "--as-of") if as_of is not None else None
    cutoff = scoring_cutoff(feats.cutoffs, last, as_of=day, first_ts=first, source=data)
    end = data_end(last)
    if cutoff > end:
        console.print(
            f"[yellow]as-of date {cutoff.date()} is after the end of the data ({end.date()}): recency and windows "
            f"count the missing days as days without activity.[/yellow]",
            soft_wrap=True,
        )
    table, manifest = build_feature_table(con, [cutoff], end, config, training=False)
    # Every customer the data knows (customers table and orders), to count those left out: distinct ids, since
    # orders repeats a customer once per order.
    union = " UNION SELECT customer_id FROM customers" if "customers" in _views(con) else ""
    known = con.sql(f"SELECT count(DISTINCT customer_id) FROM (SELECT customer_id FROM orders{union})").fetchall()[0][0]
    keep = [c for c in table.column_names if c not in LABELS]
    frame = table.select(keep).to_pandas()
    return frame, cutoff, int(known) - len(frame), manifest


def _views(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}


def _unseen_event_types_duckdb(data: Path, cutoff: pd.Timestamp) -> tuple[list[tuple[str, int, int]], int]:
    """(event_type, customers, events) per event type outside the contract's list before ``cutoff``, and the
    customers with any: one scan of ``events`` (nothing when the data has no events table)."""
    con = connect(data)
    if "events" not in _views(con):
        return [], 0
    known = ", ".join("'" + t.replace("'", "''") + "'" for t in KNOWN_EVENT_TYPES)
    where = f"event_type NOT IN ({known}) AND event_ts < TIMESTAMP '{cutoff.isoformat(sep=' ')}'"
    rows = con.sql(
        f"SELECT event_type, count(DISTINCT customer_id), count(*) FROM events WHERE {where} GROUP BY 1"
    ).fetchall()
    total = con.sql(f"SELECT count(DISTINCT customer_id) FROM events WHERE {where}").fetchall()[0][0] if rows else 0
    return [(str(t), int(c), int(e)) for t, c, e in rows], int(total)


# ------------------------------------------------------------------ output
def drift_path(out: Path) -> Path:
    """The drift report beside the scores: ``scores.parquet`` -> ``scores.drift.json``."""
    return Path(out).with_name(Path(out).stem + ".drift.json")


def write_outputs(table: pa.Table, drift: dict[str, Any], out: Path) -> None:
    """The scores and the drift report, both staged first: a failure leaves neither behind."""
    with atomic_path(out, directory=False) as tmp, atomic_path(drift_path(out), directory=False) as tmp_drift:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=True)
        tmp_drift.write_text(json.dumps(drift, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_summary(path: Path) -> dict[str, Any]:
    """The run summary stored in a scores file's metadata (empty dict when absent)."""
    return summary_from_metadata(pq.read_schema(path).metadata)


# ------------------------------------------------------------------ the stage
def run(
    data: Path | str,
    out: Path | str,
    params_path: Path,
    as_of: str | None = None,
    model_uris: list[str] | None = None,
    engine: str | None = None,
) -> None:
    """Score every customer of ``data`` at ``as_of`` into ``out`` (module docstring). ``engine`` (default:
    params ``features.engine``): ``spark`` runs :mod:`pipelines.score_spark` instead."""
    feats, _ = load_params(params_path)
    if check_engine(engine or feats.engine) == "spark":
        from churn_pipeline.pipelines import score_spark

        return score_spark.run(str(data), str(out), params_path, as_of=as_of, model_uris=model_uris)
    data, out = Path(data), Path(out)
    check_file_target(out, "--out", "scores.parquet")
    check_file_target(drift_path(out), "the drift report path", "scores.drift.json")
    params = load_section(ScoreParams, "score", params_path)
    tiers = load_section(RiskTiers, "risk_tiers", params_path)
    campaign = campaign_economics(params_path)
    # The cheap check of the data directory first: a wrong --data fails before the models are unpickled.
    _check_data(data)
    models, params = load_checked_models(model_uris, params, params_path, "score")
    core, _ = split_uplift(models)
    with step("score: features") as s:
        frame, cutoff, left_out, manifest = build_features(data, as_of, params_path)
        s.rows = len(frame)
        s.detail = f"as of {cutoff.date()}, {left_out:,} customers without an order before it left out"
    if frame.empty:
        raise DataContractError(f"no customer of {data} has an order before {cutoff.date()}: nothing to score.")
    check_model_features(frame.columns, models, data)
    with step("score: models, reasons, actions") as s:
        scores, raw, method = score_frame(frame, cutoff, models, params, tiers, campaign)
        s.rows = len(scores)
        s.detail = f"reasons by {method}"
    with step("score: drift and schema") as s:
        drift = drift_report(frame, raw, core, params.drift.psi_warning)
        drift["unseen_event_types"] = unseen_event_types(*_unseen_event_types_duckdb(data, cutoff), core)
        del frame, raw
        try:
            scores = validate_scores(scores)
        except ValueError as exc:  # a bug, not a user error: say so
            raise RuntimeError(f"the scores broke their own schema: {exc}") from exc
        s.detail = f"{len(drift['warnings'])} drift warning(s)"
    tiers_count = tier_counts(scores["risk_tier"])
    control_n = int(scores["control_group"].sum())
    intended = {str(k): int(v) for k, v in scores["intended_action"].value_counts().items()}
    summary = run_summary(cutoff, len(scores), left_out, models, tiers_count, intended, control_n, params, method)
    summary["data_end"] = manifest["data_end"]
    summary["contact"] = contact_summary(scores, campaign)
    summary.update(unseen_summary(drift))
    drift_doc = {"as_of_date": summary["as_of_date"], "model_version": summary["model_version"], **drift}
    table = to_arrow(scores, summary)
    del scores
    write_outputs(table, drift_doc, out)
    for line in unseen_lines(drift):
        console.print(f"[yellow]{line}[/yellow]", soft_wrap=True)
    share = control_n / max(summary["rows"], 1)
    console.print(
        f"scores: {summary['rows']:,} customers as of {summary['as_of_date']} "
        f"({', '.join(f'{t} {n:,}' for t, n in tiers_count.items())}); control group {control_n:,} "
        f"({share:.1%}); {left_out:,} customers without an order before the as-of date left out; "
        f"{summary['model_version']} -> {out}",
        soft_wrap=True,
    )
    console.print(contact_line(summary["contact"]), soft_wrap=True)
