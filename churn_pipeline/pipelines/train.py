"""Stage `train`: LightGBM churn and CLV models on the training panel, tracked in MLflow, gated in the registry.

Reads params section ``train`` (and logs ``features`` and ``labels`` too). For each model:

1. **Held-out fit.** Splits the labelled cutoffs by time (train < validation < test, purged so no label window
   crosses into a later split; ``n_validation``/``purge`` ``auto`` follow the schedule the features stage
   planned), fits, and scores the test cutoff: these are the test metrics, and the gate's evidence.
2. **Deployed fit.** The same recipe moved forward by one split (``models.split.deployment_split``): validation
   (early stopping, calibration) on the latest labelled cutoffs, the test cutoff among them, training on every
   earlier cutoff that clears the purge. This is the model that scores customers: it has seen the newest
   labels. The held-out model travels with it (artifact ``holdout_estimator``), so the gate and ``evaluate``
   judge versions on rows none of them was fitted on.

Logs one MLflow run (flattened params, data fingerprint, git commit, metrics, feature importance, plots,
calibration report), registers the models as ``churn`` and ``clv`` with alias ``challenger``, and moves
``champion`` to a new version only when the gate says its held-out model is at least as good as the
champion's on the same test rows and features (``models.gate``).

Production safety (issue 18):

- a **first version** (no champion yet) must not lose to the best baseline the panel carries on its test cutoff
  by more than the gate's tolerance (churn: ``bgnbd_churn_probability`` and the recency rule ``recency_days``
  by ROC AUC; CLV: ``bgnbd_clv`` by normalised Gini), else it is registered as ``challenger`` only;
- a champion trained on another **label horizon** (model version tag ``label_horizon_days``, else its run's
  ``labels.*_horizon_days`` param) is never compared: it stays;
- ``train.promote: manual`` never moves ``champion`` (prints the ``churn promote`` command); ``auto`` behaves
  as manual inside a DVC experiment (``dvc exp run`` sets ``DVC_EXP_NAME`` in the stage's environment), so an
  experiment never changes what production scores with;
- a champion whose files are gone or unreadable (``No such artifact``, a missing or truncated file) is kept,
  loudly, and the challenger is not promoted; any other error while loading or scoring it propagates;
- a split whose churn labels have one class (no churners or no stayers) stops with a DataContractError naming
  the cutoffs and counts.

The run is tagged with ``mlflow.source.git.commit`` (``git rev-parse HEAD`` of the code), ``git_commit`` (the
same, ``-dirty`` when tracked source files changed: ``pipelines.tracking.SOURCE_PATHS``), and, in a DVC
experiment, ``dvc_exp_name`` and ``dvc_exp_baseline_rev``.
"""

from __future__ import annotations

import json
import pickle
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from churn_pipeline.errors import DataContractError, ParamsError
from churn_pipeline.models import metrics as mx
from churn_pipeline.models.churn import ChurnClassifier
from churn_pipeline.models.clv import CLVRegressor
from churn_pipeline.models.drift import reference_for
from churn_pipeline.models.gate import (
    Decision,
    GatedMetric,
    auc_standard_error,
    clears_baseline_bar,
    decide,
    same_target,
)
from churn_pipeline.models.preprocess import HighCardinalityWarning
from churn_pipeline.models.split import TimeSplit, deployment_split, time_split
from churn_pipeline.models.survival import NextOrderModel, bgnbd_survival, next_order_frame, survival_metrics
from churn_pipeline.pipelines.console import console, format_seconds, step
from churn_pipeline.pipelines.io import read_manifest, write_json
from churn_pipeline.pipelines.params import GateParams, TrainParams, load_section, read_params
from churn_pipeline.pipelines.tracking import (
    configure_mlflow,
    dvc_experiment,
    file_fingerprint,
    flatten,
    git_state,
    input_schema,
    tracking_uri,
    unloadable,
)

SERVING_CODE = Path(__file__).resolve().parents[1] / "models" / "serving.py"
# The whole package travels with each model: serving.py imports churn_pipeline.models.*, and a loaded model must
# not pick up some other project's top-level `models` package.
MODELS_PACKAGE = Path(__file__).resolve().parents[1]
# Training rows summarised in each model's drift reference (a stride sample beyond this).
DRIFT_REFERENCE_ROWS = 200_000
# The baselines a first version must not lose to, when the panel carries them: (name, feature, sign), the score being
# sign * feature (higher = more likely to churn / more valuable).
CHURN_BASELINES = (("bgnbd", "bgnbd_churn_probability", 1.0), ("recency_rule", "recency_days", 1.0))
CLV_BASELINES = (("bgnbd", "bgnbd_clv", 1.0),)
# The ranking metric of the minimum-quality bar per model and the gate tolerance it allows (a rule's Brier or
# MAE would mean nothing).
NEXT_ORDER_LABELS = ("next_order_days", "next_order_followup_days")
FOLLOWUP = "next_order_followup_days"
BAR_TOLERANCES = {
    "churn": {"roc_auc": "churn_roc_auc_tolerance"},
    "clv": {"normalized_gini": "clv_gini_tolerance"},
    "next_order": {"concordance": "next_order_concordance_tolerance"},
}
# The registered models, in training order.
KINDS = ("churn", "clv", "next_order")
# The next-order model's registered outputs at these grid edges (days), when they are on the grid.
ORDER_PROBABILITY_DAYS = (30, 90, 180)














