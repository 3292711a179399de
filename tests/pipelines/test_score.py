"""The score stage end to end: a small synthetic shop, validated, trained into a temporary MLflow store, scored.

Also the errors a scheduler meets: wrong model URI or alias, data the model cannot use, an unvalidated or empty
directory, an as-of date before the data; each fails with a clear message and writes nothing.
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

from churn_pipeline.errors import DataContractError, ParamsError
from churn_pipeline.models import scoring
from churn_pipeline.models.actions import control_group
from churn_pipeline.models.scores_schema import COLUMNS, HOLD_OUT, SCHEMA_VERSION
from churn_pipeline.models.tiers import RiskTiers
from churn_pipeline.pipelines import features as features_stage
from churn_pipeline.pipelines import generate as generate_stage
from churn_pipeline.pipelines import registry
from churn_pipeline.pipelines import score as stage
from churn_pipeline.pipelines import train as train_stage
from churn_pipeline.pipelines import validate as validate_stage
from churn_pipeline.pipelines.params import ScoreParams, campaign_economics

# Small and quick: 14 monthly cutoffs without purging, shallow boosters. Scoring does not care how good they are.
PARAMS = {
    "generate": {"customers": 2500, "seed": 11},
    "features": {"cutoffs": {"frequency": "monthly", "count": 14}, "windows_days": [30, 90, 365]},
    "labels": {"churn_horizon_days": 90, "clv_horizon_days": 180},
    "train": {
        "n_validation": 1,
        "purge": False,
        "experiment": "test-score",
        "churn": {"n_estimators": 60, "num_leaves": 15, "early_stopping_rounds": 10},
        "clv": {"n_estimators": 60, "num_leaves": 15, "early_stopping_rounds": 10},
        "next_order": {"n_estimators": 60, "num_leaves": 15, "early_stopping_rounds": 10},
    },
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A validated small shop, models trained on it into a fresh MLflow store, and its scores."""
    root = tmp_path_factory.mktemp("score")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)  # MLflow artifacts land beside the store, not in the repository
    generate_stage.run(out=root / "raw", params_path=params)
    validate_stage.run(data=root / "raw", out=root / "validated", params_path=params)
    features_stage.run(data=root / "validated", out_dir=root / "features", params_path=params)
    train_stage.run(
        panel_path=root / "features" / "panel.parquet", metrics_path=root / "train.json", params_path=params
    )
    stage.run(data=root / "validated", out=root / "scores.parquet", params_path=params)
    yield root, params
    mp.undo()


def _scores(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / "scores.parquet")


def _nothing_written(directory: Path) -> bool:
    return not any(p.name.startswith(("out", ".out")) for p in directory.iterdir())


# ------------------------------------------------------------------ output
def test_scores_have_the_schema_columns_in_order(shop):
    root, _ = shop
    table = pq.read_table(root / "scores.parquet")
    assert table.column_names == [c.name for c in COLUMNS]
    assert [str(f.type) for f in table.schema] == [str(c.arrow_type) for c in COLUMNS]
    scores = table.to_pandas()
    assert (scores["schema_version"] == SCHEMA_VERSION).all()
    assert (scores["model_version"] == "churn:v1;clv:v1;next_order:v1").all()


def test_every_customer_with_an_order_gets_one_row_and_the_others_are_counted(shop):
    root, _ = shop
    orders = pd.read_parquet(root / "validated" / "orders.parquet", columns=["customer_id"])
    customers = pd.read_parquet(root / "validated" / "customers.parquet", columns=["customer_id"])
    scores = _scores(root)
    assert scores["customer_id"].is_unique
    assert set(scores["customer_id"]) == set(orders["customer_id"])
    summary = stage.read_summary(root / "scores.parquet")
    never_ordered = len(set(customers["customer_id"]) - set(orders["customer_id"]))
    assert never_ordered > 0
    assert summary["customers_left_out_no_order_before_as_of"] == never_ordered
    assert summary["rows"] == len(scores)


def test_the_as_of_date_defaults_to_the_end_of_the_data(shop):
    root, _ = shop
    last = pd.read_parquet(root / "validated" / "orders.parquet", columns=["order_ts"])["order_ts"].max()
    scores = _scores(root)
    assert set(scores["as_of_date"].astype(str)) == {str((last.floor("D") + pd.Timedelta(days=1)).date())}


