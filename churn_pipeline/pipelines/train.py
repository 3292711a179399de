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
same, ``-dirty`` when tracked source files changed: ``pipelines.registry.SOURCE_PATHS``), and, in a DVC
experiment, ``dvc_exp_name`` and ``dvc_exp_baseline_rev``.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from churn_pipeline.errors import DataContractError
from churn_pipeline.models.factory import fit_estimator
from churn_pipeline.models.gate import Decision, bar_noise, registry_verdict
from churn_pipeline.models.preprocess import HighCardinalityWarning
from churn_pipeline.models.split import TimeSplit, labelled_splits
from churn_pipeline.models.training import (
    FOLLOWUP,
    LABEL_COLUMNS,
    SPLIT_LABELS,
    baseline_metrics,
    check_classes,
    drift_reference,
    fit_summary,
    held_out_line,
    run_tags,
    span,
    summary_entry,
    test_metrics,
    training_figures,
    tree_summary,
)
from churn_pipeline.pipelines.console import console, format_seconds, step
from churn_pipeline.pipelines.io import read_manifest, write_json
from churn_pipeline.pipelines.params import GateParams, TrainParams, load_section, read_params
from churn_pipeline.pipelines.registry import (
    configure_mlflow,
    dvc_experiment,
    file_fingerprint,
    flatten,
    gate_champion,
    git_state,
    log_model,
)

# Training rows summarised in each model's drift reference (a stride sample beyond this).
DRIFT_REFERENCE_ROWS = 200_000
# The registered models, in training order, and their names in the step lines.
KINDS = ("churn", "clv", "next_order")
TITLES = {"churn": "churn", "clv": "CLV", "next_order": "next-order"}


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
    split, deployed = labelled_splits(
        labelled,
        horizon,
        n_validation,
        purge,
        what=f"cannot split the panel's {label} labels by time",
        remedy="features.cutoffs.frequency: auto picks a schedule that fits; otherwise more cutoffs "
        "(features.cutoffs.count), a shorter horizon, or train.purge: false would make room.",
    )
    parts = tuple(_read_rows(panel, columns, label, cs) for cs in (split.train, split.validation, split.test))
    for part in parts:
        if label == FOLLOWUP and len(part) and part[label].min() < horizon:
            raise DataContractError(f"next-order rows followed up less than {horizon} days at a labelled cutoff")
    check_classes(label, horizon, split, parts)
    return split, deployed, parts


def _read_rows(panel: Path, columns: list[str], label: str, cutoffs: tuple) -> pd.DataFrame:
    """The rows of ``panel`` at ``cutoffs`` whose ``label`` is known."""
    wanted = [pd.Timestamp(c).to_datetime64() for c in cutoffs]
    frame = pq.read_table(panel, columns=columns, filters=[("cutoff", "in", wanted)]).to_pandas()
    return frame[frame[label].notna()].reset_index(drop=True)


def _fit_logged(
    kind: str, phase: str, estimator: Any, train: pd.DataFrame, valid: pd.DataFrame, split: TimeSplit
) -> Any:
    """``estimator`` fitted as a ``kind`` model (``models.factory.fit_estimator``) with one line before (rows and
    cutoffs) and one after (trees, time), and the preprocessor's high-cardinality warnings printed in yellow."""
    console.print(
        f"{kind} ({phase}): training on {len(train):,} rows (cutoffs {span(split.train)}), validating on "
        f"{len(valid):,} (cutoffs {span(split.validation)})",
        soft_wrap=True,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HighCardinalityWarning)  # printed below, once, in the stage's voice
        model = fit_estimator(kind, estimator, train, valid)
    for note in model.preprocessor_.warnings_:
        console.print(f"[yellow]{kind} ({phase}): {note}[/yellow]", soft_wrap=True)
    console.print(f"{kind} ({phase}): fitted, {tree_summary(model)}, in {format_seconds(time.perf_counter() - start)}")
    return model


def fit_model(kind: str, panel: Path, manifest: dict, params: TrainParams) -> dict[str, Any]:
    """The held-out ``kind`` model (test metrics against the panel's baselines) and the deployed one (the same
    recipe, split moved forward). Next-order labelled cutoffs are those followed up over the whole grid
    (``next_order_followup_days`` = its last edge)."""
    if kind == "next_order" and "next_order_days" not in manifest:
        raise DataContractError(
            "the training panel has no next-order labels (panel.features.json lacks next_order_days): it was built "
            "by an older version; rebuild it with `churn features` (dvc repro features)."
        )
    label, grid = SPLIT_LABELS[kind], tuple(int(d) for d in manifest.get("next_order_days", ()))
    columns = ["customer_id", "cutoff", *manifest["features"], *LABEL_COLUMNS[kind]]
    if kind == "next_order":  # BG/NBD's inputs for the baseline, when they are not features already.
        columns += [c for c in ("frequency", "recency_days", "tenure_days") if c not in columns]
    horizon = grid[-1] if kind == "next_order" else manifest[f"{kind}_horizon_days"]
    split, deployed, (train, valid, test) = _split(panel, columns, label, horizon, params.split_settings(manifest))
    rows = {"held_out_train": len(train), "held_out_validation": len(valid), "test": len(test)}
    holdout = _fit_logged(kind, "held out", params.estimator(kind, manifest), train, valid, split)
    del train, valid
    metrics = test_metrics(kind, holdout, test)
    baselines = baseline_metrics(kind, test, grid)
    noise = bar_noise(kind, metrics, test)
    console.print(held_out_line(kind, metrics, len(test), baselines))
    # The deployed model, its rows read only once the held-out fit's rows are released.
    estimator = params.estimator(kind, manifest)
    train, valid = (_read_rows(panel, columns, label, cs) for cs in (deployed.train, deployed.validation))
    rows |= {"deployed_train": len(train), "deployed_validation": len(valid)}
    model = _fit_logged(kind, "deployed", estimator, train, valid, deployed)
    del train, valid
    if kind != "clv":
        metrics["deployed_best_iteration"] = float(model.best_iteration_)
    parts = {"split": split, "deployed": deployed, "test": test, "metrics": metrics, "rows": rows}
    return {"model": model, "holdout": holdout, **parts, "baselines": baselines, "bar_noise": noise}


