"""An orders-only shop through the whole pipeline with the shipped params: validate -> features -> train ->
evaluate -> score -> export, every stage through the ``churn`` CLI.

Real shops often have no events feed (the UCI Online Retail II data has none). The default rule table has an
e-mail / site-visit rule; a churn model trained without events has no such feature, so scoring skips that rule
with one warning instead of stopping. The shop is the synthetic one with only ``orders.parquet`` kept (no
customers, returns or events). Params are the shipped ``params.yaml`` except a smaller shop and one backtest
fold (both only for time); the whole test takes about a minute.
"""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from churn_pipeline.pipelines.cli import app

SHIPPED = Path(__file__).resolve().parents[2] / "params.yaml"
ENGAGEMENT = ("sessions_", "days_since_last_session", "page_views_", "email_", "days_since_last_email")


def _churn(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0 and result.exception is None, (args[0], result.output, result.exception)
    return result.output


@pytest.fixture(scope="module")
def orders_only(tmp_path_factory):
    """The pipeline run on an orders-only shop: (root, score output, export CSV, manifest)."""
    root = tmp_path_factory.mktemp("orders_only")
    params = yaml.safe_load(SHIPPED.read_text())
    params["generate"]["customers"] = 1500
    params["evaluate"]["backtest_cutoffs"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)  # MLflow artifacts and every output land here, not in the repository
    p = ["--params", "params.yaml"]
    _churn("generate", "--out", "generated", *p)
    (root / "raw").mkdir()
    shutil.copy(root / "generated" / "orders.parquet", root / "raw" / "orders.parquet")
    _churn("validate", "--data", "raw", "--out", "validated", *p)
    _churn("features", "--data", "validated", "--out-dir", "features", *p)
    _churn("train", "--panel", "features/panel.parquet", "--metrics", "train.json", *p)
    evaluate = ["--panel", "features/panel.parquet", "--train-metrics", "train.json", "--metrics", "evaluate.json"]
    _churn("evaluate", *evaluate, "--plots-dir", "plots", "--report", "report.html", *p)
    scored = _churn("score", "--data", "validated", "--out", "scores/scores.parquet", *p)
    _churn("export", "--scores", "scores/scores.parquet", "--format", "csv", "--out", "export/scores.csv", *p)
    manifest = json.loads((root / "export" / "scores.csv.manifest.json").read_text())
    yield root, scored, pd.read_csv(root / "export" / "scores.csv", dtype={"customer_id": str}), manifest
    mp.undo()


@pytest.mark.slow
def test_an_orders_only_shop_is_validated_without_the_optional_tables(orders_only):
    root, *_ = orders_only
    assert sorted(p.name for p in (root / "validated").glob("*.parquet")) == ["orders.parquet"]
    features = json.loads((root / "features" / "scoring.features.json").read_text())["features"]
    assert not [f for f in features if f.startswith(ENGAGEMENT)]


@pytest.mark.slow
def test_scoring_skips_the_engagement_rule_and_the_uplift_rule_with_one_warning_line_each(orders_only):
    _, scored, *_ = orders_only
    skipped = [line for line in scored.splitlines() if "skipped" in line]
    assert len(skipped) == 2, scored
    # No contacts table, so no uplift model: the rule table decides as before.
    assert "uplift model: the most profitable action" in skipped[0] and "no uplift model" in skipped[0]
    assert "medium risk, disengaging: loyalty points boost" in skipped[1]


@pytest.mark.slow
def test_the_export_has_every_customer_once_and_no_engagement_rule_fires(orders_only):
    root, _, export, manifest = orders_only
    customers = pd.read_parquet(root / "raw" / "orders.parquet", columns=["customer_id"])["customer_id"]
    assert export["customer_id"].is_unique and set(export["customer_id"]) == set(customers)
    assert manifest["rows"] == len(export) and manifest["customers_left_out_no_order_before_as_of"] == 0
    assert "loyalty_points_boost" not in set(export["intended_action"])
    codes = pd.concat([export[f"reason_code_{j}"] for j in (1, 2, 3)]).dropna()
    assert len(codes) > 0 and not codes.str.startswith(ENGAGEMENT).any()
    assert not codes.str.startswith("bgnbd_").any()
