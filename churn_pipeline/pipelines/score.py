"""Stage `score`: churn risk, value, reasons and a recommended action for every customer, at one cutoff.

Reads params sections ``score`` (models, reasons, control group, drift, action rules), ``risk_tiers`` and, for the
features, ``features`` and ``labels`` (the same windows the models were trained with). Input: a validated data
directory (``churn validate`` output). Steps:

1. load the churn and CLV models from the MLflow registry (``models:/churn@<score.model_alias>`` and
   ``models:/clv@...``, or ``--model-uri``), before any heavy work, so a wrong alias fails in seconds;
2. build the features at the as-of date (default: the end of the data) for every customer with at least one
   order before it (the engine's scoring mode, which keeps lapsed customers, flagged); customers without one are
   left out and counted;
3. score: calibrated churn probability, predicted CLV and orders, value if retained, percentiles, risk tier,
   value at risk, three reasons (models.reasons), the rule table's action (models.actions) and the control
   group. Action rules whose reason features the churn model lacks (e.g. e-mail rules for a model trained
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
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.stats import rankdata

from churn_pipeline.errors import DataContractError, ParamsError, validate_first
from churn_pipeline.features.build import LABELS, build_feature_table
from churn_pipeline.features.cutoffs import data_end, scoring_cutoff
from churn_pipeline.models import reasons as rsn
from churn_pipeline.models.actions import (
    MOST_PROFITABLE,
    applicable_rules,
    control_group,
    recommend,
)
from churn_pipeline.models.drift import CALENDAR_FEATURES, level_counts, psi_against, unseen_levels
from churn_pipeline.models.evaluation import Campaign, value_if_retained
from churn_pipeline.models.lifetime import discounted_lifetime_value
from churn_pipeline.models.preprocess import check_columns
from churn_pipeline.models.scores_schema import (
    COLUMNS,
    HOLD_OUT,
    METADATA_KEY,
    SCHEMA_VERSION,
    arrow_schema,
    summary_from_metadata,
    summary_path,
    validate_scores,
)
from churn_pipeline.models.survival import next_order_frame
from churn_pipeline.models.targeting import contact_list, expected_profit_for, most_profitable, uplift_predictions
from churn_pipeline.models.tiers import TIER_ORDER, RiskTiers, assign_risk_tier
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.io import atomic_path, check_file_target, check_tables, connect, data_span, parse_day
from churn_pipeline.pipelines.params import FeaturesParams, ScoreParams, check_engine, load_params, load_section
from churn_pipeline.pipelines.tracking import tracking_uri

__all__ = [
    "ScoreParams",
    "decide",
    "drift_path",
    "load_models",
    "percentile_1_100",
    "read_summary",
    "run",
    "score_frame",
    "summary_path",
]

KINDS = ("churn", "clv", "next_order")
# Optional: the uplift model (`churn uplift`, trained on the shop's contact history); scoring without one targets by
# the rules and the campaign economics (models.targeting).
UPLIFT_KIND = "uplift"
# The next-order columns of the scores: P(an order within these many days); their grid edges must exist.
ORDER_PROBABILITY_DAYS = (30, 90, 180)
DATE_COLUMNS = ("as_of_date", "expected_next_order_date")
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")












# ------------------------------------------------------------------ models
@dataclass
class LoadedModel:
    kind: str
    uri: str
    name: str
    version: str
    run_id: str
    estimator: Any
    drift_reference: dict | None
    horizon_days: int | None


def _check_store() -> str:
    """The tracking URI; a missing SQLite store is an error (MLflow would silently create an empty one)."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ParamsError(
                f"no MLflow store at {path} (tracking URI {uri}): train models first (`churn train` or `dvc repro`), "
                f"or point MLFLOW_TRACKING_URI at the store that holds them."
            )
    return uri


