"""All MLflow work of the stages: the tracking store, what identifies a run, logging and registering models,
the champion gate's registry side (aliases), and loading registered models for scoring and evaluation.

By default MLflow writes to a SQLite store inside the project (``mlflow.db``, artifacts under ``mlruns/``,
both git-ignored); ``MLFLOW_TRACKING_URI`` overrides it (a server, another database). Browse with
``mlflow ui --backend-store-uri sqlite:///mlflow.db``.

Registered models: ``churn``, ``clv`` and ``next_order`` (``churn train``, :data:`models.scoring.KINDS`) and the
optional ``uplift`` (``churn uplift``), each a pyfunc (``models/serving.py``, the whole package shipped beside it)
with aliases ``challenger`` (the latest version) and ``champion`` (the one ``churn score`` uses). Only the gate
(:func:`gate_champion`), ``churn promote`` (:func:`promote`) and the uplift stage move ``champion``. Models are
pickles: they are loaded only from this store.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd

from churn_pipeline.errors import DataContractError, ParamsError, UsageError
from churn_pipeline.models.actions import applicable_rules
from churn_pipeline.models.gate import Decision
from churn_pipeline.models.scoring import KINDS, UPLIFT_KIND, LoadedModel, model_version_label
from churn_pipeline.models.survival import next_order_frame
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.params import ScoreParams, read_params

if TYPE_CHECKING:
    from churn_pipeline.models.churn import ChurnClassifier
    from churn_pipeline.models.clv import CLVRegressor
    from churn_pipeline.models.uplift import UpliftModel


# ------------------------------------------------------------------------------- tracking store and run identity
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def configure_mlflow(experiment: str) -> None:
    """Point MLflow at the tracking store and experiment; quiet its progress bars in logs."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment)


def _store_exists() -> bool:
    """False only for a SQLite tracking store whose file is missing (MLflow would silently create an empty one)."""
    uri = tracking_uri()
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).is_file()


