"""The uplift stage: point-in-time contact features, the held-out evaluation, the MLflow registration with its
aliases, and the runs without a model (no contacts table, too few contacts).

Runs on a small synthetic shop (3,000 customers, its eight past campaigns) with MLflow in a temporary SQLite
store (never the project's own); the shop and one stage run take about 10 s.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient

from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop
from churn_pipeline.pipelines import uplift as stage
from churn_pipeline.pipelines import validate as validate_stage
from churn_pipeline.pipelines.params import load_section

PARAMS = {
    "features": {"cutoffs": {"frequency": "monthly", "count": 14}, "windows_days": [30, 90, 365]},
    "labels": {"churn_horizon_days": 90, "clv_horizon_days": 180},
    "uplift": {"experiment": "test-uplift", "min_group_size": 30, "shuffles": 50, "n_estimators": 60},
}
SHIPPED = Path(__file__).resolve().parents[2] / "params.yaml"


def test_shipped_params_equal_the_dataclass_defaults():
    assert load_section(stage.UpliftParams, "uplift", SHIPPED) == stage.UpliftParams()


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A validated small shop with its contacts, a fresh MLflow store, and one uplift run into it."""
    root = tmp_path_factory.mktemp("uplift")
    raw = root / "raw"
    raw.mkdir()
    for name, table in generate_shop(SyntheticShopConfig(customers=3000, seed=3)).items():
        if name != "campaign_truth":
            pq.write_table(
                table if isinstance(table, pa.Table) else pa.Table.from_pandas(table), raw / f"{name}.parquet"
            )
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    validate_stage.run(data=raw, out=root / "validated", params_path=params)
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)  # MLflow artifacts land beside the store, not in the repository
    stage.run(
        data=root / "validated", metrics_path=root / "m.json", registered_path=root / "r.json", params_path=params
    )
    yield root, params
    mp.undo()


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------ point in time
def test_changing_orders_and_events_at_or_after_a_contact_changes_none_of_its_features(shop, tmp_path):
    root, params = shop
    before = stage.prepare(root / "validated", params)
    # One campaign (one contact per customer): its customers' orders at or after their contact change and they get
    # a new order and events exactly at the contact; nothing before any contact changes.
    contacts = pq.read_table(root / "validated" / "contacts.parquet").to_pandas()
    campaign = contacts[contacts["campaign_id"] == sorted(contacts["campaign_id"].unique())[2]]
    at = campaign.groupby("customer_id")["contact_ts"].min()
    changed = tmp_path / "changed"
    shutil.copytree(root / "validated", changed)
    orders = pq.read_table(changed / "orders.parquet").to_pandas()
    after = orders["order_ts"] >= orders["customer_id"].map(at)
    assert after.sum() > 50
    orders.loc[after, "amount"] *= 3.0
    extra = pd.DataFrame(
        {"customer_id": at.index, "order_id": [f"new-{i}" for i in range(len(at))], "order_ts": at.to_numpy()}
    )
    extra["amount"] = 999.0
    orders = pd.concat([orders, extra], ignore_index=True)
    pq.write_table(
        pa.Table.from_pandas(orders, schema=pq.read_schema(changed / "orders.parquet")), changed / "orders.parquet"
    )
    events = pq.read_table(changed / "events.parquet").to_pandas()
    new_events = events.iloc[: len(at)].copy()
    new_events["customer_id"], new_events["event_ts"] = at.index, at.to_numpy()
    if "event_id" in new_events:
        new_events["event_id"] = [f"new-{i}" for i in range(len(at))]
    events = pd.concat([events, new_events], ignore_index=True)
    pq.write_table(
        pa.Table.from_pandas(events, schema=pq.read_schema(changed / "events.parquet")), changed / "events.parquet"
    )
    later = stage.prepare(changed, params)

    features = before.manifest["features"]
    keys = ["customer_id", "campaign_id"]
    a = before.frame[before.frame["campaign_id"].isin(campaign["campaign_id"])].set_index(keys).sort_index()
    b = later.frame[later.frame["campaign_id"].isin(campaign["campaign_id"])].set_index(keys).sort_index()
    assert len(a) == len(b) > 100
    pd.testing.assert_frame_equal(a[features], b[features])
    # ... while the outcomes do see them (the new order at the contact retains everyone).
    assert b["retained"].all() and not a["retained"].all()


def test_features_are_taken_at_the_contact_day(shop):
    root, params = shop
    prepared = stage.prepare(root / "validated", params)
    frame = prepared.frame
    assert (frame["cutoff"] == frame["contact_ts"].dt.floor("D")).all()
    assert frame["followed_up"].all()
    assert not set(frame.columns) & {"churned", "future_revenue", "future_orders"}  # no panel label leaks in
    counts = prepared.counts
    assert counts["with_features"] + counts["without_features"] == counts["followed_up"] <= counts["contacts"]


# ---------------------------------------------------------------------------------------------- the run
def test_each_action_is_judged_on_its_latest_campaign_against_random_and_churn_risk(shop):
    root, _ = shop
    metrics = _json(root / "m.json")
    assert metrics["status"] == "ok"
    contacts = pq.read_table(root / "validated" / "contacts.parquet").to_pandas()
    latest = contacts.groupby(["action", "campaign_id"])["contact_ts"].min().reset_index()
    latest = latest.sort_values("contact_ts").groupby("action")["campaign_id"].last()
    assert (
        set(metrics["actions"])
        == set(latest.index)
        == {
            "winback_email_coupon",
            "loyalty_points_boost",
            "personal_outreach",
            "cross_sell_upsell",
        }
    )
    for action, entry in metrics["actions"].items():
        assert entry["evaluated"], entry
        assert entry["held_out_campaign"] == latest[action]
        assert latest[action] not in entry["train_campaigns"]
        for outcome in ("retention", "revenue"):
            report = entry[outcome]
            assert set(report) == {"uplift", "random", "churn_risk"}
            assert report["random"]["qini"] == 0.0 and abs(report["random"]["qini_shuffled_mean"]) < 0.1
            assert -1.5 < report["uplift"]["qini"] < 1.5 and np.isfinite(report["uplift"]["auuc"])
    # No churn model in this store: the BG/NBD prior feature ranks churn risk, and the metrics say so.
    assert metrics["churn_risk_source"].startswith("feature bgnbd_churn_probability")
    assert metrics["rows"]["held_out"] + metrics["rows"]["train_held_out"] == metrics["rows"]["with_features"]


