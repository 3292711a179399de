"""Stage `train`: LightGBM churn and CLV models on the training panel, tracked in MLflow, gated in the registry.

Reads params section ``train`` (and logs ``features`` and ``labels`` too). Splits by time (train < validation
< test cutoffs, purged so no label window crosses into a later split), fits both models, scores them on their
test cutoff, logs one MLflow run (flattened params, data fingerprint, git commit, metrics, feature importance,
plots, calibration report), registers the models as ``churn`` and ``clv`` with alias ``challenger``, and moves
``champion`` to a new version only when the gate says it is at least as good as the current champion on the
same test rows.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from models import metrics as mx
from models.churn import ChurnClassifier
from models.clv import CLVRegressor
from models.drift import reference_for
from models.gate import Decision, GatedMetric, decide
from models.split import TimeSplit, time_split
from pipelines.console import console, step
from pipelines.errors import DataContractError
from pipelines.features import read_manifest
from pipelines.io import write_json
from pipelines.params import load_section, read_params
from pipelines.tracking import configure_mlflow, file_fingerprint, flatten, git_commit

SERVING_CODE = Path(__file__).resolve().parents[1] / "models" / "serving.py"
MODELS_PACKAGE = Path(__file__).resolve().parents[1] / "models"
# Training rows summarised in each model's drift reference (a stride sample beyond this).
DRIFT_REFERENCE_ROWS = 200_000


@dataclass(frozen=True)
class BoosterParams:
    """LightGBM hyper-parameters shared by both models (``n_estimators`` is a cap: early stopping decides)."""

    num_leaves: int = 31
    learning_rate: float = 0.1
    n_estimators: int = 300
    min_child_samples: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_bin: int = 63
    early_stopping_rounds: int = 50


@dataclass(frozen=True)
class ChurnParams(BoosterParams):
    """params.yaml ``train.churn`` (defaults = the shipped params.yaml)."""

    imbalance: str = "none"
    calibration: str = "auto"
    offset: str | None = "bgnbd_churn_probability"
    early_stopping_metric: str = "logloss"


@dataclass(frozen=True)
class ClvParams(BoosterParams):
    """params.yaml ``train.clv`` (defaults = the shipped params.yaml)."""

    learning_rate: float = 0.075
    n_estimators: int = 400
    objective: str = "tweedie"
    tweedie_variance_power: float = 1.3
    offset: str | None = "bgnbd_clv"
    early_stopping_metric: str = "deviance"


@dataclass(frozen=True)
class GateParams:
    """How much worse than the champion a challenger may be on the same test rows and still be promoted."""

    churn_roc_auc_tolerance: float = 0.005
    churn_brier_tolerance: float = 0.002
    clv_gini_tolerance: float = 0.01
    clv_spearman_tolerance: float = 0.01


@dataclass(frozen=True)
class TrainParams:
    """params.yaml ``train``."""

    n_validation: int = 2
    purge: bool = True
    seed: int = 42
    experiment: str = "churn-pipeline"
    churn: ChurnParams = field(default_factory=ChurnParams)
    clv: ClvParams = field(default_factory=ClvParams)
    gate: GateParams = field(default_factory=GateParams)


def gated_metrics(kind: str, gate: GateParams) -> tuple[GatedMetric, ...]:
    if kind == "churn":
        return (
            GatedMetric("roc_auc", True, gate.churn_roc_auc_tolerance),
            GatedMetric("brier", False, gate.churn_brier_tolerance),
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


def _split(panel: Path, columns: list[str], label: str, horizon: int, params: TrainParams) -> tuple[TimeSplit, tuple]:
    """Time split of the cutoffs that carry ``label``, and each part's labelled rows read from ``panel``.

    Each part is read with a row filter on its cutoffs, so the whole panel is never in memory at once.
    """
    labels = pq.read_table(panel, columns=["cutoff", label]).to_pandas()
    labelled = labels.loc[labels[label].notna(), "cutoff"].unique()
    del labels
    try:
        split = time_split(labelled, horizon, params.n_validation, params.purge)
    except ValueError as exc:
        raise DataContractError(
            f"cannot split the panel's {label} labels by time: {exc} More cutoffs "
            f"(features.cutoffs.count), a shorter horizon, or train.purge: false would make room."
        ) from exc
    parts = []
    for cutoffs in (split.train, split.validation, split.test):
        wanted = [pd.Timestamp(c).to_datetime64() for c in cutoffs]
        frame = pq.read_table(panel, columns=columns, filters=[("cutoff", "in", wanted)]).to_pandas()
        parts.append(frame[frame[label].notna()].reset_index(drop=True))
    return split, tuple(parts)


def _describe(split: TimeSplit) -> str:
    def span(cs: tuple) -> str:
        return f"{pd.Timestamp(cs[0]).date()}..{pd.Timestamp(cs[-1]).date()}" if cs else "-"

    return f"train {span(split.train)}, validation {span(split.validation)}, test {split.test_cutoff.date()}"


def fit_churn(panel: Path, manifest: dict, params: TrainParams) -> dict[str, Any]:
    columns = ["customer_id", "cutoff", *manifest["features"], "churned"]
    split, (train, valid, test) = _split(panel, columns, "churned", manifest["churn_horizon_days"], params)
    model = ChurnClassifier(
        features=manifest["features"], categorical=manifest["categorical"], seed=params.seed, **asdict(params.churn)
    )
    model.fit(train, train["churned"].astype(bool), valid, valid["churned"].astype(bool))
    del train, valid
    y = test["churned"].astype(bool).to_numpy()
    p = model.predict_proba(test)[:, 1]
    metrics = churn_metrics(y, p)
    metrics["brier_uncalibrated"] = mx.brier(y, model.predict_uncalibrated(test))
    metrics["best_iteration"] = float(model.best_iteration_)
    return {"model": model, "split": split, "test": test, "metrics": metrics, "y": y, "p": p}


def fit_clv(panel: Path, manifest: dict, params: TrainParams) -> dict[str, Any]:
    columns = ["customer_id", "cutoff", *manifest["features"], "future_revenue", "future_orders"]
    split, (train, valid, test) = _split(panel, columns, "future_revenue", manifest["clv_horizon_days"], params)
    model = CLVRegressor(
        features=manifest["features"], categorical=manifest["categorical"], seed=params.seed, **asdict(params.clv)
    )
    model.fit(
        train, train["future_revenue"], valid, valid["future_revenue"], train["future_orders"], valid["future_orders"]
    )
    del train, valid
    y = test["future_revenue"].astype(float).to_numpy()
    orders = test["future_orders"].astype(float).to_numpy()
    metrics = clv_metrics(y, model.predict(test), orders, model.predict_orders(test))
    return {"model": model, "split": split, "test": test, "metrics": metrics}


def _gate_metrics(kind: str, predictions: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    if kind == "churn":
        return churn_metrics(test["churned"].astype(bool).to_numpy(), predictions["churn_probability"].to_numpy())
    y = test["future_revenue"].astype(float).to_numpy()
    return clv_metrics(
        y,
        predictions["predicted_clv"].to_numpy(),
        test["future_orders"].astype(float).to_numpy(),
        predictions["expected_orders"].to_numpy(),
    )


def _plots(churn: dict, clv: dict, out: Path) -> list[Path]:
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
    for kind, result in (("churn", churn), ("clv", clv)):
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
    artifacts = {"estimator": str(estimator_path)}
    if result.get("drift_reference") is not None:
        # Shipped with the model, so scoring compares against the training rows of the very model it uses.
        reference_path = tmp / f"{kind}_drift_reference.json"
        reference_path.write_text(json.dumps(result["drift_reference"], sort_keys=True), encoding="utf-8")
        artifacts["drift_reference"] = str(reference_path)
    # An explicit schema: count features are `long`, other numbers `double` (NaN allowed), text `string`
    # (never pandas `category`, which MLflow signatures cannot hold). Inferring it from a few rows would mark
    # columns that happen to have no NaN there as unable to hold one, and int32 columns as int32.
    example = result["test"][list(model.features_)].head(5).copy()
    specs = []
    for c in example.columns:
        if c in model.preprocessor_.categorical_:
            example[c] = example[c].astype(object)
            specs.append(ColSpec("string", c))
        elif pd.api.types.is_integer_dtype(example[c]):
            example[c] = example[c].astype("int64")
            specs.append(ColSpec("long", c))
        else:
            example[c] = example[c].astype("float64")
            specs.append(ColSpec("double", c))
    output = (
        pd.DataFrame({"churn_probability": model.predict_proba(example)[:, 1]})
        if kind == "churn"
        else pd.DataFrame({"predicted_clv": model.predict(example), "expected_orders": model.predict_orders(example)})
    )
    return mlflow.pyfunc.log_model(
        name=f"{kind}_model",
        python_model=str(SERVING_CODE),
        artifacts=artifacts,
        code_paths=[str(MODELS_PACKAGE)],
        model_config={"kind": kind},
        signature=ModelSignature(inputs=Schema(specs), outputs=Schema([ColSpec("double", c) for c in output.columns])),
        input_example=example,
        registered_model_name=kind,
    )


def _drift_reference(kind: str, result: dict, panel: Path, label: str) -> dict[str, Any]:
    """Bins of the model's top features and scores on its own training rows (models.drift), for the PSI check at
    scoring time. At most DRIFT_REFERENCE_ROWS rows, every k-th row of each training cutoff (rows are sorted by
    customer, so the sample spreads over all customers), read one cutoff at a time to bound memory."""
    model = result["model"]
    cutoffs = [pd.Timestamp(c).to_datetime64() for c in result["split"].train]
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


def _champion_decision(kind: str, version: str, test: pd.DataFrame, challenger: dict, gate: GateParams) -> Decision:
    """Score the current champion on the challenger's test rows and ask the gate."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        champion = client.get_model_version_by_alias(kind, "champion")
    except MlflowException:
        champion = None
    gated = gated_metrics(kind, gate)
    if champion is None:
        decision = decide(challenger, None, gated)
    else:
        try:
            predictions = mlflow.pyfunc.load_model(f"models:/{kind}@champion").predict(test)
            champ_metrics = _gate_metrics(kind, predictions, test)
            decision = decide(challenger, champ_metrics, gated)
            decision = Decision(decision.promote, (f"champion v{champion.version}", *decision.reasons))
        except Exception as exc:  # the champion cannot score today's feature table
            decision = Decision(
                True,
                (
                    f"champion v{champion.version} cannot score the current feature table ({str(exc)[:300]}); "
                    f"the challenger starts the new feature schema",
                ),
            )
    client.set_registered_model_alias(kind, "challenger", version)
    if decision.promote:
        client.set_registered_model_alias(kind, "champion", version)
    return decision


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
    with step("train: churn model") as s:
        churn = fit_churn(panel_path, manifest, params)
        m = churn["metrics"]
        s.rows = len(churn["test"])
        s.detail = f"{_describe(churn['split'])}; test AUC {m['roc_auc']:.3f}, Brier {m['brier']:.4f}"
    with step("train: CLV model") as s:
        clv = fit_clv(panel_path, manifest, params)
        m = clv["metrics"]
        s.rows = len(clv["test"])
        s.detail = f"{_describe(clv['split'])}; test Gini {m['normalized_gini']:.3f}, MAE {m['mae']:.2f}"

    configure_mlflow(params.experiment)
    everything = read_params(params_path)
    summary: dict[str, Any] = {}
    with step("train: MLflow run and registry") as s, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with mlflow.start_run() as run_info:
            # The effective training params (defaults filled in), and the feature/label sections as written.
            logged = {k: everything.get(k, {}) for k in ("features", "labels")} | {"train": asdict(params)}
            mlflow.log_params(flatten(logged))
            mlflow.set_tags(
                {
                    "git_commit": git_commit(),
                    "data_fingerprint": file_fingerprint(panel_path),
                    "churn_test_cutoff": str(churn["split"].test_cutoff.date()),
                    "clv_test_cutoff": str(clv["split"].test_cutoff.date()),
                }
            )
            for kind, result in (("churn", churn), ("clv", clv)):
                mlflow.log_metrics({f"{kind}.{k}": v for k, v in result["metrics"].items()})
                result["model"].feature_importance().to_csv(tmp / f"{kind}_importance.csv", index=False)
                mlflow.log_artifact(str(tmp / f"{kind}_importance.csv"), "importance")
            mlflow.log_dict(churn["model"].calibration_report_, "calibration_report.json")
            for path in _plots(churn, clv, tmp):
                mlflow.log_artifact(str(path), "plots")
            for kind, result in (("churn", churn), ("clv", clv)):
                label = "churned" if kind == "churn" else "future_revenue"
                result["drift_reference"] = _drift_reference(kind, result, panel_path, label)
                info = _log_model(kind, result, tmp)
                version = str(info.registered_model_version)
                decision = _champion_decision(kind, version, result["test"], result["metrics"], params.gate)
                mlflow.set_tag(f"{kind}.gate", decision.summary()[:4900])
                mlflow.log_metric(f"{kind}.promoted", float(decision.promote))
                console.print(f"{kind} v{version}: {decision.summary()}", soft_wrap=True)
                summary[kind] = {
                    "version": version,
                    "promoted": decision.promote,
                    "gate": list(decision.reasons),
                    "test_cutoff": str(result["split"].test_cutoff.date()),
                    **{k: round(float(v), 6) for k, v in result["metrics"].items()},
                }
            summary["run_id"] = run_info.info.run_id
        s.detail = f"run {summary['run_id']}, churn v{summary['churn']['version']}, clv v{summary['clv']['version']}"
    write_json(summary, metrics_path)
    if registered_path is not None:
        write_json(
            {
                "tracking_uri": mlflow.get_tracking_uri(),
                "run_id": summary["run_id"],
                "models": {kind: f"models:/{kind}/{summary[kind]['version']}" for kind in ("churn", "clv")},
            },
            registered_path,
        )