def gated_metrics(kind: str, gate: GateParams) -> tuple[GatedMetric, ...]:
    if kind == "churn":
        return (
            GatedMetric("roc_auc", True, gate.churn_roc_auc_tolerance),
            GatedMetric("brier", False, gate.churn_brier_tolerance),
        )
    if kind == "next_order":
        return (
            GatedMetric("concordance", True, gate.next_order_concordance_tolerance),
            GatedMetric("integrated_brier", False, gate.next_order_brier_tolerance),
        )
    return (
        GatedMetric("normalized_gini", True, gate.clv_gini_tolerance),
        GatedMetric("spearman", True, gate.clv_spearman_tolerance),
    )


def churn_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": mx.roc_auc(y, p),
        "pr_auc": mx.pr_auc(y, p),
        "brier": mx.brier(y, p),
        "log_loss": mx.log_loss(y, p),
        "ece": mx.expected_calibration_error(y, p),
        "churn_rate": float(np.mean(y)),
        "mean_probability": float(np.mean(p)),
    }


def clv_metrics(y: np.ndarray, pred: np.ndarray, orders: np.ndarray, pred_orders: np.ndarray) -> dict[str, float]:
    return {
        "mae": mx.mae(y, pred),
        "rmse": mx.rmse(y, pred),
        "normalized_gini": mx.normalized_gini(y, pred),
        "spearman": mx.spearman(y, pred),
        "total_bias_pct": 100.0 * mx.bias(y, pred, relative=True),
        "orders_mae": mx.mae(orders, pred_orders),
    }


def _split(
    panel: Path, columns: list[str], label: str, horizon: int, settings: tuple[int, bool]
) -> tuple[TimeSplit, TimeSplit, tuple]:
    """The held-out time split of the cutoffs that carry ``label``, the deployed model's split, and the held-out
    split's (train, validation, test) labelled rows read from ``panel`` (row filters on the cutoffs, so the
    whole panel is never in memory at once)."""
    n_validation, purge = settings
    labels = pq.read_table(panel, columns=["cutoff", label]).to_pandas()
    if label == FOLLOWUP:
        # Followed up over the whole grid; shorter follow-ups are the censored recent cutoffs.
        labels = labels[labels[label] >= horizon]
    labelled = labels.loc[labels[label].notna(), "cutoff"].unique()
    del labels
    try:
        split = time_split(labelled, horizon, n_validation, purge)
        deployed = deployment_split(labelled, horizon, n_validation, purge)
    except ValueError as exc:
        raise DataContractError(
            f"cannot split the panel's {label} labels by time: {exc} features.cutoffs.frequency: auto picks a "
            f"schedule that fits; otherwise more cutoffs (features.cutoffs.count), a shorter horizon, or "
            f"train.purge: false would make room."
        ) from exc
    parts = tuple(_read_rows(panel, columns, label, cs) for cs in (split.train, split.validation, split.test))
    for part in parts:
        if label == FOLLOWUP and len(part) and part[label].min() < horizon:
            raise DataContractError(f"next-order rows followed up less than {horizon} days at a labelled cutoff")
    _check_classes(label, horizon, split, parts)
    return split, deployed, parts


def _check_classes(label: str, horizon: int, split: TimeSplit, parts: tuple) -> None:
    """DataContractError when a split's labels cannot train or judge a model: churn labels of one class (no
    churners, or no stayers), or CLV labels with no revenue at all."""
    names = ("train", "validation", "test")
    cutoffs = (split.train, split.validation, split.test)
    if label == "churned":
        counts = [(int(p[label].astype(bool).sum()), len(p)) for p in parts]
        bad = [i for i, (pos, n) in enumerate(counts) if pos in (0, n)]
        shown = "; ".join(
            f"{names[i]} cutoffs {_span(cutoffs[i])}: {n:,} rows, {pos:,} churners, {n - pos:,} stayers"
            for i, (pos, n) in enumerate(counts)
        )
        what = "churners and stayers"
    elif label == FOLLOWUP:
        counts = [(int(p["next_order_days"].notna().sum()), len(p)) for p in parts]
        bad = [i for i, (pos, n) in enumerate(counts) if pos in (0, n)]
        shown = "; ".join(
            f"{names[i]} cutoffs {_span(cutoffs[i])}: {n:,} rows, {pos:,} with an order in {horizon} days"
            for i, (pos, n) in enumerate(counts)
        )
        what = "customers who order and customers who do not within the grid"
    else:
        counts = [(int((p[label].astype(float) > 0).sum()), len(p)) for p in parts]
        bad = [i for i, (pos, _) in enumerate(counts) if pos == 0]
        shown = "; ".join(
            f"{names[i]} cutoffs {_span(cutoffs[i])}: {n:,} rows, {pos:,} with revenue"
            for i, (pos, n) in enumerate(counts)
        )
        what = "customers who buy in the horizon"
    if not bad:
        return
    key = {"churned": "churn_horizon_days", FOLLOWUP: "next_order_days"}.get(label, "clv_horizon_days")
    raise DataContractError(
        f"the training panel's {label} labels ({horizon}-day horizon) have one class on the "
        f"{' and '.join(names[i] for i in bad)} cutoff(s), so no model can be trained or tested there ({shown}). "
        f"A model needs {what} on every split: give the features stage more history (more orders, or "
        f"features.cutoffs.count), or another horizon (labels.{key}), or check the orders (a shop where nobody "
        f"or everybody comes back within {horizon} days)."
    )