def test_scores_are_consistent_with_each_other(shop):
    root, _ = shop
    s = _scores(root)
    np.testing.assert_allclose(s["value_at_risk"], s["churn_probability"] * s["value_if_retained"])
    assert (s["value_percentile"].to_numpy() == scoring.percentile_1_100(s["value_if_retained"].to_numpy())).all()
    assert (s["clv_percentile"].to_numpy() == scoring.percentile_1_100(s["predicted_clv"].to_numpy())).all()
    # Higher probability never gets a lower percentile.
    ordered = s.sort_values("churn_probability")
    assert ordered["churn_percentile"].is_monotonic_increasing
    assert s["churn_percentile"].max() == 100
    assert set(s["risk_tier"]) <= {"high", "medium", "low", "lapsed"}
    # Lapsed customers worth the coupon get it; those below the break-even value if retained (45) get nothing.
    lapsed = s[(s["risk_tier"] == "lapsed") & (s["recommended_action"] != HOLD_OUT)]
    worth = lapsed["value_if_retained"] >= 45
    assert (lapsed.loc[worth, "recommended_action"] == "winback_email_coupon").all()
    assert (lapsed.loc[~worth, "recommended_action"] == "no_action").all()


# ------------------------------------------------------------------ value if retained, value at risk
def test_value_if_retained_is_the_clv_over_the_stay_probability_floored_at_5_percent(shop):
    root, _ = shop
    s = _scores(root)
    stay = np.maximum(1.0 - s["churn_probability"], 0.05)
    np.testing.assert_allclose(s["value_if_retained"], s["predicted_clv"] / stay, rtol=1e-12)
    assert stage.read_summary(root / "scores.parquet")["min_stay_probability"] == 0.05


def test_the_high_tier_carries_more_value_at_risk_per_customer_than_the_low_tier(shop):
    # p x predicted_clv counted the risk twice (the CLV already discounts for leaving): the low tier came out ahead.
    per_customer = _scores(shop[0]).groupby("risk_tier")["value_at_risk"].mean()
    assert per_customer["high"] > per_customer["low"], per_customer


def test_the_valuable_high_risk_rule_ranks_value_if_retained_not_predicted_clv(shop):
    root, params = shop
    frame, cutoff, _, _ = stage.build_features(root / "validated", None, params)
    models = registry.load_models([], "champion")
    rows = frame.head(2).assign(is_lapsed=False, tenure_days=400.0)
    # Both high risk. A: CLV 10 at p 0.9 is worth 10 / 0.1 = 100 if kept, the top value percentile although its
    # CLV percentile is 1; B the other way round. Only A is "valuable" for the personal-outreach rule.
    predictions = {
        "churn_probability": np.array([0.9, 0.85]),
        "predicted_clv": np.array([10.0, 30.0]),
        "expected_orders": np.array([0.1, 0.5]),
        "value_if_retained": np.array([100.0, 30.0 / 0.15]),
        "order_probability_30d": np.array([0.05, 0.6]),
        "order_probability_90d": np.array([0.1, 0.7]),
        "order_probability_180d": np.array([0.2, 0.8]),
        "days_to_next_order": np.array([np.nan, 25.0]),
        "retention_probability": np.array([0.2, 0.8]),
    }
    percentiles = {
        "churn_percentile": np.array([100, 99], dtype=np.int16),
        "clv_percentile": np.array([1, 100], dtype=np.int16),
        "value_percentile": np.array([100, 1], dtype=np.int16),
    }
    out = scoring.decide(
        rows,
        predictions,
        percentiles,
        cutoff,
        models,
        ScoreParams(),
        RiskTiers(),
        "shap",
        campaign_economics(params),
    )
    assert out["intended_action"].tolist() == ["personal_outreach", "winback_email_coupon"]
    np.testing.assert_allclose(out["value_at_risk"], [0.9 * 100.0, 0.85 * 200.0])
    assert out["value_percentile"].tolist() == [100, 1] and out["clv_percentile"].tolist() == [1, 100]


def test_personal_outreach_goes_only_to_high_risk_customers_in_the_top_40_percent_of_value_if_retained(shop):
    s = _scores(shop[0])
    chosen = s[s["intended_action"] == "personal_outreach"]
    assert len(chosen) > 0
    assert (chosen["risk_tier"] == "high").all() and (chosen["value_percentile"] >= 60).all()


