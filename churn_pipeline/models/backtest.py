"""The evaluate stage's pure part: folds, baselines blind to the future, the backtest and its metrics documents.

Grain: one row per (customer, cutoff) of the training panel. Fold ``k`` (1 = the train stage's test cutoff) takes
the ``k``-th latest churn-labelled cutoff ``Ck`` (the churn label: no order in ``[Ck, Ck + churn horizon)``, days)
and ``Vk``, the latest CLV-labelled cutoff ``<= Ck`` and before the previous fold's (the CLV label, net revenue in
the shop's currency over ``[Vk, Vk + CLV horizon)``, needs the longer horizon to be complete). Every number of a
fold is computed on the panel rows at its cutoffs; models refitted for a fold (:func:`refit`) see only cutoffs up
to it (split as the train stage splits, purged), and baselines (:func:`baseline_predictions`) only labels whose
window ends by it. Money follows ``models.evaluation`` (campaign costs in the shop's currency). Nothing here reads
files or params: the evaluate stage passes the panel, the fitted models and its settings (:class:`FoldSettings`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from churn_pipeline.errors import DataContractError
from churn_pipeline.models import evaluation as ev
from churn_pipeline.models.baselines import fit_predict_baselines
from churn_pipeline.models.factory import fit_estimator
from churn_pipeline.models.split import labelled_splits, split_frame
from churn_pipeline.models.survival import bgnbd_survival, timing_evaluation
from churn_pipeline.models.tiers import RiskTiers, assign_risk_tier

__all__ = [
    "BACKTEST_CHURN",
    "BACKTEST_CLV",
    "BACKTEST_PROFIT",
    "MODEL",
    "MODEL_BY_VALUE",
    "Fold",
    "FoldSettings",
    "backtest_frame",
    "backtest_summary",
    "baseline_predictions",
    "evaluate_fold",
    "evaluate_next_order",
    "fold_cutoffs",
    "headline_metrics",
    "json_ready",
    "labelled_cutoffs",
    "metrics_document",
    "refit",
    "retention_metrics",
    "segment_rows",
]

# The model's churn ranking, and the campaign ranking that also uses its value estimate (money only).
MODEL = "model"
MODEL_BY_VALUE = "model_by_value"
# Headline numbers carried into the backtest summary (mean and spread over folds).
BACKTEST_CHURN = ("roc_auc", "pr_auc", "brier", "lift_top10")
BACKTEST_CLV = ("normalized_gini", "spearman", "top10_capture")
BACKTEST_PROFIT = ("max_profit_per_customer", "emp_per_customer")
# The label column of each refitted model kind.
LABELS = {"churn": "churned", "clv": "future_revenue"}


@dataclass(frozen=True)
class FoldSettings:
    """How a fold is scored: params.yaml ``evaluate``'s fields of the same names (checked there), ``campaign``
    its economics (``models.evaluation.Campaign``). :meth:`of` reads them from the evaluate params."""

    campaign: ev.Campaign
    top_shares: tuple[float, ...]
    calibration_bins: int
    plot_points: int
    acceptance_alpha: float
    acceptance_beta: float
    retained_value: str
    min_stay_probability: float

    @classmethod
    def of(cls, params: Any) -> FoldSettings:
        """The settings read by name from ``params`` (an object carrying every field, e.g. the evaluate params)."""
        return cls(**{f.name: getattr(params, f.name) for f in dataclasses.fields(cls)})


@dataclass
class Fold:
    """One evaluated cutoff: headline numbers per ranking, and (fold 1) the tables and curves behind them."""

    number: int
    churn_cutoff: pd.Timestamp
    clv_cutoff: pd.Timestamp
    churn_rows: int
    clv_rows: int
    churn: dict[str, dict[str, float]]
    clv: dict[str, dict[str, float]]
    profit: dict[str, dict[str, float]]
    refit: bool
    details: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- fold set-up
def labelled_cutoffs(panel: pd.DataFrame, label: str) -> list[pd.Timestamp]:
    """Cutoffs (ascending) at which ``label`` is known for at least one row."""
    return sorted(pd.Timestamp(c) for c in panel.loc[panel[label].notna(), "cutoff"].unique())


def fold_cutoffs(
    churn_cutoffs: list[pd.Timestamp], clv_cutoffs: list[pd.Timestamp], k: int
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """(churn cutoff, CLV cutoff) of folds 1..k: the k latest churn-labelled cutoffs, latest first, each paired
    with the latest CLV-labelled cutoff not after it and before the previous fold's (so every fold has its own
    CLV cutoff). Raises ``DataContractError`` when there are too few."""
    if len(churn_cutoffs) < k:
        raise DataContractError(
            f"evaluate.backtest_cutoffs is {k} but the panel has only {len(churn_cutoffs)} churn-labelled "
            f"cutoffs: lower it or add cutoffs (features.cutoffs.count)."
        )
    folds = []
    for c in churn_cutoffs[::-1][:k]:
        earlier = [v for v in clv_cutoffs if v <= c and (not folds or v < folds[-1][1])]
        if not earlier:
            raise DataContractError(
                f"no CLV-labelled cutoff at or before the churn cutoff {c.date()} (CLV-labelled: "
                f"{[str(v.date()) for v in clv_cutoffs] or 'none'}): lower evaluate.backtest_cutoffs or add "
                f"earlier cutoffs (features.cutoffs.count)."
            )
        folds.append((c, earlier[-1]))
    return folds


def _labelled(panel: pd.DataFrame, label: str) -> pd.DataFrame:
    return panel[panel[label].notna()]


def refit(
    kind: str,
    estimator: Any,
    panel: pd.DataFrame,
    cutoff: pd.Timestamp,
    label_horizon_days: int,
    n_validation: int,
    purge: bool,
) -> Any:
    """The train stage's held-out ``kind`` model (churn or clv), the unfitted ``estimator``, fitted on the panel's
    labelled cutoffs up to ``cutoff`` (the test one): split as the train stage splits them
    (``models.split.labelled_splits``; ``DataContractError`` when they allow no split)."""
    label = LABELS[kind]
    rows = _labelled(panel[panel["cutoff"] <= cutoff], label)
    split, _ = labelled_splits(
        rows["cutoff"].unique(),
        label_horizon_days,
        n_validation,
        purge,
        what=f"backtest refit of the {label} model",
        remedy="Lower evaluate.backtest_cutoffs, or add cutoffs (features.cutoffs.count).",
    )
    train, valid, _ = split_frame(rows, split)
    return fit_estimator(kind, estimator, train, valid)


def baseline_predictions(
    panel: pd.DataFrame, cutoff: pd.Timestamp, churn_horizon_days: int, clv_horizon_days: int
) -> dict[str, pd.DataFrame]:
    """Every baseline's predictions for the panel rows at ``cutoff``, fitted on earlier rows whose labels are
    known by ``cutoff``: a churn label at ``c`` is kept when ``c + churn horizon <= cutoff``, a CLV label when
    ``c + CLV horizon <= cutoff``; later ones are masked to null (not used)."""
    target = panel[panel["cutoff"] == cutoff]
    history = panel[panel["cutoff"] < cutoff].copy()
    churn_open = history["cutoff"] + pd.Timedelta(days=churn_horizon_days) > cutoff
    clv_open = history["cutoff"] + pd.Timedelta(days=clv_horizon_days) > cutoff
    history["churned"] = history["churned"].astype("boolean").mask(churn_open)
    for label in ("future_revenue", "future_orders"):
        history[label] = history[label].astype("Float64").mask(clv_open)
    return fit_predict_baselines(history, target, churn_horizon_days, clv_horizon_days)


# ------------------------------------------------------------------------------------------ scoring
def evaluate_fold(
    panel: pd.DataFrame,
    manifest: dict,
    number: int,
    churn_cutoff: pd.Timestamp,
    clv_cutoff: pd.Timestamp,
    churn_model: Any,
    clv_model: Any,
    settings: FoldSettings,
    tiers: RiskTiers | None = None,
    refit: bool = False,
) -> Fold:
    """Score the models and the baselines at one fold's cutoffs. With ``tiers`` (fold 1) also keep the tables
    and curves the report and the DVC plots need. ``churn_model`` / ``clv_model``: fitted churn and CLV
    estimators."""
    h_churn, h_clv = manifest["churn_horizon_days"], manifest["clv_horizon_days"]
    rows_c = _labelled(panel[panel["cutoff"] == churn_cutoff], "churned")
    rows_v = _labelled(panel[panel["cutoff"] == clv_cutoff], "future_revenue")
    y = rows_c["churned"].astype(bool).to_numpy().astype(np.float64)
    actual = rows_v["future_revenue"].astype(np.float64).to_numpy()
    base_c = baseline_predictions(panel, churn_cutoff, h_churn, h_clv)
    base_v = base_c if clv_cutoff == churn_cutoff else baseline_predictions(panel, clv_cutoff, h_churn, h_clv)

    prob = {MODEL: churn_model.predict_proba(rows_c)[:, 1]}
    predicted = {MODEL: clv_model.predict(rows_v)}
    for name, frame in base_c.items():
        prob[name] = frame.loc[rows_c.index, "churn_probability"].to_numpy()
    for name, frame in base_v.items():
        predicted[name] = frame.loc[rows_v.index, "predicted_clv"].to_numpy()
    # The money of a retained churner, the same for every ranking: the models' revenue if they stay.
    value = clv_model.predict(rows_c)
    if settings.retained_value == "conditional":
        value = ev.value_if_retained(value, prob[MODEL], settings.min_stay_probability)
    campaign = settings.campaign
    ranking = dict(prob)
    ranking[MODEL_BY_VALUE] = ev.campaign_value_score(prob[MODEL], value, campaign)

    churn = {name: ev.churn_summary(y, p, settings.top_shares) for name, p in prob.items()}
    clv = {name: ev.clv_summary(actual, p) for name, p in predicted.items()}
    profit, curves = {}, {}
    for name, score in ranking.items():
        curve = ev.profit_curve(y, value, score, campaign)
        emp = ev.expected_maximum_profit(y, value, score, campaign, settings.acceptance_alpha, settings.acceptance_beta)
        best = ev.max_profit(curve)
        profit[name] = {
            "best_share": best["share"],
            "max_profit": best["profit"],
            "max_profit_per_customer": best["profit_per_customer"],
            **emp,
        }
        curves[name] = curve
    fold = Fold(number, churn_cutoff, clv_cutoff, len(rows_c), len(rows_v), churn, clv, profit, refit)
    if tiers is not None:
        fold.details = _details(y, prob, actual, predicted, value, curves, settings, tiers)
        fold.details["segment_rows"] = segment_rows(rows_c, assign_risk_tier(prob[MODEL], tiers))
        # The scores' contact list (expected profit > 0, models.targeting without an uplift model) on these rows.
        fold.details["contact_list"] = ev.contact_list_profit(ranking[MODEL_BY_VALUE], curves[MODEL_BY_VALUE])
    return fold


# loyalty_tier_level (the event history's tier at the cutoff) -> the tier's name in the segment tables.
LOYALTY_TIERS = {0: "none", 1: "bronze", 2: "silver", 3: "gold"}


def segment_rows(rows: pd.DataFrame, risk_tier: np.ndarray) -> pd.DataFrame:
    """One row per test-cutoff customer for the retention segment tables (``models.retention.segment_table``):
    the observed churn label, AOV and net revenue in the 365 days before the cutoff, the last NPS answer, the
    loyalty tier from the event history at the cutoff (never ``customers.loyalty_tier``, which describes the
    export time), country, acquisition channel and the model's risk tier. Only data before the cutoff, but
    the churn label."""
    out = pd.DataFrame({"customer_id": rows["customer_id"].to_numpy(), "churned": rows["churned"].to_numpy()})
    out["risk_tier"] = risk_tier
    out["monetary_value"] = rows["monetary_value"].to_numpy(dtype=np.float64, na_value=np.nan)
    revenue = rows["revenue_365d"].to_numpy(dtype=np.float64, na_value=np.nan) if "revenue_365d" in rows else np.nan
    if "returns_value_365d" in rows:
        revenue = revenue - rows["returns_value_365d"].fillna(0).to_numpy(dtype=np.float64)
    out["revenue_365d"] = revenue
    for column in ("country", "acquisition_channel"):
        if column in rows:
            out[column] = rows[column].to_numpy()
    if "nps_last" in rows:
        out["nps"] = rows["nps_last"].to_numpy(dtype=np.float64, na_value=np.nan)
    if "loyalty_tier_level" in rows:
        out["loyalty_tier"] = rows["loyalty_tier_level"].round().map(LOYALTY_TIERS).to_numpy()
    return out


def retention_metrics(views: Any) -> dict[str, Any]:
    """The retention views' headline numbers for metrics/evaluate.json: customers, repeat-purchase rates, the
    latest full period's retention rate and AOV, and the average cohort's share ordering 3, 6 and 12 months on."""
    doc: dict[str, Any] = {"as_of": str(views.as_of.date()), "customers": int(views.customers), "period": views.period}
    for window, rate in zip(views.repeat["window_days"], views.repeat["repeat_rate"], strict=True):
        doc["repeat_rate_ever" if pd.isna(window) else f"repeat_rate_{int(window)}d"] = float(rate)
    if len(views.periods):
        last = views.periods.iloc[-1]
        doc["latest_period"] = str(last["label"])
        doc["latest_retention_rate"] = float(last["retention_rate"])
        doc["latest_aov"] = float(last["aov"])
    curve = views.curve.set_index("month")["retention"] if len(views.curve) else pd.Series(dtype=float)
    for month in (3, 6, 12):
        if month in curve.index:
            doc[f"cohort_retention_month_{month}"] = float(curve[month])
    return doc


def _details(y, prob, actual, predicted, value, curves, settings: FoldSettings, tiers: RiskTiers) -> dict:
    """Tables and curves of the test fold (report and DVC plots)."""
    grid = np.round(np.linspace(0, 1, 101), 2)
    n = y.size
    everyone = float(curves[MODEL]["profit"].iloc[-1])
    profit_grid = pd.DataFrame({"share": grid})
    for name, curve in curves.items():
        profit_grid[name] = np.interp(grid * n, curve["customers"], curve["profit"])
    profit_grid["random"] = grid * everyone  # contacting a random share: that share of contacting everyone
    gains = pd.DataFrame({"share": grid})
    for name, p in prob.items():
        gains[name] = ev.expected_top_sums(y, p, grid * n) / y.sum()
    gains["random"] = grid
    tier = assign_risk_tier(prob[MODEL], tiers)
    return {
        "roc": {k: ev.thin_curve(ev.roc_curve_points(y, p), settings.plot_points) for k, p in prob.items()},
        "pr": {k: ev.thin_curve(ev.pr_curve_points(y, p), settings.plot_points) for k, p in prob.items()},
        "reliability": {k: ev.reliability_curve(y, p, settings.calibration_bins) for k, p in prob.items()},
        "lift": {k: ev.lift_table(y, p, settings.top_shares) for k, p in prob.items()},
        "gains_deciles": {k: ev.gains_table(y, p) for k, p in prob.items()},
        "gains": gains,
        "tiers": ev.tier_table(y, prob[MODEL], tier),
        "clv_deciles": {k: ev.clv_deciles(actual, p) for k, p in predicted.items()},
        "profit_curve": profit_grid,
        "contact_everyone_profit": everyone,
        "mean_value": float(np.mean(value)),
    }


# -------------------------------------------------------------------------------------------- output
def json_ready(obj: Any) -> Any:
    """Floats rounded to 6 decimals, NaN/inf as null: valid JSON that DVC can diff."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, float | np.floating):
        return round(float(obj), 6) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def backtest_frame(folds: list[Fold]) -> pd.DataFrame:
    """One row per (fold, ranking): the headline numbers carried into the backtest summary."""
    rows = []
    for f in folds:
        for name in f.profit:
            row = {"fold": f.number, "churn_cutoff": str(f.churn_cutoff.date()), "clv_cutoff": str(f.clv_cutoff.date())}
            row["ranking"] = name
            row.update({m: f.churn.get(name, {}).get(m, np.nan) for m in BACKTEST_CHURN})
            row.update({m: f.clv.get(name, {}).get(m, np.nan) for m in BACKTEST_CLV})
            row.update({m: f.profit[name][m] for m in BACKTEST_PROFIT})
            rows.append(row)
    return pd.DataFrame(rows)


