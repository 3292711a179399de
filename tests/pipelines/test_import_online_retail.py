"""``churn import online-retail`` end to end: files written atomically, clear failures that write nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churn_pipeline.features.online_retail import online_retail_to_contract
from churn_pipeline.pipelines.cli import app

COLUMNS = [
    "Invoice",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
]
ROWS = [
    ("500001", "85123A", "HEART", 6, "2010-01-10 10:00:00", 2.55, 12346, "United Kingdom"),
    ("500001", "POST", "POSTAGE", 1, "2010-01-10 10:00:00", 18.00, 12346, "United Kingdom"),
    ("500002", "22423", "CAKESTAND", 2, "2010-07-01 12:00:00", 12.75, 12347, "Iceland"),
    ("C500003", "22423", "CAKESTAND", -1, "2010-07-05 09:30:00", 12.75, 12347, "Iceland"),
    ("500004", "85123A", "HEART", 1, "2010-02-01 10:00:00", 2.55, None, "United Kingdom"),
]


def raw_frame() -> pd.DataFrame:
    df = pd.DataFrame(ROWS, columns=COLUMNS)
    return df.astype({"Quantity": "Int64", "Customer ID": "Int64", "InvoiceDate": "datetime64[us]"})


def churn(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real entry point (``main``), so exit codes and the one-paragraph message are what users see."""
    return subprocess.run(
        [sys.executable, "-m", "churn_pipeline", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("kind", ["parquet file", "csv in a directory"])
def test_import_writes_the_contract_tables(tmp_path, kind):
    raw = raw_frame()
    if kind == "parquet file":
        source = tmp_path / "online_retail_ii.parquet"
        raw.to_parquet(source)
    else:
        source = tmp_path / "src"
        source.mkdir()
        raw.to_csv(source / "online_retail_ii.csv", index=False)
    out = tmp_path / "data"
    out.mkdir()
    (out / "events.parquet").write_text("stale output of an earlier run")

    result = CliRunner().invoke(app, ["import", "online-retail", "--source", str(source), "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["customers.parquet", "orders.parquet", "returns.parquet"]
    expected, _ = online_retail_to_contract(raw)
    for name, table in expected.items():
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{name}.parquet"), table)
    orders = pd.read_parquet(out / "orders.parquet")
    assert orders["order_id"].tolist() == ["500001", "500002"]
    assert orders["amount"].tolist() == pytest.approx([15.30, 25.50])  # postage excluded
    assert pd.read_parquet(out / "returns.parquet")["order_id"].tolist() == ["500002"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".data.")]  # no staging left behind


def test_missing_source_fails_clearly_and_writes_nothing(tmp_path):
    missing = tmp_path / "nowhere" / "online_retail_ii.parquet"
    out = tmp_path / "data"

    proc = churn("import", "online-retail", "--source", str(missing), "--out", str(out), cwd=tmp_path)

    assert proc.returncode != 0
    message = " ".join(proc.stderr.split())  # rich wraps long lines
    assert str(missing) in message
    assert "--source" in message
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_source_without_needed_columns_fails_and_keeps_previous_output(tmp_path):
    source = tmp_path / "retail.csv"
    raw_frame().drop(columns=["Customer ID"]).to_csv(source, index=False)
    out = tmp_path / "data"
    out.mkdir()
    (out / "orders.parquet").write_text("previous output")

    proc = churn("import", "online-retail", "--source", str(source), "--out", str(out), cwd=tmp_path)

    assert proc.returncode != 0
    message = " ".join(proc.stderr.split())
    assert str(source) in message and "Customer ID" in message
    assert [p.name for p in out.iterdir()] == ["orders.parquet"]
    assert (out / "orders.parquet").read_text() == "previous output"


def test_directory_without_a_data_file_fails(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = churn("import", "online-retail", "--source", str(empty), "--out", str(tmp_path / "data"), cwd=tmp_path)
    assert proc.returncode != 0
    assert str(empty) in " ".join(proc.stderr.split())
    assert not (tmp_path / "data").exists()