def _read_rows(panel: Path, columns: list[str], label: str, cutoffs: tuple) -> pd.DataFrame:
    """The rows of ``panel`` at ``cutoffs`` whose ``label`` is known."""
    wanted = [pd.Timestamp(c).to_datetime64() for c in cutoffs]
    frame = pq.read_table(panel, columns=columns, filters=[("cutoff", "in", wanted)]).to_pandas()
    return frame[frame[label].notna()].reset_index(drop=True)


def _span(cs: tuple) -> str:
    return f"{pd.Timestamp(cs[0]).date()}..{pd.Timestamp(cs[-1]).date()}" if cs else "-"


def _describe(split: TimeSplit, deployed: TimeSplit) -> str:
    return (
        f"held out: train {_span(split.train)}, validation {_span(split.validation)}, test "
        f"{split.test_cutoff.date()}; deployed: train {_span(deployed.train)}, validation {_span(deployed.validation)}"
    )


def churn_estimator(manifest: dict, params: TrainParams) -> ChurnClassifier:
    """An unfitted churn model with the train params (the one factory of both churn fits)."""
    return ChurnClassifier(
        features=manifest["features"],
        categorical=manifest["categorical"],
        seed=params.seed,
        max_category_levels=params.max_category_levels,
        **asdict(params.churn),
    )


def clv_estimator(manifest: dict, params: TrainParams) -> CLVRegressor:
    """An unfitted CLV model with the train params (the one factory of both CLV fits)."""
    return CLVRegressor(
        features=manifest["features"],
        categorical=manifest["categorical"],
        seed=params.seed,
        max_category_levels=params.max_category_levels,
        **asdict(params.clv),
    )


def next_order_estimator(manifest: dict, params: TrainParams) -> NextOrderModel:
    """An unfitted next-order model on the panel's grid with the train params (the one factory of both fits)."""
    return NextOrderModel(
        features=manifest["features"],
        categorical=manifest["categorical"],
        grid_days=tuple(manifest["next_order_days"]),
        offset_horizon_days=int(manifest["churn_horizon_days"]),
        seed=params.seed,
        max_category_levels=params.max_category_levels,
        **asdict(params.next_order),
    )


def _fit_next_order_on(model: NextOrderModel, train: pd.DataFrame, valid: pd.DataFrame) -> NextOrderModel:
    return model.fit(train, train[list(NEXT_ORDER_LABELS)], valid, valid[list(NEXT_ORDER_LABELS)])


def _fit_churn_on(model: ChurnClassifier, train: pd.DataFrame, valid: pd.DataFrame) -> ChurnClassifier:
    return model.fit(train, train["churned"].astype(bool), valid, valid["churned"].astype(bool))


def _fit_clv_on(model: CLVRegressor, train: pd.DataFrame, valid: pd.DataFrame) -> CLVRegressor:
    return model.fit(
        train, train["future_revenue"], valid, valid["future_revenue"], train["future_orders"], valid["future_orders"]
    )


def _trees(model: Any) -> str:
    if isinstance(model, ChurnClassifier | NextOrderModel):
        return f"{model.best_iteration_} trees"
    return ", ".join(f"{name} {n} trees" for name, n in model.best_iterations_.items())


def _fit_logged(
    kind: str, phase: str, fit_on: Any, estimator: Any, train: pd.DataFrame, valid: pd.DataFrame, split: TimeSplit
) -> Any:
    """``fit_on(estimator, train, valid)`` with one line before (rows and cutoffs) and one after (trees, time), and
    the preprocessor's high-cardinality warnings printed in yellow."""
    console.print(
        f"{kind} ({phase}): training on {len(train):,} rows (cutoffs {_span(split.train)}), validating on "
        f"{len(valid):,} (cutoffs {_span(split.validation)})",
        soft_wrap=True,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HighCardinalityWarning)  # printed below, once, in the stage's voice
        model = fit_on(estimator, train, valid)
    for note in model.preprocessor_.warnings_:
        console.print(f"[yellow]{kind} ({phase}): {note}[/yellow]", soft_wrap=True)
    console.print(f"{kind} ({phase}): fitted, {_trees(model)}, in {format_seconds(time.perf_counter() - start)}")
    return model


def _fit_deployed(
    panel: Path,
    columns: list[str],
    label: str,
    deployed: TimeSplit,
    fit_on: Any,
    estimator: Any,
    rows: dict,
    kind: str = "",
) -> Any:
    """The deployed model: ``estimator`` fitted by ``fit_on`` on the deployed split's rows (counted in ``rows``),
    read only once the held-out fit's rows are released."""
    train = _read_rows(panel, columns, label, deployed.train)
    valid = _read_rows(panel, columns, label, deployed.validation)
    rows |= {"deployed_train": len(train), "deployed_validation": len(valid)}
    return _fit_logged(kind, "deployed", fit_on, estimator, train, valid, deployed)