def _resolve(client: Any, uri: str) -> tuple[str, str]:
    """(registered name, version) behind a registry URI; ParamsError listing what exists when it does not."""
    from mlflow.exceptions import MlflowException

    match = _REGISTRY_URI.match(uri)
    if not match:
        raise ParamsError(
            f"model URI {uri!r} is not a registry URI: use models:/NAME@ALIAS or models:/NAME/VERSION. Models are "
            f"pickles, so `churn score` loads them only from your own MLflow registry ({tracking_uri()})."
        )
    name = match["name"]
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        names = sorted(m.name for m in client.search_registered_models())
        raise ParamsError(
            f"model URI {uri}: no registered model {name!r} in {tracking_uri()} (registered: {names or 'none'}). "
            f"Train first or fix the name."
        ) from exc
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(name, match["alias"]).version
        else:
            version = client.get_model_version(name, match["version"]).version
    except MlflowException as exc:
        aliases = {a: str(v) for a, v in sorted((registered.aliases or {}).items())}
        what = f"alias {match['alias']!r}" if match["alias"] else f"version {match['version']}"
        raise ParamsError(
            f"model URI {uri}: registered model {name!r} has no {what} (aliases: {aliases or 'none'}). Use one of "
            f"them, set params score.model_alias, or pass --model-uri models:/{name}/VERSION."
        ) from exc
    return name, str(version)


def load_models(uris: list[str], alias: str) -> dict[str, LoadedModel]:
    """The churn and CLV models: each ``--model-uri`` says which by the ``kind`` it was logged with; a kind not
    given comes from ``models:/<kind>@<alias>``."""
    import pickle

    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from churn_pipeline.errors import UsageError
    from churn_pipeline.pipelines.tracking import unloadable

    mlflow.set_tracking_uri(_check_store())
    client = MlflowClient()
    resolved: list[tuple[str, str, str]] = [(u, *_resolve(client, u)) for u in uris]
    loaded: dict[str, LoadedModel] = {}

    def load(uri: str, name: str, version: str) -> LoadedModel:
        run_id = client.get_model_version(name, version).run_id
        console.print(
            f"loading {uri} = registered model {name!r} version {version} (run {run_id}) from {tracking_uri()}; "
            f"it unpickles code, so load only models from your own registry",
            soft_wrap=True,
        )
        try:
            pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        except (MlflowException, OSError, EOFError, pickle.UnpicklingError) as exc:
            if not unloadable(exc):
                raise
            raise UsageError(
                f"model {uri} (registered model {name!r} version {version}, run {run_id}) cannot be loaded from "
                f"{tracking_uri()}: its files are missing or unreadable ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}). Retrain (`churn train` or `dvc repro -f train`), point the "
                f"alias at a version whose files exist (`churn promote {name} VERSION`), or score with another "
                f"version: --model-uri models:/{name}/VERSION."
            ) from exc
        kind = (pyfunc.model_config or {}).get("kind")
        if kind not in (*KINDS, UPLIFT_KIND):
            raise ParamsError(f"model {uri} is not a churn-pipeline model (model_config kind {kind!r}).")
        wrapper = pyfunc.unwrap_python_model()
        horizon = (client.get_model_version(name, version).tags or {}).get("label_horizon_days")
        if horizon is None:  # versions registered before the tag
            horizon = client.get_run(run_id).data.params.get(f"labels.{kind}_horizon_days")
        return LoadedModel(
            kind,
            uri,
            name,
            version,
            run_id,
            wrapper.estimator,
            getattr(wrapper, "drift_reference", None),
            int(horizon) if horizon is not None else None,
        )

    for uri, name, version in resolved:
        model = load(uri, name, version)
        if model.kind in loaded:
            raise ParamsError(f"two --model-uri give a {model.kind} model ({loaded[model.kind].uri} and {uri}).")
        loaded[model.kind] = model
    for kind in KINDS:
        if kind not in loaded:
            uri = f"models:/{kind}@{alias}"
            loaded[kind] = load(uri, *_resolve(client, uri))
            if loaded[kind].kind != kind:
                raise ParamsError(f"{uri} holds a {loaded[kind].kind} model, not a {kind} model.")
    if UPLIFT_KIND not in loaded:
        uri = f"models:/{UPLIFT_KIND}@{alias}"
        if _has_alias(client, UPLIFT_KIND, alias):
            loaded[UPLIFT_KIND] = load(uri, *_resolve(client, uri))
            if loaded[UPLIFT_KIND].kind != UPLIFT_KIND:
                raise ParamsError(f"{uri} holds a {loaded[UPLIFT_KIND].kind} model, not an uplift model.")
        else:
            console.print(
                f"no uplift model ({uri}: `churn uplift` trains one from a contacts table): actions by the rules, "
                f"expected profit by the campaign economics of params evaluate",
                soft_wrap=True,
            )
    return loaded


