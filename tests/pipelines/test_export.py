"""The export stage: a CRM-ready CSV or Parquet file with a manifest, safe text, stable bytes.

Works on a small hand-made scores file (schema v1.1), so every expected cell can be read off the fixture.
"""

import csv
import hashlib
import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from models.scores_schema import COLUMNS, HOLD_OUT, SCHEMA_VERSION, validate_scores
from pipelines import export as stage
from pipelines import score as score_stage
from pipelines.errors import DataContractError, ParamsError

IDS = ["0000001", '=HYPERLINK("http://x")', "+49 30 1234", "-17", "@home", "\tTAB", "\rCR", "plain"]


def _scores() -> pd.DataFrame:
    n = len(IDS)
    p = np.linspace(0.05, 0.95, n)
    clv = np.array([0.0, 12.5, 100.0, 3.333333, 250.0, 7.0, 1.0, 99.999])
    frame = pd.DataFrame(
        {
            "customer_id": IDS,
            "as_of_date": pd.to_datetime(["2026-01-01"] * n),
            "churn_probability": p,
            "churn_percentile": np.arange(1, n + 1, dtype=np.int16) * 12,
            "risk_tier": ["low", "low", "medium", "medium", "high", "high", "lapsed", "lapsed"],
            "predicted_clv": clv,
            "clv_percentile": np.full(n, 50, dtype=np.int16),
            "expected_orders": np.linspace(0, 2, n),
            "value_if_retained": clv / np.maximum(1 - p, 0.05),
            "value_percentile": np.full(n, 50, dtype=np.int16),
            "value_at_risk": p * clv / np.maximum(1 - p, 0.05),
            "reason_1": ["no order for 120 days; usually orders every 30 days", "-3 in trend", None, *["x"] * 5],
            "reason_2": [None, "=1+1", None, *["y"] * 5],
            "reason_3": [None] * n,
            "reason_code_1": ["recency_days", "orders_trend_90d", None, *["orders_90d"] * 5],
            "reason_code_2": [None, "orders_90d", None, *["sessions_30d"] * 5],
            "reason_code_3": [None] * n,
            "recommended_action": ["no_action", HOLD_OUT, *["winback_email_coupon"] * 6],
            "intended_action": ["no_action", "cross_sell_upsell", *["winback_email_coupon"] * 6],
            "control_group": [False, True, *[False] * 6],
            "model_version": ["churn:v3;clv:v2"] * n,
            "schema_version": [SCHEMA_VERSION] * n,
        }
    )
    return validate_scores(frame)


SUMMARY = {
    "as_of_date": "2026-01-01",
    "model_version": "churn:v3;clv:v2",
    "models": {"churn": {"version": "3"}, "clv": {"version": "2"}},
    "control_group": {"rows": 1},
    "customers_left_out_no_order_before_as_of": 4,
    "tiers": {"high": 2, "medium": 2, "low": 2, "lapsed": 2},
}


@pytest.fixture
def scores(tmp_path):
    path = tmp_path / "scores.parquet"
    pq.write_table(score_stage.to_arrow(_scores(), SUMMARY), path)
    return path


def _params(tmp_path, export: dict | None = None):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"export": export or {}}))
    return path


def _rows(path):
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))


def test_the_csv_has_a_header_in_the_fixed_column_order(scores, tmp_path):
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    rows = _rows(tmp_path / "out.csv")
    assert rows[0] == [c.name for c in COLUMNS]
    assert len(rows) == 1 + len(IDS)


def test_dates_are_iso_and_numbers_have_dot_decimals_with_fixed_places(scores, tmp_path):
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    header, first, second = _rows(tmp_path / "out.csv")[:3]
    row = dict(zip(header, first, strict=True))
    assert row["as_of_date"] == "2026-01-01"
    assert row["churn_probability"] == "0.050000"
    assert row["predicted_clv"] == "0.00" and row["value_at_risk"] == "0.00"
    assert row["expected_orders"] == "0.000"
    assert row["churn_percentile"] == "12"
    assert row["control_group"] == "false"
    assert row["reason_1"] == "no order for 120 days; usually orders every 30 days"
    assert row["reason_2"] == ""  # missing
    assert dict(zip(header, second, strict=True))["predicted_clv"] == "12.50"


