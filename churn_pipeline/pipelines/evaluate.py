"""Stage `evaluate`: the trained models against baselines, in metrics and in money, on the test cutoff and
in a backtest; DVC metrics and plot files, one self-contained HTML report, all logged to the training run.

Reads params sections ``evaluate`` (this stage), ``risk_tiers`` (churn rate per tier) and ``train``
(hyper-parameters of the backtest refits), the panel and ``metrics/train.json`` (registered model versions,
their test cutoffs, the MLflow run id).

Folds. Fold 1 is the test cutoff of the train stage: the latest churn-labelled cutoff ``C1``, scored with the
held-out twins of the models the train stage registered (the deployed models used ``C1`` for early stopping
and calibration). Fold ``k`` (up to ``evaluate.backtest_cutoffs``) takes the ``k``-th latest
churn-labelled cutoff ``Ck`` and refits both models on earlier data only, exactly as the train stage does
(``models.split.time_split`` on the cutoffs up to it, purged). In each fold:

- churn metrics on the rows at ``Ck`` (the label: no order in ``[Ck, Ck + churn horizon)``);
- CLV metrics on the rows at ``Vk``, the latest CLV-labelled cutoff ``<= Ck`` (the CLV label needs the
  longer horizon to be complete, so it is an earlier cutoff: 2025-07-01 against 2025-10-01 by default);
- money at ``Ck``: each customer's value is their revenue if retained, from the fold's CLV model's prediction
  at ``Ck`` (trained on labels ending by ``Vk <= Ck``, so no future information) and its churn model
  (``models.evaluation.value_if_retained``); the same values for every ranking, so the rankings differ only
  in whom they contact;
- baselines (``models.baselines``) on exactly the same rows, fitted on the panel's earlier rows whose label
  windows end by the target cutoff (later labels are masked).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn_pipeline.errors import DataContractError
from churn_pipeline.models import evaluation as ev
from churn_pipeline.models.churn import ChurnClassifier
from churn_pipeline.models.clv import CLVRegressor
from churn_pipeline.models.lifetime import LifetimeValueParams, discounted_lifetime_value, lifetime_assumptions
from churn_pipeline.models.retention import retention_figures, retention_section, retention_views
from churn_pipeline.models.split import split_frame, time_split
from churn_pipeline.models.survival import bgnbd_survival, timing_evaluation
from churn_pipeline.models.tiers import RiskTiers, assign_risk_tier
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.io import atomic_path, read_manifest
from churn_pipeline.pipelines.params import EvaluateParams, TrainParams, load_section
from churn_pipeline.pipelines.tracking import configure_mlflow, file_fingerprint, flatten
from churn_pipeline.pipelines.train import churn_estimator, clv_estimator

MODEL = "model"
# The model's churn ranking and the campaign ranking that also uses its value estimate (money only).
MODEL_BY_VALUE = "model_by_value"
# Headline numbers carried into the backtest summary (mean and spread over folds).
BACKTEST_CHURN = ("roc_auc", "pr_auc", "brier", "lift_top10")
BACKTEST_CLV = ("normalized_gini", "spearman", "top10_capture")
BACKTEST_PROFIT = ("max_profit_per_customer", "emp_per_customer")




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


def refit_churn(panel: pd.DataFrame, manifest: dict, params: TrainParams, cutoff: pd.Timestamp) -> ChurnClassifier:
    """The train stage's held-out churn model refitted on the churn-labelled cutoffs up to ``cutoff`` (the test
    one)."""
    rows = _labelled(panel[panel["cutoff"] <= cutoff], "churned")
    split = _split(rows, "churned", manifest["churn_horizon_days"], params.split_settings(manifest))
    train, valid, _ = split_frame(rows, split)
    model = churn_estimator(manifest, params)
    return model.fit(train, train["churned"].astype(bool), valid, valid["churned"].astype(bool))


def refit_clv(panel: pd.DataFrame, manifest: dict, params: TrainParams, cutoff: pd.Timestamp) -> CLVRegressor:
    """The train stage's held-out CLV model refitted on the CLV-labelled cutoffs up to ``cutoff`` (the test one)."""
    rows = _labelled(panel[panel["cutoff"] <= cutoff], "future_revenue")
    split = _split(rows, "future_revenue", manifest["clv_horizon_days"], params.split_settings(manifest))
    train, valid, _ = split_frame(rows, split)
    return clv_estimator(manifest, params).fit(
        train, train["future_revenue"], valid, valid["future_revenue"], train["future_orders"], valid["future_orders"]
    )