def _check_store() -> str:
    """The tracking URI; a missing SQLite store is an error (MLflow would silently create an empty one)."""
    uri = tracking_uri()
    if not _store_exists():
        path = Path(uri.removeprefix("sqlite:///"))
        raise ParamsError(
            f"no MLflow store at {path} (tracking URI {uri}): train models first (`churn train` or `dvc repro`), "
            f"or point MLFLOW_TRACKING_URI at the store that holds them."
        )
    return uri


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"churn": {"num_leaves": 31}}}`` -> ``{"train.churn.num_leaves": 31}`` (MLflow params)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def file_fingerprint(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes, read in chunks: identifies the exact data a model was trained on.

    A directory (a Parquet dataset written by Spark) hashes its data files' relative paths and bytes in path
    order; hidden and ``_``-prefixed files (``_SUCCESS``, checksums) are not data and are left out."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted(
            f
            for f in path.rglob("*")
            if f.is_file() and not any(part.startswith((".", "_")) for part in f.relative_to(path).parts)
        )
    else:
        files = [path]
    for f in files:
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with f.open("rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
    return digest.hexdigest()


# What counts as the code of a run, for its commit's ``-dirty`` flag: the packages, the pipeline definition and the
# dependency pins. Left out on purpose: what the pipeline writes itself and git tracks (``dvc.lock``, ``metrics/``,
# ``plots/``, ``reports/``) -- `dvc repro` rewrites dvc.lock after every stage and the earlier stages' metrics
# before train runs, which marked every `make run` from a clean checkout dirty -- and ``params.yaml``, which a
# `dvc exp run -S` edits by design and whose values every run logs in full as MLflow params.
SOURCE_PATHS = (
    "churn_pipeline",
    "scripts",
    "benchmarks",
    "dvc.yaml",
    "pyproject.toml",
    "constraints.txt",
    "Makefile",
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def git_state(cwd: Path | None = None) -> tuple[str, list[str]]:
    """``(commit, changed)``: ``git rev-parse HEAD`` of the repository at ``cwd`` (default: the one holding this
    code) and the tracked source files (:data:`SOURCE_PATHS`) with uncommitted changes. ``("unknown", [])``
    outside a repository or without git."""
    where = PROJECT_ROOT if cwd is None else cwd
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *(f":(top){p}" for p in SOURCE_PATHS)],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown", []
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    return head.stdout.strip(), changed


def git_commit(cwd: Path | None = None) -> str:
    """The checked-out commit, suffixed ``-dirty`` when tracked source files (:data:`SOURCE_PATHS`, not the
    pipeline's own outputs nor params.yaml) have uncommitted changes, or ``unknown``."""
    commit, changed = git_state(cwd)
    return commit + ("-dirty" if changed and commit != "unknown" else "")


def dvc_experiment() -> dict[str, str]:
    """The DVC experiment this process runs in: ``dvc exp run`` sets ``DVC_EXP_NAME`` and ``DVC_EXP_BASELINE_REV``
    in every stage command's environment (dvc/repo/experiments/queue/base.py; a plain `dvc repro` sets neither,
    only ``DVC_ROOT`` and ``DVC_STAGE``). Empty outside an experiment."""
    found = {
        "name": os.environ.get("DVC_EXP_NAME", ""),
        "baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
    }
    return {k: v for k, v in found.items() if v}


# -------------------------------------------------------------------------------- logging and registering models
SERVING_CODE = Path(__file__).resolve().parents[1] / "models" / "serving.py"
# The whole package travels with each model: serving.py imports churn_pipeline.models.*, and a loaded model must
# not pick up some other project's top-level `models` package.
MODELS_PACKAGE = Path(__file__).resolve().parents[1]


def input_schema(features: list[str], categorical: list[str] | tuple[str, ...], frame: Any) -> tuple[Any, Any]:
    """An explicit MLflow input schema for a model's ``features`` and a five-row input example from ``frame``:
    count features are ``long``, other numbers ``double`` (NaN allowed), ``categorical`` ones ``string`` (never
    pandas ``category``, which MLflow signatures cannot hold). Inferring it from a few rows would mark columns that
    happen to have no NaN there as unable to hold one, and int32 columns as int32."""
    from mlflow.types import ColSpec, Schema

    example = frame[list(features)].head(5).copy()
    specs = []
    for c in example.columns:
        if c in categorical:
            example[c] = example[c].astype(object)
            specs.append(ColSpec("string", c))
        elif pd.api.types.is_integer_dtype(example[c]):
            example[c] = example[c].astype("int64")
            specs.append(ColSpec("long", c))
        else:
            example[c] = example[c].astype("float64")
            specs.append(ColSpec("double", c))
    return Schema(specs), example


def log_model(kind: str, result: dict, tmp: Path) -> Any:
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


def _uplift_signature(model: UpliftModel, frame: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    """An explicit MLflow signature (as the train stage's: counts long, other numbers double, text string) and a
    five-row input example."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs, example = input_schema(model.features_, model.preprocessor_.categorical_, frame)
    outputs = Schema([ColSpec("double", c) for c in model.output_columns_])
    return ModelSignature(inputs=inputs, outputs=outputs), example


def register_uplift(
    model: UpliftModel,
    holdout: UpliftModel | None,
    frame: pd.DataFrame,
    metrics: dict[str, Any],
    plot: Path | None,
    params: Any,
    params_path: Path,
    data: Path,
    tmp: Path,
) -> tuple[str, str]:
    """The uplift stage's MLflow run: params (``features`` and ``labels`` of ``params_path``, ``params`` as the
    ``uplift`` section), tags, metrics, plot, and the pyfunc model registered as ``uplift``. Returns the run id and
    the registered version."""
    import mlflow

    everything = read_params(params_path)
    commit, changed = git_state()
    with mlflow.start_run(run_name="uplift") as run:
        logged = {k: everything.get(k, {}) for k in ("features", "labels")} | {"uplift": asdict(params)}
        mlflow.log_params(flatten(logged))
        mlflow.set_tags(
            {
                "mlflow.source.git.commit": commit,
                "git_commit": commit + ("-dirty" if changed and commit != "unknown" else ""),
                "data_fingerprint": file_fingerprint(data / "contacts.parquet"),
                "uplift.actions": ", ".join(model.actions_),
                **{f"dvc_exp_{k}": v for k, v in dvc_experiment().items()},
            }
        )
        flat = {
            k: float(v) for k, v in flatten(metrics).items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        mlflow.log_metrics({k: v for k, v in flat.items() if np.isfinite(v)})
        mlflow.log_dict(metrics, "uplift_metrics.json")
        if plot is not None:
            mlflow.log_artifact(str(plot), "plots")
        estimator_path = tmp / "uplift_estimator.joblib"
        joblib.dump(model, estimator_path)
        artifacts = {"estimator": str(estimator_path)}
        if holdout is not None:
            joblib.dump(holdout, tmp / "uplift_holdout_estimator.joblib")
            artifacts["holdout_estimator"] = str(tmp / "uplift_holdout_estimator.joblib")
        signature, example = _uplift_signature(model, frame)
        info = mlflow.pyfunc.log_model(
            name="uplift_model",
            python_model=str(SERVING_CODE),
            artifacts=artifacts,
            code_paths=[str(MODELS_PACKAGE)],
            model_config={"kind": UPLIFT_KIND},
            signature=signature,
            input_example=example,
            registered_model_name=UPLIFT_KIND,
        )
    return run.info.run_id, str(info.registered_model_version)


# ----------------------------------------------------------------------------- the champion gate and the aliases
def unloadable(exc: BaseException) -> bool:
    """Whether ``exc``, raised while loading a registered model, says its files are missing or unreadable:
    MLflow's "No such artifact" (RESOURCE_DOES_NOT_EXIST), an OS error (a deleted or unreadable file), a truncated
    or corrupt pickle. Anything else (a bug, a database error) is not this and must propagate."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        text = str(exc)
        return exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "No such artifact" in text or "No such file" in text
    return isinstance(exc, (OSError, EOFError, pickle.UnpicklingError))


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


def load_champion(client: Any, kind: str) -> tuple[Any, str | None, str | None, dict[str, Any]]:
    """The champion's held-out estimator (its deployed one for versions logged without a twin), its version,
    why it cannot be loaded (None when it can: only missing/unreadable files, :func:`unloadable`, are caught),
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


def move_aliases(client: Any, name: str, version: str, promote: bool) -> None:
    """Point ``challenger`` of registered model ``name`` at ``version``, and ``champion`` too when ``promote``."""
    client.set_registered_model_alias(name, "challenger", version)
    if promote:
        client.set_registered_model_alias(name, "champion", version)


def gate_champion(
    kind: str, version: str, verdict: Callable[[Any, str | None, str | None, dict[str, Any]], Decision]
) -> tuple[Decision, str | None]:
    """The gate's registry side for registered ``version`` of ``kind``, in this order: load the champion
    (:func:`load_champion`), ask ``verdict(estimator, champion_version, why_unloadable, champion_target)``, then
    move the aliases (:func:`move_aliases`: ``challenger`` always, ``champion`` when the verdict promotes).

    Not bypassable: an error while loading the champion (other than its files being gone, which ``verdict`` is
    told) or while ``verdict`` scores it propagates before any alias moves, so the challenger is never promoted
    for want of a comparison. Returns the decision and the champion's version after it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    champion, champion_version, broken, champion_target = load_champion(client, kind)
    decision = verdict(champion, champion_version, broken, champion_target)
    move_aliases(client, kind, version, decision.promote)
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


def set_uplift_aliases(version: str, promote: bool) -> str | None:
    """Registered model ``uplift``: ``challenger`` -> ``version``, and ``champion`` too when ``promote``; the
    champion's version after it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    move_aliases(client, UPLIFT_KIND, version, promote)
    aliases = client.get_registered_model(UPLIFT_KIND).aliases or {}
    return None if aliases.get("champion") is None else str(aliases["champion"])


def remove_uplift_champion() -> str | None:
    """Remove the ``champion`` alias of registered model ``uplift`` if it has one; the version it pointed at."""
    if not _store_exists():
        return None
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    try:
        registered = client.get_registered_model(UPLIFT_KIND)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = (registered.aliases or {}).get("champion")
    if version is not None:
        client.delete_registered_model_alias(UPLIFT_KIND, "champion")
    return None if version is None else str(version)


# ------------------------------------------------------------------------------------- loading registered models
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


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


def _has_alias(client: Any, name: str, alias: str) -> bool:
    """Whether registered model ``name`` exists and has ``alias`` (an optional model may have neither)."""
    from mlflow.exceptions import MlflowException

    try:
        return alias in (client.get_registered_model(name).aliases or {})
    except MlflowException:
        return False


def load_models(uris: list[str], alias: str) -> dict[str, LoadedModel]:
    """The churn and CLV models: each ``--model-uri`` says which by the ``kind`` it was logged with; a kind not
    given comes from ``models:/<kind>@<alias>``."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

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


def load_registered(summary: dict, train_metrics: Path) -> tuple[ChurnClassifier, CLVRegressor, dict]:
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


def load_registered_next_order(summary: dict, train_metrics: Path) -> Any:
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