def _has_alias(client: Any, name: str, alias: str) -> bool:
    """Whether registered model ``name`` exists and has ``alias`` (an optional model may have neither)."""
    from mlflow.exceptions import MlflowException

    try:
        return alias in (client.get_registered_model(name).aliases or {})
    except MlflowException:
        return False


def split_uplift(models: dict[str, LoadedModel]) -> tuple[dict[str, LoadedModel], LoadedModel | None]:
    """The churn, CLV and next-order models, and the optional uplift model apart (drift, reasons and the feature
    checks concern the former; the uplift model only adds expected uplift and profit)."""
    core = {k: m for k, m in models.items() if k != UPLIFT_KIND}
    return core, models.get(UPLIFT_KIND)


def load_checked_models(
    model_uris: list[str] | None, params: ScoreParams, params_path: Path, label: str
) -> tuple[dict[str, LoadedModel], ScoreParams]:
    """:func:`load_models` as a step, and the params with the action rules the churn model can use: a rule whose
    reason features the model lacks is dropped (models.actions.applicable_rules), with one warning line each."""
    with step(f"{label}: load models") as s:
        models = load_models(list(model_uris or []), params.model_alias)
        s.detail = model_version_label(models)
    uplift = models.get(UPLIFT_KIND)
    uplift_actions = tuple(uplift.estimator.actions_) if uplift is not None else ()
    rules, warnings = applicable_rules(params.actions, models["churn"].estimator.features_, uplift_actions)
    for warning in warnings:
        console.print(f"[yellow]{params_path}:score.{warning}[/yellow]", soft_wrap=True)
    return models, replace(params, actions=rules)


def model_version_label(models: dict[str, LoadedModel]) -> str:
    """``churn:v7;clv:v7`` (registered names other than the kind are spelled out: ``churn=my-churn:v3``)."""
    parts = []
    for kind in (*KINDS, UPLIFT_KIND):
        if kind not in models:
            continue  # the optional uplift model
        m = models[kind]
        parts.append(f"{kind}:v{m.version}" if m.name == kind else f"{kind}={m.name}:v{m.version}")
    return ";".join(parts)


# ------------------------------------------------------------------ data
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
    """Features of every customer with an order before the as-of date; also the as-of date, the number of known
    customers left out (no order before it) and the feature manifest. ``data`` is checked by the caller."""
    feats, config = load_params(params_path)
    try:
        con = connect(data)
        first, last = data_span(con)
    except duckdb.Error as exc:
        raise DataContractError(
            f"{data} cannot be read ({str(exc).splitlines()[0]}). Re-run `churn validate` into a fresh directory."
        ) from exc
    cutoff = as_of_cutoff(as_of, feats, first, last, data)
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


def as_of_cutoff(
    as_of: str | None, feats: FeaturesParams, first: pd.Timestamp, last: pd.Timestamp, data: Any
) -> pd.Timestamp:
    """The scoring cutoff: ``--as-of`` (a date) or params' scoring date (default: the end of the data); it must be
    after the first order (UsageError unless YYYY-MM-DD, DataContractError for a date nobody is a customer at)."""
    cutoff = parse_day(as_of, "--as-of") if as_of is not None else scoring_cutoff(feats.cutoffs, last)
    if cutoff <= first.floor("D"):
        raise DataContractError(
            f"as-of date {cutoff.date()} is not after the first order in {data} ({first.date()}): no customer has "
            f"an order before it. Use a later --as-of (the data runs to {last.date()})."
        )
    return cutoff


def _views(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}


# ------------------------------------------------------------------ scoring
def percentile_1_100(values: np.ndarray) -> np.ndarray:
    """Rank of each value as a percentile 1-100 (100 = largest); ties share the higher percentile."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int16)
    ranks = rankdata(values, method="max")
    return np.clip(np.ceil(100.0 * ranks / len(values)), 1, 100).astype(np.int16)


def _check_features(frame: pd.DataFrame, models: dict[str, LoadedModel], data: Path) -> None:
    for model in models.values():
        try:
            check_columns(frame, model.estimator.features_)
        except ValueError as exc:
            raise DataContractError(
                f"the features built from {data} do not fit the {model.kind} model {model.uri} (version "
                f"{model.version}): {exc}. The data lacks a table or event type the model was trained with, or "
                f"params features/labels differ from training; score with matching data or retrain."
            ) from exc


def categorical_columns(models: dict[str, LoadedModel]) -> list[str]:
    """The categorical features of the models' preprocessors (sorted, each once)."""
    return sorted({c for m in models.values() for c in m.estimator.preprocessor_.categorical_})


