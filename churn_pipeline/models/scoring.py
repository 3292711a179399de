"""Scoring: the scores table of one cutoff from the models' predictions, engine-independent and pure.

Grain: one row per customer with an order before the cutoff ``as_of_date`` (a calendar day, 00:00 UTC); the features
see only rows before it. Money in the shop's currency, probabilities in [0, 1], percentiles 1-100, days as days.
Both engines (``churn score``, DuckDB, and ``churn score --engine spark``) call these functions: the default engine
on the whole population in one pandas frame (:func:`score_frame`), Spark per Arrow batch (:class:`BatchDecider`)
after ranking the percentiles over the whole population itself. Nothing here reads files or params: the stages
(pipelines.score, pipelines.score_spark) load the models (pipelines.registry) and the params and pass them in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import rankdata

from churn_pipeline.errors import DataContractError, ParamsError
from churn_pipeline.models import reasons as rsn
from churn_pipeline.models.actions import MOST_PROFITABLE, ActionRule, control_group, recommend
from churn_pipeline.models.drift import CALENDAR_FEATURES, level_counts, psi_against, unseen_levels
from churn_pipeline.models.evaluation import Campaign, value_if_retained
from churn_pipeline.models.lifetime import LifetimeValueParams, discounted_lifetime_value
from churn_pipeline.models.preprocess import check_columns
from churn_pipeline.models.scores_schema import (
    COLUMNS,
    HOLD_OUT,
    METADATA_KEY,
    SCHEMA_VERSION,
    arrow_schema,
    validate_scores,
)
from churn_pipeline.models.survival import next_order_frame
from churn_pipeline.models.targeting import contact_list, expected_profit_for, most_profitable, uplift_predictions
from churn_pipeline.models.tiers import TIER_ORDER, RiskTiers, assign_risk_tier

__all__ = [
    "DATE_COLUMNS",
    "KINDS",
    "ORDER_PROBABILITY_DAYS",
    "PERCENTILES",
    "PREDICTIONS",
    "UPLIFT_KIND",
    "BatchDecider",
    "LoadedModel",
    "ScoringParams",
    "categorical_columns",
    "check_model_features",
    "contact_line",
    "contact_record",
    "contact_summary",
    "decide",
    "drift_report",
    "model_version_label",
    "next_order_predictions",
    "percentile_1_100",
    "retention_days",
    "run_summary",
    "score_frame",
    "scores_arrays",
    "tier_counts",
    "to_arrow",
    "unseen_event_types",
    "unseen_level_report",
    "unseen_lines",
    "unseen_summary",
]

# The registered models scoring needs, by the ``kind`` they were logged with.
KINDS = ("churn", "clv", "next_order")
# Optional: the uplift model (`churn uplift`, trained on the shop's contact history); scoring without one targets by
# the rules and the campaign economics (models.targeting).
UPLIFT_KIND = "uplift"
# The next-order columns of the scores: P(an order within these many days); their grid edges must exist.
ORDER_PROBABILITY_DAYS = (30, 90, 180)
DATE_COLUMNS = ("as_of_date", "expected_next_order_date")
# The per-customer predictions :func:`decide` takes (shop currency, probabilities, days), and the percentiles it
# takes, each with the prediction it ranks over the whole scored population.
PREDICTIONS = (
    "churn_probability",
    "predicted_clv",
    "expected_orders",
    "value_if_retained",
    *(f"order_probability_{d}d" for d in ORDER_PROBABILITY_DAYS),
    "days_to_next_order",
    "retention_probability",
)
PERCENTILES = {
    "churn_percentile": "churn_probability",
    "clv_percentile": "predicted_clv",
    "value_percentile": "value_if_retained",
}


class ScoringParams(Protocol):
    """What scoring reads of params ``score`` (pipelines.params.ScoreParams satisfies it)."""

    min_stay_probability: float
    reasons: Any  # method, shap_max_rows, ignore
    control_group: Any  # share, salt (a dataclass: the run summary stores its fields)
    lifetime_value: LifetimeValueParams
    actions: tuple[ActionRule, ...]


# ------------------------------------------------------------------ the models
@dataclass
class LoadedModel:
    """A registered model as loaded for scoring (pipelines.registry.load_models): which ``kind`` (churn, clv,
    next_order, uplift), where from (``uri``, registered ``name``, ``version``, ``run_id``), the fitted
    ``estimator``, the drift reference of its training rows (None for models logged before drift checks) and the
    label horizon in days it was trained with."""

    kind: str
    uri: str
    name: str
    version: str
    run_id: str
    estimator: Any
    drift_reference: dict | None
    horizon_days: int | None


def model_version_label(models: dict[str, LoadedModel]) -> str:
    """``churn:v7;clv:v7`` (registered names other than the kind are spelled out: ``churn=my-churn:v3``)."""
    parts = []
    for kind in (*KINDS, UPLIFT_KIND):
        if kind not in models:
            continue  # the optional uplift model
        m = models[kind]
        parts.append(f"{kind}:v{m.version}" if m.name == kind else f"{kind}={m.name}:v{m.version}")
    return ";".join(parts)


def check_model_features(columns: Iterable[str], models: dict[str, LoadedModel], source: Any) -> None:
    """DataContractError naming the model and the features it needs that ``columns`` (the scoring table built from
    ``source``) lacks: the one check of both engines, before any model is applied."""
    have = pd.DataFrame(columns=list(columns))
    for model in models.values():
        try:
            check_columns(have, model.estimator.features_)
        except ValueError as exc:
            raise DataContractError(
                f"the features built from {source} do not fit the {model.kind} model {model.uri} (version "
                f"{model.version}): {exc}. The data lacks a table or event type the model was trained with, or "
                f"params features/labels differ from training; score with matching data or retrain."
            ) from exc


# ------------------------------------------------------------------ predictions and percentiles
def score_frame(
    frame: pd.DataFrame,
    cutoff: pd.Timestamp,
    models: dict[str, LoadedModel],
    params: ScoringParams,
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
    percentiles = {name: percentile_1_100(predictions[score]) for name, score in PERCENTILES.items()}
    out = decide(frame, predictions, percentiles, cutoff, models, params, tiers, method, campaign)
    return out, predictions, method


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


def retention_days(models: dict[str, LoadedModel]) -> int:
    """The grid edge whose P(an order within it) is the period-to-period retention of the lifetime value: the
    CLV horizon when it is an edge of the next-order grid, else the largest edge below it (else the first)."""
    grid = [int(e) for e in models["next_order"].estimator.grid_]
    horizon = models["clv"].horizon_days or grid[-1]
    below = [e for e in grid if e <= horizon]
    return below[-1] if below else grid[0]


def percentile_1_100(values: np.ndarray) -> np.ndarray:
    """Rank of each value as a percentile 1-100 (100 = largest); ties share the higher percentile."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int16)
    ranks = rankdata(values, method="max")
    return np.clip(np.ceil(100.0 * ranks / len(values)), 1, 100).astype(np.int16)