def test_without_a_customers_table_the_left_out_count_counts_customers_not_orders(shop, tmp_path):
    root, params = shop
    data = tmp_path / "no_customers"
    shutil.copytree(root / "validated", data)
    (data / "customers.parquet").unlink()
    as_of = pd.Timestamp("2025-06-01")
    frame, _, left_out, _ = stage.build_features(data, str(as_of.date()), params)
    orders = pd.read_parquet(data / "orders.parquet", columns=["customer_id", "order_ts"])
    first = orders.groupby("customer_id")["order_ts"].min()
    assert left_out == int((first >= as_of).sum()) > 0  # each customer once, however many orders
    assert left_out + len(frame) == orders["customer_id"].nunique()


# ------------------------------------------------------------------ reasons
def test_reason_codes_name_features_of_the_churn_model(shop):
    root, _ = shop
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model("models:/churn@champion").unwrap_python_model().estimator
    s = _scores(root)
    codes = pd.concat([s[f"reason_code_{j}"] for j in (1, 2, 3)]).dropna()
    assert len(codes) > 0 and set(codes) <= set(model.features_)
    assert not set(codes) & {"cutoff_month", "cutoff_day_of_year"}
    assert not {c for c in codes if c.startswith("bgnbd_")}  # behaviours, never the BG/NBD prior
    assert not s["reason_1"].str.contains("purchase rhythm", na=False).any()
    assert (s["reason_1"].notna() == s["reason_code_1"].notna()).all()
    # Sentences carry the customer's own values, checked against the validated tables: days since the last
    # order (recency_days) and since the last site visit (days_since_last_session).
    orders = pd.read_parquet(root / "validated" / "orders.parquet", columns=["customer_id", "order_ts"])
    events = pd.read_parquet(root / "validated" / "events.parquet", columns=["customer_id", "event_ts", "event_type"])
    sessions = events[events["event_type"] == "session"]
    last = {
        "recency_days": (orders.groupby("customer_id")["order_ts"].max(), "no order for "),
        "days_since_last_session": (sessions.groupby("customer_id")["event_ts"].max(), "no site visit for "),
    }
    as_of = pd.Timestamp(s["as_of_date"].iloc[0])
    checked = 0
    for code, (last_ts, text) in last.items():
        for j in (1, 2, 3):
            rows = s[s[f"reason_code_{j}"] == code]
            seen = rows["customer_id"].isin(last_ts.index)
            days = ((as_of - last_ts.loc[rows.loc[seen, "customer_id"]]).dt.total_seconds() / 86400).round().astype(int)
            expected = text + days.astype(str) + np.where(days == 1, " day", " days")
            assert (rows.loc[seen, f"reason_{j}"].str.split(";").str[0].to_numpy() == expected.to_numpy()).all()
            checked += int(seen.sum())
    assert checked > 0


def test_control_group_customers_are_held_out_and_chosen_by_their_id(shop):
    root, _ = shop
    s = _scores(root)
    expected = control_group(s["customer_id"], 0.05, "churn-control-group-1")
    assert (s["control_group"].to_numpy() == expected).all()
    assert (s.loc[s["control_group"], "recommended_action"] == HOLD_OUT).all()
    assert (s.loc[~s["control_group"], "recommended_action"] == s.loc[~s["control_group"], "intended_action"]).all()
    assert 0.02 < s["control_group"].mean() < 0.08


def test_scoring_twice_gives_byte_identical_files(shop, tmp_path):
    root, params = shop
    stage.run(data=root / "validated", out=tmp_path / "again.parquet", params_path=params)
    assert (tmp_path / "again.parquet").read_bytes() == (root / "scores.parquet").read_bytes()
    assert (tmp_path / "again.drift.json").read_bytes() == (root / "scores.drift.json").read_bytes()


def test_drift_is_measured_against_each_models_training_rows(shop):
    root, _ = shop
    drift = json.loads((root / "scores.drift.json").read_text())
    assert set(drift["models"]) == {"churn", "clv", "next_order"}
    churn = drift["models"]["churn"]
    assert len(churn["features"]) == 10 and "cutoff_month" not in churn["features"]
    assert set(churn["scores"]) == {"churn_probability"}
    assert set(drift["models"]["clv"]["scores"]) == {"predicted_clv", "expected_orders"}
    assert set(drift["models"]["next_order"]["scores"]) == {f"order_probability_{d}d" for d in (30, 90, 180)}
    assert all(np.isfinite(v) and v >= 0 for v in churn["features"].values())
    assert churn["reference_rows"] > 1000 and drift["psi_warning"] == 0.2
    assert all("PSI" in w for w in drift["warnings"])