def _split(rows: pd.DataFrame, label: str, horizon: int, settings: tuple[int, bool]):
    try:
        return time_split(rows["cutoff"].unique(), horizon, *settings)
    except ValueError as exc:
        raise DataContractError(
            f"backtest refit of the {label} model: {exc} Lower evaluate.backtest_cutoffs, or add cutoffs "
            f"(features.cutoffs.count)."
        ) from exc


def baseline_predictions(
    panel: pd.DataFrame, cutoff: pd.Timestamp, churn_horizon_days: int, clv_horizon_days: int
) -> dict[str, pd.DataFrame]:
    """Every baseline's predictions for the panel rows at ``cutoff``, fitted on earlier rows whose labels are
    known by ``cutoff``: a churn label at ``c`` is kept when ``c + churn horizon <= cutoff``, a CLV label when
    ``c + CLV horizon <= cutoff``; later ones are masked to null (not used)."""
    from churn_pipeline.models.baselines import fit_predict_baselines

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
    churn_model: ChurnClassifier,
    clv_model: CLVRegressor,
    params: EvaluateParams,
    tiers: RiskTiers | None = None,
    refit: bool = False,
) -> Fold:
    """Score the models and the baselines at one fold's cutoffs. With ``tiers`` (fold 1) also keep the tables
    and curves the report and the DVC plots need."""
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
    if params.retained_value == "conditional":
        value = ev.value_if_retained(value, prob[MODEL], params.min_stay_probability)
    campaign = params.campaign
    ranking = dict(prob)
    ranking[MODEL_BY_VALUE] = ev.campaign_value_score(prob[MODEL], value, campaign)

    churn = {name: ev.churn_summary(y, p, params.top_shares) for name, p in prob.items()}
    clv = {name: ev.clv_summary(actual, p) for name, p in predicted.items()}
    profit, curves = {}, {}
    for name, score in ranking.items():
        curve = ev.profit_curve(y, value, score, campaign)
        emp = ev.expected_maximum_profit(y, value, score, campaign, params.acceptance_alpha, params.acceptance_beta)
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
        fold.details = _details(y, prob, actual, predicted, value, curves, params, tiers)
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


def lifetime_section(params: LifetimeValueParams, period_days: int) -> Any:
    """The report's statement of the scores' ``lifetime_value`` assumptions, with worked examples."""
    from churn_pipeline.models.report import Section, Table

    clv = np.array([100.0, 100.0, 100.0])
    q = np.array([0.2, 0.5, 0.8])
    value = discounted_lifetime_value(
        clv,
        q,
        period_days=period_days,
        margin=params.margin,
        annual_discount_rate=params.annual_discount_rate,
        horizon_months=params.horizon_months,
    )
    examples = pd.DataFrame(
        {"predicted_clv": clv, "P(order within the CLV horizon)": q, "lifetime_value": np.round(value, 2)}
    )
    return Section(
        "Lifetime value: what the lifetime_value column assumes",
        paragraphs=lifetime_assumptions(params, period_days),
        tables=[Table(examples, "Worked examples (params score.lifetime_value)", formats={"lifetime_value": ".2f"})],
    )


def read_orders(data: Path) -> pd.DataFrame:
    """The validated orders' columns the retention views read (``channel`` when the shop has it)."""
    import pyarrow.parquet as pq

    path = Path(data) / "orders.parquet"
    if not path.is_file():
        raise DataContractError(f"{path} is missing: --data must be a `churn validate` output directory.")
    names = set(pq.read_schema(path).names)
    columns = ["customer_id", "order_ts", "amount", *(["channel"] if "channel" in names else [])]
    return pq.read_table(path, columns=columns).to_pandas()