def backtest_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation (NaN with one fold) over folds, per ranking and metric."""
    metrics = [*BACKTEST_CHURN, *BACKTEST_CLV, *BACKTEST_PROFIT]
    grouped = frame.groupby("ranking", sort=False)[metrics]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    return pd.concat({"mean": mean, "std": std}, axis=1)


def metrics_document(
    folds: list[Fold], summary: pd.DataFrame, tiers_table: pd.DataFrame, timing: dict | None = None
) -> dict:
    """The metrics file's numbers: headline numbers of the test fold per ranking, tiers, backtest mean and std,
    and with ``timing`` (:func:`evaluate_next_order`) the next-order model's and BG/NBD's metrics."""
    test = folds[0]
    churn_keys = [k for k in next(iter(test.churn.values())) if k not in ("churn_rate", "mean_probability")]
    doc: dict[str, Any] = {
        "test": {
            "churn_rows": test.churn_rows,
            "clv_rows": test.clv_rows,
            "churn_rate": test.churn[MODEL]["churn_rate"],
            "mean_probability": test.churn[MODEL]["mean_probability"],
        },
        "churn": {name: {k: m[k] for k in churn_keys} for name, m in test.churn.items()},
        "clv": test.clv,
        "profit": test.profit,
        **({"contact_list": test.details["contact_list"]} if test.details and "contact_list" in test.details else {}),
        "tiers": {r.tier: {"share": r.share, "churn_rate": r.churn_rate} for r in tiers_table.itertuples(index=False)},
        "backtest": {"folds": len(folds)},
    }
    for name in summary.index:
        doc["backtest"][name] = {
            m: {"mean": summary.loc[name, ("mean", m)], "std": summary.loc[name, ("std", m)]}
            for m in summary["mean"].columns
            if np.isfinite(summary.loc[name, ("mean", m)])
        }
    if timing is not None:
        doc["next_order"] = {
            "cutoff": timing["cutoff"],
            "rows": timing["rows"],
            "grid_days": timing["grid"],
            **timing["metrics"],
        }
    return json_ready(doc)


def headline_metrics(test: Fold, timing: dict | None = None) -> dict:
    """The DVC ``metrics:`` file: eleven numbers of the test fold, so ``dvc metrics show`` and ``dvc exp show`` stay
    readable in 200 columns (the full document is ``metrics_document``). Churn at the test cutoff: ROC AUC, Brier,
    ECE, lift in the top 10 %; CLV at the CLV test cutoff: normalised Gini, Spearman, total bias in %; the
    campaign's expected maximum profit per customer (``profit.emp``, shop currency); the best baseline's churn AUC
    and CLV Gini; with ``timing`` (:func:`evaluate_next_order`), the next-order model's concordance
    (``next_order.cindex``; BG/NBD's is in the full document)."""
    churn, clv = test.churn[MODEL], test.clv[MODEL]
    baselines = [name for name in test.churn if name not in (MODEL, MODEL_BY_VALUE)]
    clv_baselines = [name for name in test.clv if name not in (MODEL, MODEL_BY_VALUE)]
    doc = {
        "churn": {k: churn[k] for k in ("roc_auc", "brier", "ece", "lift_top10")},
        "clv": {"gini": clv["normalized_gini"], "spearman": clv["spearman"], "bias_pct": clv["total_bias_pct"]},
        "profit": {"emp": test.profit[MODEL]["emp_per_customer"]},
        "baseline": {
            "auc": max((test.churn[n]["roc_auc"] for n in baselines), default=None),
            "gini": max((test.clv[n]["normalized_gini"] for n in clv_baselines), default=None),
        },
    }
    if timing is not None:
        doc["next_order"] = {"cindex": timing["metrics"]["model"]["concordance"]}
    return json_ready(doc)


def evaluate_next_order(panel: pd.DataFrame, model: Any, cutoff: pd.Timestamp) -> dict[str, Any]:
    """The next-order model's held-out twin and BG/NBD (fitted on the same rows) on the panel rows at
    ``cutoff`` (the train stage's next-order test cutoff, followed up over the whole grid)."""
    grid = [int(d) for d in model.grid_]
    rows = panel[(panel["cutoff"] == cutoff) & (panel["next_order_followup_days"] >= grid[-1])]
    if rows.empty:
        raise DataContractError(
            f"the panel has no rows at the next-order test cutoff {cutoff.date()} followed up {grid[-1]} days: run "
            f"`churn train` on this panel first."
        )
    y = rows[["next_order_days", "next_order_followup_days"]]
    result = timing_evaluation(y, {"model": model.predict_survival(rows), "bgnbd": bgnbd_survival(rows, grid)}, grid)
    return {"cutoff": str(cutoff.date()), "rows": len(rows), "grid": grid, **result}
