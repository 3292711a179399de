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
from models.split import TimeSplit, deployment_split, time_split
from pipelines.console import console, step
from pipelines.errors import DataContractError, ParamsError
from pipelines.features import read_manifest
from pipelines.io import write_json
from pipelines.params import load_section, read_params
from pipelines.tracking import configure_mlflow, file_fingerprint, flatten, git_commit, tracking_uri

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
    early_stopping_metric: str = "auc"


@dataclass(frozen=True)
class ClvParams(BoosterParams):
    """params.yaml ``train.clv`` (defaults = the shipped params.yaml)."""

    learning_rate: float = 0.075
    n_estimators: int = 400
    objective: str = "tweedie"
    tweedie_variance_power: float = 1.5
    offset: str | None = "bgnbd_clv"
    early_stopping_metric: str = "gini"


@dataclass(frozen=True)
class GateParams:
    """How much worse than the champion a challenger may be on the same test rows and still be promoted."""

    churn_roc_auc_tolerance: float = 0.005
    churn_brier_tolerance: float = 0.002
    clv_gini_tolerance: float = 0.01
    clv_spearman_tolerance: float = 0.01


@dataclass(frozen=True)
class TrainParams:
    """params.yaml ``train``. ``n_validation`` and ``purge`` take ``auto``: the validation count and purge that
    the features stage's cutoff schedule planned (``panel.features.json`` ``schedule``), else 2 and true."""

    n_validation: int | str = "auto"
    purge: bool | str = "auto"
    seed: int = 42
    experiment: str = "churn-pipeline"
    churn: ChurnParams = field(default_factory=ChurnParams)
    clv: ClvParams = field(default_factory=ClvParams)
    gate: GateParams = field(default_factory=GateParams)

    def __post_init__(self) -> None:
        if self.n_validation != "auto" and (
            isinstance(self.n_validation, bool) or not isinstance(self.n_validation, int) or self.n_validation < 1
        ):
            raise ValueError(f"n_validation must be a whole number >= 1 or auto, got {self.n_validation!r}")
        if self.purge != "auto" and not isinstance(self.purge, bool):
            raise ValueError(f"purge must be true, false or auto, got {self.purge!r}")

    def split_settings(self, manifest: dict) -> tuple[int, bool]:
        """``(n_validation, purge)`` with ``auto`` resolved from the panel manifest's schedule."""
        plan = manifest.get("schedule") or {}
        n_validation = self.n_validation if self.n_validation != "auto" else plan.get("n_validation") or 2
        purge = self.purge if self.purge != "auto" else plan.get("purge", True) is not False
        return int(n_validation), bool(purge)


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


def _split(
    panel: Path, columns: list[str], label: str, horizon: int, settings: tuple[int, bool]
) -> tuple[TimeSplit, TimeSplit, tuple]:
    """The held-out time split of the cutoffs that carry ``label``, the deployed model's split, and the held-out
    split's (train, validation, test) labelled rows read from ``panel`` (row filters on the cutoffs, so the
    whole panel is never in memory at once)."""
    n_validation, purge = settings
    labels = pq.read_table(panel, columns=["cutoff", label]).to_pandas()
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
    return split, deployed, parts


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
        features=manifest["features"], categorical=manifest["categorical"], seed=params.seed, **asdict(params.churn)
    )


def clv_estimator(manifest: dict, params: TrainParams) -> CLVRegressor:
    """An unfitted CLV model with the train params (the one factory of both CLV fits)."""
    return CLVRegressor(
        features=manifest["features"], categorical=manifest["categorical"], seed=params.seed, **asdict(params.clv)
    )


def _fit_churn_on(model: ChurnClassifier, train: pd.DataFrame, valid: pd.DataFrame) -> ChurnClassifier:
    return model.fit(train, train["churned"].astype(bool), valid, valid["churned"].astype(bool))


def _fit_clv_on(model: CLVRegressor, train: pd.DataFrame, valid: pd.DataFrame) -> CLVRegressor:
    return model.fit(
        train, train["future_revenue"], valid, valid["future_revenue"], train["future_orders"], valid["future_orders"]
    )


def _fit_deployed(
    panel: Path, columns: list[str], label: str, deployed: TimeSplit, fit_on: Any, estimator: Any, rows: dict
) -> Any:
    """The deployed model: ``estimator`` fitted by ``fit_on`` on the deployed split's rows (counted in ``rows``),
    read only once the held-out fit's rows are released."""
    train = _read_rows(panel, columns, label, deployed.train)
    valid = _read_rows(panel, columns, label, deployed.validation)
    rows |= {"deployed_train": len(train), "deployed_validation": len(valid)}
    return fit_on(estimator, train, valid)