def test_value_if_retained_and_value_at_risk_are_money_with_two_decimals(scores, tmp_path):
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    header, _, second = _rows(tmp_path / "out.csv")[:3]
    row = dict(zip(header, second, strict=True))
    # p = 0.05 + 0.9 / 7 = 0.178571, CLV 12.50: if retained 12.5 / (1 - p) = 15.2174, at risk p x that = 2.7174.
    assert row["value_if_retained"] == "15.22" and row["value_at_risk"] == "2.72"
    assert row["value_percentile"] == "50"
    assert stage.DECIMALS["value_if_retained"] == 2


def test_a_scores_file_of_schema_v1_is_refused_naming_the_new_columns(tmp_path):
    old = score_stage.to_arrow(_scores(), SUMMARY).drop_columns(["value_if_retained", "value_percentile"])
    pq.write_table(old, tmp_path / "v1.parquet")
    with pytest.raises(DataContractError, match="missing value_if_retained; missing value_percentile"):
        stage.run(tmp_path / "v1.parquet", "csv", tmp_path / "out.csv", _params(tmp_path))
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("position", range(1, 7))
def test_text_cells_starting_a_formula_get_a_leading_quote(scores, tmp_path, position):
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    cell = _rows(tmp_path / "out.csv")[1 + position][0]
    assert cell == "'" + IDS[position]


def test_safe_cells_and_numbers_are_left_alone(scores, tmp_path):
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    rows = _rows(tmp_path / "out.csv")
    assert rows[1][0] == "0000001" and rows[8][0] == "plain"  # leading zeros kept, plain text as is
    header = rows[0]
    second = dict(zip(header, rows[2], strict=True))
    assert second["reason_1"] == "'-3 in trend" and second["reason_2"] == "'=1+1"
    numeric = [c.name for c in COLUMNS if c.name in stage.DECIMALS or c.name.endswith("percentile")]
    for row in rows[1:]:
        for name in numeric:
            float(dict(zip(header, row, strict=True))[name])  # still plain numbers, never quoted


def test_the_raw_csv_quotes_text_and_not_numbers(scores, tmp_path):
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    line = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()[1]
    assert line.startswith('"0000001",2026-01-01,0.050000,12,"low",0.00,')


def test_the_manifest_describes_the_file(scores, tmp_path):
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    manifest = json.loads((tmp_path / "out.csv.manifest.json").read_text())
    data = (tmp_path / "out.csv").read_bytes()
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() and manifest["bytes"] == len(data)
    assert manifest["rows"] == len(IDS)
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["as_of_date"] == "2026-01-01"
    assert manifest["model_version"] == "churn:v3;clv:v2"
    assert manifest["formula_cells_neutralised"] == 8  # six ids and two reasons
    assert manifest["customers_left_out_no_order_before_as_of"] == 4
    assert manifest["columns"] == [c.name for c in COLUMNS]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_exporting_twice_gives_byte_identical_files(scores, tmp_path, fmt):
    params = _params(tmp_path)
    stage.run(scores, fmt, tmp_path / f"a.{fmt}", params)
    stage.run(scores, fmt, tmp_path / f"b.{fmt}", params)
    assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"b.{fmt}").read_bytes()
    ma = json.loads((tmp_path / f"a.{fmt}.manifest.json").read_text())
    mb = json.loads((tmp_path / f"b.{fmt}.manifest.json").read_text())
    assert {**ma, "file": None} == {**mb, "file": None}


def test_the_parquet_export_has_the_same_columns_and_safe_text(scores, tmp_path):
    stage.run(scores, "parquet", tmp_path / "out.parquet", _params(tmp_path))
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == [c.name for c in COLUMNS]
    assert table.column("customer_id").to_pylist()[1] == "'" + IDS[1]
    assert table.column("predicted_clv").to_pylist()[3] == pytest.approx(3.33)
    assert table.schema.metadata is None or b"pandas" not in table.schema.metadata