def unseen_level_report(
    counts: dict[str, pd.Series], models: dict[str, LoadedModel]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per model and categorical feature, the scored customers whose level the model's preprocessor never kept
    (models.drift.unseen_levels; scored as "__other__"), and one warning line per feature with any (the models
    that share the same finding in one line). ``counts``: column -> customers per level (all scored customers)."""
    report: dict[str, dict[str, Any]] = {}
    for kind, model in models.items():
        pre = model.estimator.preprocessor_
        report[kind] = {c: unseen_levels(counts[c], pre.categories_[c]) for c in pre.categorical_ if c in counts}
    same: dict[str, list[str]] = {}
    for kind, columns in report.items():
        for column, found in columns.items():
            if found["customers"]:
                same.setdefault(json.dumps([column, found], sort_keys=True), []).append(kind)
    warnings = []
    for key, kinds in same.items():
        column, found = json.loads(key)
        listed = ", ".join(f"{t['level']!r} {t['customers']:,}" for t in found["top"])
        more = f" and {found['levels'] - len(found['top'])} more" if found["levels"] > len(found["top"]) else ""
        warnings.append(
            f"{' and '.join(kinds)} model{'s' if len(kinds) > 1 else ''}: {column} has {found['levels']} level(s) "
            f"unseen at training (or too rare there to keep) for {found['customers']:,} customer(s), scored as the "
            f"catch-all level '__other__': {listed}{more}"
        )
    return report, warnings


def unseen_event_types(
    rows: list[tuple[str, int, int]], total_customers: int, models: dict[str, LoadedModel]
) -> dict[str, Any]:
    """Event types outside the data contract's list (features.contract.KNOWN_EVENT_TYPES) in the scoring data:
    the features count them only in ``other_events_<w>d``, so the models never see them one by one.
    ``rows``: (event_type, customers, events) per such type; ``total_customers``: customers with any of them."""
    ordered = sorted(rows, key=lambda r: (-int(r[1]), str(r[0])))
    counted = {k: any(f.startswith("other_events_") for f in m.estimator.features_) for k, m in models.items()}
    return {
        "customers": int(total_customers),
        "types": len(ordered),
        "events": int(sum(int(r[2]) for r in ordered)),
        "top": [{"event_type": str(t), "customers": int(c), "events": int(e)} for t, c, e in ordered[:5]],
        "counted_in_other_events": counted,
    }


def _unseen_event_types_duckdb(data: Path, cutoff: pd.Timestamp) -> tuple[list[tuple[str, int, int]], int]:
    """(event_type, customers, events) per event type outside the contract's list before ``cutoff``, and the
    customers with any: one scan of ``events`` (nothing when the data has no events table)."""
    from churn_pipeline.features.contract import KNOWN_EVENT_TYPES

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


def unseen_summary(drift: dict[str, Any]) -> dict[str, Any]:
    """The unseen levels and event types of a drift report, for the run summary."""
    return {k: drift[k] for k in ("unseen_levels", "unseen_event_types") if k in drift}


def print_unseen(drift: dict[str, Any]) -> None:
    """One console line per categorical feature with unseen levels and one for unknown event types."""
    for warning in drift.get("unseen_level_warnings", []):
        console.print(f"[yellow]unseen levels: {warning}[/yellow]", soft_wrap=True)
    events = drift.get("unseen_event_types") or {}
    if events.get("types"):
        listed = ", ".join(f"{t['event_type']!r} ({t['customers']:,} customer(s))" for t in events["top"])
        more = f" and {events['types'] - len(events['top'])} more" if events["types"] > len(events["top"]) else ""
        used = [k for k, v in events.get("counted_in_other_events", {}).items() if v]
        how = f"counted only in the other_events_* features ({', '.join(used)})" if used else "not used by the models"
        console.print(
            f"[yellow]unseen event types: {events['types']} event type(s) outside the data contract for "
            f"{events['customers']:,} customer(s), {how}: {listed}{more}[/yellow]",
            soft_wrap=True,
        )


def drift_report(
    frame: pd.DataFrame,
    scores: dict[str, np.ndarray],
    models: dict[str, LoadedModel],
    threshold: float,
    levels: dict[str, pd.Series] | None = None,
) -> dict[str, Any]:
    """PSI of each model's reference features and scores (models.drift) on the scored customers who are not
    lapsed: the training rows leave lapsed customers out, so they are not part of the population to compare.
    Also the unseen levels of every categorical feature (:func:`unseen_level_report`) on all scored customers:
    ``levels`` (column -> customers per level) when the caller counted them, else counted in ``frame``."""
    active = ~frame["is_lapsed"].to_numpy(dtype=bool)
    if levels is None:
        levels = {c: level_counts(frame[c]) for c in categorical_columns(models) if c in frame.columns}
    unseen, unseen_warnings = unseen_level_report(levels, models)
    report: dict[str, Any] = {
        "psi_warning": threshold,
        "rows_compared": int(active.sum()),
        "models": {},
        "warnings": [],
        "unseen_levels": unseen,
        "unseen_level_warnings": unseen_warnings,
    }
    for kind, model in models.items():
        ref = model.drift_reference
        if ref is None:
            report["warnings"].append(
                f"{kind} model v{model.version} carries no drift reference (logged before drift checks): retrain "
                f"to get one"
            )
            continue
        pre = model.estimator.preprocessor_
        psi_features = {}
        for name, spec in ref["features"].items():
            if name in CALENDAR_FEATURES:
                continue
            column = frame[name][active]
            if spec["kind"] == "categorical":
                values = pre.category_codes(column, name)
            else:
                values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            psi_features[name] = round(psi_against(spec, values), 6)
        psi_scores = {
            name: round(psi_against(spec, scores[name][active]), 6)
            for name, spec in ref["scores"].items()
            if name in scores  # a reference may bin more scores than the scores table carries
        }
        report["models"][kind] = {
            "version": model.version,
            "reference_rows": ref.get("n_rows"),
            "reference_cutoffs": ref.get("cutoffs"),
            "features": psi_features,
            "scores": psi_scores,
        }
        for what, values in (("feature", psi_features), ("score", psi_scores)):
            for name, value in values.items():
                if value > threshold:
                    report["warnings"].append(
                        f"{kind} model: {what} {name} has PSI {value:.3f} against the model's training rows "
                        f"(> {threshold}): the population has shifted; check the data and consider retraining"
                    )
    return report


def score_frame(
    frame: pd.DataFrame,
    cutoff: pd.Timestamp,
    models: dict[str, LoadedModel],
    params: ScoreParams,
    tiers: RiskTiers,
    campaign: Campaign,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], str]:
    """The scores table (schema columns, not yet validated), the raw scores for the drift check, and the reason
    method used. ``campaign``: the campaign economics (params ``evaluate``) of the expected profit."""
    churn, clv = models["churn"].estimator, models["clv"].estimator
    p = churn.predict_proba(frame)[:, 1]
    value = clv.predict(frame)
    orders = clv.predict_orders(frame)
    retained = value_if_retained(value, p, params.min_stay_probability)
    method = rsn.resolved_method(params.reasons.method, len(frame), params.reasons.shap_max_rows)
    predictions = {
        "churn_probability": p,
        "predicted_clv": value,
        "expected_orders": orders,
        "value_if_retained": retained,
        **next_order_predictions(next_order_frame(models["next_order"].estimator, frame), models),
    }
    percentiles = {
        "churn_percentile": percentile_1_100(p),
        "clv_percentile": percentile_1_100(value),
        "value_percentile": percentile_1_100(retained),
    }
    out = decide(frame, predictions, percentiles, cutoff, models, params, tiers, method, campaign)
    return out, predictions, method


def retention_days(models: dict[str, LoadedModel]) -> int:
    """The grid edge whose P(an order within it) is the period-to-period retention of the lifetime value: the
    CLV horizon when it is an edge of the next-order grid, else the largest edge below it (else the first)."""
    grid = [int(e) for e in models["next_order"].estimator.grid_]
    horizon = models["clv"].horizon_days or grid[-1]
    below = [e for e in grid if e <= horizon]
    return below[-1] if below else grid[0]


def next_order_predictions(frame: pd.DataFrame, models: dict[str, LoadedModel]) -> dict[str, np.ndarray]:
    """The next-order model's outputs (:func:`models.serving.next_order_frame`) the scores carry:
    ``order_probability_{30,90,180}d``, ``days_to_next_order`` and ``retention_probability`` (P(an order within
    :func:`retention_days`), for the lifetime value). A grid lacking 30, 90 or 180 days is a ParamsError."""
    missing = [d for d in ORDER_PROBABILITY_DAYS if f"order_probability_{d}d" not in frame.columns]
    if missing:
        m = models["next_order"]
        raise ParamsError(
            f"the next-order model {m.uri} (version {m.version}) has no P(order within {missing} days): its grid "
            f"(labels.next_order_days) must include 30, 90 and 180 days; retrain with such a grid."
        )
    out = {f"order_probability_{d}d": frame[f"order_probability_{d}d"].to_numpy(np.float64)
           for d in ORDER_PROBABILITY_DAYS}  # fmt: skip
    out["days_to_next_order"] = frame["days_to_next_order"].to_numpy(np.float64)
    out["retention_probability"] = frame[f"order_probability_{retention_days(models)}d"].to_numpy(np.float64)
    return out


def decide(
    frame: pd.DataFrame,
    predictions: dict[str, np.ndarray],
    percentiles: dict[str, np.ndarray],
    cutoff: pd.Timestamp,
    models: dict[str, LoadedModel],
    params: ScoreParams,
    tiers: RiskTiers,
    method: str,
    campaign: Campaign,
) -> pd.DataFrame:
    """Everything after the predictions, row by row (so any batch of rows gives the same answer for its rows):
    risk tier, value at risk, reasons (``method``), the rule table's action, the control group, and the expected
    uplift and profit of the intended action with the contact list (models.targeting: the uplift model in
    ``models["uplift"]`` where there is one, else the ``campaign`` economics).

    ``predictions``: churn_probability, predicted_clv, expected_orders and value_if_retained (shop currency,
    :func:`models.evaluation.value_if_retained` with ``params.min_stay_probability``); ``percentiles``:
    churn_percentile, clv_percentile and value_percentile (1-100), ranked over the whole scored population,
    which is why they are inputs. ``value_at_risk`` = churn_probability x value_if_retained: the revenue lost if
    the customer churns, which predicted_clv (an expected revenue, already discounted for leaving) understates
    most for the riskiest customers. The rules' value conditions rank the same value (value_percentile).
    """
    churn = models["churn"].estimator
    p, value = predictions["churn_probability"], predictions["predicted_clv"]
    retained = predictions["value_if_retained"]
    features = churn.features_
    # Reasons are behaviours: the BG/NBD prior's share goes to the purchase rhythm it is computed from.
    contrib = rsn.behaviour_contributions(rsn.contributions(churn, frame, method), features)
    ignore = [features.index(f) for f in params.reasons.ignore if f in features]
    # At most one reason per behaviour (recency, frequency, spend, site visits, e-mail, ...): no repeats.
    codes_idx = rsn.top_reasons(contrib, 3, ignore=ignore, families=rsn.feature_families(features))
    del contrib
    sentences = rsn.reason_sentences(codes_idx, frame, features)
    codes = rsn.reason_codes(codes_idx, features)

    tier = assign_risk_tier(p, tiers, frame["is_lapsed"].to_numpy(dtype=bool))
    value_pct = percentiles["value_percentile"]
    tenure = frame["tenure_days"].to_numpy(dtype=np.float64, na_value=np.nan)
    days_next = predictions["days_to_next_order"]
    uplift_model = models.get(UPLIFT_KIND)
    uplift = uplift_predictions(uplift_model.estimator, frame, campaign) if uplift_model is not None else None
    n = len(frame)

    def profit_of(action: str) -> np.ndarray:
        return expected_profit_for(np.full(n, action, dtype=object), p, retained, campaign, uplift)[1]

    # load_checked_models drops a most_profitable rule when there is no uplift model; so does a direct call.
    rules = params.actions if uplift is not None else tuple(r for r in params.actions if r.action != MOST_PROFITABLE)
    intended = recommend(
        rules,
        tier,
        value_pct,
        value,
        tenure,
        codes,
        value_if_retained=retained,
        days_to_next_order=days_next,
        expected_profit=profit_of,
        most_profitable=most_profitable(uplift, campaign.value_margin) if uplift is not None else None,
    )
    expected_uplift, expected_profit = expected_profit_for(intended, p, retained, campaign, uplift)
    lv = params.lifetime_value
    lifetime = discounted_lifetime_value(
        value,
        predictions["retention_probability"],
        period_days=models["clv"].horizon_days or 180,
        margin=lv.margin,
        annual_discount_rate=lv.annual_discount_rate,
        horizon_months=lv.horizon_months,
    )
    # The next order's date: as_of + the median days, rounded up to a whole day (null beyond the grid).
    next_date = (cutoff + pd.to_timedelta(np.ceil(days_next), unit="D")).to_numpy(dtype="datetime64[s]")
    control = control_group(frame["customer_id"], params.control_group.share, params.control_group.salt)
    recommended = np.where(control, HOLD_OUT, intended).astype(object)

    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(str).to_numpy(dtype=object),
            "as_of_date": np.full(n, cutoff.to_datetime64()).astype("datetime64[s]"),
            "churn_probability": p.astype(np.float64),
            "churn_percentile": np.asarray(percentiles["churn_percentile"], dtype=np.int16),
            "risk_tier": tier,
            "predicted_clv": value.astype(np.float64),
            "clv_percentile": np.asarray(percentiles["clv_percentile"], dtype=np.int16),
            "expected_orders": predictions["expected_orders"].astype(np.float64),
            "value_if_retained": retained.astype(np.float64),
            "value_percentile": np.asarray(value_pct, dtype=np.int16),
            "value_at_risk": p * retained,
            **{f"reason_{j + 1}": sentences[j] for j in range(3)},
            **{f"reason_code_{j + 1}": codes[j] for j in range(3)},
            "recommended_action": recommended,
            "intended_action": intended,
            "control_group": control,
            "model_version": np.full(n, model_version_label(models), dtype=object),
            "schema_version": np.full(n, SCHEMA_VERSION, dtype=object),
            **{f"order_probability_{d}d": predictions[f"order_probability_{d}d"] for d in ORDER_PROBABILITY_DAYS},
            "days_to_next_order": days_next,
            "expected_next_order_date": next_date,
            "lifetime_value": lifetime,
            "expected_uplift": expected_uplift,
            "expected_profit": expected_profit,
            "contact": contact_list(recommended, expected_profit),
        }
    )


def to_arrow(scores: pd.DataFrame, summary: dict[str, Any]) -> pa.Table:
    """The validated scores as an Arrow table of the scores schema with the run summary as metadata (no pandas metadata,
    no timestamps: the same scores give the same bytes)."""
    arrays = []
    for col in COLUMNS:
        values = scores[col.name]
        if col.name in DATE_COLUMNS:
            arr = pc.cast(pa.array(values.to_numpy(dtype="datetime64[s]")), pa.date32())
        else:
            arr = pa.array(values.to_numpy(), type=col.arrow_type, from_pandas=True)
        arrays.append(arr)
    meta = {METADATA_KEY: json.dumps(summary, sort_keys=True).encode("utf-8")}
    return pa.Table.from_arrays(arrays, schema=arrow_schema(meta))


def write_outputs(table: pa.Table, drift: dict[str, Any], out: Path) -> None:
    """The scores and the drift report, both staged first: a failure leaves neither behind."""
    with atomic_path(out, directory=False) as tmp, atomic_path(drift_path(out), directory=False) as tmp_drift:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=True)
        tmp_drift.write_text(json.dumps(drift, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def run_summary(
    cutoff: pd.Timestamp,
    rows: int,
    left_out: int,
    models: dict[str, LoadedModel],
    tiers_count: dict[str, int],
    intended: dict[str, int],
    control_n: int,
    params: ScoreParams,
    method: str,
) -> dict[str, Any]:
    """The run summary every engine stores with its scores (and export copies into the CRM manifest)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "as_of_date": str(cutoff.date()),
        "rows": rows,
        "customers_left_out_no_order_before_as_of": left_out,
        "model_version": model_version_label(models),
        "models": {
            k: {"uri": m.uri, "name": m.name, "version": m.version, "run_id": m.run_id, "horizon_days": m.horizon_days}
            for k, m in models.items()
        },
        "tiers": {t: int(tiers_count.get(t, 0)) for t in TIER_ORDER},
        "intended_actions": {k: int(intended[k]) for k in sorted(intended)},
        "control_group": {"rows": control_n, **asdict(params.control_group)},
        "min_stay_probability": params.min_stay_probability,
        "reason_method": method,
        "next_order_grid_days": [int(e) for e in models["next_order"].estimator.grid_],
        "lifetime_value": {**asdict(params.lifetime_value), "retention_days": retention_days(models)},
    }


