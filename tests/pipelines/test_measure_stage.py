"""The measure stage end to end on a tiny validated data directory (hand-made tables, every number checkable),
with and without a contacts table, and its refusals of data that is not validated."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from churn_pipeline.errors import DataContractError
from churn_pipeline.models.measure import EFFECT_COLUMNS
from churn_pipeline.pipelines import measure as stage
from churn_pipeline.pipelines.cli import main
from churn_pipeline.pipelines.console import console
from churn_pipeline.pipelines.evaluate import read_measure
from churn_pipeline.pipelines.params import load_section

ROOT = Path(__file__).resolve().parents[2]
T0 = pd.Timestamp("2025-03-03 09:00")
DAY = pd.Timedelta(days=1)


def _ts(values) -> pa.Array:
    return pa.array(pd.to_datetime(pd.Series(values)).astype("datetime64[us]"), pa.timestamp("us"))


def _orders(rows: list[tuple[str, pd.Timestamp, float]]) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.string()),
            "order_id": pa.array([f"o{i}" for i in range(len(rows))], pa.string()),
            "order_ts": _ts([r[1] for r in rows]),
            "amount": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def _contacts(rows: list[tuple]) -> pa.Table:
    """(customer_id, contact_ts, action, group, campaign_id, cost) rows."""
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.string()),
            "contact_ts": _ts([r[1] for r in rows]),
            "action": pa.array([r[2] for r in rows], pa.string()),
            "group": pa.array([r[3] for r in rows], pa.string()),
            "campaign_id": pa.array([r[4] for r in rows], pa.string()),
            "channel": pa.array(["email"] * len(rows), pa.string()),
            "cost": pa.array([r[5] for r in rows], pa.float64()),
        }
    )


# Campaign "spring" (win-back, 2025-03-03): treated t1 (order day 1: 30, refund 6 on day 5), t2 (order day 100: 60,
# revenue but not retained), t3 (nothing), cost 2 each; control c1 (order day 10: 9), c2, c3 (nothing). Retention
# 1/3 against 1/3; revenue (24 + 60 + 0) / 3 = 28 against 3; profit 0.3 x 25 - 2 = 5.5 per contacted customer. c4's
# control contact of 2025-10-01 is not followed up by the data end (2025-12-31). Campaign 2025-04-01-onboarding (no
# campaign id): n1, n2 treated, no control, and t1 again, 29 days after spring: set aside as an overlap.
ORDERS = [
    ("t1", T0 + DAY, 30.0),
    ("t2", T0 + 100 * DAY, 60.0),
    ("c1", T0 + 10 * DAY, 9.0),
    ("n1", T0 + 40 * DAY, 15.0),
    ("z", pd.Timestamp("2025-12-30 12:00"), 1.0),  # the last order: data end 2025-12-31
    ("z", T0 - 400 * DAY, 5.0),
]
CONTACTS = [
    ("t1", T0, "winback_email_coupon", "treatment", "spring", 2.0),
    ("t2", T0, "winback_email_coupon", "treatment", "spring", 2.0),
    ("t3", T0 + pd.Timedelta(hours=1), "winback_email_coupon", "treatment", "spring", 2.0),
    ("c1", T0, "winback_email_coupon", "control", "spring", 0.0),
    ("c2", T0, "winback_email_coupon", "control", "spring", 0.0),
    ("c3", T0, "winback_email_coupon", "control", "spring", 0.0),
    ("c4", pd.Timestamp("2025-10-01"), "winback_email_coupon", "control", "spring", 0.0),
    ("n1", pd.Timestamp("2025-04-01 08:00"), "onboarding", "treatment", None, 1.0),
    ("n2", pd.Timestamp("2025-04-01 08:00"), "onboarding", "treatment", None, 1.0),
    ("t1", pd.Timestamp("2025-04-01 08:00"), "onboarding", "treatment", None, 1.0),
]


def _data(root: Path, contacts: list[tuple] | None = CONTACTS, returns: bool = True) -> Path:
    data = root / "validated"
    data.mkdir(parents=True)
    pq.write_table(_orders(ORDERS), data / "orders.parquet")
    if returns:
        refunds = pa.table(
            {
                "customer_id": pa.array(["t1"], pa.string()),
                "order_id": pa.array(["o0"], pa.string()),
                "return_ts": _ts([T0 + 5 * DAY]),
                "amount": pa.array([6.0]),
            }
        )
        pq.write_table(refunds, data / "returns.parquet")
    if contacts is not None:
        pq.write_table(_contacts(contacts), data / "contacts.parquet")
    return data


def _params(root: Path, **sections) -> Path:
    path = root / "params.yaml"
    doc = {"measure": {"min_group_size": 2, "confidence": 0.95}}
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def churn(monkeypatch, capsys):
    """``churn measure ARGS`` through the real entry point: (exit code, stderr)."""
    monkeypatch.setattr(console, "_width", 400)

    def run(*args) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["churn", "measure", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        code = exit_info.value.code
        return (0 if code is None else int(code)), capsys.readouterr().err

    return run


def _args(tmp_path: Path, data: Path, params: Path) -> list:
    return ["--data", data, "--metrics", tmp_path / "m" / "measure.json", "--table", tmp_path / "r" / "measure.csv",
            "--params", params]  # fmt: skip


def _finite_or_null(value) -> bool:
    if isinstance(value, dict):
        return all(_finite_or_null(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_or_null(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def test_the_stage_measures_a_tiny_shop_end_to_end(tmp_path, churn):
    data, params = _data(tmp_path), _params(tmp_path)
    code, err = churn(*_args(tmp_path, data, params))
    assert code == 0, err
    doc = json.loads((tmp_path / "m" / "measure.json").read_text())
    assert doc["status"] == "measured" and doc["contacts"] == 10 and doc["data_end"] == "2025-12-31"
    assert doc["params"] == {
        "min_group_size": 2,
        "confidence": 0.95,
        "retention_days": 90,
        "revenue_days": 180,
        "value_margin": 0.3,
    }
    summary = doc["summary"]
    assert (summary["contacts"], summary["measured"], summary["not_followed_up"]) == (10, 8, 1)
    assert (summary["overlapping_customers"], summary["overlapping_contacts_set_aside"]) == (1, 1)
    assert summary["no_control_group"] == [
        {"action": "onboarding", "campaign_id": "2025-04-01-onboarding", "treated_contacts": 3}
    ]
    rows = {(r["action"], r["campaign_id"]): r for r in doc["effects"]}
    assert list(rows) == [
        ("onboarding", "2025-04-01-onboarding"),
        ("onboarding", "all"),
        ("winback_email_coupon", "spring"),
        ("winback_email_coupon", "all"),
    ]
    spring = rows[("winback_email_coupon", "spring")]
    assert (spring["contacts"], spring["n_treatment"], spring["n_control"], spring["not_followed_up"]) == (7, 3, 3, 1)
    assert spring["retention_diff_pp"] == 0.0
    assert spring["revenue_treatment"] == pytest.approx(28.0) and spring["revenue_control"] == pytest.approx(3.0)
    assert spring["mean_cost"] == 2.0 and spring["profit_per_customer"] == pytest.approx(5.5)
    assert spring["first_contact"] == "2025-03-03" and spring["last_contact"] == "2025-10-01"
    assert spring["verdict"] == "too small to tell"  # 3 a group: a wide interval
    onboarding = rows[("onboarding", "2025-04-01-onboarding")]
    assert onboarding["verdict"] == "no control group" and onboarding["set_aside_overlap"] == 1
    assert onboarding["retention_diff_pp"] is None  # NaN is written as null
    assert _finite_or_null(doc)
    # The CSV holds the same rows and columns.
    with (tmp_path / "r" / "measure.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(EFFECT_COLUMNS) and len(table) == 4
    assert float(table[2]["profit_per_customer"]) == pytest.approx(5.5) and table[2]["first_contact"] == "2025-03-03"
    # The terminal: the messages and the table.
    assert "set aside" in err and "not yet followed up" in err and "no control group" in err
    assert "What the campaigns achieved" in err and "spring" in err and "+5.50" in err
    # Nothing left beside the outputs.
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["measure.json"]


def test_without_a_contacts_table_the_stage_says_so_and_succeeds(tmp_path, churn):
    data, params = _data(tmp_path, contacts=None), _params(tmp_path)
    code, err = churn(*_args(tmp_path, data, params))
    assert code == 0, err
    doc = json.loads((tmp_path / "m" / "measure.json").read_text())
    assert doc["contacts"] == 0 and doc["status"] == "no contacts table"
    assert "no contacts table" in err
    header = (tmp_path / "r" / "measure.csv").read_text().splitlines()
    assert header == [",".join(EFFECT_COLUMNS)]
    # Evaluate reads it and adds no section.
    from churn_pipeline.models.report import campaign_section

    assert campaign_section(read_measure(tmp_path / "m" / "measure.json")) is None


def test_an_empty_contacts_table_is_not_an_error(tmp_path, churn):
    data, params = _data(tmp_path, contacts=[]), _params(tmp_path)
    code, err = churn(*_args(tmp_path, data, params))
    assert code == 0, err
    doc = json.loads((tmp_path / "m" / "measure.json").read_text())
    assert doc == {**doc, "contacts": 0, "status": "contacts table is empty"}


def test_the_windows_come_from_the_labels_section(tmp_path):
    data = _data(tmp_path)
    params = _params(tmp_path, labels={"churn_horizon_days": 10, "clv_horizon_days": 180})
    doc = stage.run(data, tmp_path / "measure.json", params)
    spring = next(r for r in doc["effects"] if r["campaign_id"] == "spring")
    # c1's order on day 10 lies at the end of a 10-day window: control retention 0, treated 1/3.
    assert spring["retention_control"] == 0.0
    assert spring["retention_diff_pp"] == pytest.approx(100 / 3, abs=1e-4)
    assert doc["params"]["retention_days"] == 10
    # A 300-day revenue window ends after the data for the April contacts too (n1, n2; t1's is set aside), and a
    # 320-day one for spring's as well (2025-03-03 + 320 days = 2026-01-17).
    later = stage.run(data, tmp_path / "later.json", _params(tmp_path, labels={"clv_horizon_days": 300}))
    assert later["summary"]["not_followed_up"] == 1 + 2
    latest = stage.run(data, tmp_path / "latest.json", _params(tmp_path, labels={"clv_horizon_days": 320}))
    assert latest["summary"]["not_followed_up"] == 1 + 6 + 2 and latest["summary"]["measured"] == 0


def test_margin_and_rule_table_come_from_evaluate_and_score(tmp_path):
    data = _data(tmp_path)
    rules = [{"name": "onboarding", "tiers": ["low"], "action": "onboarding"}, {"name": "rest", "action": "no_action"}]
    params = _params(tmp_path, evaluate={"value_margin": 0.5}, score={"actions": rules})
    doc = stage.run(data, tmp_path / "measure.json", params)
    spring = next(r for r in doc["effects"] if r["campaign_id"] == "spring")
    assert spring["profit_per_customer"] == pytest.approx(0.5 * 25 - 2)
    assert doc["summary"]["unknown_actions"] == {"winback_email_coupon": 7}
    assert spring["known_action"] is False and "not in the rule table" in spring["note"]


def test_known_actions_of_a_rule_table_with_the_uplift_rule():
    assert stage.known_actions(["onboarding", "no_action"]) == ["no_action", "onboarding"]
    assert set(stage.known_actions(["most_profitable", "no_action"])) >= {"winback_email_coupon", "no_action"}
    assert "most_profitable" not in stage.known_actions(["most_profitable"])


def test_data_that_is_not_validated_is_refused_with_exit_3(tmp_path, churn):
    params = _params(tmp_path)
    code, err = churn(*_args(tmp_path, tmp_path / "nowhere", params))
    assert code == 3 and "churn validate" in err
    raw = _data(tmp_path / "raw", contacts=None)
    pd.DataFrame({"customer_id": ["a"], "contact_ts": ["2025-01-01"], "action": ["x"], "group": ["control"]}).to_csv(
        raw / "contacts.csv", index=False
    )
    code, err = churn(*_args(tmp_path, raw, params))
    assert code == 3 and "contacts.csv" in err and "churn validate" in err
    bad = _data(tmp_path / "bad", contacts=[(*CONTACTS[0][:3], "treated", "spring", 1.0)])
    code, err = churn(*_args(tmp_path, bad, params))
    assert code == 3 and "1 of 1 rows have a group other than" in err
    assert not (tmp_path / "m" / "measure.json").exists()


def test_bad_params_fail_naming_the_key(tmp_path, churn):
    data = _data(tmp_path)
    params = tmp_path / "bad.yaml"
    params.write_text(yaml.safe_dump({"measure": {"min_group_size": 1}}))
    code, err = churn(*_args(tmp_path, data, params))
    assert code == 4 and "measure" in err and "min_group_size" in err
    params.write_text(yaml.safe_dump({"measure": {"confidence": 95}}))
    code, err = churn(*_args(tmp_path, data, params))
    assert code == 4 and "confidence" in err


def test_shipped_params_equal_the_dataclass_defaults():
    assert load_section(stage.MeasureParams, "measure", ROOT / "params.yaml") == stage.MeasureParams()


def test_the_dvc_stage_reads_the_params_and_feeds_evaluate():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    measure = stages["measure"]
    assert "churn measure --data data/validated --metrics metrics/measure.json" in measure["cmd"]
    wanted = {"data/validated", "churn_pipeline/models/measure.py", "churn_pipeline/pipelines/measure.py"}
    assert wanted <= set(measure["deps"])
    assert set(measure["params"]) == {
        "measure",
        "labels.churn_horizon_days",
        "labels.clv_horizon_days",
        "evaluate.value_margin",
        "score.actions",
    }
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in measure["outs"]]
    assert "metrics/measure.json" in outs
    assert "metrics/measure.json" in stages["evaluate"]["deps"]
    assert "--measure metrics/measure.json" in stages["evaluate"]["cmd"]


def test_read_measure_refuses_what_is_not_the_stages_output(tmp_path):
    with pytest.raises(DataContractError, match="churn measure"):
        read_measure(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataContractError, match="not valid JSON"):
        read_measure(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"roc_auc": 0.8}))
    with pytest.raises(DataContractError, match="not the output"):
        read_measure(tmp_path / "other.json")