def test_an_earlier_as_of_date_scores_the_customers_known_then(shop, tmp_path):
    root, params = shop
    stage.run(data=root / "validated", out=tmp_path / "out.parquet", params_path=params, as_of="2025-06-01")
    s = pd.read_parquet(tmp_path / "out.parquet")
    assert set(s["as_of_date"].astype(str)) == {"2025-06-01"}
    assert len(s) < len(_scores(root))


TIMING = ["order_probability_30d", "order_probability_90d", "order_probability_180d", "days_to_next_order"]


def test_the_next_order_columns_are_a_survival_curve_with_its_median_and_date(shop):
    s = _scores(shop[0])
    p = s[TIMING[:3]].to_numpy()
    assert ((p >= 0) & (p <= 1)).all() and (np.diff(p, axis=1) >= 0).all()
    has_median = s["days_to_next_order"].notna()
    assert 0 < has_median.mean() < 1
    assert (has_median == (s["order_probability_180d"] >= 0.5)).all()
    expected = pd.to_datetime(s["as_of_date"]) + pd.to_timedelta(np.ceil(s["days_to_next_order"]), unit="D")
    assert (s["expected_next_order_date"].isna() == ~has_median).all()
    assert (pd.to_datetime(s.loc[has_median, "expected_next_order_date"]) == expected[has_median]).all()
    # Who is expected to order soon is who the churn model thinks stays (two models, one story).
    assert np.corrcoef(s["order_probability_90d"], 1 - s["churn_probability"])[0, 1] > 0.8


def test_the_lifetime_value_is_the_chained_discounted_margin_of_the_clv(shop):
    from churn_pipeline.models.lifetime import discounted_lifetime_value

    s = _scores(shop[0])
    expected = discounted_lifetime_value(
        s["predicted_clv"].to_numpy(),
        s["order_probability_180d"].to_numpy(),
        period_days=180,
        margin=0.3,
        annual_discount_rate=0.1,
        horizon_months=36,
    )
    np.testing.assert_allclose(s["lifetime_value"], expected, rtol=1e-12)
    # Six half-years of margin: more than one period's margin, less than six undiscounted ones.
    assert (s["lifetime_value"] >= 0.3 * s["predicted_clv"] * 0.95).all()
    assert (s["lifetime_value"] <= 0.3 * 6 * s["predicted_clv"] + 1e-9).all()
    summary = stage.read_summary(shop[0] / "scores.parquet")
    assert summary["lifetime_value"] == {
        "margin": 0.3,
        "annual_discount_rate": 0.1,
        "horizon_months": 36,
        "retention_days": 180,
    }


def test_the_next_order_columns_see_nothing_at_or_after_the_as_of_date(shop, tmp_path):
    root, params = shop
    as_of = pd.Timestamp("2025-06-01")
    changed = tmp_path / "changed"
    shutil.copytree(root / "validated", changed)
    orders = pq.read_table(changed / "orders.parquet").to_pandas()
    later = orders["order_ts"] >= as_of
    assert later.sum() > 0
    # Every order from the as-of date on doubles in value and moves a day; one lands exactly on the as-of date.
    orders.loc[later, "amount"] *= 2
    orders.loc[later, "order_ts"] += pd.Timedelta(days=1)
    orders.loc[later.idxmax(), "order_ts"] = as_of
    pq.write_table(pa.Table.from_pandas(orders, preserve_index=False), changed / "orders.parquet")
    for data, name in ((root / "validated", "a.parquet"), (changed, "b.parquet")):
        stage.run(data=data, out=tmp_path / name, params_path=params, as_of=str(as_of.date()))
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    columns = [*TIMING, "expected_next_order_date", "lifetime_value"]
    pd.testing.assert_frame_equal(a[["customer_id", *columns]], b[["customer_id", *columns]])


def test_a_model_version_uri_replaces_the_alias_for_its_kind(shop, tmp_path):
    root, params = shop
    stage.run(data=root / "validated", out=tmp_path / "out.parquet", params_path=params, model_uris=["models:/clv/1"])
    assert (pd.read_parquet(tmp_path / "out.parquet")["model_version"] == "churn:v1;clv:v1;next_order:v1").all()
    summary = stage.read_summary(tmp_path / "out.parquet")
    assert summary["models"]["clv"]["uri"] == "models:/clv/1"
    assert summary["models"]["churn"]["uri"] == "models:/churn@champion"