def _details(y, prob, actual, predicted, value, curves, params: EvaluateParams, tiers: RiskTiers) -> dict:
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
        "roc": {k: ev.thin_curve(ev.roc_curve_points(y, p), params.plot_points) for k, p in prob.items()},
        "pr": {k: ev.thin_curve(ev.pr_curve_points(y, p), params.plot_points) for k, p in prob.items()},
        "reliability": {k: ev.reliability_curve(y, p, params.calibration_bins) for k, p in prob.items()},
        "lift": {k: ev.lift_table(y, p, params.top_shares) for k, p in prob.items()},
        "gains_deciles": {k: ev.gains_table(y, p) for k, p in prob.items()},
        "gains": gains,
        "tiers": ev.tier_table(y, prob[MODEL], tier),
        "clv_deciles": {k: ev.clv_deciles(actual, p) for k, p in predicted.items()},
        "profit_curve": profit_grid,
        "contact_everyone_profit": everyone,
        "mean_value": float(np.mean(value)),
    }


# -------------------------------------------------------------------------------------------- output
def _clean(obj: Any) -> Any:
    """Floats rounded to 6 decimals, NaN/inf as null: valid JSON that DVC can diff."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
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


def metrics_document(folds: list[Fold], summary: pd.DataFrame, tiers_table: pd.DataFrame) -> dict:
    """The DVC metrics file: headline numbers of the test fold per ranking, tiers, backtest mean and std."""
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
    return _clean(doc)


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
    return _clean(doc)


def write_plots(details: dict, backtest: pd.DataFrame, out: Path, figures: dict | None = None) -> None:
    """The DVC plot data files (CSV) under ``out``; dvc.yaml's top-level ``plots`` say how to draw them."""
    for kind, x, y in (("roc", "fpr", "tpr"), ("pr", "recall", "precision"),
                       ("calibration", "mean_predicted", "observed_rate")):  # fmt: skip
        (out / kind).mkdir(parents=True)
        source = details["reliability" if kind == "calibration" else kind]
        for name, frame in source.items():
            frame[[x, y]].round(6).to_csv(out / kind / f"{name}.csv", index=False)
    details["gains"].round(6).to_csv(out / "gains.csv", index=False)
    details["profit_curve"].round(4).to_csv(out / "profit_curve.csv", index=False)
    details["clv_deciles"][MODEL][["decile", "mean_predicted", "mean_actual"]].round(4).to_csv(
        out / "clv_deciles.csv", index=False
    )
    wide = backtest.pivot_table(index="fold", columns="ranking", values="roc_auc")
    wide = wide[[name for name in backtest["ranking"].unique() if name != MODEL_BY_VALUE]]
    wide.round(6).reset_index().to_csv(out / "backtest_roc_auc.csv", index=False)
    if figures:
        # The images dvc.yaml's plots show: DVC draws the CSVs above with Vega loaded from a CDN, blank offline.
        (out / "images").mkdir()
        for name, figure in figures.items():
            (out / "images" / f"{name}.png").write_bytes(figure.png)


# ---------------------------------------------------------------------------------------------- stage
def _registered(summary: dict, train_metrics: Path) -> tuple[ChurnClassifier, CLVRegressor, dict]:
    """The held-out estimators of the versions the train stage registered (``models:/<kind>/<version>``; their
    deployed estimator for versions logged without a twin) and their run's tags. Held out: the deployed models
    used the test cutoff for early stopping and calibration, so only the twins are judged on it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        churn_v, clv_v, run_id = summary["churn"]["version"], summary["clv"]["version"], summary["run_id"]
        served = [
            mlflow.pyfunc.load_model(f"models:/{kind}/{version}").unwrap_python_model()
            for kind, version in (("churn", churn_v), ("clv", clv_v))
        ]
        models = [getattr(m, "holdout_estimator", None) or m.estimator for m in served]
        tags = mlflow.MlflowClient().get_run(run_id).data.tags
    except (KeyError, TypeError) as exc:
        raise DataContractError(
            f"{train_metrics} lacks {exc}: it is not the output of `churn train`; run it again."
        ) from exc
    except MlflowException as exc:
        raise DataContractError(
            f"the models or run named in {train_metrics} (churn v{summary['churn'].get('version')}, clv "
            f"v{summary['clv'].get('version')}, run {summary.get('run_id')}) are not in the MLflow store "
            f"(MLFLOW_TRACKING_URI or sqlite:///mlflow.db): {str(exc)[:300]}. Run `churn train` against this store."
        ) from exc
    return models[0], models[1], tags


def _registered_next_order(summary: dict, train_metrics: Path) -> Any:
    """The held-out twin of the next-order version the train stage registered."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        version = summary["next_order"]["version"]
        served = mlflow.pyfunc.load_model(f"models:/next_order/{version}").unwrap_python_model()
    except (KeyError, TypeError) as exc:
        raise DataContractError(
            f"{train_metrics} lacks {exc}: it is not the output of this version of `churn train`; run it again."
        ) from exc
    except MlflowException as exc:
        raise DataContractError(
            f"the next-order model named in {train_metrics} (v{summary['next_order'].get('version')}) is not in the "
            f"MLflow store: {str(exc)[:300]}. Run `churn train` against this store."
        ) from exc
    return getattr(served, "holdout_estimator", None) or served.estimator


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


