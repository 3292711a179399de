"""The train stage end to end: MLflow run, registered pyfunc models, aliases and the champion gate.

Runs on a small synthetic shop with MLflow in a temporary SQLite store (never the project's own).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient

from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop
from churn_pipeline.models.gate import champion_decision
from churn_pipeline.models.training import held_out_metrics
from churn_pipeline.pipelines import features as features_stage
from churn_pipeline.pipelines import train as stage
from churn_pipeline.pipelines.params import GateParams

# Slow (`make test` runs them, `make test-fast` skips them): about 40 s, two trainings of three models each; the
# train stage's first-version path also runs in the fast suite, inside test_evaluate's and test_score's fixtures.
pytestmark = pytest.mark.slow

PARAMS = {
    "features": {"cutoffs": {"frequency": "monthly", "count": 24}, "windows_days": [30, 90, 365]},
    "labels": {"churn_horizon_days": 90, "clv_horizon_days": 180},
    "train": {
        "n_validation": 1,
        "experiment": "test-train",
        "churn": {"n_estimators": 200, "early_stopping_rounds": 20},
        "clv": {"n_estimators": 200, "early_stopping_rounds": 20},
        "next_order": {"n_estimators": 100, "early_stopping_rounds": 10},
    },
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    shop = root / "shop"
    shop.mkdir()
    for name, table in generate_shop(SyntheticShopConfig(customers=4000, seed=3)).items():
        pq.write_table(table, shop / f"{name}.parquet")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    features_stage.run(data=shop, out_dir=root / "features", params_path=root / "params.yaml")
    return root


@pytest.fixture(scope="module")
def trained(workspace):
    """Two training runs into one fresh registry: good params, then a deliberately weak churn model."""
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.chdir(workspace)  # artifacts land beside the store, not in the repository
    panel = workspace / "features" / "panel.parquet"
    stage.run(panel_path=panel, metrics_path=workspace / "first.json", params_path=workspace / "params.yaml")
    weak = json.loads(json.dumps(PARAMS))
    weak["train"]["churn"].update({"num_leaves": 2, "n_estimators": 2})
    (workspace / "weak.yaml").write_text(yaml.safe_dump(weak))
    stage.run(
        panel_path=panel,
        metrics_path=workspace / "second.json",
        params_path=workspace / "weak.yaml",
        registered_path=workspace / "registered.json",
    )
    yield workspace, uri
    mp.undo()


def test_first_training_registers_both_models_and_makes_them_champions(trained):
    workspace, _ = trained
    first = json.loads((workspace / "first.json").read_text())
    assert first["churn"]["version"] == "1" and first["churn"]["promoted"]
    assert first["clv"]["version"] == "1" and first["clv"]["promoted"]
    assert "no champion" in first["churn"]["gate"][0]
    assert first["churn"]["roc_auc"] > 0.7


def test_a_worse_challenger_is_refused_and_the_reason_names_the_metric(trained):
    workspace, uri = trained
    second = json.loads((workspace / "second.json").read_text())
    assert second["churn"]["version"] == "2"
    assert not second["churn"]["promoted"] and second["churn"]["champion"] == "1"
    assert any("roc_auc" in r and "worse by" in r for r in second["churn"]["gate"])
    client = MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("churn", "challenger").version) == "2"
    # Same CLV params both times: deterministic, so the second is as good and is promoted.
    assert second["clv"]["promoted"]
    assert (
        second["clv"]["normalized_gini"] == json.loads((workspace / "first.json").read_text())["clv"]["normalized_gini"]
    )


def test_the_registered_record_names_this_runs_versions_and_store(trained):
    workspace, uri = trained
    record = json.loads((workspace / "registered.json").read_text())
    second = json.loads((workspace / "second.json").read_text())
    assert record == {
        "tracking_uri": uri,
        "run_id": second["run_id"],
        "models": {"churn": "models:/churn/2", "clv": "models:/clv/2", "next_order": "models:/next_order/2"},
    }


def test_the_run_logs_params_data_fingerprint_commit_metrics_and_plots(trained):
    workspace, uri = trained
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(json.loads((workspace / "first.json").read_text())["run_id"])
    assert run.data.params["train.churn.num_leaves"] == "31"
    assert run.data.params["labels.churn_horizon_days"] == "90"
    assert len(run.data.tags["data_fingerprint"]) == 64
    assert "git_commit" in run.data.tags
    assert "churn.roc_auc" in run.data.metrics and "clv.normalized_gini" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/churn_reliability.png", "plots/churn_importance.png", "plots/clv_importance.png"} <= artifacts


def test_the_registered_churn_model_returns_calibrated_probabilities_through_pyfunc(trained):
    workspace, uri = trained
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/churn@champion")
    scoring = pd.read_parquet(workspace / "features" / "scoring.parquet").head(300)
    out = model.predict(scoring)
    assert list(out.columns) == ["churn_probability"]
    p = out["churn_probability"].to_numpy()
    assert ((p > 0) & (p < 1)).all() and len(np.unique(p)) > 10  # probabilities, not 0/1 labels


def test_the_registered_clv_model_returns_value_and_expected_orders(trained):
    workspace, uri = trained
    mlflow.set_tracking_uri(uri)
    out = mlflow.pyfunc.load_model("models:/clv@champion").predict(
        pd.read_parquet(workspace / "features" / "scoring.parquet").head(100)
    )
    assert list(out.columns) == ["predicted_clv", "expected_orders"]
    assert (out >= 0).all().all()


def test_the_registered_next_order_model_returns_a_survival_curve_and_a_median(trained):
    workspace, uri = trained
    mlflow.set_tracking_uri(uri)
    out = mlflow.pyfunc.load_model("models:/next_order@champion").predict(
        pd.read_parquet(workspace / "features" / "scoring.parquet").head(300)
    )
    curve = [f"order_probability_{d}d" for d in (14, 30, 60, 90, 120, 180)]
    assert list(out.columns) == [*curve, "days_to_next_order"]
    p = out[curve].to_numpy()
    assert ((p >= 0) & (p <= 1)).all() and (np.diff(p, axis=1) >= 0).all()
    # A median exactly when half of the customers like this one order within 180 days.
    assert (out["days_to_next_order"].notna() == (out["order_probability_180d"] >= 0.5)).all()
    days = out["days_to_next_order"].dropna()
    assert ((days > 0) & (days <= 180)).all()


def test_the_next_order_model_beats_bgnbd_on_concordance_and_is_gated_on_it(trained):
    workspace, _ = trained
    first = json.loads((workspace / "first.json").read_text())["next_order"]
    assert first["concordance"] > first["baselines"]["bgnbd"]["concordance"] > 0.5
    assert first["integrated_brier"] < first["baselines"]["bgnbd"]["integrated_brier"]
    assert first["label_horizon_days"] == 180 and first["promoted"]


def test_a_feature_table_missing_columns_is_rejected_naming_them_but_never_a_value(trained):
    workspace, uri = trained
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/churn@champion")
    scoring = pd.read_parquet(workspace / "features" / "scoring.parquet").head(20)
    broken = scoring.drop(columns=["recency_days"])
    # MLflow's own schema check: a short message without the input rows (it used to quote the whole frame).
    with pytest.raises(Exception) as caught:
        model.predict(broken)
    assert len(str(caught.value)) < 300 and not any(str(i) in str(caught.value) for i in scoring["customer_id"])
    # The model's own check names the missing column.
    with pytest.raises(ValueError, match="recency_days"):
        model.unwrap_python_model().predict(None, broken)


def test_a_panel_too_short_for_a_purged_split_fails_with_advice(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    panel = pd.read_parquet(workspace / "features" / "panel.parquet")
    last = sorted(panel["cutoff"].unique())[-3:]
    short = tmp_path / "panel.parquet"
    panel[panel["cutoff"].isin(last)].to_parquet(short)
    (tmp_path / "panel.features.json").write_text((workspace / "features" / "panel.features.json").read_text())
    with pytest.raises(Exception, match=r"features\.cutoffs\.count"):
        stage.run(panel_path=short, metrics_path=tmp_path / "m.json", params_path=workspace / "params.yaml")
    assert not (tmp_path / "m.json").exists()


def test_mlflow_models_predict_cli_scores_a_feature_file(trained):
    workspace, uri = trained
    features = workspace / "features_sample.csv"
    pd.read_parquet(workspace / "features" / "scoring.parquet").head(40).to_csv(features, index=False)
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.run(
        [
            str(mlflow_cli),
            "models",
            "predict",
            "-m",
            "models:/churn@champion",
            "-i",
            str(features),
            "-t",
            "csv",
            "--env-manager",
            "local",
        ],
        capture_output=True,
        text=True,
        cwd=workspace,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    predictions = json.loads(proc.stdout.strip().splitlines()[-1])["predictions"]
    assert len(predictions) == 40
    assert all(0 < row["churn_probability"] < 1 for row in predictions)


def test_the_deployed_models_see_the_newest_labels_and_travel_with_their_held_out_twins(trained):
    workspace, uri = trained
    first = json.loads((workspace / "first.json").read_text())
    mlflow.set_tracking_uri(uri)
    for kind in ("churn", "clv"):
        served = mlflow.pyfunc.load_model(f"models:/{kind}/1").unwrap_python_model()
        deployed, held_out = served.estimator, served.holdout_estimator
        # The deployed model's validation ends at the held-out test cutoff, so it trained on more rows.
        assert first[kind]["deployed_validation"].endswith(first[kind]["test_cutoff"])
        assert deployed.n_train_rows_ > held_out.n_train_rows_
        # The reported test metrics are the held-out twin's, on rows it never saw.
        panel = pd.read_parquet(workspace / "features" / "panel.parquet")
        label = "churned" if kind == "churn" else "future_revenue"
        test = panel[(panel["cutoff"] == pd.Timestamp(first[kind]["test_cutoff"])) & panel[label].notna()]
        metrics = held_out_metrics(kind, held_out, test)
        key = "roc_auc" if kind == "churn" else "normalized_gini"
        assert metrics[key] == pytest.approx(first[kind][key], abs=1e-6)


def test_auto_split_settings_follow_the_features_schedule_and_params_win():
    planned = {"schedule": {"frequency": "weekly", "n_validation": 1, "purge": False, "reason": "..."}}
    assert stage.TrainParams().split_settings(planned) == (1, False)
    assert stage.TrainParams().split_settings({"schedule": {"n_validation": None, "purge": None}}) == (2, True)
    assert stage.TrainParams().split_settings({}) == (2, True)
    assert stage.TrainParams(n_validation=3, purge=True).split_settings(planned) == (3, True)
    with pytest.raises(ValueError, match="n_validation"):
        stage.TrainParams(n_validation=0)
    with pytest.raises(ValueError, match="purge"):
        stage.TrainParams(purge="sometimes")


def test_a_champion_needing_features_the_table_lacks_is_kept_with_one_readable_line(trained):
    workspace, uri = trained
    mlflow.set_tracking_uri(uri)
    champion = mlflow.pyfunc.load_model("models:/churn/1").unwrap_python_model().holdout_estimator
    first = json.loads((workspace / "first.json").read_text())
    panel = pd.read_parquet(workspace / "features" / "panel.parquet")
    test = panel[(panel["cutoff"] == pd.Timestamp(first["churn"]["test_cutoff"])) & panel["churned"].notna()]
    # The events feed went missing: the new table has no session features, and the challenger looks great.
    without_events = test.drop(columns=[c for c in test.columns if c.startswith("sessions_")])
    great = {"roc_auc": 0.99, "brier": 0.01}
    decision = champion_decision("churn", champion, "1", great, without_events, GateParams())
    assert not decision.promote
    assert len(decision.reasons) == 1 and len(decision.summary()) < 500
    assert "sessions_30d" in decision.summary() and "churn promote churn" in decision.summary()
    # With every feature there, the same challenger is compared on the same rows and promoted.
    decision = champion_decision("churn", champion, "1", great, test, GateParams())
    assert decision.promote and decision.reasons[0] == "against champion v1"


def _churn_cli(workspace: Path, uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("churn")), *args],
        capture_output=True,
        text=True,
        cwd=workspace,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        timeout=120,
    )


def test_churn_promote_moves_the_champion_alias_by_hand(trained):
    workspace, uri = trained
    client = MlflowClient(tracking_uri=uri)
    before = str(client.get_model_version_by_alias("churn", "champion").version)
    proc = _churn_cli(workspace, uri, "promote", "churn", "2")
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert str(client.get_model_version_by_alias("churn", "champion").version) == "2"
        missing = _churn_cli(workspace, uri, "promote", "churn", "99")
        assert missing.returncode == 3 and "cannot promote churn v99" in missing.stdout + missing.stderr
    finally:
        client.set_registered_model_alias("churn", "champion", before)
