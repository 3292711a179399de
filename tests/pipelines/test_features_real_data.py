"""``churn features`` on the real UCI Online Retail II data: import, validate, then the panel (slow).

The shop has orders, refunds and customers but no engagement events, and about two years of history, so the
labels use 182-day horizons and the cutoffs are monthly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from churn_pipeline.features.build import LABELS
from churn_pipeline.features.contract import KNOWN_EVENT_TYPES

SOURCE = Path(__file__).parents[2].parent / "shared/data/online_retail_ii"
PARAMS = """\
validate:
  max_timestamp: "2030-01-01"
  min_timestamp: "1990-01-01"
  signup_grace_days: 1
features:
  cutoffs:
    frequency: monthly
    count: 12
  windows_days: [30, 90, 180, 365]
  max_recency_days: 365
labels:
  churn_horizon_days: 182
  clv_horizon_days: 182
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SOURCE.exists(), reason=f"Online Retail II not found at {SOURCE}"),
]


def churn(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "churn_pipeline", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("online_retail")
    (work / "params.yaml").write_text(PARAMS, encoding="utf-8")
    churn("import", "online-retail", "--source", str(SOURCE), "--out", "raw", cwd=work)
    churn("validate", "--data", "raw", "--out", "validated", "--params", "params.yaml", cwd=work)
    churn("features", "--data", "validated", "--out-dir", "features", "--params", "params.yaml", cwd=work)
    out = work / "features"
    return out, json.loads((out / "panel.features.json").read_text(encoding="utf-8"))


def test_panel_on_online_retail(built):
    out, manifest = built
    panel = pq.read_table(out / "panel.parquet").to_pandas()
    assert len(panel) > 10_000
    assert len(manifest["cutoffs"]) == 12
    assert sorted(panel["cutoff"].dt.strftime("%Y-%m-%d").unique()) == manifest["cutoffs"]
    # every cutoff's 182-day horizon is inside the data: no label is missing, and both classes occur
    assert panel[[label for label in LABELS if label != "next_order_days"]].notna().all().all()
    # ... and the next-order grid's last edge (180 days) too: every row followed up over the whole grid
    assert (panel["next_order_followup_days"] == 180).all()
    assert panel["next_order_days"].notna().mean() == pytest.approx(1 - panel["churned"].mean(), abs=0.03)
    assert 0.05 < panel["churned"].mean() < 0.95
    assert (panel["future_orders"] >= 0).all()
    assert panel["future_revenue"].abs().sum() > 0
    # no events: no engagement, experience or loyalty feature; purchase (with refunds), BG/NBD, attributes, calendar
    families = set(manifest["families"].values())
    assert families == {"purchase", "bgnbd", "attributes", "calendar"}
    assert not [c for c in panel.columns if c.startswith(("sessions_", "email_", "days_since_last_"))]
    assert {"returns_total", "return_rate", "country", "signup_age_days"} <= set(manifest["features"])
    assert set(KNOWN_EVENT_TYPES) <= set(manifest["skipped_sources"])
    assert manifest["features"] == [c for c in panel.columns if c in manifest["families"]]


def test_scoring_on_online_retail(built):
    out, _ = built
    scoring = pq.read_table(out / "scoring.parquet").to_pandas()
    assert scoring["customer_id"].is_unique and len(scoring) > 1_000
    assert set(scoring["cutoff"]) == {pd.Timestamp("2011-12-10")}  # the day after the last invoice
    assert scoring["is_lapsed"].any()


def test_skipped_sources_names_the_events_table(built):
    _, manifest = built
    assert "events" in manifest["skipped_sources"]
