"""The export stage: a CRM-ready CSV or Parquet file with a manifest, safe text, stable bytes.

Works on a small hand-made scores file (schema v1.2), so every expected cell can be read off the fixture.
"""

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from churn_pipeline.errors import DataContractError, ParamsError, UsageError
from churn_pipeline.models import scoring
from churn_pipeline.models.lifetime import LifetimeValueParams, discounted_lifetime_value
from churn_pipeline.models.scores_schema import COLUMNS, HOLD_OUT, SCHEMA_VERSION, validate_scores
from churn_pipeline.pipelines import export as stage
from churn_pipeline.pipelines.cli import main
from churn_pipeline.pipelines.console import console

IDS = ["0000001", '=HYPERLINK("http://x")', "+49 30 1234", "-17", "@home", "\tTAB", "\rCR", "plain"]
# The next-order (survival) columns of v1.2 per customer: P(an order within 30 / 90 / 180 days) and the median
# days (NaN: not expected to order within 180 days, P(180 d) < 0.5). Customer 2 has P(180 d) = 0.5 exactly: its
# median is the end of the grid, 180 days.
P30 = [0.6, 0.3, 0.2, 0.45, 0.05, 0.1, 0.01, 0.0]
P90 = [0.8, 0.6, 0.45, 0.7, 0.15, 0.3, 0.05, 0.0]
P180 = [0.9, 0.75, 0.5, 0.85, 0.3, 0.6, 0.1, 0.0]
DAYS = [21.4, 62.04, 180.0, 31.5, np.nan, 140.25, np.nan, np.nan]
NEW_COLUMNS = [
    "order_probability_30d",
    "order_probability_90d",
    "order_probability_180d",
    "days_to_next_order",
    "expected_next_order_date",
    "lifetime_value",
]
# Scores v1.3: targeting by expected profit (models.targeting). Customer 1 is held out (never contacted); the
# uplift model covers customers 1, 3 and 5 (empty uplift elsewhere).
NEW_IN_V1_3 = ["expected_uplift", "expected_profit", "contact"]
UPLIFT = [np.nan, 0.05, np.nan, 0.1, np.nan, 0.123456789, np.nan, np.nan]
PROFIT = [0.0, 3.0, -2.5, 7.125, 1.0, 0.25, -1.0, 12.0]
CONTACT = [False, False, False, True, True, True, False, True]
# sha256 of the v1.1 export of this fixture (before the v1.2 columns existed), with its schema_version cells
# "1.1" replaced by "1.2": the first 22 cells of every v1.2 row must be exactly those.
V1_1_CSV_SHA256 = "370a315bcb57cc9e6cc67d12b088daf01b3ae06119898d942a9104ac652230c0"
# Likewise for the Parquet export: sha256 of repr(schema) + repr(rows as dicts) of its first 22 columns.
V1_1_PARQUET_SHA256 = "97532ee24dad57534565528f48e97ac76af1b079891ef358e2d81b08b7aba22f"


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
            "order_probability_30d": P30,
            "order_probability_90d": P90,
            "order_probability_180d": P180,
            "days_to_next_order": DAYS,
            "expected_next_order_date": [
                pd.NaT if np.isnan(d) else pd.Timestamp("2026-01-01") + pd.Timedelta(days=int(np.ceil(d))) for d in DAYS
            ],
            "lifetime_value": _lifetime_value(clv, np.array(P180)),
            "expected_uplift": UPLIFT,
            "expected_profit": PROFIT,
            "contact": CONTACT,
        }
    )
    return validate_scores(frame)


def _lifetime_value(clv: np.ndarray, q: np.ndarray) -> np.ndarray:
    lv = LifetimeValueParams()
    return discounted_lifetime_value(
        clv,
        q,
        period_days=180,
        margin=lv.margin,
        annual_discount_rate=lv.annual_discount_rate,
        horizon_months=lv.horizon_months,
    )


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
    pq.write_table(scoring.to_arrow(_scores(), SUMMARY), path)
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