# ------------------------------------------------------------------ errors, nothing written
@pytest.mark.parametrize(
    ("uris", "message"),
    [
        (["models:/churn@nope"], r"has no alias 'nope' \(aliases: \{'challenger': '1', 'champion': '1'\}\)"),
        (["models:/churn/7"], "has no version 7"),
        (
            ["models:/no_such_model@champion"],
            r"no registered model 'no_such_model'.*registered: \['churn', 'clv', 'next_order'\]",
        ),
        (["runs:/abc/churn_model"], "not a registry URI"),
        (["models:/churn/1", "models:/churn@champion"], "two --model-uri give a churn model"),
    ],
)
def test_an_unknown_model_uri_fails_with_params_error_and_writes_nothing(shop, tmp_path, uris, message):
    root, params = shop
    with pytest.raises(ParamsError, match=message):
        stage.run(data=root / "validated", out=tmp_path / "out.parquet", params_path=params, model_uris=uris)
    assert _nothing_written(tmp_path)


def test_an_unknown_alias_in_params_fails_naming_the_alias(shop, tmp_path):
    root, _ = shop
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({**PARAMS, "score": {"model_alias": "production"}}))
    with pytest.raises(ParamsError, match="no alias 'production'"):
        stage.run(data=root / "validated", out=tmp_path / "out.parquet", params_path=bad)
    assert not (tmp_path / "out.parquet").exists()


def test_features_the_model_needs_but_the_data_lacks_are_named(shop, tmp_path):
    root, params = shop
    no_events = tmp_path / "no_events"
    shutil.copytree(root / "validated", no_events)
    (no_events / "events.parquet").unlink()
    with pytest.raises(DataContractError, match=r"required feature column\(s\) missing: \[.*'sessions_30d'"):
        stage.run(data=no_events, out=tmp_path / "out.parquet", params_path=params)
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("kind", ["empty", "missing", "raw"])
def test_an_empty_missing_or_unvalidated_directory_asks_for_churn_validate(shop, tmp_path, kind):
    root, params = shop
    data = tmp_path / "data"
    if kind == "empty":
        data.mkdir()
    elif kind == "raw":
        shutil.copytree(root / "raw", data)
    with pytest.raises(DataContractError, match="churn validate"):
        stage.run(data=data, out=tmp_path / "out.parquet", params_path=params)
    assert not (tmp_path / "out.parquet").exists()


def test_an_unreadable_data_file_is_a_data_error(shop, tmp_path):
    root, params = shop
    broken = tmp_path / "broken"
    shutil.copytree(root / "validated", broken)
    (broken / "orders.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataContractError, match="cannot be read"):
        stage.run(data=broken, out=tmp_path / "out.parquet", params_path=params)


def test_an_as_of_date_before_any_data_is_refused(shop, tmp_path):
    root, params = shop
    with pytest.raises(DataContractError, match="not after the first order"):
        stage.run(data=root / "validated", out=tmp_path / "out.parquet", params_path=params, as_of="1999-01-01")
    assert not (tmp_path / "out.parquet").exists()


def test_a_missing_mlflow_store_is_not_created(shop, tmp_path, monkeypatch):
    root, params = shop
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'nowhere.db'}")
    with pytest.raises(ParamsError, match="no MLflow store"):
        stage.run(data=root / "validated", out=tmp_path / "out.parquet", params_path=params)
    assert not (tmp_path / "nowhere.db").exists()


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        ([{"action": "call", "tier": ["high"]}, {"action": "no_action"}], r"score\.actions\[0\] has unknown key"),
        ([{"action": "call", "tiers": ["urgent"]}, {"action": "no_action"}], r"score\.actions\[0\].*unknown tier"),
        ([{"action": "call", "tiers": ["high"]}], "last action rule"),
        ([], "empty"),
        ([{"action": "call", "reason_features": []}, {"action": "no_action"}], "reason_features must list"),
    ],
)
def test_a_bad_rule_table_is_a_params_error_naming_the_rule(shop, tmp_path, actions, message):
    root, _ = shop
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({**PARAMS, "score": {"actions": actions}}))
    with pytest.raises(ParamsError, match=message):
        stage.run(data=root / "validated", out=tmp_path / "out.parquet", params_path=bad)
    assert not (tmp_path / "out.parquet").exists()