def drift_path(out: Path) -> Path:
    """The drift report beside the scores: ``scores.parquet`` -> ``scores.drift.json``."""
    return Path(out).with_name(Path(out).stem + ".drift.json")


def _tier_counts(tier: pd.Series) -> dict[str, int]:
    counts = tier.value_counts()
    return {t: int(counts.get(t, 0)) for t in TIER_ORDER}


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
    _check_features(frame, models, data)
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
    tiers_count = _tier_counts(scores["risk_tier"])
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
    for warning in drift["warnings"]:
        console.print(f"[yellow]drift: {warning}[/yellow]", soft_wrap=True)
    print_unseen(drift)
    share = control_n / max(summary["rows"], 1)
    console.print(
        f"scores: {summary['rows']:,} customers as of {summary['as_of_date']} "
        f"({', '.join(f'{t} {n:,}' for t, n in tiers_count.items())}); control group {control_n:,} "
        f"({share:.1%}); {left_out:,} customers without an order before the as-of date left out; "
        f"{summary['model_version']} -> {out}",
        soft_wrap=True,
    )
    print_contact(summary["contact"])


def campaign_economics(params_path: Path) -> Campaign:
    """The campaign economics of the expected profit: params ``evaluate`` (contact and incentive cost, acceptance
    rate, margin), the same the evaluation's profit curve and EMP use, so the contact list and the report agree."""
    from churn_pipeline.pipelines.params import EvaluateParams

    return load_section(EvaluateParams, "evaluate", params_path).campaign