def test_the_model_is_registered_as_a_pyfunc_with_its_aliases_and_returns_uplift_columns(shop):
    root, params = shop
    metrics, record = _json(root / "m.json"), _json(root / "r.json")
    assert record["model"] == "models:/uplift/1" and record["status"] == "ok"
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("uplift", "challenger").version) == "1"
    promoted = any(metrics["beats_random"].values())
    assert metrics["promoted"] == promoted
    assert ("champion" in (client.get_registered_model("uplift").aliases or {})) == promoted
    run = client.get_run(record["run_id"])
    assert run.data.params["uplift.learner"] == "x" and run.data.params["labels.churn_horizon_days"] == "90"
    assert any(k.startswith("actions.winback_email_coupon.retention.uplift.qini") for k in run.data.metrics)
    assert {a.path for a in client.list_artifacts(record["run_id"], "plots")} == {"plots/uplift_qini.png"}

    model = mlflow.pyfunc.load_model(record["model"])
    assert model.model_config["kind"] == "uplift"
    frame = stage.prepare(root / "validated", params).frame
    out = model.predict(frame.head(20))
    estimator = model.unwrap_python_model().estimator
    assert list(out.columns) == estimator.output_columns_ and len(out) == 20
    assert set(estimator.actions_) == set(metrics["modelled_actions"])
    assert model.unwrap_python_model().holdout_estimator is not None
    np.testing.assert_allclose(out.to_numpy(), estimator.predict_uplift(frame.head(20)).to_numpy())


# ------------------------------------------------------------------------------------------ no model
def test_without_a_contacts_table_there_is_no_model_the_champion_alias_goes_and_the_cli_exits_0(shop, tmp_path):
    root, params = shop
    client = MlflowClient()
    client.set_registered_model_alias("uplift", "champion", "1")  # as if a version had been promoted
    bare = tmp_path / "validated"
    shutil.copytree(root / "validated", bare)
    (bare / "contacts.parquet").unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "churn_pipeline", "uplift", "--data", str(bare), "--metrics", str(tmp_path / "m.json"),
         "--registered", str(tmp_path / "r.json"), "--params", str(params)],
        capture_output=True, text=True, env=dict(os.environ), timeout=300, cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("m.json", "r.json"):
        doc = _json(tmp_path / name)
        assert doc["status"] == "no contacts table" and doc["champion_removed"] == "1"
    assert _json(tmp_path / "r.json")["model"] is None
    assert "champion" not in (client.get_registered_model("uplift").aliases or {})
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "removed the champion alias from uplift v1" in said and "rule table" in said
    assert str(client.get_model_version_by_alias("uplift", "challenger").version) == "1"  # left as it was


def test_too_few_contacts_write_the_status_and_no_model(shop, tmp_path):
    root, _ = shop
    strict = json.loads(json.dumps(PARAMS))
    strict["uplift"]["min_group_size"] = 100_000
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(strict))
    versions = len(MlflowClient().search_model_versions("name='uplift'"))
    stage.run(data=root / "validated", metrics_path=tmp_path / "m.json", registered_path=tmp_path / "r.json",
              params_path=path)  # fmt: skip
    doc = _json(tmp_path / "m.json")
    assert doc["status"] == "too few contacts" and "100000" in doc["detail"]
    assert set(doc["groups"]) == {
        "winback_email_coupon",
        "loyalty_points_boost",
        "personal_outreach",
        "cross_sell_upsell",
    }
    assert _json(tmp_path / "r.json")["status"] == "too few contacts"
    assert len(MlflowClient().search_model_versions("name='uplift'")) == versions  # nothing registered


def test_data_that_is_not_validated_is_refused(tmp_path):
    from churn_pipeline.errors import DataContractError

    with pytest.raises(DataContractError, match="not a validated data directory"):
        stage.prepare(tmp_path, SHIPPED)


def test_churn_risk_comes_from_the_churn_champion_when_it_loads(monkeypatch):
    from churn_pipeline.errors import ParamsError

    class Churn:
        features_ = ("x",)

        def predict_proba(self, frame):
            return np.column_stack([1 - frame["x"].to_numpy(), frame["x"].to_numpy()])

    class Loaded:
        estimator, version = Churn(), "7"

    frame = pd.DataFrame({"x": [0.2, 0.9], "bgnbd_churn_probability": [0.5, np.nan]})
    monkeypatch.setattr(stage, "load_models", lambda uris, alias: {"churn": Loaded()})
    risk, source = stage.churn_risk(frame, "champion")
    np.testing.assert_allclose(risk, [0.2, 0.9])
    assert source == "models:/churn@champion (v7) churn_probability"

    def missing(uris, alias):
        raise ParamsError("no registered model 'churn'")

    monkeypatch.setattr(stage, "load_models", missing)
    risk, source = stage.churn_risk(frame, "champion")
    np.testing.assert_allclose(risk, [0.5, 0.5])  # the prior, its missing value at the median
    assert source.startswith("feature bgnbd_churn_probability (models:/churn@champion not usable: no registered")
