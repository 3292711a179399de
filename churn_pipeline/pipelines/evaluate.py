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

The computation is ``models.backtest`` (folds, refits, baselines, the metrics documents); this module reads the
params, the panel and the registered models, and writes the metrics, plots and report.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn_pipeline.errors import DataContractError
from churn_pipeline.models.backtest import (
    MODEL,
    MODEL_BY_VALUE,
    Fold,
    FoldSettings,
    backtest_frame,
    backtest_summary,
    evaluate_fold,
    evaluate_next_order,
    fold_cutoffs,
    headline_metrics,
    labelled_cutoffs,
    metrics_document,
    refit,
    retention_metrics,
)
from churn_pipeline.models.lifetime import LifetimeValueParams
from churn_pipeline.models.report import lifetime_section
from churn_pipeline.models.retention import retention_figures, retention_section, retention_views
from churn_pipeline.models.tiers import RiskTiers
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.io import atomic_path, read_manifest
from churn_pipeline.pipelines.params import EvaluateParams, TrainParams, load_section
from churn_pipeline.pipelines.registry import (
    configure_mlflow,
    file_fingerprint,
    flatten,
    load_registered,
    load_registered_next_order,
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


def _refit(kind: str, panel: pd.DataFrame, manifest: dict, params: TrainParams, cutoff: pd.Timestamp) -> Any:
    """The train stage's held-out ``kind`` model (churn or clv) refitted on the cutoffs up to ``cutoff``."""
    horizon = manifest[f"{kind}_horizon_days"]
    return refit(kind, params.estimator(kind, manifest), panel, cutoff, horizon, *params.split_settings(manifest))


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
    settings = FoldSettings.of(params)
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
        churn_model, clv_model, tags = load_registered(summary, train_metrics)
        next_order_model = load_registered_next_order(summary, train_metrics)
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
                clv_m = clv_model if same else _refit("clv", panel, manifest, train_params, v)
                refitted = not same
            else:
                churn_m = _refit("churn", panel, manifest, train_params, c)
                clv_m = _refit("clv", panel, manifest, train_params, v)
                refitted = True
            fold = evaluate_fold(
                panel, manifest, number, c, v, churn_m, clv_m, settings, tiers if number == 1 else None, refitted
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
    document = metrics_document(folds, bt_summary, test.details["tiers"], timing)
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


__all__ = ["read_measure", "read_orders", "run", "write_plots"]