def test_a_rule_whose_reason_features_the_model_lacks_is_skipped_with_one_warning_line(shop, tmp_path, capsys):
    root, _ = shop
    rules = [
        {"name": "typo", "tiers": ["high", "medium", "low"], "reason_features": ["nosuchfeat"], "action": "call"},
        {"name": "everyone else", "action": "no_action"},
    ]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**PARAMS, "score": {"actions": rules}}))
    capsys.readouterr()
    stage.run(data=root / "validated", out=tmp_path / "out.parquet", params_path=params)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "skipped" in line]
    assert len(warnings) == 1 and "actions[0] (rule 'typo') skipped" in warnings[0] and "['nosuchfeat']" in warnings[0]
    assert set(pd.read_parquet(tmp_path / "out.parquet")["intended_action"]) == {"no_action"}


def test_a_bad_stay_probability_floor_is_a_params_error(shop, tmp_path):
    root, _ = shop
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({**PARAMS, "score": {"min_stay_probability": 0}}))
    with pytest.raises(ParamsError, match="min_stay_probability"):
        stage.run(data=root / "validated", out=tmp_path / "out.parquet", params_path=bad)


@pytest.mark.parametrize("kind", ["missing", "raw"])
def test_the_fix_for_unvalidated_data_never_validates_a_directory_into_itself(shop, tmp_path, kind):
    root, params = shop
    data = tmp_path / "shop"
    if kind == "raw":
        shutil.copytree(root / "raw", data)
    with pytest.raises(DataContractError) as info:
        stage.run(data=data, out=tmp_path / "out.parquet", params_path=params)
    message = str(info.value)
    assert f"--data {data} --out {data}`" not in message
    if kind == "missing":  # the missing directory itself is a fine --out, for raw data kept elsewhere
        assert f"`churn validate --data RAW_DIR --out {data}`" in message
    else:
        assert f"`churn validate --data {data} --out {data}_validated`" in message


def test_the_cli_exits_4_for_an_unknown_alias_and_writes_nothing(shop, tmp_path):
    root, params = shop
    args = ["--data", str(root / "validated"), "--params", str(params), "--out", str(tmp_path / "out.parquet")]
    proc = subprocess.run(
        [sys.executable, "-m", "churn_pipeline", "score", *args, "--model-uri", "models:/churn@nope"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert proc.returncode == ParamsError.exit_code == 4
    assert "no alias 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    assert DataContractError.exit_code == 3  # the data errors above exit with 3
    assert not (tmp_path / "out.parquet").exists()


# ------------------------------------------------------------------ spark engine
@pytest.mark.spark
def test_spark_engine_writes_the_same_scores_and_the_same_crm_export(shop, spark, tmp_path):
    from churn_pipeline.pipelines import export as export_stage
    from churn_pipeline.pipelines.export import read_scores

    root, params = shop
    out = tmp_path / "scores.parquet"
    stage.run(data=root / "validated", out=out, params_path=params, engine="spark")
    assert out.is_dir() and [p.name for p in out.iterdir() if p.is_dir()] == ["as_of_date=2026-01-01"]
    default, on_spark = read_scores(root / "scores.parquet"), read_scores(out)
    assert on_spark.schema.remove_metadata() == default.schema.remove_metadata()
    for name in default.column_names:
        a, b = default.column(name).combine_chunks(), on_spark.column(name).combine_chunks()
        if pa.types.is_floating(a.type):
            # days_to_next_order may be empty: nulls must sit on the same rows (NaN == NaN here).
            assert a.is_null().equals(b.is_null()), name
            a, b = a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False)
            np.testing.assert_allclose(b, a, rtol=1e-9, err_msg=name)
        else:
            assert a.equals(b), name
    assert json.loads((tmp_path / "scores.summary.json").read_text())["rows"] == default.num_rows
    assert json.loads((tmp_path / "scores.drift.json").read_text())["rows_sampled"] == default.num_rows
    for scores, csv in ((root / "scores.parquet", tmp_path / "default.csv"), (out, tmp_path / "spark.csv")):
        export_stage.run(scores=scores, fmt="csv", out=csv, params_path=params)
    assert (tmp_path / "spark.csv").read_bytes() == (tmp_path / "default.csv").read_bytes()
