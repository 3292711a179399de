"""Stage `uplift`: per-action uplift models from the shop's contact history, judged on held-out campaigns,
logged to MLflow and registered as ``uplift`` (issue 15).

Reads params sections ``uplift`` (learner, boosters, group sizes, promotion) and, for the features and outcome
windows, ``features`` and ``labels``. Input: a validated data directory (``churn validate`` output) with the
optional ``contacts`` table. Steps:

1. **Outcomes.** Each contact's outcomes from the contact on (``models.measure.contact_outcomes``): retained = an
   order in ``[contact_ts, contact_ts + labels.churn_horizon_days)``, net revenue over
   ``labels.clv_horizon_days``. Only followed-up contacts (both windows inside the data) are used.
2. **Point-in-time features.** The pipeline's features (``features.build``, scoring mode: lapsed customers kept)
   at cutoff = the contact's day at midnight, so a contact's features see only data before its day, hence before
   ``contact_ts``; one cutoff per distinct contact day, joined on (customer_id, cutoff). Contacts of customers
   without an order before their contact day have no features and are counted and left out.
3. **Held-out evaluation.** Per action, its latest campaign (by first contact) is held out and a model fitted on
   the earlier campaigns (of every action) scores it. Per action and outcome: the normalised Qini coefficient and
   AUUC (``models.uplift``) of (a) the uplift model, (b) random targeting (0 by construction, and the mean and
   95th percentile of ``uplift.shuffles`` seeded random rankings), (c) targeting by churn risk: the churn
   champion's ``churn_probability`` on the same contact features when ``models:/churn@<uplift.churn_model_alias>``
   loads (``pipelines.score.load_models``, the scoring path), else the ``bgnbd_churn_probability`` feature (the
   metrics say which).
4. **Deployed model.** Refitted on every followed-up contact, logged to MLflow (params, metrics, the Qini plot),
   registered as ``uplift`` (pyfunc, ``models/serving.py`` kind ``uplift``, the ``models`` package shipped beside
   it, the held-out model as ``holdout_estimator``) with alias ``challenger``; ``champion`` moves to it when, for
   at least one action, its held-out Qini on retention or on net revenue (the outcome the expected profit targets
   by) beats random targeting: above the 95th percentile of the shuffled rankings (a one-sided permutation test at
   5 %). ``uplift.promote: manual``, or ``auto`` inside a DVC
   experiment, never moves ``champion``. Otherwise the champion stays where it is.

On the default shop (20,000 customers, 8 campaigns of 1,050-1,700 contacts, half control) no action clears that
bar on retention (held-out Qini -0.07..+0.01 against random 95th percentiles of about 0.045; the true uplift itself,
as the ranking, reaches only -0.01..+0.09 there), so the model is registered as challenger only and scoring keeps
the rule table; on revenue it beats random for the loyalty boost and personal outreach (Qini 0.083 and 0.104
against 0.052 and 0.068) and churn-risk targeting everywhere but cross-sell (``benchmarks/bench_uplift.py``).

No contacts table, or too few contacts (no action with ``uplift.min_group_size`` followed-up treated and control
contacts with features): no model; ``{"status": "no contacts table" | "too few contacts", ...}`` goes to both
outputs, the ``champion`` alias of ``uplift`` is removed if there is one (scoring then falls back to the rule
table; printed), exit 0.

Leakage: the features are point-in-time; the outcome windows of an earlier campaign may reach into the held-out
campaign's period (a customer in both), which shares the period's shocks, not the held-out outcomes themselves.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churn_pipeline.errors import ChurnError, DataContractError, validate_first
from churn_pipeline.features.build import LABELS, FeatureConfig, build_feature_blocks
from churn_pipeline.features.cutoffs import data_end
from churn_pipeline.models.measure import contact_outcomes
from churn_pipeline.models.uplift import LEARNERS, REVENUE_OBJECTIVES, UpliftModel, qini_curve, targeting_report
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.io import connect, data_span, write_json
from churn_pipeline.pipelines.params import load_params, load_section, read_params
from churn_pipeline.pipelines.tracking import (
    configure_mlflow,
    dvc_experiment,
    file_fingerprint,
    flatten,
    git_state,
    input_schema,
    tracking_uri,
)

__all__ = [
    "NO_CONTACTS",
    "REGISTERED_NAME",
    "TOO_FEW",
    "ContactData",
    "UpliftParams",
    "churn_risk",
    "contact_features",
    "evaluate_held_out",
    "held_out_plan",
    "prepare",
    "run",
]

SERVING_CODE = Path(__file__).resolve().parents[1] / "models" / "serving.py"
# The whole package travels with each model: serving.py imports churn_pipeline.models.*, and a loaded model must
# not pick up some other project's top-level `models` package.
MODELS_PACKAGE = Path(__file__).resolve().parents[1]
REGISTERED_NAME = "uplift"
NO_CONTACTS = "no contacts table"
TOO_FEW = "too few contacts"
CHURN_RISK_FEATURE = "bgnbd_churn_probability"
OUTCOMES = {"retention": "retained", "revenue": "net_revenue"}
PROMOTE_MODES = ("auto", "manual")


@dataclass(frozen=True)
class UpliftParams:
    """params.yaml ``uplift`` (defaults = the shipped params.yaml; :class:`models.uplift.UpliftModel`)."""

    experiment: str = "churn-pipeline"
    promote: str = "auto"
    churn_model_alias: str = "champion"
    learner: str = "x"
    revenue_objective: str = "tweedie"
    tweedie_variance_power: float = 1.5
    retention_offset: str | None = "bgnbd_churn_probability"
    revenue_offset: str | None = None
    min_group_size: int = 100
    control_pool: str = "action"
    shuffles: int = 200
    max_category_levels: int = 50
    num_leaves: int = 15
    learning_rate: float = 0.02
    n_estimators: int = 300
    min_child_samples: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_bin: int = 63
    early_stopping_rounds: int = 30
    seed: int = 42
    n_jobs: int = 1

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {LEARNERS}, got {self.learner!r}")
        if self.revenue_objective not in REVENUE_OBJECTIVES:
            raise ValueError(f"revenue_objective must be one of {REVENUE_OBJECTIVES}, got {self.revenue_objective!r}")
        if self.promote not in PROMOTE_MODES:
            raise ValueError(f"promote must be auto or manual, got {self.promote!r}")
        if self.min_group_size < 2:
            raise ValueError(f"min_group_size must be >= 2, got {self.min_group_size}")
        if self.shuffles < 0:
            raise ValueError(f"shuffles must be >= 0, got {self.shuffles}")

    def estimator(self, manifest: dict, config: FeatureConfig) -> UpliftModel:
        """An unfitted uplift model with these params on the manifest's features and the labels' windows."""
        kwargs = asdict(self)
        for key in ("experiment", "promote", "churn_model_alias", "shuffles"):
            kwargs.pop(key)
        return UpliftModel(
            features=manifest["features"],
            categorical=manifest["categorical"],
            retention_days=config.churn_horizon_days,
            revenue_days=config.clv_horizon_days,
            **kwargs,
        )


@dataclass
class ContactData:
    """The followed-up contacts with their outcomes and point-in-time features (one row per contact), the
    feature manifest, the counts of what was left out, and the end of the data."""

    frame: pd.DataFrame
    manifest: dict
    counts: dict[str, int]
    config: FeatureConfig
    end: pd.Timestamp


# ------------------------------------------------------------------------------------------------- data
def _read(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataContractError(
            f"{path} cannot be read ({str(exc).splitlines()[0]}). Re-run `churn validate` into a fresh directory."
        ) from exc


def contact_features(
    con: Any, keys: pd.DataFrame, end: pd.Timestamp, config: FeatureConfig
) -> tuple[pd.DataFrame, dict]:
    """Features (no labels) of each (customer_id, cutoff) in ``keys`` that has one: the scoring-mode feature build
    (``training=False``) at the distinct cutoffs, one cutoff block at a time, each cut down to the customers
    wanted at it before it is converted (memory: one block of the whole customer base at a time)."""
    cutoffs = sorted(pd.Timestamp(c) for c in keys["cutoff"].unique())
    wanted = keys.groupby("cutoff")["customer_id"].unique()
    parts, manifest = [], {}
    for cutoff, block, made in build_feature_blocks(con, cutoffs, end, config, training=False):
        manifest = made
        ids = pa.array(wanted.loc[cutoff].astype(str).tolist(), type=pa.string())
        kept = block.filter(pc.is_in(block["customer_id"].cast(pa.string()), value_set=ids))
        parts.append(kept.drop_columns([c for c in LABELS if c in kept.column_names]))
    table = pa.concat_tables(parts)
    frame = table.to_pandas()
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us]")
    return frame, manifest


def prepare(data: Path, params_path: Path) -> ContactData | None:
    """The followed-up contacts of ``data`` with outcomes and features (:class:`ContactData`); None without a
    contacts table."""
    data = Path(data)
    path = data / "contacts.parquet"
    if not (data / "report.json").is_file() or not (data / "orders.parquet").is_file():
        raise DataContractError(f"{data} is not a validated data directory: {validate_first(data)}")
    if not path.is_file():
        return None
    _, config = load_params(params_path)
    contacts = _read(path)
    con = connect(data)
    _, last = data_span(con)
    end = data_end(last)
    orders = _read(data / "orders.parquet", ["customer_id", "order_ts", "amount"])
    returns = (
        _read(data / "returns.parquet", ["customer_id", "return_ts", "amount"])
        if (data / "returns.parquet").is_file()
        else None
    )
    outcomes = contact_outcomes(contacts, orders, returns, end, config.churn_horizon_days, config.clv_horizon_days)
    del orders, returns
    counts = {"contacts": len(outcomes), "followed_up": int(outcomes["followed_up"].sum())}
    followed = outcomes[outcomes["followed_up"]].reset_index(drop=True)
    followed["customer_id"] = followed["customer_id"].astype(str)
    followed["cutoff"] = followed["contact_ts"].dt.floor("D").astype("datetime64[us]")
    if followed.empty:
        return ContactData(followed, {"features": [], "categorical": []}, counts | {"with_features": 0}, config, end)
    features, manifest = contact_features(con, followed[["customer_id", "cutoff"]], end, config)
    clash = sorted(set(features.columns) & set(followed.columns) - {"customer_id", "cutoff"})
    if clash:
        raise DataContractError(f"contacts columns {clash} clash with feature names: rename them in the contacts table")
    frame = followed.merge(features, on=["customer_id", "cutoff"], how="inner", validate="many_to_one")
    counts["with_features"] = len(frame)
    counts["without_features"] = len(followed) - len(frame)
    return ContactData(frame, manifest, counts, config, end)


def group_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per action: treated and control contacts."""
    treated = frame["group"].eq("treatment")
    table = pd.crosstab(frame["action"], treated)
    return {
        str(a): {"treated": int(table.loc[a].get(True, 0)), "control": int(table.loc[a].get(False, 0))}
        for a in table.index
    }