def test_a_scores_file_of_schema_v1_1_is_refused_naming_the_new_columns(tmp_path):
    old = scoring.to_arrow(_scores(), SUMMARY).drop_columns(NEW_COLUMNS + NEW_IN_V1_3)
    pq.write_table(old, tmp_path / "v1_1.parquet")
    missing = r"schema v1\.3: missing order_probability_30d; .*missing lifetime_value; missing expected_uplift"
    with pytest.raises(DataContractError, match=missing):
        stage.run(tmp_path / "v1_1.parquet", "csv", tmp_path / "out.csv", _params(tmp_path))
    assert not (tmp_path / "out.csv").exists()


def test_a_scores_file_of_schema_v1_is_refused_naming_the_new_columns(tmp_path):
    old = scoring.to_arrow(_scores(), SUMMARY).drop_columns(["value_if_retained", "value_percentile"])
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
    numeric = [c for c in COLUMNS if c.name in stage.DECIMALS or c.name.endswith("percentile")]
    for row in rows[1:]:
        cells = dict(zip(header, row, strict=True))
        for col in numeric:
            if col.nullable and cells[col.name] == "":
                continue  # an empty cell: days_to_next_order of a customer not expected to order within 180 days
            float(cells[col.name])  # still plain numbers, never quoted


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


# ---- issue 18: bad input, CRM limits ---------------------------------------------------------------------------