# ------------------------------------------------------------------ row by row: tiers, reasons, actions
def decide(
    frame: pd.DataFrame,
    predictions: dict[str, np.ndarray],
    percentiles: dict[str, np.ndarray],
    cutoff: pd.Timestamp,
    models: dict[str, LoadedModel],
    params: ScoringParams,
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


class BatchDecider:
    """:func:`decide` over Arrow record batches (Spark's ``mapInArrow``): each batch carries the features, the
    :data:`PREDICTIONS` and the :data:`PERCENTILES` (ranked over the whole population beforehand); out come the
    scores of its rows, validated against the scores schema. Empty batches are skipped."""

    def __init__(
        self,
        models: dict[str, LoadedModel],
        params: ScoringParams,
        tiers: RiskTiers,
        cutoff: pd.Timestamp,
        method: str,
        campaign: Campaign,
    ):
        self.models, self.params, self.tiers, self.cutoff, self.method = models, params, tiers, cutoff, method
        self.campaign = campaign
        self.schema = arrow_schema()

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            frame = batch.to_pandas()
            predictions = {k: frame.pop(k).to_numpy(np.float64) for k in PREDICTIONS}
            percentiles = {k: frame.pop(k).to_numpy(np.int16) for k in PERCENTILES}
            scores = decide(
                frame,
                predictions,
                percentiles,
                self.cutoff,
                self.models,
                self.params,
                self.tiers,
                self.method,
                self.campaign,
            )
            yield pa.RecordBatch.from_arrays(scores_arrays(validate_scores(scores)), schema=self.schema)


# ------------------------------------------------------------------ drift and unseen levels
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


def unseen_summary(drift: dict[str, Any]) -> dict[str, Any]:
    """The unseen levels and event types of a drift report, for the run summary."""
    return {k: drift[k] for k in ("unseen_levels", "unseen_event_types") if k in drift}


def unseen_lines(drift: dict[str, Any]) -> list[str]:
    """The drift report's warnings to print: one line per PSI warning, per categorical feature with unseen levels
    and one for the event types outside the data contract."""
    lines = [f"drift: {warning}" for warning in drift["warnings"]]
    lines += [f"unseen levels: {warning}" for warning in drift.get("unseen_level_warnings", [])]
    events = drift.get("unseen_event_types") or {}
    if events.get("types"):
        listed = ", ".join(f"{t['event_type']!r} ({t['customers']:,} customer(s))" for t in events["top"])
        more = f" and {events['types'] - len(events['top'])} more" if events["types"] > len(events["top"]) else ""
        used = [k for k, v in events.get("counted_in_other_events", {}).items() if v]
        how = f"counted only in the other_events_* features ({', '.join(used)})" if used else "not used by the models"
        lines.append(
            f"unseen event types: {events['types']} event type(s) outside the data contract for "
            f"{events['customers']:,} customer(s), {how}: {listed}{more}"
        )
    return lines


# ------------------------------------------------------------------ the run summary
def run_summary(
    cutoff: pd.Timestamp,
    rows: int,
    left_out: int,
    models: dict[str, LoadedModel],
    tiers_count: dict[str, int],
    intended: dict[str, int],
    control_n: int,
    params: ScoringParams,
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


def tier_counts(tier: pd.Series) -> dict[str, int]:
    """Customers per risk tier, every tier of models.tiers.TIER_ORDER (0 where none)."""
    counts = tier.value_counts()
    return {t: int(counts.get(t, 0)) for t in TIER_ORDER}


def contact_summary(scores: pd.DataFrame, campaign: Campaign) -> dict[str, Any]:
    """:func:`contact_record` of a whole scores table (the default engine)."""
    contact = scores["contact"].to_numpy(dtype=bool)
    profit = scores["expected_profit"].to_numpy(dtype=np.float64)
    by_action = scores.loc[contact].groupby("recommended_action", sort=True)["expected_profit"].agg(["size", "sum"])
    return contact_record(
        len(contact),
        int(contact.sum()),
        float(profit[contact].sum()),
        {
            str(a): (int(size), float(total))
            for a, size, total in zip(by_action.index, by_action["size"], by_action["sum"], strict=True)
        },
        scores.loc[scores["expected_uplift"].notna(), "intended_action"].unique(),
        campaign,
    )


def contact_record(
    rows: int,
    contacted: int,
    expected_profit: float,
    by_action: dict[str, tuple[int, float]],
    uplift_model_actions: Iterable[str],
    campaign: Campaign,
) -> dict[str, Any]:
    """The contact list in numbers, for the run summary: customers to contact (of ``rows`` scored), their share,
    the expected profit of contacting them (shop currency, rounded to cents), per recommended action
    (``by_action``: action -> (customers, expected profit)), the intended actions the uplift model priced and the
    economics behind the rest. Each engine aggregates the scores its own way and passes the totals here."""
    return {
        "rows": contacted,
        "share": round(contacted / rows if rows else 0.0, 6),
        "expected_profit": round(expected_profit, 2),
        "by_action": {a: {"rows": n, "expected_profit": round(p, 2)} for a, (n, p) in sorted(by_action.items())},
        "uplift_model_actions": sorted(str(a) for a in uplift_model_actions),
        "economics": asdict(campaign),
    }


def contact_line(contact: dict[str, Any]) -> str:
    """One line: how many customers to contact and what it is expected to earn (``contact``: :func:`contact_record`)."""
    parts = ", ".join(f"{a} {v['rows']:,}" for a, v in contact["by_action"].items())
    modelled = contact["uplift_model_actions"]
    source = "campaign economics"
    if modelled:
        source = f"uplift model for {', '.join(modelled)}, campaign economics otherwise"
    listed = f": {parts}" if parts else ""
    return (
        f"contact list: {contact['rows']:,} customers ({contact['share']:.1%}) with positive expected profit, "
        f"{contact['expected_profit']:,.2f} in total ({source}){listed}"
    )


# ------------------------------------------------------------------ the scores as Arrow
def scores_arrays(scores: pd.DataFrame) -> list[pa.Array]:
    """The validated scores' columns as Arrow arrays of the scores schema, in its order (dates as date32): the one
    conversion of both engines."""
    arrays = []
    for col in COLUMNS:
        values = scores[col.name]
        if col.name in DATE_COLUMNS:
            arr = pc.cast(pa.array(values.to_numpy(dtype="datetime64[s]")), pa.date32())
        else:
            arr = pa.array(values.to_numpy(), type=col.arrow_type, from_pandas=True)
        arrays.append(arr)
    return arrays


def to_arrow(scores: pd.DataFrame, summary: dict[str, Any]) -> pa.Table:
    """The validated scores as an Arrow table of the scores schema with the run summary as metadata (no pandas metadata,
    no timestamps: the same scores give the same bytes)."""
    meta = {METADATA_KEY: json.dumps(summary, sort_keys=True).encode("utf-8")}
    return pa.Table.from_arrays(scores_arrays(scores), schema=arrow_schema(meta))