def _baseline_metrics(kind: str, test: pd.DataFrame, grid: tuple[int, ...] = ()) -> dict[str, dict[str, float]]:
    """The bar's metrics of each baseline the panel carries (``CHURN_BASELINES``/``CLV_BASELINES``) on the test
    rows; a baseline's missing values take its median (a rule has to score every customer). The next-order model's
    baseline is BG/NBD's survival curve fitted on the test rows (``models.survival.bgnbd_survival``)."""
    out: dict[str, dict[str, float]] = {}
    if kind == "next_order":
        m = survival_metrics(test[list(NEXT_ORDER_LABELS)], bgnbd_survival(test, grid), grid)
        return {"bgnbd": {"concordance": m["concordance"], "integrated_brier": m["integrated_brier"]}}
    for name, column, sign in CHURN_BASELINES if kind == "churn" else CLV_BASELINES:
        if column not in test.columns or not pd.api.types.is_numeric_dtype(test[column]):
            continue
        score = pd.to_numeric(test[column], errors="coerce").astype(float)
        if score.notna().sum() == 0:
            continue
        score = sign * score.fillna(score.median()).to_numpy()
        if kind == "churn":
            out[name] = {"roc_auc": mx.roc_auc(test["churned"].astype(bool).to_numpy(), score)}
        else:
            y = test["future_revenue"].astype(float).to_numpy()
            out[name] = {"normalized_gini": mx.normalized_gini(y, score), "spearman": mx.spearman(y, score)}
    return out


def fit_churn(panel: Path, manifest: dict, params: TrainParams) -> dict[str, Any]:
    """Held-out churn model (test metrics) and the deployed one (same recipe, split moved forward)."""
    columns = ["customer_id", "cutoff", *manifest["features"], "churned"]
    settings = params.split_settings(manifest)
    split, deployed, (train, valid, test) = _split(panel, columns, "churned", manifest["churn_horizon_days"], settings)
    rows = {"held_out_train": len(train), "held_out_validation": len(valid), "test": len(test)}
    holdout = _fit_logged("churn", "held out", _fit_churn_on, churn_estimator(manifest, params), train, valid, split)
    del train, valid
    y = test["churned"].astype(bool).to_numpy()
    p = holdout.predict_proba(test)[:, 1]
    metrics = churn_metrics(y, p)
    metrics["brier_uncalibrated"] = mx.brier(y, holdout.predict_uncalibrated(test))
    metrics["best_iteration"] = float(holdout.best_iteration_)
    baselines = _baseline_metrics("churn", test)
    n_churners = int(y.sum())
    bar_noise = {"roc_auc": auc_standard_error(metrics["roc_auc"], n_churners, len(y) - n_churners)}
    console.print(f"churn (held out): test AUC {metrics['roc_auc']:.3f} on {len(test):,} rows ({_bar_line(baselines)})")
    model = _fit_deployed(
        panel, columns, "churned", deployed, _fit_churn_on, churn_estimator(manifest, params), rows, "churn"
    )
    metrics["deployed_best_iteration"] = float(model.best_iteration_)
    parts = {"split": split, "deployed": deployed, "test": test, "metrics": metrics, "rows": rows}
    parts["baselines"] = baselines
    return {"model": model, "holdout": holdout, **parts, "y": y, "p": p, "bar_noise": bar_noise}


def fit_clv(panel: Path, manifest: dict, params: TrainParams) -> dict[str, Any]:
    """Held-out CLV model (test metrics) and the deployed one (same recipe, split moved forward)."""
    columns = ["customer_id", "cutoff", *manifest["features"], "future_revenue", "future_orders"]
    settings = params.split_settings(manifest)
    split, deployed, (train, valid, test) = _split(
        panel, columns, "future_revenue", manifest["clv_horizon_days"], settings
    )
    rows = {"held_out_train": len(train), "held_out_validation": len(valid), "test": len(test)}
    holdout = _fit_logged("clv", "held out", _fit_clv_on, clv_estimator(manifest, params), train, valid, split)
    del train, valid
    y = test["future_revenue"].astype(float).to_numpy()
    orders = test["future_orders"].astype(float).to_numpy()
    metrics = clv_metrics(y, holdout.predict(test), orders, holdout.predict_orders(test))
    baselines = _baseline_metrics("clv", test)
    console.print(
        f"clv (held out): test Gini {metrics['normalized_gini']:.3f} on {len(test):,} rows ({_bar_line(baselines)})"
    )
    model = _fit_deployed(
        panel, columns, "future_revenue", deployed, _fit_clv_on, clv_estimator(manifest, params), rows, "clv"
    )
    parts = {"split": split, "deployed": deployed, "test": test, "metrics": metrics, "rows": rows}
    parts["baselines"] = baselines
    return {"model": model, "holdout": holdout, **parts}


def next_order_metrics(model: NextOrderModel, test: pd.DataFrame) -> dict[str, float]:
    """Concordance, integrated Brier and per-horizon figures of a fitted next-order model on labelled rows."""
    return survival_metrics(test[list(NEXT_ORDER_LABELS)], model.predict_survival(test), model.grid_)