def fit_churn(panel: Path, manifest: dict, params: TrainParams) -> dict[str, Any]:
    """Held-out churn model (test metrics) and the deployed one (same recipe, split moved forward)."""
    columns = ["customer_id", "cutoff", *manifest["features"], "churned"]
    settings = params.split_settings(manifest)
    split, deployed, (train, valid, test) = _split(panel, columns, "churned", manifest["churn_horizon_days"], settings)
    rows = {"held_out_train": len(train), "held_out_validation": len(valid), "test": len(test)}
    holdout = _fit_churn_on(churn_estimator(manifest, params), train, valid)
    del train, valid
    y = test["churned"].astype(bool).to_numpy()
    p = holdout.predict_proba(test)[:, 1]
    metrics = churn_metrics(y, p)
    metrics["brier_uncalibrated"] = mx.brier(y, holdout.predict_uncalibrated(test))
    metrics["best_iteration"] = float(holdout.best_iteration_)
    model = _fit_deployed(panel, columns, "churned", deployed, _fit_churn_on, churn_estimator(manifest, params), rows)
    metrics["deployed_best_iteration"] = float(model.best_iteration_)
    parts = {"split": split, "deployed": deployed, "test": test, "metrics": metrics, "rows": rows}
    return {"model": model, "holdout": holdout, **parts, "y": y, "p": p}


def fit_clv(panel: Path, manifest: dict, params: TrainParams) -> dict[str, Any]:
    """Held-out CLV model (test metrics) and the deployed one (same recipe, split moved forward)."""
    columns = ["customer_id", "cutoff", *manifest["features"], "future_revenue", "future_orders"]
    settings = params.split_settings(manifest)
    split, deployed, (train, valid, test) = _split(
        panel, columns, "future_revenue", manifest["clv_horizon_days"], settings
    )
    rows = {"held_out_train": len(train), "held_out_validation": len(valid), "test": len(test)}
    holdout = _fit_clv_on(clv_estimator(manifest, params), train, valid)
    del train, valid
    y = test["future_revenue"].astype(float).to_numpy()
    orders = test["future_orders"].astype(float).to_numpy()
    metrics = clv_metrics(y, holdout.predict(test), orders, holdout.predict_orders(test))
    model = _fit_deployed(
        panel, columns, "future_revenue", deployed, _fit_clv_on, clv_estimator(manifest, params), rows
    )
    parts = {"split": split, "deployed": deployed, "test": test, "metrics": metrics, "rows": rows}
    return {"model": model, "holdout": holdout, **parts}


def held_out_metrics(kind: str, estimator: Any, test: pd.DataFrame) -> dict[str, float]:
    """The gated metrics of a fitted churn or CLV estimator on labelled test rows."""
    if kind == "churn":
        return churn_metrics(test["churned"].astype(bool).to_numpy(), estimator.predict_proba(test)[:, 1])
    y = test["future_revenue"].astype(float).to_numpy()
    return clv_metrics(
        y, estimator.predict(test), test["future_orders"].astype(float).to_numpy(), estimator.predict_orders(test)
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
) -> Decision:
    """The gate's verdict between the challenger's held-out test metrics and the champion's held-out estimator
    (``None``: no champion yet) scored on the same test rows. A champion that needs features the current table
    lacks cannot be compared on them: it is kept, and the reason says which features and how to switch by hand.
    """
    gated = gated_metrics(kind, gate)
    if champion is None:
        return decide(challenger, None, gated)
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


def _load_champion(client: Any, kind: str) -> tuple[Any, str | None, str | None]:
    """The champion's held-out estimator (its deployed one for versions logged without a twin), its version,
    and why it cannot be loaded (None when it can). Loading unpickles from this tracking store: our own."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(kind, "champion").version
    except MlflowException:
        return None, None, None
    try:
        served = mlflow.pyfunc.load_model(f"models:/{kind}/{version}").unwrap_python_model()
    except (MlflowException, OSError) as exc:
        return None, str(version), f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return getattr(served, "holdout_estimator", None) or served.estimator, str(version), None


def _gate(
    kind: str, version: str, test: pd.DataFrame, challenger: dict[str, float], gate: GateParams
) -> tuple[Decision, str | None]:
    """Ask the gate about registered ``version`` and move the aliases: ``challenger`` always, ``champion`` when
    promoted. Returns the decision and the champion's version after it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    champion, champion_version, broken = _load_champion(client, kind)
    if broken is not None:
        decision = Decision(
            False,
            (
                f"champion v{champion_version} cannot be loaded ({broken}); the champion stays. Restore its "
                f"artefacts, or promote by hand: `churn promote {kind} {version}`",
            ),
        )
    else:
        decision = champion_decision(kind, champion, champion_version, challenger, test, gate)
    client.set_registered_model_alias(kind, "challenger", version)
    if decision.promote:
        client.set_registered_model_alias(kind, "champion", version)
    return decision, version if decision.promote else champion_version


def promote(kind: str, version: str) -> None:
    """Point ``models:/<kind>@champion`` at ``version`` by hand (the gate's decision overridden)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if kind not in ("churn", "clv"):
        raise ParamsError(f"model must be churn or clv, got {kind!r}.")
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
                    "churn_deployed_validation": _span(churn["deployed"].validation),
                    "clv_deployed_validation": _span(clv["deployed"].validation),
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
                decision, champion = _gate(kind, version, result["test"], result["metrics"], params.gate)
                mlflow.set_tag(f"{kind}.gate", decision.summary()[:4900])
                mlflow.log_metric(f"{kind}.promoted", float(decision.promote))
                console.print(f"{kind} v{version}: {decision.summary()}", soft_wrap=True)
                summary[kind] = {
                    "version": version,
                    "promoted": decision.promote,
                    "gate": list(decision.reasons),
                    "champion": champion,
                    "test_cutoff": str(result["split"].test_cutoff.date()),
                    "deployed_validation": _span(result["deployed"].validation),
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