def contact_summary(scores: pd.DataFrame, campaign: Campaign) -> dict[str, Any]:
    """The contact list in numbers: customers to contact, their share, the expected profit of contacting them
    (shop currency), per recommended action, and the economics behind it."""
    contact = scores["contact"].to_numpy(dtype=bool)
    profit = scores["expected_profit"].to_numpy(dtype=np.float64)
    by_action = scores.loc[contact].groupby("recommended_action", sort=True)["expected_profit"].agg(["size", "sum"])
    return {
        "rows": int(contact.sum()),
        "share": round(float(contact.mean()) if len(contact) else 0.0, 6),
        "expected_profit": round(float(profit[contact].sum()), 2),
        "by_action": {
            str(a): {"rows": int(size), "expected_profit": round(float(total), 2)}
            for a, size, total in zip(by_action.index, by_action["size"], by_action["sum"], strict=True)
        },
        "uplift_model_actions": sorted(
            a for a in scores.loc[scores["expected_uplift"].notna(), "intended_action"].unique()
        ),
        "economics": asdict(campaign),
    }


def print_contact(contact: dict[str, Any]) -> None:
    """One line: how many customers to contact and what it is expected to earn."""
    parts = ", ".join(f"{a} {v['rows']:,}" for a, v in contact["by_action"].items())
    modelled = contact["uplift_model_actions"]
    source = "campaign economics"
    if modelled:
        source = f"uplift model for {', '.join(modelled)}, campaign economics otherwise"
    listed = f": {parts}" if parts else ""
    console.print(
        f"contact list: {contact['rows']:,} customers ({contact['share']:.1%}) with positive expected profit, "
        f"{contact['expected_profit']:,.2f} in total ({source}){listed}",
        soft_wrap=True,
    )


def read_summary(path: Path) -> dict[str, Any]:
    """The run summary stored in a scores file's metadata (empty dict when absent)."""
    return summary_from_metadata(pq.read_schema(path).metadata)
