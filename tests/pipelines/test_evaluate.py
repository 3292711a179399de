"""The evaluate stage end to end on a small trained pipeline: metrics file, plot files, HTML report, MLflow.

A 3,000-customer synthetic shop, its panel, one training run into a temporary MLflow store (never the project's
own), then `evaluate` with a two-fold backtest.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient

from churn_pipeline.errors import DataContractError, ParamsError
from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop
from churn_pipeline.pipelines import evaluate as stage
from churn_pipeline.pipelines import features as features_stage
from churn_pipeline.pipelines import train as train_stage

PARAMS = {
    "features": {"cutoffs": {"frequency": "monthly", "count": 24}, "windows_days": [30, 90, 365]},
    "labels": {"churn_horizon_days": 90, "clv_horizon_days": 180},
    "train": {
        "n_validation": 1,
        "experiment": "test-evaluate",
        "churn": {"n_estimators": 60, "early_stopping_rounds": 10},
        "clv": {"n_estimators": 60, "early_stopping_rounds": 10},
        "next_order": {"n_estimators": 60, "early_stopping_rounds": 10},
    },
    "evaluate": {"backtest_cutoffs": 2},
    "risk_tiers": {"method": "probability", "high": 0.8, "medium": 0.5},
}
BASELINE_NAMES = ("recency_rule", "rfm", "bgnbd")
DVC_YAML = Path(__file__).resolve().parents[2] / "dvc.yaml"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    shop = root / "shop"
    shop.mkdir()
    for name, table in generate_shop(SyntheticShopConfig(customers=3000, seed=5)).items():
        pq.write_table(table, shop / f"{name}.parquet")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)  # MLflow artifacts land beside the store, not in the repository
    features_stage.run(data=shop, out_dir=root / "features", params_path=root / "params.yaml")
    panel = root / "features" / "panel.parquet"
    train_stage.run(panel_path=panel, metrics_path=root / "train.json", params_path=root / "params.yaml")
    stage.run(
        panel_path=panel,
        train_metrics=root / "train.json",
        metrics_path=root / "metrics" / "evaluate.json",
        plots_dir=root / "plots",
        report_path=root / "reports" / "evaluation.html",
        params_path=root / "params.yaml",
        headline_path=root / "metrics" / "headline.json",
        data=shop,
    )
    yield root
    mp.undo()


def test_the_metrics_file_holds_model_and_baselines_on_the_same_rows(evaluated):
    metrics = json.loads((evaluated / "metrics" / "evaluate.json").read_text())
    train = json.loads((evaluated / "train.json").read_text())
    for name in ("model", *BASELINE_NAMES):
        assert {"roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top10", "capture_top5"} <= set(
            metrics["churn"][name]
        )
        assert {"mae", "rmse", "normalized_gini", "spearman", "decile_mape", "top10_capture", "total_bias_pct"} <= set(
            metrics["clv"][name]
        )
        assert {"best_share", "max_profit", "emp_per_customer"} <= set(metrics["profit"][name])
    assert "model_by_value" in metrics["profit"]
    # The registered model scored on the test cutoff gives the train stage's own numbers.
    assert metrics["churn"]["model"]["roc_auc"] == pytest.approx(train["churn"]["roc_auc"], abs=1e-6)
    assert metrics["clv"]["model"]["normalized_gini"] == pytest.approx(train["clv"]["normalized_gini"], abs=1e-6)
    panel = pd.read_parquet(evaluated / "features" / "panel.parquet")
    at_test = panel[panel["cutoff"] == pd.Timestamp(train["churn"]["test_cutoff"])]
    assert metrics["test"]["churn_rows"] == int(at_test["churned"].notna().sum())


def test_tiers_and_backtest_summaries_are_in_the_metrics_file(evaluated):
    metrics = json.loads((evaluated / "metrics" / "evaluate.json").read_text())
    tiers = metrics["tiers"]
    assert set(tiers) <= {"high", "medium", "low"} and "high" in tiers
    assert sum(t["share"] for t in tiers.values()) == pytest.approx(1.0, abs=1e-5)
    assert tiers["high"]["churn_rate"] > tiers["low"]["churn_rate"]
    assert metrics["backtest"]["folds"] == 2
    auc = metrics["backtest"]["model"]["roc_auc"]
    assert 0.5 < auc["mean"] < 1 and auc["std"] >= 0


def test_plot_files_hold_the_columns_the_dvc_plot_definitions_name(evaluated):
    plots = evaluated / "plots"
    for kind, columns in (("roc", ["fpr", "tpr"]), ("pr", ["recall", "precision"]),
                          ("calibration", ["mean_predicted", "observed_rate"])):  # fmt: skip
        for name in ("model", *BASELINE_NAMES):
            frame = pd.read_csv(plots / kind / f"{name}.csv")
            assert list(frame.columns) == columns and len(frame) <= 200
    assert list(pd.read_csv(plots / "profit_curve.csv").columns) == [
        "share", "model", "recency_rule", "rfm", "bgnbd", "model_by_value", "random"
    ]  # fmt: skip
    gains = pd.read_csv(plots / "gains.csv")
    assert gains["model"].iloc[0] == 0 and gains["model"].iloc[-1] == pytest.approx(1.0)
    assert list(pd.read_csv(plots / "clv_deciles.csv")["decile"]) == list(range(1, 11))
    assert list(pd.read_csv(plots / "backtest_roc_auc.csv")["fold"]) == [1, 2]


def test_every_plot_image_named_in_dvc_yaml_is_written_as_a_png(evaluated):
    spec = yaml.safe_load(DVC_YAML.read_text())
    files = list(spec["plots"])
    assert files and all(isinstance(f, str) and f.startswith("plots/images/") for f in files)
    for f in files:
        assert (evaluated / f).read_bytes().startswith(b"\x89PNG"), f


def test_the_headline_metrics_are_eleven_numbers_equal_to_the_full_document(evaluated):
    headline = json.loads((evaluated / "metrics" / "headline.json").read_text())
    full = json.loads((evaluated / "metrics" / "evaluate.json").read_text())
    flat = {f"{group}.{key}": value for group, values in headline.items() for key, value in values.items()}
    assert len(flat) == 11 and all(isinstance(v, float) for v in flat.values())
    assert flat["next_order.cindex"] == full["next_order"]["model"]["concordance"]
    assert flat["churn.roc_auc"] == full["churn"]["model"]["roc_auc"]
    assert flat["clv.gini"] == full["clv"]["model"]["normalized_gini"]
    assert flat["profit.emp"] == full["profit"]["model"]["emp_per_customer"]
    assert flat["baseline.auc"] == max(full["churn"][n]["roc_auc"] for n in BASELINE_NAMES)
    assert flat["baseline.gini"] == max(full["clv"][n]["normalized_gini"] for n in BASELINE_NAMES)


def test_the_next_order_model_is_judged_against_bgnbd_in_the_metrics_and_the_report(evaluated):
    full = json.loads((evaluated / "metrics" / "evaluate.json").read_text())["next_order"]
    assert full["grid_days"] == [14, 30, 60, 90, 120, 180] and full["rows"] > 500
    assert full["model"]["concordance"] > full["bgnbd"]["concordance"] > 0.5
    assert full["model"]["integrated_brier"] < full["bgnbd"]["integrated_brier"]
    # Calibrated in time: the mean predicted P(order within 90 days) is close to the observed share.
    assert abs(full["model"]["mean_order_probability_90d"] - full["model"]["order_rate_90d"]) < 0.05
    html = (evaluated / "reports" / "evaluation.html").read_text()
    assert "When will they order next" in html
    curve = pd.read_csv(evaluated / "plots" / "next_order_curve.csv")
    assert curve["days"].tolist() == [14, 30, 60, 90, 120, 180] and curve["observed"].is_monotonic_increasing


def test_the_report_shows_cohorts_periods_and_segments_with_their_counts(evaluated):
    html = (evaluated / "reports" / "evaluation.html").read_text()
    assert "Retention: cohorts, periods and segments" in html
    for segment in ("risk tier", "country", "acquisition channel", "main order channel"):
        assert f"By {segment}" in html, segment
    retention = json.loads((evaluated / "metrics" / "evaluate.json").read_text())["retention"]
    assert retention["customers"] > 1000 and 0 < retention["repeat_rate_ever"] < 1
    cohorts = pd.read_csv(evaluated / "plots" / "retention" / "cohorts.csv")
    assert (cohorts["month_0"] == 1.0).all() and cohorts["customers"].sum() == retention["customers"]


def _dvc_view_of(evaluated: Path) -> Path:
    """A DVC repository holding the evaluation's outputs and dvc.yaml's own plots and metrics definitions."""
    spec = yaml.safe_load(DVC_YAML.read_text())

    def names(entries: list) -> list[str]:
        return [next(iter(m)) if isinstance(m, dict) else m for m in entries]

    metrics = names(spec["stages"]["evaluate"]["metrics"])
    declared = [m for stage in spec["stages"].values() for m in names(stage.get("metrics", []))]
    assert declared == metrics == ["metrics/headline.json"]  # the only DVC metrics file
    view = evaluated / "dvc_view"
    if not view.exists():
        view.mkdir()
        subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=view, check=True, env=_path_env())
        shutil.copytree(evaluated / "plots", view / "plots")
        shutil.copytree(evaluated / "metrics", view / "metrics")
        (view / "dvc.yaml").write_text(yaml.safe_dump({"metrics": metrics, "plots": spec["plots"]}))
    return view


def _path_env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}


def test_dvc_metrics_show_fits_a_200_column_terminal(evaluated):
    view = _dvc_view_of(evaluated)
    shown = subprocess.run(["dvc", "metrics", "show"], cwd=view, capture_output=True, text=True, env=_path_env())
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "churn.roc_auc" in lines[0] and "…" not in shown.stdout
    assert max(len(line) for line in lines) <= 200


def test_dvc_plots_show_renders_every_plot_as_an_image_without_a_network(evaluated):
    view = _dvc_view_of(evaluated)
    out = view / "rendered"
    shown = subprocess.run(["dvc", "plots", "show", "-o", str(out)], cwd=view, capture_output=True, text=True,
                           env=_path_env())  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    page = (out / "index.html").read_text()
    images = re.findall(r"<img[^>]*src=\"([^\"]+)\"", page)
    assert len(images) == len(yaml.safe_load(DVC_YAML.read_text())["plots"]) == 12
    for src in images:  # local files (or inline data), nothing fetched
        assert not src.startswith(("http:", "https:", "//"))
        assert src.startswith("data:") or (out / src).is_file()


def test_the_report_is_self_contained_and_holds_every_section(evaluated):
    report = (evaluated / "reports" / "evaluation.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", report)
    assert "<script" not in report and "<link" not in report
    # ROC, PR, reliability, gains, profit, CLV, backtest AUC, next order, 4 retention views, 2 importance
    assert report.count("data:image/png;base64,") == 14
    for heading in ("Headline", "Churn: model against baselines", "Lift, capture and gains", "Risk tiers",
                    "Money", "Customer lifetime value", "Backtest", "When will they order next",
                    "Lifetime value: what the lifetime_value column assumes", "Retention: cohorts",
                    "Feature importance", "Run facts"):  # fmt: skip
        assert heading in report
    for label in ("LightGBM model", "recency rule", "RFM score", "BG/NBD"):
        assert label in report


def test_the_report_metrics_and_plots_are_logged_to_the_training_run(evaluated):
    run_id = json.loads((evaluated / "train.json").read_text())["run_id"]
    client = MlflowClient()
    run = client.get_run(run_id)
    assert "eval.churn.model.roc_auc" in run.data.metrics
    assert "eval.backtest.model.roc_auc.mean" in run.data.metrics
    logged = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/evaluation.html", "evaluation/evaluate.json", "evaluation/plots"} <= logged


def test_a_missing_train_metrics_file_fails_and_writes_nothing(evaluated, tmp_path):
    with pytest.raises(DataContractError, match="churn train"):
        stage.run(
            panel_path=evaluated / "features" / "panel.parquet",
            train_metrics=tmp_path / "absent.json",
            metrics_path=tmp_path / "evaluate.json",
            plots_dir=tmp_path / "plots",
            report_path=tmp_path / "report.html",
            params_path=evaluated / "params.yaml",
        )
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("risk_tiers", {"high": 0.4, "medium": 0.6}, "0 < medium < high"),
        ("evaluate", {"backtest_cutoffs": 0}, "backtest_cutoffs"),
        ("evaluate", {"acceptance_rate": 1.5}, "acceptance_rate"),
        ("evaluate", {"retained_value": "lifetime"}, "retained_value"),
    ],
)
def test_bad_params_fail_naming_the_key(evaluated, tmp_path, section, values, message):
    params = json.loads(json.dumps(PARAMS))
    params[section].update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=message):
        stage.run(
            panel_path=evaluated / "features" / "panel.parquet",
            train_metrics=evaluated / "train.json",
            metrics_path=tmp_path / "evaluate.json",
            plots_dir=tmp_path / "plots",
            report_path=tmp_path / "report.html",
            params_path=tmp_path / "params.yaml",
        )
    assert not (tmp_path / "evaluate.json").exists()