def test_crm_column_names_replace_the_schema_names(scores, tmp_path):
    mapping = {"customer_id": "external_id", "churn_probability": "churn_risk_score"}
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path, {"column_names": mapping}))
    header = _rows(tmp_path / "out.csv")[0]
    assert header[:3] == ["external_id", "as_of_date", "churn_risk_score"]
    manifest = json.loads((tmp_path / "out.csv.manifest.json").read_text())
    assert manifest["column_mapping"] == mapping and manifest["decimals"]["churn_risk_score"] == 6


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"churn_prob": "x"}, r"unknown column\(s\) \['churn_prob'\]"),
        ({"customer_id": "risk_tier"}, r"same name: \['risk_tier'\]"),
        ({"customer_id": " "}, "empty name"),
    ],
)
def test_a_bad_column_mapping_is_a_params_error(scores, tmp_path, mapping, message):
    with pytest.raises(ParamsError, match=message):
        stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path, {"column_names": mapping}))
    assert not (tmp_path / "out.csv").exists()


def test_pseudonymised_ids_need_the_key_from_the_environment(scores, tmp_path, monkeypatch):
    params = _params(tmp_path, {"pseudonymise_ids": True, "pseudonym_key_env": "TEST_CHURN_KEY"})
    monkeypatch.delenv("TEST_CHURN_KEY", raising=False)
    with pytest.raises(ParamsError, match="TEST_CHURN_KEY is not set"):
        stage.run(scores, "csv", tmp_path / "out.csv", params)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.csv.manifest.json").exists()

    monkeypatch.setenv("TEST_CHURN_KEY", "test-key")
    stage.run(scores, "csv", tmp_path / "out.csv", params)
    ids = [row[0] for row in _rows(tmp_path / "out.csv")[1:]]
    assert ids[0] == "pdde673f7d7ccb229"  # the same id and key give the same pseudonym in every export
    assert all(i.startswith("p") and len(i) == 17 for i in ids) and len(set(ids)) == len(IDS)
    assert json.loads((tmp_path / "out.csv.manifest.json").read_text())["pseudonymised_ids"] is True


def test_a_file_that_is_not_a_scores_file_is_refused(tmp_path):
    other = tmp_path / "other.parquet"
    pd.DataFrame({"customer_id": ["a"], "score": [0.5]}).to_parquet(other)
    with pytest.raises(DataContractError, match="not a scores file"):
        stage.run(other, "csv", tmp_path / "out.csv", _params(tmp_path))
    with pytest.raises(DataContractError, match="does not exist"):
        stage.run(tmp_path / "missing.parquet", "csv", tmp_path / "out.csv", _params(tmp_path))
    assert not (tmp_path / "out.csv").exists()


def test_a_scores_file_with_a_wrong_column_type_is_refused_naming_the_column(scores, tmp_path):
    table = pq.read_table(scores)
    i = table.schema.get_field_index("churn_percentile")
    retyped = table.set_column(i, "churn_percentile", table.column(i).cast(pa.float64()))
    bad = tmp_path / "retyped.parquet"
    pq.write_table(retyped, bad)
    with pytest.raises(DataContractError, match="churn_percentile is double"):
        stage.run(bad, "csv", tmp_path / "out.csv", _params(tmp_path))
    assert not (tmp_path / "out.csv").exists()


def test_a_scores_file_with_a_repeated_customer_is_refused(scores, tmp_path):
    table = pq.read_table(scores)
    bad = tmp_path / "repeated.parquet"
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), bad)
    with pytest.raises(DataContractError, match="customer_id repeats 1 of"):
        stage.run(bad, "csv", tmp_path / "out.csv", _params(tmp_path))
    assert not (tmp_path / "out.csv").exists()


def test_an_unknown_format_is_refused(scores, tmp_path):
    with pytest.raises(ParamsError, match="--format"):
        stage.run(scores, "xlsx", tmp_path / "out.xlsx", _params(tmp_path))


def test_a_crash_while_writing_leaves_no_file_behind(scores, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(stage.pacsv, "write_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "scores.parquet"]