def read_measure(path: Path) -> dict[str, Any]:
    """``churn measure``'s metrics document; DataContractError when it is missing or not its output."""
    path = Path(path)
    if not path.is_file():
        raise DataContractError(
            f"{path} is missing: run `churn measure --metrics {path}` first (or leave --measure out)."
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataContractError(f"{path} is not valid JSON ({exc}): run `churn measure` again.") from exc
    if not isinstance(doc, dict) or "status" not in doc or "contacts" not in doc:
        raise DataContractError(f"{path} is not the output of `churn measure` (no status/contacts): run it again.")
    return doc


def _version_fact(entry: dict) -> str:
    """'v3 (champion)' or 'v4 (challenger; champion is v3)', with the gate's verdict."""
    version, champion = entry["version"], entry.get("champion")
    role = "champion" if champion == version else f"challenger; champion is v{champion}" if champion else "challenger"
    return f"v{version} ({role}): {'; '.join(entry.get('gate', []))}"


def run(
    panel_path: Path,
    train_metrics: Path,
    metrics_path: Path,
    plots_dir: Path,
    report_path: Path,
    params_path: Path,
    headline_path: Path | None = None,
    data: Path | None = None,
    measure_path: Path | None = None,
) -> None:
    """Evaluate the registered models (module docstring). ``metrics_path``: every number (a plain JSON, logged to
    MLflow); ``headline_path``: the eleven headline numbers (``headline_metrics``), DVC's ``metrics:`` file;
    ``measure_path``: ``churn measure``'s metrics, shown as the report's "What the campaigns achieved" section when
    they have rows and copied into the metrics file under ``campaigns`` (not logged to MLflow, not in the headline)."""
    import mlflow

    from churn_pipeline.models.report import (
        Figure,
        build_report,
        campaign_section,
        evaluation_figures,
        timing_figure,
        timing_section,
    )

    params = load_section(EvaluateParams, "evaluate", params_path)
    tiers = load_section(RiskTiers, "risk_tiers", params_path)
    train_params = load_section(TrainParams, "train", params_path)
    # Only to state, in the report, what the scores' lifetime_value assumes (the score stage computes it).
    lifetime = load_section(LifetimeValueParams, "score.lifetime_value", params_path)
    if not train_metrics.is_file():
        raise DataContractError(f"{train_metrics} is missing: run `churn train` first.")
    try:
        summary = json.loads(train_metrics.read_text())
    except json.JSONDecodeError as exc:
        raise DataContractError(f"{train_metrics} is not valid JSON ({exc}): run `churn train` again.") from exc
    manifest = read_manifest(panel_path)
    campaigns = read_measure(measure_path) if measure_path is not None else None
    configure_mlflow(train_params.experiment)

    with step("evaluate: panel and registered models") as s:
        churn_model, clv_model, tags = _registered(summary, train_metrics)
        next_order_model = _registered_next_order(summary, train_metrics)
        if tags.get("data_fingerprint") not in (None, file_fingerprint(panel_path)):
            raise DataContractError(
                f"the models in {train_metrics} (run {summary['run_id']}) were trained on another version of "
                f"{panel_path}: run `churn train` on this panel first (or `dvc repro`)."
            )
        panel = pd.read_parquet(panel_path)
        panel["cutoff"] = pd.to_datetime(panel["cutoff"])
        folds_at = fold_cutoffs(
            labelled_cutoffs(panel, "churned"), labelled_cutoffs(panel, "future_revenue"), params.backtest_cutoffs
        )
        s.rows = len(panel)
        s.detail = f"churn v{summary['churn']['version']}, clv v{summary['clv']['version']}, run {summary['run_id']}"
    if str(folds_at[0][0].date()) != summary["churn"].get("test_cutoff"):
        raise DataContractError(
            f"{train_metrics} says the churn test cutoff is {summary['churn'].get('test_cutoff')} but the panel's "
            f"latest churn-labelled cutoff is {folds_at[0][0].date()}: run `churn train` on this panel first."
        )

    folds: list[Fold] = []
    for number, (c, v) in enumerate(folds_at, start=1):
        with step(f"evaluate: fold {number}/{len(folds_at)}") as s:
            if number == 1:
                churn_m = churn_model
                same = str(v.date()) == summary["clv"].get("test_cutoff")
                clv_m = clv_model if same else refit_clv(panel, manifest, train_params, v)
                refit = not same
            else:
                churn_m = refit_churn(panel, manifest, train_params, c)
                clv_m = refit_clv(panel, manifest, train_params, v)
                refit = True
            fold = evaluate_fold(
                panel, manifest, number, c, v, churn_m, clv_m, params, tiers if number == 1 else None, refit
            )
            folds.append(fold)
            s.rows = fold.churn_rows
            s.detail = (
                f"churn {c.date()} AUC {fold.churn[MODEL]['roc_auc']:.3f}, CLV {v.date()} Gini "
                f"{fold.clv[MODEL]['normalized_gini']:.3f}{' (refit)' if fold.refit else ''}"
            )
    with step("evaluate: next-order model") as s:
        timing = evaluate_next_order(panel, next_order_model, pd.Timestamp(summary["next_order"]["test_cutoff"]))
        s.rows = timing["rows"]
        model_m, base_m = timing["metrics"]["model"], timing["metrics"]["bgnbd"]
        s.detail = (
            f"{timing['cutoff']}: concordance {model_m['concordance']:.3f} (BG/NBD {base_m['concordance']:.3f}), "
            f"integrated Brier {model_m['integrated_brier']:.4f} (BG/NBD {base_m['integrated_brier']:.4f})"
        )
    del panel

    test = folds[0]
    backtest = backtest_frame(folds)
    bt_summary = backtest_summary(backtest)
    document = metrics_document(folds, bt_summary, test.details["tiers"])
    document["next_order"] = _clean(
        {"cutoff": timing["cutoff"], "rows": timing["rows"], "grid_days": timing["grid"], **timing["metrics"]}
    )
    with step("evaluate: report, metrics, plots, MLflow") as s:
        figures = evaluation_figures(test.details, backtest, params.calibration_bins)
        extra = [lifetime_section(lifetime, manifest["clv_horizon_days"])]
        if data is not None:
            views = retention_views(
                read_orders(data),
                pd.Timestamp(manifest["data_end"]),
                test.details["segment_rows"],
                cutoff=test.churn_cutoff,
            )
            retention_figs = retention_figures(views)
            figures.update(retention_figs)
            extra.append(retention_section(views, retention_figs))
            document["retention"] = retention_metrics(views)
        if campaigns is not None:
            document["campaigns"] = campaigns
            section = campaign_section(campaigns)
            if section is not None:
                extra.append(section)
        figures["next_order"] = Figure(
            timing_figure(timing["curve"], f"Orders within t days of {timing['cutoff']}"),
            "Observed vs predicted share of customers ordering within t days.",
        )
        html = build_report(
            folds=folds,
            backtest=backtest,
            backtest_summary=bt_summary,
            params=asdict(params),
            tiers=asdict(tiers),
            facts={
                "MLflow run": summary["run_id"],
                "churn model": _version_fact(summary["churn"]),
                "CLV model": _version_fact(summary["clv"]),
                "next-order model": _version_fact(summary["next_order"]),
                "churn horizon": f"{manifest['churn_horizon_days']} days",
                "CLV horizon": f"{manifest['clv_horizon_days']} days",
                "panel": f"{panel_path} ({len(manifest['cutoffs'])} cutoffs, data end {manifest.get('data_end')})",
                "data fingerprint": tags.get("data_fingerprint", "unknown")[:16],
                "git commit": tags.get("git_commit", "unknown"),
            },
            importance={"churn": churn_model.feature_importance(), "clv": clv_model.feature_importance()},
            figures=figures,
            extra_sections=[timing_section(timing, figures["next_order"].png), *extra],
        )
        with (
            atomic_path(plots_dir) as plots_tmp,
            atomic_path(report_path) as report_tmp,
            atomic_path(metrics_path) as metrics_tmp,
            contextlib.ExitStack() as stack,
            tempfile.TemporaryDirectory() as scratch,
        ):
            plots_tmp.mkdir(parents=True)
            write_plots(test.details, backtest, plots_tmp, figures)
            timing["curve"].round(6).to_csv(plots_tmp / "next_order_curve.csv", index=False)
            if data is not None:
                (plots_tmp / "retention").mkdir()
                views.cohorts.to_csv(plots_tmp / "retention" / "cohorts.csv", index=False, float_format="%.6f")
                views.periods.to_csv(plots_tmp / "retention" / "periods.csv", index=False, float_format="%.6f")
                views.repeat.to_csv(plots_tmp / "retention" / "repeat_purchase.csv", index=False, float_format="%.6f")
            report_tmp.write_text(html, encoding="utf-8")
            metrics_tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            if headline_path is not None:
                headline_tmp = stack.enter_context(atomic_path(headline_path))
                headline = json.dumps(headline_metrics(test, timing), indent=2, sort_keys=True)
                headline_tmp.write_text(headline + "\n", encoding="utf-8")
            backtest.to_csv(Path(scratch) / "backtest_folds.csv", index=False)
            with mlflow.start_run(run_id=summary["run_id"]):
                logged = {k: v for k, v in document.items() if k != "campaigns"}  # campaign ids are data, not keys
                flat = {f"eval.{k}": v for k, v in flatten(logged).items() if isinstance(v, int | float)}
                mlflow.log_metrics(flat)
                mlflow.log_artifact(str(report_tmp), "evaluation")
                mlflow.log_artifact(str(metrics_tmp), "evaluation")
                mlflow.log_artifact(str(Path(scratch) / "backtest_folds.csv"), "evaluation")
                mlflow.log_artifacts(str(plots_tmp), "evaluation/plots")
        s.detail = f"{report_path} ({len(html) // 1024} KiB), {len(flat)} metrics to run {summary['run_id']}"
    m, p = test.churn[MODEL], test.profit[MODEL]
    for kind in ("churn", "clv"):
        console.print(f"{kind} model {_version_fact(summary[kind])}", soft_wrap=True)
    console.print(
        f"test {test.churn_cutoff.date()}: AUC {m['roc_auc']:.3f}, lift@10% {m['lift_top10']:.2f}; best campaign "
        f"contacts {p['best_share']:.0%} for {p['max_profit']:,.0f} (EMP {p['emp_per_customer']:.2f}/customer); "
        f"backtest AUC {bt_summary.loc[MODEL, ('mean', 'roc_auc')]:.3f} ± "
        f"{np.nan_to_num(bt_summary.loc[MODEL, ('std', 'roc_auc')]):.3f} over {len(folds)} cutoffs",
        soft_wrap=True,
    )


__all__ = [
    "EvaluateParams",
    "Fold",
    "backtest_frame",
    "backtest_summary",
    "baseline_predictions",
    "evaluate_fold",
    "fold_cutoffs",
    "headline_metrics",
    "labelled_cutoffs",
    "metrics_document",
    "read_measure",
    "refit_churn",
    "refit_clv",
    "run",
    "write_plots",
]