def fit_next_order(panel: Path, manifest: dict, params: TrainParams) -> dict[str, Any]:
    """Held-out next-order model (test metrics against BG/NBD) and the deployed one (split moved forward).

    Labelled cutoffs are those followed up over the whole grid (``next_order_followup_days`` = its last edge)."""
    if "next_order_days" not in manifest:
        raise DataContractError(
            "the training panel has no next-order labels (panel.features.json lacks next_order_days): it was built "
            "by an older version; rebuild it with `churn features` (dvc repro features)."
        )
    grid = tuple(int(d) for d in manifest["next_order_days"])
    columns = ["customer_id", "cutoff", *manifest["features"], *NEXT_ORDER_LABELS]
    # BG/NBD's inputs for the baseline, when they are not features already.
    columns += [c for c in ("frequency", "recency_days", "tenure_days") if c not in columns]
    settings = params.split_settings(manifest)
    split, deployed, (train, valid, test) = _split(panel, columns, FOLLOWUP, grid[-1], settings)
    rows = {"held_out_train": len(train), "held_out_validation": len(valid), "test": len(test)}
    estimator = next_order_estimator(manifest, params)
    holdout = _fit_logged("next_order", "held out", _fit_next_order_on, estimator, train, valid, split)
    del train, valid
    metrics = next_order_metrics(holdout, test)
    metrics["best_iteration"] = float(holdout.best_iteration_)
    baselines = _baseline_metrics("next_order", test, grid)
    ordered = int(test["next_order_days"].notna().sum())
    bar_noise = {"concordance": auc_standard_error(metrics["concordance"], ordered, len(test) - ordered)}
    console.print(
        f"next_order (held out): test concordance {metrics['concordance']:.3f}, integrated Brier "
        f"{metrics['integrated_brier']:.4f} on {len(test):,} rows ({_bar_line(baselines)})"
    )
    model = _fit_deployed(
        panel, columns, FOLLOWUP, deployed, _fit_next_order_on, next_order_estimator(manifest, params), rows,
        "next_order",
    )
    metrics["deployed_best_iteration"] = float(model.best_iteration_)
    parts = {"split": split, "deployed": deployed, "test": test, "metrics": metrics, "rows": rows}
    parts["baselines"] = baselines
    return {"model": model, "holdout": holdout, **parts, "bar_noise": bar_noise}


def _bar_line(baselines: dict[str, dict[str, float]]) -> str:
    if not baselines:
        return "no baseline in the panel"
    return "baselines: " + ", ".join(
        f"{name} " + " ".join(f"{m} {v:.3f}" for m, v in values.items()) for name, values in baselines.items()
    )


def held_out_metrics(kind: str, estimator: Any, test: pd.DataFrame) -> dict[str, float]:
    """The gated metrics of a fitted churn or CLV estimator on labelled test rows."""
    if kind == "churn":
        return churn_metrics(test["churned"].astype(bool).to_numpy(), estimator.predict_proba(test)[:, 1])
    if kind == "next_order":
        return next_order_metrics(estimator, test)
    y = test["future_revenue"].astype(float).to_numpy()
    return clv_metrics(
        y, estimator.predict(test), test["future_orders"].astype(float).to_numpy(), estimator.predict_orders(test)
    )