# ---------------------------------------------------------------------------------------- held-out split
def held_out_plan(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per action: its latest campaign by first contact (``held_out``, None for an action with one campaign), the
    earlier ones (``train``) and the held-out campaign's first contact date."""
    first = (
        frame.groupby(["action", "campaign_id"], sort=False)["contact_ts"]
        .min()
        .reset_index()
        .sort_values(["action", "contact_ts", "campaign_id"], kind="stable")
    )
    plan: dict[str, dict[str, Any]] = {}
    for action, g in first.groupby("action", sort=True):
        campaigns = g["campaign_id"].astype(str).tolist()
        if len(campaigns) < 2:
            plan[str(action)] = {"held_out": None, "train": campaigns, "held_out_date": None}
        else:
            plan[str(action)] = {
                "held_out": campaigns[-1],
                "train": campaigns[:-1],
                "held_out_date": str(pd.Timestamp(g["contact_ts"].iloc[-1]).date()),
            }
    return plan


def held_out_rows(frame: pd.DataFrame, plan: dict[str, dict[str, Any]]) -> np.ndarray:
    """True for the contacts of each action's held-out campaign."""
    pairs = {(a, p["held_out"]) for a, p in plan.items() if p["held_out"] is not None}
    keys = pd.Series(list(zip(frame["action"].astype(str), frame["campaign_id"].astype(str), strict=True)))
    return keys.isin(pairs).to_numpy()


def fit(model: UpliftModel, frame: pd.DataFrame) -> UpliftModel:
    """``model`` fitted on the contacts of ``frame`` (outcomes, action, group and cost columns)."""
    cost = frame["cost"] if "cost" in frame.columns else None
    return model.fit(
        frame,
        frame["retained"].astype(bool),
        frame["net_revenue"].astype(float),
        frame["action"].astype(str),
        frame["group"].eq("treatment"),
        cost,
    )


# ------------------------------------------------------------------------------------------ churn risk
def churn_risk(frame: pd.DataFrame, alias: str) -> tuple[np.ndarray, str]:
    """P(churn) per contact: the churn model ``models:/churn@<alias>`` loaded as scoring loads it
    (``pipelines.score.load_models``) on the contact features, else the ``bgnbd_churn_probability`` feature (missing
    values at its median); and a sentence saying which."""
    from churn_pipeline.pipelines.score import load_models

    try:
        loaded = load_models([], alias)["churn"]
        return loaded.estimator.predict_proba(frame)[
            :, 1
        ], f"models:/churn@{alias} (v{loaded.version}) churn_probability"
    except (ChurnError, ValueError) as exc:
        why = str(exc).splitlines()[0][:160]
    score = pd.to_numeric(frame[CHURN_RISK_FEATURE], errors="coerce").astype(float)
    fallback = score.fillna(score.median() if score.notna().any() else 0.0).to_numpy()
    return fallback, f"feature {CHURN_RISK_FEATURE} (models:/churn@{alias} not usable: {why})"


# ------------------------------------------------------------------------------------------ evaluation
def evaluate_held_out(
    model: UpliftModel | None,
    test: pd.DataFrame,
    risk: np.ndarray,
    plan: dict[str, dict[str, Any]],
    shuffles: int,
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Per action with a held-out campaign: its rows, and per outcome (retention, revenue) the targeting report of
    the uplift model, random targeting and churn risk (``models.uplift.targeting_report``); and the held-out
    predictions (None without a model). An action the held-out model does not cover is reported with why."""
    predictions = model.predict_uplift(test) if model is not None and len(test) else None
    out: dict[str, Any] = {}
    for action, p in plan.items():
        if p["held_out"] is None:
            out[action] = {"evaluated": False, "why": "one campaign only: nothing earlier to train on"}
            continue
        rows = (test["action"].astype(str) == action).to_numpy()
        treated = test["group"].eq("treatment").to_numpy()[rows]
        entry: dict[str, Any] = {
            "held_out_campaign": p["held_out"],
            "held_out_date": p["held_out_date"],
            "train_campaigns": p["train"],
            "treated": int(treated.sum()),
            "control": int((~treated).sum()),
        }
        if model is None or action not in model.actions_:
            why = "no held-out model" if model is None else model.skipped_actions_.get(action, "not in the model")
            out[action] = {"evaluated": False, "why": f"earlier campaigns: {why}", **entry}
            continue
        if treated.all() or not treated.any():
            out[action] = {"evaluated": False, "why": "held-out campaign lacks a treatment or control group", **entry}
            continue
        entry["evaluated"] = True
        for outcome, column in OUTCOMES.items():
            scores = {
                "uplift": predictions[f"uplift_{outcome}__{action}"].to_numpy()[rows],
                "churn_risk": risk[rows],
            }
            y = test[column].to_numpy(dtype=np.float64)[rows]
            entry[outcome] = targeting_report(scores, treated, y, shuffles=shuffles, seed=seed)
        out[action] = entry
    return out, predictions


def beats_random(report: dict[str, Any]) -> dict[str, bool]:
    """Per evaluated action: the uplift model's held-out Qini on retention or on net revenue (the outcome the
    expected profit targets by) is above random targeting's 95th percentile of shuffled rankings (above 0 without
    shuffles)."""
    found = {}
    for action, entry in report.items():
        if not entry.get("evaluated"):
            continue
        wins = []
        for outcome in ("retention", "revenue"):
            r = entry[outcome]
            bar = r["random"]["qini_shuffled_q95"]
            wins.append(bool(r["uplift"]["qini"] > (bar if np.isfinite(bar) else 0.0)))
        found[action] = any(wins)
    return found


def _comparison_line(action: str, entry: dict[str, Any]) -> str:
    if not entry.get("evaluated"):
        return f"{action}: not evaluated ({entry['why']})"
    r, v = entry["retention"], entry["revenue"]
    return (
        f"{action}: held-out campaign {entry['held_out_campaign']} ({entry['treated']:,} treated, "
        f"{entry['control']:,} control): retention Qini uplift {r['uplift']['qini']:+.3f}, random 0 (95 % of "
        f"shuffles below {r['random']['qini_shuffled_q95']:+.3f}), churn risk {r['churn_risk']['qini']:+.3f}; "
        f"revenue Qini uplift {v['uplift']['qini']:+.3f}, churn risk {v['churn_risk']['qini']:+.3f}"
    )


def _plot(test: pd.DataFrame, predictions: pd.DataFrame, risk: np.ndarray, report: dict, out: Path) -> Path | None:
    """Qini curves on the held-out campaigns, one column per evaluated action, retention above revenue."""
    actions = [a for a, e in report.items() if e.get("evaluated")]
    if not actions:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(actions), figsize=(4.5 * len(actions), 8), squeeze=False)
    for j, action in enumerate(actions):
        rows = (test["action"].astype(str) == action).to_numpy()
        treated = test["group"].eq("treatment").to_numpy()[rows]
        for i, (outcome, column) in enumerate(OUTCOMES.items()):
            ax = axes[i][j]
            y = test[column].to_numpy(dtype=np.float64)[rows]
            for key, label in (("uplift", "uplift model"), ("churn_risk", "churn risk")):
                score = predictions[f"uplift_{outcome}__{action}"].to_numpy()[rows] if key == "uplift" else risk[rows]
                x, q = qini_curve(score, treated, y)
                ax.plot(x / x[-1], q, label=f"{label} (Qini {report[action][outcome][key]['qini']:+.3f})")
            ax.plot([0, 1], [0, q[-1]], "--", color="grey", label="random (0)")
            unit = "extra retained customers" if outcome == "retention" else "extra net revenue"
            ax.set(title=f"{action}: {outcome}", xlabel="share of the campaign targeted", ylabel=unit)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "uplift_qini.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- registry
def _store_exists() -> bool:
    uri = tracking_uri()
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).is_file()


def remove_champion() -> str | None:
    """Remove the ``champion`` alias of registered model ``uplift`` if it has one; the version it pointed at."""
    if not _store_exists():
        return None
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    try:
        registered = client.get_registered_model(REGISTERED_NAME)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = (registered.aliases or {}).get("champion")
    if version is not None:
        client.delete_registered_model_alias(REGISTERED_NAME, "champion")
    return None if version is None else str(version)


def promote_mode(params: UpliftParams) -> tuple[bool, str]:
    """``(manual, why)``, as the train stage: ``manual``, or ``auto`` inside `dvc exp run`, never moves champion."""
    if params.promote == "manual":
        return True, "uplift.promote is manual"
    experiment = dvc_experiment()
    if experiment:
        return True, f"this is DVC experiment {experiment.get('name', '')} (uplift.promote: auto acts as manual)"
    return False, "uplift.promote is auto"


def _signature(model: UpliftModel, frame: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    """An explicit MLflow signature (as the train stage's: counts long, other numbers double, text string) and a
    five-row input example."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs, example = input_schema(model.features_, model.preprocessor_.categorical_, frame)
    outputs = Schema([ColSpec("double", c) for c in model.output_columns_])
    return ModelSignature(inputs=inputs, outputs=outputs), example


def _register(
    model: UpliftModel,
    holdout: UpliftModel | None,
    frame: pd.DataFrame,
    metrics: dict[str, Any],
    plot: Path | None,
    params: UpliftParams,
    params_path: Path,
    data: Path,
    tmp: Path,
) -> tuple[str, str]:
    """One MLflow run: params, tags, metrics, plot, and the pyfunc model registered as ``uplift``. Returns the run id
    and the registered version."""
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
        signature, example = _signature(model, frame)
        info = mlflow.pyfunc.log_model(
            name="uplift_model",
            python_model=str(SERVING_CODE),
            artifacts=artifacts,
            code_paths=[str(MODELS_PACKAGE)],
            model_config={"kind": "uplift"},
            signature=signature,
            input_example=example,
            registered_model_name=REGISTERED_NAME,
        )
    return run.info.run_id, str(info.registered_model_version)


def _set_aliases(version: str, promote: bool) -> str | None:
    """``challenger`` -> ``version``, and ``champion`` too when ``promote``; the champion's version after it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_registered_model_alias(REGISTERED_NAME, "challenger", version)
    if promote:
        client.set_registered_model_alias(REGISTERED_NAME, "champion", version)
    aliases = client.get_registered_model(REGISTERED_NAME).aliases or {}
    return None if aliases.get("champion") is None else str(aliases["champion"])


# ----------------------------------------------------------------------------------------------- stage
def _no_model(status: str, detail: str, metrics_path: Path, registered_path: Path, extra: dict | None = None) -> None:
    removed = remove_champion()
    console.print(f"[yellow]uplift: {status}: {detail}; no uplift model trained[/yellow]", soft_wrap=True)
    if removed is not None:
        console.print(
            f"[yellow]uplift: removed the champion alias from {REGISTERED_NAME} v{removed}: scoring falls back to "
            f"the rule table's actions[/yellow]",
            soft_wrap=True,
        )
    doc = {"status": status, "detail": detail, "champion_removed": removed, **(extra or {})}
    write_json(doc, metrics_path)
    write_json({**doc, "tracking_uri": tracking_uri(), "model": None}, registered_path)


def run(data: Path, metrics_path: Path, registered_path: Path, params_path: Path) -> None:
    """Fit, evaluate, log and register the uplift model (module docstring); write the metrics and the record of
    the registered version (``status`` and why, with no model)."""
    import mlflow

    params = load_section(UpliftParams, "uplift", params_path)
    data = Path(data)
    with step("uplift: contacts, outcomes and point-in-time features") as s:
        prepared = prepare(data, params_path)
        if prepared is not None:
            c = prepared.counts
            s.rows = c["with_features"]
            s.detail = (
                f"{c['contacts']:,} contacts, {c['followed_up']:,} followed up, {c.get('without_features', 0):,} "
                f"of those without an order before their contact day (no features)"
            )
        else:
            s.detail = "no contacts table"
    if prepared is None:
        _no_model(NO_CONTACTS, f"{data} has no contacts.parquet", metrics_path, registered_path)
        return
    frame, counts = prepared.frame, prepared.counts
    groups = group_counts(frame) if len(frame) else {}
    enough = [a for a, g in groups.items() if min(g["treated"], g["control"]) >= params.min_group_size]
    if not enough:
        _no_model(
            TOO_FEW,
            f"no action has {params.min_group_size} (uplift.min_group_size) followed-up treated and control "
            f"contacts with features (per action: {groups or 'none'})",
            metrics_path,
            registered_path,
            {"rows": counts, "groups": groups},
        )
        return

    plan = held_out_plan(frame)
    test_rows = held_out_rows(frame, plan)
    train, test = frame[~test_rows], frame[test_rows].reset_index(drop=True)
    with step("uplift: held-out model (latest campaign of each action held out)") as s:
        try:
            holdout = fit(params.estimator(prepared.manifest, prepared.config), train) if len(train) else None
        except ValueError as exc:
            console.print(f"[yellow]uplift (held out): no model: {exc}[/yellow]", soft_wrap=True)
            holdout = None
        risk, risk_source = churn_risk(test, params.churn_model_alias) if len(test) else (np.empty(0), "none")
        report, predictions = evaluate_held_out(holdout, test, risk, plan, params.shuffles, params.seed)
        s.rows = len(train)
        s.detail = f"{len(test):,} held-out contacts"
    console.print(f"uplift: churn-risk targeting from {risk_source}", soft_wrap=True)
    for action, entry in report.items():
        console.print(f"uplift: {_comparison_line(action, entry)}", soft_wrap=True)

    with step("uplift: deployed model (every followed-up contact)") as s:
        model = fit(params.estimator(prepared.manifest, prepared.config), frame)
        s.rows = len(frame)
        s.detail = f"actions {', '.join(model.actions_)}"
    for action, why in model.skipped_actions_.items():
        console.print(f"[yellow]uplift: action {action} left out: {why}[/yellow]", soft_wrap=True)

    beats = beats_random(report)
    manual, why_manual = promote_mode(params)
    promote = any(beats.values()) and not manual
    if not beats:
        decision = "no action could be evaluated on a held-out campaign: registered as challenger only"
    elif not any(beats.values()):
        decision = (
            "the held-out Qini (retention or revenue) beats random targeting for no action (not above the 95th "
            "percentile of shuffled rankings): registered as challenger only"
        )
    else:
        won = ", ".join(a for a, b in beats.items() if b)
        decision = f"the held-out Qini (retention or revenue) beats random targeting for {won}"
        if manual:
            decision += f", but {why_manual}: registered as challenger only"
    metrics: dict[str, Any] = {
        "status": "ok",
        "rows": counts | {"train_held_out": len(train), "held_out": len(test)},
        "groups": groups,
        "learner": params.learner,
        "churn_risk_source": risk_source,
        "retention_days": prepared.config.churn_horizon_days,
        "revenue_days": prepared.config.clv_horizon_days,
        "actions": report,
        "modelled_actions": model.actions_,
        "skipped_actions": model.skipped_actions_,
        "cost": {a: (None if not np.isfinite(v) else round(v, 6)) for a, v in model.cost_.items()},
        "beats_random": beats,
        "decision": decision,
    }
    configure_mlflow(params.experiment)
    with step("uplift: MLflow run and registry") as s, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        plot = _plot(test, predictions, risk, report, tmp) if predictions is not None else None
        run_id, version = _register(model, holdout, frame, metrics, plot, params, params_path, data, tmp)
        champion = _set_aliases(version, promote)
        s.detail = f"run {run_id}, {REGISTERED_NAME} v{version}" + (", champion" if promote else "")
    colour = "green" if promote else "yellow"
    console.print(f"[{colour}]{REGISTERED_NAME} v{version}: {decision}[/{colour}]", soft_wrap=True)
    metrics |= {"run_id": run_id, "version": version, "promoted": promote, "champion": champion}
    write_json(metrics, metrics_path)
    write_json(
        {
            "status": "ok",
            "tracking_uri": mlflow.get_tracking_uri(),
            "run_id": run_id,
            "model": f"models:/{REGISTERED_NAME}/{version}",
            "version": version,
            "promoted": promote,
            "champion": champion,
            "actions": model.actions_,
        },
        registered_path,
    )