def _plots(churn: dict, clv: dict, out: Path, next_order: dict | None = None) -> list[Path]:
    """The run's charts (``models.training.training_figures``) written under ``out``, for MLflow."""
    results = {"churn": churn, "clv": clv, **({"next_order": next_order} if next_order else {})}
    churned = churn["test"]["churned"].astype(bool).to_numpy()
    p = churn["holdout"].predict_proba(churn["test"])[:, 1]  # the held-out model on its test rows
    importances = {kind: result["model"].feature_importance() for kind, result in results.items()}
    paths = []
    for name, png in training_figures(churned, p, importances).items():
        paths.append(out / name)
        paths[-1].write_bytes(png)
    return paths


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
    return drift_reference(kind, model, pd.concat(parts, ignore_index=True), result["deployed"].train)


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
    kind: str, version: str, result: dict[str, Any], gate: GateParams, target: dict[str, Any], manual: tuple[bool, str]
) -> tuple[Decision, str | None]:
    """Ask the gate (``models.gate.registry_verdict``) about registered ``version`` of the fit ``result`` and move the
    aliases (:func:`pipelines.registry.gate_champion`): ``challenger`` always, ``champion`` when promoted and the
    promotion is not ``manual``. Returns the decision and the champion's version after it. An error while scoring
    the champion propagates: no alias moves."""

    def verdict(
        champion: Any, champion_version: str | None, broken: str | None, champion_target: dict[str, Any]
    ) -> Decision:
        decision = registry_verdict(
            kind,
            version,
            champion,
            champion_version,
            broken,
            champion_target,
            result["metrics"],
            result["test"],
            gate,
            baselines=result.get("baselines", {}),
            target=target,
            manual=manual,
            bar_noise=result.get("bar_noise"),
        )
        if broken is not None:
            console.print(f"[bold red]{kind}: {decision.reasons[0]}[/bold red]", soft_wrap=True)
        return decision

    return gate_champion(kind, version, verdict)


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
    results: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        with step(f"train: {TITLES[kind]} model (held out, then deployed)") as s:
            results[kind] = fit_model(kind, panel_path, manifest, params)
            s.rows, s.detail = results[kind]["rows"]["deployed_train"], fit_summary(kind, results[kind])
    churn, clv, next_order = (results[kind] for kind in KINDS)

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
            mlflow.set_tags(run_tags(commit, changed, manual[0], experiment, file_fingerprint(panel_path), results))
            for kind, result in results.items():
                mlflow.log_metrics({f"{kind}.{k}": v for k, v in result["metrics"].items()})
                result["model"].feature_importance().to_csv(tmp / f"{kind}_importance.csv", index=False)
                mlflow.log_artifact(str(tmp / f"{kind}_importance.csv"), "importance")
            mlflow.log_dict(churn["model"].calibration_report_, "calibration_report.json")
            for path in _plots(churn, clv, tmp, next_order):
                mlflow.log_artifact(str(path), "plots")
            for kind, result in results.items():
                result["drift_reference"] = _drift_reference(kind, result, panel_path, SPLIT_LABELS[kind])
                info = log_model(kind, result, tmp)
                version = str(info.registered_model_version)
                horizon = manifest["next_order_days"][-1] if kind == "next_order" else manifest[f"{kind}_horizon_days"]
                target = {"label_horizon_days": int(horizon)}
                client = mlflow.MlflowClient()
                for key, value in target.items():
                    client.set_model_version_tag(kind, version, key, str(value))
                if experiment:
                    client.set_model_version_tag(kind, version, "dvc_exp_name", experiment.get("name", ""))
                decision, champion = _gate(kind, version, result, params.gate, target, manual)
                mlflow.set_tag(f"{kind}.gate", decision.summary()[:4900])
                mlflow.log_metric(f"{kind}.promoted", float(decision.promote))
                colour = "green" if decision.promote else "yellow"
                console.print(f"[{colour}]{kind} v{version}: {decision.summary()}[/{colour}]", soft_wrap=True)
                summary[kind] = summary_entry(result, version, decision, champion, manual[0], target)
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
