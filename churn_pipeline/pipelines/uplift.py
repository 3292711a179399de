"""Stage `uplift`: per-action uplift models from the shop's contact history, judged on held-out campaigns,
logged to MLflow and registered as ``uplift`` (issue 15).

Reads params sections ``uplift`` (learner, boosters, group sizes, promotion) and, for the features and outcome
windows, ``features`` and ``labels``. Input: a validated data directory (``churn validate`` output) with the
optional ``contacts`` table. Grain: one row per campaign contact (customer_id, contact_ts, naive UTC); windows
in days, revenue in the shop's currency. Steps:

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
   loads (``pipelines.registry.load_models``, the scoring path), else the ``bgnbd_churn_probability`` feature (the
   metrics say which).
4. **Deployed model.** Refitted on every followed-up contact, logged to MLflow (params, metrics, the Qini plot),
   registered as ``uplift`` (pyfunc, ``models/serving.py`` kind ``uplift``, the ``models`` package shipped beside
   it, the held-out model as ``holdout_estimator``) with alias ``challenger``; ``champion`` moves to it when, for
   at least one action, its held-out Qini on retention or on net revenue (the outcome the expected profit targets
   by) beats random targeting: above the 95th percentile of the shuffled rankings (a one-sided permutation test at
   5 %). ``uplift.promote: manual``, or ``auto`` inside a DVC
   experiment, never moves ``champion``. Otherwise the champion stays where it is.

What the default shop gives (held-out Qini per action and outcome against random and churn-risk targeting):
docs/experiments.md#uplift-stage, and the committed run's figures in docs/experiments.md#current-run-uplift.

No contacts table, or too few contacts (no action with ``uplift.min_group_size`` followed-up treated and control
contacts with features): no model; ``{"status": "no contacts table" | "too few contacts", ...}`` goes to both
outputs, the ``champion`` alias of ``uplift`` is removed if there is one (scoring then falls back to the rule
table; printed), exit 0.

The pure steps are ``features.contact_features`` (step 2) and ``models.uplift_evaluation`` (the joins, the
held-out split, the evaluation, the promotion decision and the Qini plot); this module reads the files, talks to
MLflow through ``pipelines.registry`` and writes the two JSON outputs.

Leakage: the features are point-in-time; the outcome windows of an earlier campaign may reach into the held-out
campaign's period (a customer in both), which shares the period's shocks, not the held-out outcomes themselves.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn_pipeline.errors import ChurnError, DataContractError, validate_first
from churn_pipeline.features.build import FeatureConfig
from churn_pipeline.features.contact_features import contact_features
from churn_pipeline.features.cutoffs import data_end
from churn_pipeline.models.factory import build_estimator
from churn_pipeline.models.measure import contact_outcomes
from churn_pipeline.models.scoring import UPLIFT_KIND
from churn_pipeline.models.uplift import LEARNERS, REVENUE_OBJECTIVES, UpliftModel
from churn_pipeline.models.uplift_evaluation import (
    CHURN_RISK_FEATURE,
    beats_random,
    comparison_line,
    evaluate_held_out,
    feature_churn_risk,
    fit_on_contacts,
    followed_up_contacts,
    group_counts,
    held_out_plan,
    held_out_rows,
    join_contact_features,
    promotion_decision,
    qini_figure,
)
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.io import connect, data_span, write_json
from churn_pipeline.pipelines.params import load_params, load_section
from churn_pipeline.pipelines.registry import (
    configure_mlflow,
    dvc_experiment,
    load_models,
    register_uplift,
    remove_uplift_champion,
    set_uplift_aliases,
    tracking_uri,
)

__all__ = [
    "NO_CONTACTS",
    "REGISTERED_NAME",
    "TOO_FEW",
    "ContactData",
    "UpliftParams",
    "churn_risk",
    "prepare",
    "promote_mode",
    "run",
]

REGISTERED_NAME = UPLIFT_KIND
NO_CONTACTS = "no contacts table"
TOO_FEW = "too few contacts"
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
        return build_estimator(
            "uplift",
            manifest,
            self,
            exclude=("experiment", "promote", "churn_model_alias", "shuffles"),
            retention_days=config.churn_horizon_days,
            revenue_days=config.clv_horizon_days,
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
    followed, counts = followed_up_contacts(outcomes)
    if followed.empty:
        return ContactData(followed, {"features": [], "categorical": []}, counts | {"with_features": 0}, config, end)
    features, manifest = contact_features(con, followed[["customer_id", "cutoff"]], end, config)
    frame = join_contact_features(followed, features)
    counts["with_features"] = len(frame)
    counts["without_features"] = len(followed) - len(frame)
    return ContactData(frame, manifest, counts, config, end)


# ------------------------------------------------------------------------------------------ churn risk
def churn_risk(frame: pd.DataFrame, alias: str) -> tuple[np.ndarray, str]:
    """P(churn) per contact: the churn model ``models:/churn@<alias>`` loaded as scoring loads it
    (``pipelines.registry.load_models``) on the contact features, else the ``bgnbd_churn_probability`` feature (missing
    values at its median); and a sentence saying which."""
    try:
        loaded = load_models([], alias)["churn"]
        risk = loaded.estimator.predict_proba(frame)[:, 1]
        return risk, f"models:/churn@{alias} (v{loaded.version}) churn_probability"
    except (ChurnError, ValueError) as exc:
        why = str(exc).splitlines()[0][:160]
    return feature_churn_risk(frame), f"feature {CHURN_RISK_FEATURE} (models:/churn@{alias} not usable: {why})"


def promote_mode(params: UpliftParams) -> tuple[bool, str]:
    """``(manual, why)``, as the train stage: ``manual``, or ``auto`` inside `dvc exp run`, never moves champion."""
    if params.promote == "manual":
        return True, "uplift.promote is manual"
    experiment = dvc_experiment()
    if experiment:
        return True, f"this is DVC experiment {experiment.get('name', '')} (uplift.promote: auto acts as manual)"
    return False, "uplift.promote is auto"


# ----------------------------------------------------------------------------------------------- stage
def _no_model(status: str, detail: str, metrics_path: Path, registered_path: Path, extra: dict | None = None) -> None:
    removed = remove_uplift_champion()
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
            holdout = (
                fit_on_contacts(params.estimator(prepared.manifest, prepared.config), train) if len(train) else None
            )
        except ValueError as exc:
            console.print(f"[yellow]uplift (held out): no model: {exc}[/yellow]", soft_wrap=True)
            holdout = None
        risk, risk_source = churn_risk(test, params.churn_model_alias) if len(test) else (np.empty(0), "none")
        report, predictions = evaluate_held_out(holdout, test, risk, plan, params.shuffles, params.seed)
        s.rows = len(train)
        s.detail = f"{len(test):,} held-out contacts"
    console.print(f"uplift: churn-risk targeting from {risk_source}", soft_wrap=True)
    for action, entry in report.items():
        console.print(f"uplift: {comparison_line(action, entry)}", soft_wrap=True)

    with step("uplift: deployed model (every followed-up contact)") as s:
        model = fit_on_contacts(params.estimator(prepared.manifest, prepared.config), frame)
        s.rows = len(frame)
        s.detail = f"actions {', '.join(model.actions_)}"
    for action, why in model.skipped_actions_.items():
        console.print(f"[yellow]uplift: action {action} left out: {why}[/yellow]", soft_wrap=True)

    beats = beats_random(report)
    promote, decision = promotion_decision(beats, *promote_mode(params))
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
        png = qini_figure(test, predictions, risk, report) if predictions is not None else None
        plot = None
        if png is not None:
            plot = tmp / "uplift_qini.png"
            plot.write_bytes(png)
        run_id, version = register_uplift(model, holdout, frame, metrics, plot, params, params_path, data, tmp)
        champion = set_uplift_aliases(version, promote)
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