@pytest.fixture
def churn(tmp_path, monkeypatch, capsys):
    """``churn export ARGS`` through the real entry point: (exit code, stderr)."""
    monkeypatch.setattr(console, "_width", 400)

    def run(*args) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["churn", "export", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        code = exit_info.value.code
        return (0 if code is None else int(code)), capsys.readouterr().err

    return run


def _leftovers(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name not in ("params.yaml", "scores.parquet"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_out_that_is_a_directory_is_refused_before_any_work_and_kept(scores, tmp_path, monkeypatch, churn, fmt):
    out = tmp_path / f"out.{fmt}"
    out.mkdir()
    (out / "keep.txt").write_text("the user's file")
    monkeypatch.setattr(stage, "read_scores", lambda *a: pytest.fail("the scores were read before the check"))
    code, err = churn("--scores", scores, "--format", fmt, "--out", out, "--params", _params(tmp_path))
    assert code == 4, err
    assert f"--out {out} is a directory, but this output is a file" in err and "Nothing was written" in err
    assert (out / "keep.txt").read_text() == "the user's file" and _leftovers(tmp_path) == [f"out.{fmt}"]


def test_a_manifest_path_that_is_a_directory_is_refused_before_any_work(scores, tmp_path):
    (tmp_path / "out.csv.manifest.json").mkdir()
    with pytest.raises(UsageError, match="manifest path"):
        stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    assert _leftovers(tmp_path) == ["out.csv.manifest.json"]


def test_a_killed_exports_staging_is_removed_by_the_next_export(scores, tmp_path):
    # What a killed run leaves: its staging directory with a partial CSV, under the fixed name and (earlier
    # versions) under random tempfile names.
    for name in (".out.csv.tmp", ".out.csv.x1y2z3_4.tmp"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "out.csv").write_text('"customer_id","as_of_date"\n"0000001",20')
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    assert _leftovers(tmp_path) == ["out.csv", "out.csv.manifest.json"]


_KILLED_EXPORT = """
import sys, time
from pathlib import Path
from churn_pipeline.pipelines import export as stage

def write_and_hang(table, path, options):
    Path(path).write_text("partial")
    Path(sys.argv[4]).write_text("writing")
    time.sleep(60)

stage.pacsv.write_csv = write_and_hang
stage.run(Path(sys.argv[1]), "csv", Path(sys.argv[2]), Path(sys.argv[3]))
"""


def test_an_export_killed_mid_write_leaves_nothing_after_the_next_export(scores, tmp_path):
    out, started, params = tmp_path / "out.csv", tmp_path / "started", _params(tmp_path)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_EXPORT, scores, out, params, started], cwd=root)
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the export did not start writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    started.unlink()
    assert _leftovers(tmp_path) == [".out.csv.tmp"]  # the killed run's partial file, nothing else
    stage.run(scores, "csv", out, params)
    assert _leftovers(tmp_path) == ["out.csv", "out.csv.manifest.json"]


def _with_value(table: pa.Table, column: str, row: int, value) -> pa.Table:
    i = table.schema.get_field_index(column)
    values = table.column(i).to_pylist()
    values[row] = value
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("churn_probability", float("nan"), "churn_probability: 1 rows NaN, infinite or outside [0, 1]"),
        ("churn_probability", 1.5, "churn_probability: 1 rows NaN, infinite or outside [0, 1]"),
        ("churn_probability", -0.2, "churn_probability: 1 rows NaN, infinite or outside [0, 1]"),
        ("predicted_clv", 1.5e17, "predicted_clv: 1 rows NaN, infinite or outside [0, 1e+13]"),
        ("predicted_clv", float("inf"), "predicted_clv: 1 rows NaN, infinite or outside [0, 1e+13]"),
        ("value_at_risk", float("nan"), "value_at_risk: 1 rows NaN, infinite or outside [0, 1e+13]"),
        ("expected_orders", -1.0, "expected_orders: 1 rows NaN, infinite or outside [0, 1e+09]"),
        ("expected_orders", float("-inf"), "expected_orders: 1 rows NaN, infinite or outside [0, 1e+09]"),
        ("churn_percentile", 0, "churn_percentile: 1 rows outside [1, 100]"),
        ("risk_tier", "urgent", "risk_tier: 1 rows not one of high, medium, low, lapsed"),
        ("recommended_action", "winback_email_coupon", "recommended_action: 1 control_group rows not 'hold_out'"),
        ("order_probability_30d", 1.5, "order_probability_30d: 1 rows NaN, infinite or outside [0, 1]"),
        ("order_probability_90d", 0.9, "order_probability_90d: 1 rows break order_probability_30d <= order_prob"),
        ("days_to_next_order", 200.0, "days_to_next_order: 1 rows NaN, infinite or outside [0, 180]"),
        ("days_to_next_order", float("nan"), "days_to_next_order: 1 rows NaN, infinite or outside [0, 180]"),
        ("days_to_next_order", None, "days_to_next_order: 1 rows break days_to_next_order is empty exactly when"),
        ("expected_next_order_date", None, "expected_next_order_date: 1 rows break expected_next_order_date = "),
        ("lifetime_value", float("inf"), "lifetime_value: 1 rows NaN, infinite or outside [0, 1e+13]"),
        ("lifetime_value", -5.0, "lifetime_value: 1 rows NaN, infinite or outside [0, 1e+13]"),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_scores_with_impossible_values_are_refused_naming_column_and_count(
    scores, tmp_path, churn, column, value, problem, fmt
):
    bad = tmp_path / "bad.parquet"
    pq.write_table(_with_value(pq.read_table(scores), column, 1, value), bad)
    code, err = churn("--scores", bad, "--format", fmt, "--out", tmp_path / f"out.{fmt}", "--params", _params(tmp_path))
    assert code == 3, err
    assert problem in err and "run `churn score` again" in err and "(8 rows)" in err
    message = err.replace(str(tmp_path), "")
    assert not any(i.strip() in message for i in IDS)  # never a customer id
    assert _leftovers(tmp_path) == ["bad.parquet"]


def test_every_broken_column_is_listed_with_its_count(scores, tmp_path):
    table = pq.read_table(scores)
    for row in (0, 3, 5):
        table = _with_value(table, "churn_probability", row, float("nan"))
    table = _with_value(table, "predicted_clv", 2, 1.5e17)
    bad = tmp_path / "bad.parquet"
    pq.write_table(table, bad)
    with pytest.raises(DataContractError) as info:
        stage.run(bad, "csv", tmp_path / "out.csv", _params(tmp_path))
    assert "churn_probability: 3 rows" in str(info.value) and "predicted_clv: 1 rows" in str(info.value)
    assert info.value.exit_code == 3


def test_a_value_too_large_for_the_decimal_is_never_written_as_another_number(scores, tmp_path, monkeypatch):
    # Even if the range rules let one through, the decimal cast refuses it instead of printing 0.00.
    monkeypatch.setattr(stage, "value_problems", lambda table: [])
    bad = tmp_path / "bad.parquet"
    pq.write_table(_with_value(pq.read_table(scores), "predicted_clv", 1, 1.5e17), bad)
    with pytest.raises(DataContractError, match="column predicted_clv: 1 of 8 values are NaN, infinite or beyond"):
        stage.run(bad, "csv", tmp_path / "out.csv", _params(tmp_path))
    assert _leftovers(tmp_path) == ["bad.parquet"]


def _export(scores, tmp_path, fmt="csv", **export) -> dict:
    stage.run(scores, fmt, tmp_path / f"out.{fmt}", _params(tmp_path, export or None))
    return json.loads((tmp_path / f"out.{fmt}.manifest.json").read_text())


def test_more_rows_than_max_rows_per_file_are_split_into_parts_each_with_the_header(scores, tmp_path):
    whole = tmp_path / "whole"
    whole.mkdir()
    stage.run(scores, "csv", whole / "out.csv", _params(tmp_path))
    manifest = _export(scores, tmp_path, max_rows_per_file=3)
    names = ["out.part-0001.csv", "out.part-0002.csv", "out.part-0003.csv"]
    assert _leftovers(tmp_path) == sorted([*names, "out.csv.manifest.json", "whole"])  # no out.csv
    parts = [_rows(tmp_path / n) for n in names]
    assert [len(p) - 1 for p in parts] == [3, 3, 2]
    expected = _rows(whole / "out.csv")
    assert all(p[0] == expected[0] for p in parts)  # every part has the header
    assert [row for p in parts for row in p[1:]] == expected[1:]  # the rows in order, none lost or repeated
    assert manifest["parts"] == [
        {
            "file": n,
            "rows": len(p) - 1,
            "bytes": (tmp_path / n).stat().st_size,
            "sha256": hashlib.sha256((tmp_path / n).read_bytes()).hexdigest(),
        }
        for n, p in zip(names, parts, strict=True)
    ]
    assert manifest["file"] is None and manifest["sha256"] is None
    assert manifest["rows"] == len(IDS) and manifest["bytes"] == sum(p["bytes"] for p in manifest["parts"])


def test_rows_that_fit_give_one_file_and_no_parts_key(scores, tmp_path):
    manifest = _export(scores, tmp_path, max_rows_per_file=len(IDS))
    assert "parts" not in manifest and manifest["file"] == "out.csv"
    assert _leftovers(tmp_path) == ["out.csv", "out.csv.manifest.json"]


def test_a_rerun_with_fewer_parts_or_one_file_removes_the_stale_files(scores, tmp_path):
    _export(scores, tmp_path, max_rows_per_file=2)
    assert len(_leftovers(tmp_path)) == 5  # four parts and the manifest
    manifest = _export(scores, tmp_path, max_rows_per_file=5)
    assert [p["file"] for p in manifest["parts"]] == ["out.part-0001.csv", "out.part-0002.csv"]
    assert _leftovers(tmp_path) == ["out.csv.manifest.json", "out.part-0001.csv", "out.part-0002.csv"]
    manifest = _export(scores, tmp_path)
    assert "parts" not in manifest and _leftovers(tmp_path) == ["out.csv", "out.csv.manifest.json"]
    _export(scores, tmp_path, max_rows_per_file=4)  # split again: the single file of the last run goes
    assert _leftovers(tmp_path) == ["out.csv.manifest.json", "out.part-0001.csv", "out.part-0002.csv"]


def test_a_failure_while_writing_a_part_keeps_the_previous_export_whole(scores, tmp_path, monkeypatch):
    _export(scores, tmp_path)
    before = {n: (tmp_path / n).read_bytes() for n in _leftovers(tmp_path)}
    calls = []
    real = stage.pacsv.write_csv

    def second_part_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(stage.pacsv, "write_csv", second_part_fails)
    with pytest.raises(OSError, match="disk full"):
        _export(scores, tmp_path, max_rows_per_file=3)
    assert {n: (tmp_path / n).read_bytes() for n in _leftovers(tmp_path)} == before


def test_a_part_path_that_is_a_directory_is_refused_before_anything_is_written(scores, tmp_path):
    _export(scores, tmp_path)
    before = {n: (tmp_path / n).read_bytes() for n in _leftovers(tmp_path)}
    (tmp_path / "out.part-0002.csv").mkdir()
    with pytest.raises(UsageError, match=r"out\.part-0002\.csv is a directory"):
        _export(scores, tmp_path, max_rows_per_file=3)
    assert {n: (tmp_path / n).read_bytes() for n in _leftovers(tmp_path) if n != "out.part-0002.csv"} == before


def test_parquet_is_split_the_same_way(scores, tmp_path):
    manifest = _export(scores, tmp_path, "parquet", max_rows_per_file=5)
    names = ["out.part-0001.parquet", "out.part-0002.parquet"]
    assert [p["file"] for p in manifest["parts"]] == names
    tables = [pq.read_table(tmp_path / n) for n in names]
    assert [t.num_rows for t in tables] == [5, 3]
    assert pa.concat_tables(tables).column("customer_id").to_pylist()[-1] == "plain"


@pytest.mark.parametrize("rows", [0, -1, True, 1.5, "many"])
def test_max_rows_per_file_must_be_a_positive_whole_number(scores, tmp_path, rows):
    with pytest.raises(ParamsError, match="max_rows_per_file"):
        _export(scores, tmp_path, max_rows_per_file=rows)
    assert _leftovers(tmp_path) == []


def test_part_names_sort_in_order_and_stay_stable():
    assert [p.name for p in stage.part_paths(Path("d/scores.csv"), 2)] == [
        "scores.part-0001.csv",
        "scores.part-0002.csv",
    ]
    assert stage.part_paths(Path("scores.csv"), 12345)[-1].name == "scores.part-12345.csv"


LAST_VALUE = 0.3 * 99.999 * 1.1 ** (-90 / 365.25)


# ---- scores v1.2: next-order columns and lifetime value --------------------------------------------------------
def test_the_v1_2_columns_follow_schema_version_in_the_header(scores, tmp_path):
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    header = _rows(tmp_path / "out.csv")[0]
    assert header[21] == "schema_version" and header[22:28] == NEW_COLUMNS and header[28:] == NEW_IN_V1_3


def test_the_v1_2_cells_have_fixed_decimals_iso_dates_and_empty_cells_for_no_expected_order(scores, tmp_path):
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    header, *rows = _rows(tmp_path / "out.csv")
    cells = [dict(zip(header, row, strict=True)) for row in rows]
    assert [c["order_probability_30d"] for c in cells[:2]] == ["0.600000", "0.300000"]
    assert [c["order_probability_180d"] for c in cells[:3]] == ["0.900000", "0.750000", "0.500000"]
    # Days with one decimal (half to even: 140.25 -> 140.2); empty where P(order within 180 days) < 0.5.
    assert [c["days_to_next_order"] for c in cells] == ["21.4", "62.0", "180.0", "31.5", "", "140.2", "", ""]
    # as_of 2026-01-01 + ceil(days): 22, 63, 180, 32 and 141 days.
    assert [c["expected_next_order_date"] for c in cells] == [
        "2026-01-23",
        "2026-03-05",
        "2026-06-30",
        "2026-02-02",
        "",
        "2026-05-22",
        "",
        "",
    ]
    expected = _lifetime_value(np.array([0.0, 12.5, 100.0, 3.333333, 250.0, 7.0, 1.0, 99.999]), np.array(P180))
    assert [c["lifetime_value"] for c in cells] == [f"{v:.2f}" for v in expected]
    # Customer 7 (P 0 of an order within 180 days) is worth the margin of its first period, cash at day 90.
    assert cells[0]["lifetime_value"] == "0.00" and cells[7]["lifetime_value"] == f"{LAST_VALUE:.2f}" == "29.30"
    for name in ("order_probability_30d", "order_probability_90d", "order_probability_180d", "lifetime_value"):
        assert stage.DECIMALS[name] == (2 if name == "lifetime_value" else 6)
    assert stage.DECIMALS["days_to_next_order"] == 1


def test_the_raw_csv_writes_dates_and_numbers_unquoted_and_missing_as_nothing(scores, tmp_path):
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    records = (tmp_path / "out.csv").read_text(encoding="utf-8").split("\n")
    assert records[1].endswith(',"1.3",0.600000,0.800000,0.900000,21.4,2026-01-23,0.00,,0.00,false')
    lifetime = float(_scores()["lifetime_value"][4])
    assert records[5].endswith(f',"1.3",0.050000,0.150000,0.300000,,,{lifetime:.2f},,1.00,true')
    assert records[6].endswith(",0.123457,0.25,true")


def test_the_old_columns_of_a_v1_2_csv_are_byte_identical_to_the_v1_1_export(scores, tmp_path):
    stage.run(scores, "csv", tmp_path / "out.csv", _params(tmp_path))
    data = (tmp_path / "out.csv").read_bytes().decode("utf-8")
    # The six new cells never hold a comma or a quote (numbers, dates, empty): cut them off each record.
    records = data.split("\n")
    assert records[-1] == ""
    old = "\n".join(r.rsplit(",", len(NEW_COLUMNS) + len(NEW_IN_V1_3))[0] for r in records[:-1]) + "\n"
    old = old.replace(',"1.3"', ',"1.2"')  # the hash was taken with the version cells of v1.2
    assert hashlib.sha256(old.encode("utf-8")).hexdigest() == V1_1_CSV_SHA256


def test_the_old_columns_of_a_v1_2_parquet_export_are_those_of_v1_1_and_the_new_ones_native(scores, tmp_path):
    stage.run(scores, "parquet", tmp_path / "out.parquet", _params(tmp_path))
    table = pq.read_table(tmp_path / "out.parquet")
    old = table.select(table.column_names[:22])
    rows = [{**r, "schema_version": "1.2"} for r in old.to_pylist()]  # the hash was taken with v1.2's version cells
    fingerprint = repr(old.schema.remove_metadata()) + repr(rows)
    assert hashlib.sha256(fingerprint.encode("utf-8")).hexdigest() == V1_1_PARQUET_SHA256
    assert table.column_names[22:28] == NEW_COLUMNS and table.column_names[28:] == NEW_IN_V1_3
    assert table.column("contact").type == pa.bool_() and table.column("expected_uplift").null_count == 5
    assert str(table.schema.field("expected_next_order_date").type) == "date32[day]"
    # Rounded as in the CSV (one decimal, half to even), empty cells null.
    assert table.column("days_to_next_order").to_pylist() == [21.4, 62.0, 180.0, 31.5, None, 140.2, None, None]
    assert table.column("expected_next_order_date").null_count == 3
    assert table.column("lifetime_value").to_pylist()[7] == round(LAST_VALUE, 2)


def test_the_new_columns_can_get_crm_names_and_the_manifest_lists_their_decimals(scores, tmp_path):
    mapping = {"days_to_next_order": "next_order_in_days", "expected_next_order_date": "next_order_date"}
    manifest = _export(scores, tmp_path, column_names=mapping)
    header = _rows(tmp_path / "out.csv")[0]
    assert header[25:27] == ["next_order_in_days", "next_order_date"] and manifest["columns"] == header
    assert manifest["schema_version"] == "1.3"
    assert manifest["decimals"]["expected_uplift"] == 6 and manifest["decimals"]["expected_profit"] == 2
    assert manifest["decimals"]["next_order_in_days"] == 1 and manifest["decimals"]["lifetime_value"] == 2
    assert manifest["decimals"]["order_probability_90d"] == 6