def _plots(churn: dict, clv: dict, out: Path, next_order: dict | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    bins = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(churn["p"], bins) - 1, 0, 9)
    counts = np.bincount(idx, minlength=10)
    seen = counts > 0
    mean_p = np.bincount(idx, weights=churn["p"], minlength=10)[seen] / counts[seen]
    rate = np.bincount(idx, weights=churn["y"].astype(float), minlength=10)[seen] / counts[seen]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(mean_p, rate, "o-", label="churn model")
    ax.set(xlabel="predicted churn probability", ylabel="observed churn rate", title="Reliability (test cutoff)")
    ax.legend()
    paths.append(out / "churn_reliability.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    for kind, result in (("churn", churn), ("clv", clv), *((("next_order", next_order),) if next_order else ())):
        imp = result["model"].feature_importance().sort_values("gain", ascending=False).head(20)
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.barh(imp["feature"][::-1], imp["gain"][::-1])
        ax.set(xlabel="total gain", title=f"{kind}: top 20 features")
        paths.append(out / f"{kind}_importance.png")
        fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
        plt.close(fig)
    return paths


def _log_model(kind: str, result: dict, tmp: Path) -> Any:
    """Log one model as a pyfunc (code + joblib estimator), registered under ``kind``."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    model = result["model"]
    estimator_path = tmp / f"{kind}_estimator.joblib"
    joblib.dump(model, estimator_path)
    # The held-out twin: fitted before the test cutoff, so the gate and `evaluate` can judge this version on
    # rows it never saw (the deployed model used the test cutoff for early stopping and calibration).
    holdout_path = tmp / f"{kind}_holdout_estimator.joblib"
    joblib.dump(result["holdout"], holdout_path)
    artifacts = {"estimator": str(estimator_path), "holdout_estimator": str(holdout_path)}
    if result.get("drift_reference") is not None:
        # Shipped with the model, so scoring compares against the training rows of the very model it uses.
        reference_path = tmp / f"{kind}_drift_reference.json"
        reference_path.write_text(json.dumps(result["drift_reference"], sort_keys=True), encoding="utf-8")
        artifacts["drift_reference"] = str(reference_path)
    inputs, example = input_schema(model.features_, model.preprocessor_.categorical_, result["test"])
    if kind == "churn":
        output = pd.DataFrame({"churn_probability": model.predict_proba(example)[:, 1]})
    elif kind == "next_order":
        output = next_order_frame(model, example)
    else:
        output = pd.DataFrame(
            {"predicted_clv": model.predict(example), "expected_orders": model.predict_orders(example)}
        )
    return mlflow.pyfunc.log_model(
        name=f"{kind}_model",
        python_model=str(SERVING_CODE),
        artifacts=artifacts,
        code_paths=[str(MODELS_PACKAGE)],
        model_config={"kind": kind},
        signature=ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", c) for c in output.columns])),
        input_example=example,
        registered_model_name=kind,
    )


def _drift_reference(kind: str, result: dict, panel: Path, label: str) -> dict[str, Any]:
    """Bins of the model's top features and scores on its own training rows (models.drift), for the PSI check at
    scoring time. At most DRIFT_REFERENCE_ROWS rows, every k-th row of each training cutoff (rows are sorted by
    customer, so the sample spreads over all customers), read one cutoff at a time to bound memory."""
    model = result["model"]
    cutoffs = [pd.Timestamp(c).to_datetime64() for c in result["deployed"].train]
    columns = ["cutoff", label, *model.features_]
    n_rows = pq.read_table(panel, columns=["cutoff"], filters=[("cutoff", "in", cutoffs)]).num_rows
    step_rows = max(1, -(-n_rows // DRIFT_REFERENCE_ROWS))
    parts = []
    for c in cutoffs:
        frame = pq.read_table(panel, columns=columns, filters=[("cutoff", "==", c)]).to_pandas()
        parts.append(frame[frame[label].notna()].iloc[::step_rows])
    sample = pd.concat(parts, ignore_index=True)
    if kind == "churn":
        scores = {"churn_probability": model.predict_proba(sample)[:, 1]}
        importance = model.feature_importance()
    elif kind == "next_order":
        frame = next_order_frame(model, sample)
        # The probabilities the scores carry (a scored table has only those to compare).
        scores = {c: frame[c].to_numpy() for c in (f"order_probability_{d}d" for d in ORDER_PROBABILITY_DAYS)}
        importance = model.feature_importance()
    else:
        scores = {"predicted_clv": model.predict(sample), "expected_orders": model.predict_orders(sample)}
        importance = model.feature_importance("revenue")
    reference = reference_for(
        model.preprocessor_.transform(sample),
        model.features_,
        model.preprocessor_.categorical_,
        dict(zip(importance["feature"], importance["gain"], strict=True)),
        scores,
    )
    return {"kind": kind, "cutoffs": [str(pd.Timestamp(c).date()) for c in cutoffs], **reference}


def champion_decision(
    kind: str,
    champion: Any,
    champion_version: str | None,
    challenger: dict[str, float],
    test: pd.DataFrame,
    gate: GateParams,
    *,
    baselines: dict[str, dict[str, float]] | None = None,
    target: dict[str, Any] | None = None,
    champion_target: dict[str, Any] | None = None,
    bar_noise: dict[str, float] | None = None,
) -> Decision:
    """The gate's verdict between the challenger's held-out test metrics and the champion's held-out estimator
    (``None``: no champion yet) scored on the same test rows.

    No champion: the challenger must not lose to the best of ``baselines`` (name -> metrics on the test rows) by
    more than the gate's tolerance, or one standard error of the metric on the test rows (``bar_noise``) where
    that is larger (``models.gate.clears_baseline_bar``); ``None`` skips the bar. A champion
    trained for another target (``target`` vs ``champion_target``, e.g. ``label_horizon_days``) or needing
    features the current table lacks cannot be compared: it is kept, and the reason says why and how to switch
    by hand.
    """
    gated = gated_metrics(kind, gate)
    if champion is None:
        if baselines is None:
            return decide(challenger, None, gated)
        tolerances = {metric: getattr(gate, key) for metric, key in BAR_TOLERANCES[kind].items()}
        return clears_baseline_bar(challenger, baselines, tolerances, bar_noise)
    refused = same_target(target or {}, champion_target or {}, champion_version, kind)
    if refused is not None:
        return refused
    missing = sorted(set(champion.features_) - set(test.columns))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return Decision(
            False,
            (
                f"champion v{champion_version} uses {len(missing)} feature(s) the current feature table lacks "
                f"({shown}), so the two cannot be compared on the same rows and features; the champion stays. "
                f"If the feature set changed on purpose, promote by hand: `churn promote {kind} VERSION`",
            ),
        )
    decision = decide(challenger, held_out_metrics(kind, champion, test), gated)
    return Decision(decision.promote, (f"against champion v{champion_version}", *decision.reasons))


def _champion_version(client: Any, kind: str) -> Any | None:
    """The registry's ``champion`` model version of ``kind``, None when the model or the alias does not exist
    (any other registry error propagates: it must not read as "no champion", which would promote blindly)."""
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(kind)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = (registered.aliases or {}).get("champion")
    return None if version is None else client.get_model_version(kind, str(version))


def _target_of(client: Any, kind: str, model_version: Any) -> dict[str, Any]:
    """What a registered version predicts: its ``label_horizon_days`` tag, else its run's logged
    ``labels.<kind>_horizon_days`` param (versions registered before the tag), else nothing."""
    from mlflow.exceptions import MlflowException

    horizon = (model_version.tags or {}).get("label_horizon_days")
    if horizon is None and model_version.run_id:
        try:
            horizon = client.get_run(model_version.run_id).data.params.get(f"labels.{kind}_horizon_days")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    return {} if horizon is None else {"label_horizon_days": int(horizon)}


def _load_champion(client: Any, kind: str) -> tuple[Any, str | None, str | None, dict[str, Any]]:
    """The champion's held-out estimator (its deployed one for versions logged without a twin), its version,
    why it cannot be loaded (None when it can: only missing/unreadable files, ``tracking.unloadable``, are caught),
    and its target (:func:`_target_of`). Loading unpickles from this tracking store: our own."""
    import mlflow
    from mlflow.exceptions import MlflowException

    champion = _champion_version(client, kind)
    if champion is None:
        return None, None, None, {}
    version = str(champion.version)
    target = _target_of(client, kind, champion)
    try:
        served = mlflow.pyfunc.load_model(f"models:/{kind}/{version}").unwrap_python_model()
    except (MlflowException, OSError, EOFError, pickle.UnpicklingError) as exc:
        if not unloadable(exc):
            raise
        return None, version, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}", target
    return getattr(served, "holdout_estimator", None) or served.estimator, version, None, target


def promote_mode(params: TrainParams) -> tuple[bool, str]:
    """``(manual, why)``: ``train.promote: manual``, or ``auto`` inside a DVC experiment (``DVC_EXP_NAME`` /
    ``DVC_EXP_BASELINE_REV`` set by `dvc exp run`), never moves the ``champion`` alias."""
    if params.promote == "manual":
        return True, "train.promote is manual"
    experiment = dvc_experiment()
    if experiment:
        name = experiment.get("name") or f"on {experiment.get('baseline_rev', '')[:7]}"
        return True, f"this is DVC experiment {name} (train.promote: auto acts as manual in `dvc exp run`)"
    return False, "train.promote is auto"


def _gate(
    kind: str,
    version: str,
    test: pd.DataFrame,
    challenger: dict[str, float],
    gate: GateParams,
    *,
    baselines: dict[str, dict[str, float]] | None = None,
    target: dict[str, Any] | None = None,
    manual: tuple[bool, str] = (False, ""),
    bar_noise: dict[str, float] | None = None,
) -> tuple[Decision, str | None]:
    """Ask the gate about registered ``version`` and move the aliases: ``challenger`` always, ``champion`` when
    promoted and the promotion is not ``manual``. Returns the decision and the champion's version after it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    champion, champion_version, broken, champion_target = _load_champion(client, kind)
    if broken is not None:
        decision = Decision(
            False,
            (
                f"champion v{champion_version} cannot be loaded ({broken}): its files are missing or unreadable, so "
                f"the challenger cannot be compared with it and is NOT promoted; the champion alias stays on "
                f"v{champion_version} (`churn score` will fail on it). Restore its artefacts, or promote this "
                f"version by hand: `churn promote {kind} {version}`",
            ),
        )
        console.print(f"[bold red]{kind}: {decision.reasons[0]}[/bold red]", soft_wrap=True)
    else:
        decision = champion_decision(
            kind,
            champion,
            champion_version,
            challenger,
            test,
            gate,
            baselines=baselines,
            target=target,
            champion_target=champion_target,
            bar_noise=bar_noise,
        )
        if champion is None and not decision.promote:
            decision = Decision(
                False,
                (
                    *decision.reasons,
                    f"registered as challenger only, no champion: check the training data (enough churners and "
                    f"history?) or promote by hand: `churn promote {kind} {version}`",
                ),
            )
    # The refusals that name no version (they are decided before registration): this one.
    decision = Decision(
        decision.promote,
        tuple(r.replace(f"churn promote {kind} VERSION", f"churn promote {kind} {version}") for r in decision.reasons),
    )
    is_manual, why = manual
    if decision.promote and is_manual:
        current = f"v{champion_version}" if champion_version else "none"
        decision = Decision(
            False,
            (
                *decision.reasons,
                f"the gate would promote it, but {why}: registered as challenger only, champion stays {current}; "
                f"to promote: `churn promote {kind} {version}`",
            ),
        )
    client.set_registered_model_alias(kind, "challenger", version)
    if decision.promote:
        client.set_registered_model_alias(kind, "champion", version)
    return decision, version if decision.promote else champion_version


def promote(kind: str, version: str) -> None:
    """Point ``models:/<kind>@champion`` at ``version`` by hand (the gate's decision overridden)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if kind not in KINDS:
        raise ParamsError(f"model must be one of {', '.join(KINDS)}, got {kind!r}.")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    try:
        client.get_model_version(kind, version)
        client.set_registered_model_alias(kind, "champion", version)
    except MlflowException as exc:
        raise DataContractError(
            f"cannot promote {kind} v{version}: {str(exc).splitlines()[0][:200]}. `mlflow ui` lists the versions."
        ) from exc
    console.print(f"{kind} v{version} is now champion (set by hand)")


def run(panel_path: Path, metrics_path: Path, params_path: Path, registered_path: Path | None = None) -> None:
    """Train, log, register and gate; write the test metrics to ``metrics_path``.

    ``registered_path`` (optional): a record of the registered versions and the tracking store, written last.
    It is the train stage's DVC output that stays out of git: the MLflow store is local to a machine, so on a
    fresh clone the record is missing and ``dvc repro`` retrains instead of pointing later stages at models
    that are not there.
    """
    import mlflow

    params = load_section(TrainParams, "train", params_path)
    manifest = read_manifest(panel_path)
    n_validation, purge = params.split_settings(manifest)
    source = "params.yaml" if "auto" not in (params.n_validation, params.purge) else "auto: the features schedule"
    console.print(f"split: {n_validation} validation cutoff(s), {'purged' if purge else 'not purged'} ({source})")
    with step("train: churn model (held out, then deployed)") as s:
        churn = fit_churn(panel_path, manifest, params)
        m, r = churn["metrics"], churn["rows"]
        s.rows = r["deployed_train"]
        s.detail = (
            f"{_describe(churn['split'], churn['deployed'])}; trained on {r['held_out_train']:,} then "
            f"{r['deployed_train']:,} rows; test AUC {m['roc_auc']:.3f}, Brier {m['brier']:.4f} ({r['test']:,} rows)"
        )
    with step("train: CLV model (held out, then deployed)") as s:
        clv = fit_clv(panel_path, manifest, params)
        m, r = clv["metrics"], clv["rows"]
        s.rows = r["deployed_train"]
        s.detail = (
            f"{_describe(clv['split'], clv['deployed'])}; trained on {r['held_out_train']:,} then "
            f"{r['deployed_train']:,} rows; test Gini {m['normalized_gini']:.3f}, MAE {m['mae']:.2f}"
        )
    with step("train: next-order model (held out, then deployed)") as s:
        next_order = fit_next_order(panel_path, manifest, params)
        m, r = next_order["metrics"], next_order["rows"]
        s.rows = r["deployed_train"]
        s.detail = (
            f"{_describe(next_order['split'], next_order['deployed'])}; trained on {r['held_out_train']:,} then "
            f"{r['deployed_train']:,} rows; test concordance {m['concordance']:.3f}, integrated Brier "
            f"{m['integrated_brier']:.4f}"
        )
    results = {"churn": churn, "clv": clv, "next_order": next_order}

    configure_mlflow(params.experiment)
    everything = read_params(params_path)
    manual = promote_mode(params)
    if manual[0]:
        console.print(f"[yellow]promotion is manual: {manual[1]}; the champion aliases will not move[/yellow]")
    commit, changed = git_state()
    experiment = dvc_experiment()
    summary: dict[str, Any] = {}
    with step("train: MLflow run and registry") as s, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with mlflow.start_run() as run_info:
            # The effective training params (defaults filled in), and the feature/label sections as written.
            logged = {k: everything.get(k, {}) for k in ("features", "labels")} | {"train": asdict(params)}
            mlflow.log_params(flatten(logged))
            mlflow.set_tags(
                {
                    # MLflow's own tag, set from `git rev-parse HEAD` of the code (no -dirty suffix: a SHA);
                    # git_commit carries -dirty when tracked source files changed (pipelines.tracking).
                    "mlflow.source.git.commit": commit,
                    "git_commit": commit + ("-dirty" if changed and commit != "unknown" else ""),
                    "git_dirty_files": ", ".join(changed)[:4900],
                    "promote_mode": "manual" if manual[0] else "auto",
                    **{f"dvc_exp_{k}": v for k, v in experiment.items()},
                    "data_fingerprint": file_fingerprint(panel_path),
                    "churn_test_cutoff": str(churn["split"].test_cutoff.date()),
                    "clv_test_cutoff": str(clv["split"].test_cutoff.date()),
                    "churn_deployed_validation": _span(churn["deployed"].validation),
                    "clv_deployed_validation": _span(clv["deployed"].validation),
                    "next_order_test_cutoff": str(next_order["split"].test_cutoff.date()),
                    "next_order_deployed_validation": _span(next_order["deployed"].validation),
                }
            )
            for kind, result in results.items():
                mlflow.log_metrics({f"{kind}.{k}": v for k, v in result["metrics"].items()})
                result["model"].feature_importance().to_csv(tmp / f"{kind}_importance.csv", index=False)
                mlflow.log_artifact(str(tmp / f"{kind}_importance.csv"), "importance")
            mlflow.log_dict(churn["model"].calibration_report_, "calibration_report.json")
            for path in _plots(churn, clv, tmp, next_order):
                mlflow.log_artifact(str(path), "plots")
            for kind, result in results.items():
                label = {"churn": "churned", "clv": "future_revenue", "next_order": FOLLOWUP}[kind]
                result["drift_reference"] = _drift_reference(kind, result, panel_path, label)
                info = _log_model(kind, result, tmp)
                version = str(info.registered_model_version)
                horizon = manifest["next_order_days"][-1] if kind == "next_order" else manifest[f"{kind}_horizon_days"]
                target = {"label_horizon_days": int(horizon)}
                client = mlflow.MlflowClient()
                for key, value in target.items():
                    client.set_model_version_tag(kind, version, key, str(value))
                if experiment:
                    client.set_model_version_tag(kind, version, "dvc_exp_name", experiment.get("name", ""))
                decision, champion = _gate(
                    kind,
                    version,
                    result["test"],
                    result["metrics"],
                    params.gate,
                    baselines=result.get("baselines", {}),
                    target=target,
                    manual=manual,
                    bar_noise=result.get("bar_noise"),
                )
                mlflow.set_tag(f"{kind}.gate", decision.summary()[:4900])
                mlflow.log_metric(f"{kind}.promoted", float(decision.promote))
                colour = "green" if decision.promote else "yellow"
                console.print(f"[{colour}]{kind} v{version}: {decision.summary()}[/{colour}]", soft_wrap=True)
                summary[kind] = {
                    "version": version,
                    "promoted": decision.promote,
                    "gate": list(decision.reasons),
                    "champion": champion,
                    "promote_mode": "manual" if manual[0] else "auto",
                    "label_horizon_days": target["label_horizon_days"],
                    "baselines": {
                        name: {m: round(float(v), 6) for m, v in values.items()}
                        for name, values in result.get("baselines", {}).items()
                    },
                    "test_cutoff": str(result["split"].test_cutoff.date()),
                    "deployed_validation": _span(result["deployed"].validation),
                    **{k: round(float(v), 6) for k, v in result["metrics"].items()},
                }
            summary["run_id"] = run_info.info.run_id
        s.detail = f"run {summary['run_id']}, " + ", ".join(f"{k} v{summary[k]['version']}" for k in KINDS)
    write_json(summary, metrics_path)
    if registered_path is not None:
        write_json(
            {
                "tracking_uri": mlflow.get_tracking_uri(),
                "run_id": summary["run_id"],
                "models": {kind: f"models:/{kind}/{summary[kind]['version']}" for kind in KINDS},
            },
            registered_path,
        )
