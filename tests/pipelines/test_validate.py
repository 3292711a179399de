"""``churn validate`` end to end on temporary directories: CSV and Parquet, quarantine, fatal errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churn_pipeline.errors import DataContractError, ParamsError
from churn_pipeline.pipelines import validate as stage
from churn_pipeline.pipelines.cli import app

CUSTOMERS = """customer_id,signup_ts,country,email_opt_in
007,2023-01-01,DE,true
008,2023-02-01,FR,false
"""
ORDERS = """customer_id,order_id,order_ts,amount,discount_amount,items,channel
007,A1,2024-01-05T10:00:00,10.50,0,1,web
008,A2,2024-02-01T11:00:00,20,2.5,2,app
007,A3,2024-03-01,5,,1,web
"""
RETURNS = """customer_id,order_id,return_ts,amount
007,A1,2024-01-10,10.50
"""
EVENTS = """customer_id,event_ts,event_type,value
007,2024-01-04,session,
007,2024-01-20,review,5
008,2024-02-02,nps,9
"""
SHOP = {"customers": CUSTOMERS, "orders": ORDERS, "returns": RETURNS, "events": EVENTS}
HEADER = ORDERS.splitlines()[0]


pytestmark = pytest.mark.usefixtures("wide_console")  # tests/pipelines/conftest.py


@pytest.fixture
def params(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text("validate:\n  max_timestamp: '2025-01-01'\n  min_timestamp: '1990-01-01'\n  signup_grace_days: 1\n")
    return path


def write_csvs(directory: Path, tables: dict[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in tables.items():
        path = directory / f"{name}.csv"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return directory


def write_parquets(directory: Path, tables: dict[str, pa.Table | pd.DataFrame]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table, preserve_index=False)
        pq.write_table(table, directory / f"{name}.parquet")
    return directory


def invoke(data: Path, out: Path, params: Path, *extra: str):
    args = ["validate", "--data", str(data), "--out", str(out), "--params", str(params), *extra]
    return CliRunner().invoke(app, args)


def ok(data: Path, out: Path, params: Path, *extra: str):
    result = invoke(data, out, params, *extra)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def fails(data: Path, out: Path, params: Path, match: str) -> DataContractError:
    result = invoke(data, out, params)
    assert isinstance(result.exception, DataContractError), (result.output, result.exception)
    assert match in str(result.exception), str(result.exception)
    assert not out.exists()
    return result.exception


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def problems(out: Path, table: str | None = None) -> dict[str, dict]:
    return {p["rule"]: p for p in report(out)["problems"] if table is None or p["table"] == table}


def quarantine(out: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(out / "quarantine" / f"{table}.parquet")


def orders_with(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


# ---- the happy path --------------------------------------------------------------------------------------


def test_clean_csv_shop(tmp_path, params):
    data = write_csvs(tmp_path / "shop", SHOP)
    out, metrics = tmp_path / "validated", tmp_path / "metrics" / "validation.json"
    result = ok(data, out, params, "--metrics", str(metrics))
    assert sorted(p.name for p in out.iterdir()) == [
        "customers.parquet",
        "events.parquet",
        "orders.parquet",
        "report.json",
        "returns.parquet",
    ]
    schema = pq.read_schema(out / "orders.parquet")
    assert schema.field("customer_id").type == pa.string()
    assert schema.field("order_ts").type == pa.timestamp("us")
    assert schema.field("items").type == pa.int64()
    orders = pd.read_parquet(out / "orders.parquet")
    assert list(orders["customer_id"]) == ["007", "008", "007"]
    rep = report(out)
    assert rep["contract_version"] == "1"
    assert rep["tables"]["orders"] == {
        "file": "orders.csv",
        "rows_in": 3,
        "rows_clean": 3,
        "rows_quarantined": 0,
        "columns": ["customer_id", "order_id", "order_ts", "amount", "discount_amount", "items", "channel"],
    }
    assert rep["problems"] == [] and rep["tables_absent"] == ["contacts"]
    assert json.loads(metrics.read_text())["tables"]["events"] == {
        "rows_in": 3,
        "rows_clean": 3,
        "rows_quarantined": 0,
    }
    assert "✓ validate" in result.output


def test_orders_only_directory_works(tmp_path, params):
    out = tmp_path / "out"
    ok(write_csvs(tmp_path / "shop", {"orders": ORDERS}), out, params)
    assert sorted(p.name for p in out.iterdir()) == ["orders.parquet", "report.json"]
    assert report(out)["tables_absent"] == ["customers", "returns", "events", "contacts"]


def test_parquet_shop_with_its_own_types(tmp_path, params):
    # 2024-01-05 09:00 UTC, stored with zone Europe/Berlin (10:00 local)
    ts = pa.array([1_704_445_200_000] * 3, pa.timestamp("ms", tz="Europe/Berlin"))
    orders = pa.table(
        {
            "customer_id": pa.array(["007", "0008", "007"]).dictionary_encode(),
            "order_id": pa.array([1, 2, 3], pa.int64()),
            "order_ts": ts,
            "amount": pa.array([10.5, 20.0, 5.0]),
            "items": pa.array([1, None, 3], pa.int32()),
            "channel": pa.array(["web", "app", None]).dictionary_encode(),
        }
    )
    customers = pa.table(
        {
            "customer_id": ["007", "0008"],
            "signup_ts": pa.array([pd.Timestamp("2023-01-01")] * 2, pa.timestamp("ns")),
            "email_opt_in": [True, None],
        }
    )
    out = tmp_path / "out"
    ok(write_parquets(tmp_path / "shop", {"orders": orders, "customers": customers}), out, params)
    clean = pd.read_parquet(out / "orders.parquet")
    assert list(clean["customer_id"]) == ["007", "0008", "007"]
    assert list(clean["order_id"]) == ["1", "2", "3"]
    assert clean["order_ts"].iloc[0] == pd.Timestamp("2024-01-05 09:00")  # Berlin winter = UTC+1
    assert clean["items"].isna().tolist() == [False, True, False]
    warning = problems(out)["integer-typed id: leading zeros cannot be recovered (export ids as text)"]
    assert (warning["table"], warning["column"], warning["severity"]) == ("orders", "order_id", "warning")


# ---- fatal errors: nothing written -----------------------------------------------------------------------


def test_missing_data_directory(tmp_path, params):
    fails(tmp_path / "nowhere", tmp_path / "out", params, "does not exist")


def test_directory_without_contract_tables(tmp_path, params):
    data = tmp_path / "shop"
    data.mkdir()
    (data / "notes.txt").write_text("hi")
    fails(data, tmp_path / "out", params, "holds no contract table")


def test_missing_orders_file(tmp_path, params):
    data = write_csvs(tmp_path / "shop", {"customers": CUSTOMERS})
    fails(data, tmp_path / "out", params, "has no orders table")


def test_missing_required_column_names_file_column_and_fix(tmp_path, params):
    data = write_csvs(tmp_path / "shop", {"orders": ORDERS.replace("order_ts", "Order_TS")})
    error = fails(data, tmp_path / "out", params, "lacks required column(s) order_ts")
    message = str(error)
    assert str(data / "orders.csv") in message and "table orders" in message
    assert "rename 'Order_TS' to 'order_ts'" in message


def test_missing_required_column_of_an_optional_table_is_fatal(tmp_path, params):
    data = write_csvs(tmp_path / "shop", {"orders": ORDERS, "returns": RETURNS.replace("return_ts", "when")})
    fails(data, tmp_path / "out", params, "lacks required column(s) return_ts")


@pytest.mark.parametrize("content", ["", HEADER + "\n"], ids=["zero-bytes", "header-only"])
def test_empty_orders_file(tmp_path, params, content):
    fails(write_csvs(tmp_path / "shop", {"orders": content}), tmp_path / "out", params, "is empty")


def test_empty_orders_parquet(tmp_path, params):
    empty = pd.read_csv(write_csvs(tmp_path / "src", {"orders": ORDERS}) / "orders.csv", dtype=str).iloc[:0]
    fails(write_parquets(tmp_path / "shop", {"orders": empty}), tmp_path / "out", params, "is empty")


def test_empty_optional_table_is_a_warning_and_absent(tmp_path, params):
    out = tmp_path / "out"
    ok(
        write_csvs(tmp_path / "shop", {"orders": ORDERS, "returns": RETURNS.splitlines()[0] + "\n"}),
        out,
        params,
    )
    assert not (out / "returns.parquet").exists()
    assert problems(out)["empty file: table treated as absent"]["severity"] == "warning"
    assert "returns" in report(out)["tables_absent"]


def test_non_utf8_csv(tmp_path, params):
    latin1 = orders_with("007,A9,2024-01-01,3").replace("007,A9", "Jos\u00e9,A9").encode("latin-1")
    fails(write_csvs(tmp_path / "shop", {"orders": latin1}), tmp_path / "out", params, "is not valid UTF-8")


def test_non_utf8_events_csv_read_in_chunks(tmp_path, params):
    rows = [f"007,2024-01-{d:02d},session," for d in range(1, 10)] + ["007,2024-01-10,caf\u00e9,"]
    events = ("customer_id,event_ts,event_type,value\n" + "\n".join(rows) + "\n").encode("latin-1")
    data = write_csvs(tmp_path / "shop", {"orders": ORDERS, "events": events})
    out = tmp_path / "out"
    with pytest.raises(DataContractError, match="not valid UTF-8"):
        stage.run(data=data, out=out, params_path=params, batch_rows=3)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_table_both_as_csv_and_parquet(tmp_path, params):
    data = write_csvs(tmp_path / "shop", {"orders": ORDERS})
    write_parquets(data, {"orders": pd.read_csv(data / "orders.csv", dtype=str)})
    fails(data, tmp_path / "out", params, "holds both")


def test_no_usable_orders_left(tmp_path, params):
    data = write_csvs(tmp_path / "shop", {"orders": orders_with("007,A1,2024-01-01,-1", "007,A2,never,1")})
    fails(data, tmp_path / "out", params, "no usable orders rows left")


def test_fatal_error_leaves_an_existing_output_untouched(tmp_path, params):
    out = write_csvs(tmp_path / "out", {"marker": "previous run\n"})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    data = write_csvs(tmp_path / "shop", {"orders": ORDERS.replace("amount", "amt")})
    result = invoke(data, out, params)
    assert isinstance(result.exception, DataContractError)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "params.yaml", "shop"]


def test_cli_exit_code_and_one_paragraph(tmp_path, params):
    data = write_csvs(tmp_path / "shop", {"orders": ORDERS.replace("amount", "amt")})
    cmd = [
        sys.executable,
        "-m",
        "churn_pipeline",
        "validate",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
        "--params",
        str(params),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 3
    assert "lacks required column(s) amount" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


# ---- --out apart from --data: validate replaces --out whole ---------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("out", "why"),
    [
        ("shop", "is the data directory itself"),
        ("shop/./", "is the data directory itself"),
        ("elsewhere/../shop", "is the data directory itself"),
        ("link", "is the data directory itself"),
        ("shop/validated", "is inside the data directory"),
        ("link/validated", "is inside the data directory"),
        (".", "contains the data directory"),
    ],
)
def test_an_out_that_is_inside_or_around_the_data_is_refused_and_the_raw_data_kept(
    tmp_path, params, monkeypatch, out, why
):
    monkeypatch.chdir(tmp_path)  # relative paths as a user types them
    write_csvs(tmp_path / "shop", {"orders": ORDERS, "customers": CUSTOMERS})
    (tmp_path / "link").symlink_to(tmp_path / "shop", target_is_directory=True)
    before = _tree(tmp_path)
    result = CliRunner().invoke(app, ["validate", "--data", "shop", "--out", out, "--params", str(params)])
    assert isinstance(result.exception, ParamsError), (result.output, result.exception)
    message = str(result.exception)
    assert why in message and "--out shop_validated" in message and "Nothing was written" in message
    assert _tree(tmp_path) == before  # orders.csv is still there, nothing was added


def test_an_out_that_contains_the_data_through_a_symlink_is_refused(tmp_path, params):
    write_csvs(tmp_path / "root" / "shop", {"orders": ORDERS})
    (tmp_path / "alias").symlink_to(tmp_path / "root", target_is_directory=True)
    with pytest.raises(ParamsError, match="contains the data directory"):
        stage.run(data=tmp_path / "root" / "shop", out=tmp_path / "alias", params_path=params)
    assert (tmp_path / "root" / "shop" / "orders.csv").read_text() == ORDERS


def test_an_out_beside_the_data_with_a_similar_name_is_fine(tmp_path, params):
    # "shop_validated" starts with "shop" but is not inside it: paths are compared by parts, not as text.
    ok(write_csvs(tmp_path / "shop", {"orders": ORDERS}), tmp_path / "shop_validated", params)
    assert (tmp_path / "shop" / "orders.csv").read_text() == ORDERS


def test_the_cli_exits_4_when_out_is_the_data_directory(tmp_path, params):
    data = write_csvs(tmp_path / "shop", {"orders": ORDERS})
    cmd = [sys.executable, "-m", "churn_pipeline", "validate", "--data", str(data), "--out", str(data)]
    proc = subprocess.run([*cmd, "--params", str(params)], capture_output=True, text=True, check=False)
    assert proc.returncode == ParamsError.exit_code == 4
    assert "is the data directory itself" in proc.stderr and "Traceback" not in proc.stderr
    assert (data / "orders.csv").read_text() == ORDERS


# ---- row problems: quarantined, the rest goes on ---------------------------------------------------------


def test_extra_columns_are_dropped_with_a_warning(tmp_path, params):
    data = write_csvs(
        tmp_path / "shop",
        {"orders": ORDERS.replace("channel\n", "channel,note\n").replace(",web\n", ",web,hello\n")},
    )
    out = tmp_path / "out"
    ok(data, out, params)
    assert "note" not in pq.read_schema(out / "orders.parquet").names
    extra = problems(out)["extra columns dropped (not in the contract)"]
    assert (extra["column"], extra["severity"]) == ("note", "warning")


def test_wrong_types(tmp_path, params):
    csv_out, pq_out = tmp_path / "csv_out", tmp_path / "pq_out"
    ok(
        write_csvs(tmp_path / "csv", {"orders": orders_with("007,A1,2024-01-01,twelve", "007,A2,2024-01-02,3")}),
        csv_out,
        params,
    )
    assert quarantine(csv_out, "orders")["_reason"].tolist() == ["unparseable amount: twelve"]
    orders = pa.table(
        {
            "customer_id": ["1", "2", "3"],
            "order_id": ["A", "B", "C"],
            "order_ts": ["2024-01-01", "2024-01-02", "2024-01-03"],
            "amount": ["1.5", "abc", "3"],
            "items": [1.0, 2.5, None],
        }
    )
    ok(write_parquets(tmp_path / "pq", {"orders": orders}), pq_out, params)
    q = quarantine(pq_out, "orders")
    assert q["_reason"].tolist() == ["unparseable amount: abc; unparseable items: 2.5"]
    assert pd.read_parquet(pq_out / "orders.parquet")["order_id"].tolist() == ["A", "C"]


def test_numeric_timestamps_in_parquet_are_refused(tmp_path, params):
    orders = pa.table(
        {
            "customer_id": ["1", "2"],
            "order_id": ["A", "B"],
            "order_ts": pa.array([1_704_067_200, None], pa.int64()),
            "amount": [1.0, 2.0],
        }
    )
    fails(write_parquets(tmp_path / "shop", {"orders": orders}), tmp_path / "out", params, "no usable orders")


def test_unparseable_dates(tmp_path, params):
    out = tmp_path / "out"
    ok(
        write_csvs(
            tmp_path / "shop",
            {"orders": orders_with("007,A1,2024-01-01,1", "007,A2,31.02.2024x,1", "007,A3,soon,1")},
        ),
        out,
        params,
    )
    q = quarantine(out, "orders")
    assert q[["_row", "order_ts"]].values.tolist() == [[1, "31.02.2024x"], [2, "soon"]]
    assert problems(out)["unparseable order_ts"]["rows"] == 2


def test_mixed_time_zones(tmp_path, params):
    out = tmp_path / "out"
    rows = (
        "007,A1,2024-01-01T12:00:00+02:00,1",
        "007,A2,2024-01-01T12:00:00Z,1",
        "007,A3,2024-01-01 12:00,1",
    )
    ok(write_csvs(tmp_path / "shop", {"orders": orders_with(*rows)}), out, params)
    ts = pd.read_parquet(out / "orders.parquet")["order_ts"]
    assert ts.tolist() == [
        pd.Timestamp("2024-01-01 10:00"),
        pd.Timestamp("2024-01-01 12:00"),
        pd.Timestamp("2024-01-01 12:00"),
    ]
    mixed = problems(out)["mixed time zones (all converted to UTC)"]
    assert mixed["severity"] == "warning"
    assert sorted(mixed["examples"]) == [
        "+02:00: 1 rows",
        "UTC (Z/+00:00): 1 rows",
        "naive (read as UTC): 1 rows",
    ]


def test_negative_amounts(tmp_path, params):
    out = tmp_path / "out"
    ok(
        write_csvs(tmp_path / "shop", {"orders": orders_with("007,A1,2024-01-01,-3", "007,A2,2024-01-02,3")}),
        out,
        params,
    )
    assert quarantine(out, "orders")["_reason"].tolist() == ["amount >= 0: -3.0"]
    assert problems(out)["amount >= 0"]["examples"] == ["row 0: -3.0"]


def test_duplicate_order_ids_exact_and_conflicting(tmp_path, params):
    rows = (
        "007,A1,2024-01-01,5",
        "007,A1,2024-01-01,5",
        "007,A2,2024-01-01,5",
        "008,A2,2024-01-01,6",
        "007,A3,2024-01-03,1",
    )
    out = tmp_path / "out"
    ok(write_csvs(tmp_path / "shop", {"orders": orders_with(*rows)}), out, params)
    assert pd.read_parquet(out / "orders.parquet")["order_id"].tolist() == ["A1", "A3"]
    q = quarantine(out, "orders")
    assert q["_row"].tolist() == [1, 2, 3]
    assert q["_reason"].iloc[0] == "exact duplicate row: same as row 0"
    assert q["_reason"].iloc[1].startswith("duplicate order_id with differing rows (all copies): A2 in 2 rows")


def test_duplicate_customer_rows(tmp_path, params):
    customers = CUSTOMERS + "007,2023-01-01,DE,true\n008,2023-03-01,FR,false\n"
    out = tmp_path / "out"
    ok(write_csvs(tmp_path / "shop", {"orders": ORDERS, "customers": customers}), out, params)
    assert pd.read_parquet(out / "customers.parquet")["customer_id"].tolist() == ["007"]
    assert quarantine(out, "customers")["_row"].tolist() == [1, 2, 3]
    # 008's orders are kept; its customer row is gone, which is reported
    assert problems(out)["customer_id not in customers (kept)"]["rows"] == 1


def test_orders_before_signup(tmp_path, params):
    customers = "customer_id,signup_ts\n007,2024-01-05\n"
    rows = ("007,A1,2024-01-04T12:00:00,1", "007,A2,2024-01-01,1", "007,A3,2024-02-01,1")
    out = tmp_path / "out"
    ok(write_csvs(tmp_path / "shop", {"orders": orders_with(*rows), "customers": customers}), out, params)
    assert quarantine(out, "orders")["_row"].tolist() == [1]  # 12 h early is inside the 1-day grace
    assert "before customer signup_ts" in quarantine(out, "orders")["_reason"].iloc[0]


def test_timestamps_in_the_future_of_the_data(tmp_path, params):
    rows = ("007,A1,2024-12-31T23:59:59,1", "007,A2,2025-01-01T00:00:01,1", "007,A3,1970-01-01,1")
    out = tmp_path / "out"
    ok(write_csvs(tmp_path / "shop", {"orders": orders_with(*rows)}), out, params)
    reasons = quarantine(out, "orders").set_index("_row")["_reason"]
    assert reasons[1].startswith("order_ts <= max_timestamp (2025-01-01 00:00:00)")
    assert reasons[2].startswith("order_ts >= min_timestamp (1990-01-01 00:00:00)")
    assert report(out)["bounds"]["max_timestamp"] == "2025-01-01 00:00:00"


def test_default_max_timestamp_is_now(tmp_path):
    rows = ("007,A1,2024-01-01,1", "007,A2,2999-01-01,1")
    out = tmp_path / "out"
    stage.run(
        data=write_csvs(tmp_path / "shop", {"orders": orders_with(*rows)}),
        out=out,
        params_path=tmp_path / "absent.yaml",
    )
    assert quarantine(out, "orders")["_row"].tolist() == [1]


def test_returns_of_unknown_or_later_orders(tmp_path, params):
    returns = RETURNS + "007,A1,2024-01-01,1\n007,ZZ,2024-05-01,1\n"
    out = tmp_path / "out"
    ok(write_csvs(tmp_path / "shop", {"orders": ORDERS, "returns": returns}), out, params)
    assert quarantine(out, "returns")["_row"].tolist() == [1, 2]
    assert report(out)["tables"]["returns"]["rows_clean"] == 1


def test_ids_with_leading_zeros_csv_and_parquet(tmp_path, params):
    csv_out, pq_out = tmp_path / "csv_out", tmp_path / "pq_out"
    ok(
        write_csvs(tmp_path / "csv", {"orders": orders_with("00042,0001,2024-01-01,1", "42,001,2024-01-01,1")}),
        csv_out,
        params,
    )
    clean = pd.read_parquet(csv_out / "orders.parquet")
    assert clean[["customer_id", "order_id"]].values.tolist() == [["00042", "0001"], ["42", "001"]]
    frame = pd.DataFrame(
        {
            "customer_id": ["00042", "42"],
            "order_id": ["0001", "001"],
            "order_ts": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "amount": [1.0, 2.0],
        }
    )
    ok(write_parquets(tmp_path / "pq", {"orders": frame}), pq_out, params)
    clean = pd.read_parquet(pq_out / "orders.parquet")
    assert clean[["customer_id", "order_id"]].values.tolist() == [["00042", "0001"], ["42", "001"]]


def test_nan_ids(tmp_path, params):
    csv_out, pq_out = tmp_path / "csv_out", tmp_path / "pq_out"
    rows = ("NaN,A1,2024-01-01,1", ",A2,2024-01-01,1", "007,nan,2024-01-01,1", "007,A4,2024-01-01,1")
    ok(write_csvs(tmp_path / "csv", {"orders": orders_with(*rows)}), csv_out, params)
    assert quarantine(csv_out, "orders")["_reason"].tolist() == [
        "customer_id is missing",
        "customer_id is missing",
        "order_id is missing",
    ]
    frame = pd.DataFrame(
        {
            "customer_id": [7.0, float("nan")],
            "order_id": ["A", "B"],
            "order_ts": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "amount": [1.0, 2.0],
        }
    )
    ok(write_parquets(tmp_path / "pq", {"orders": frame}), pq_out, params)
    assert quarantine(pq_out, "orders")["_reason"].tolist() == ["customer_id is missing"]
    assert pd.read_parquet(pq_out / "orders.parquet")["customer_id"].tolist() == ["7"]


def test_all_problems_are_reported_at_once(tmp_path, params):
    rows = ("007,A1,2024-01-01,-1", "007,A2,not a date,1", "007,A3,2024-01-01,1")
    events = "customer_id,event_ts,event_type,value\n007,2024-01-01,review,9\n"
    out = tmp_path / "out"
    result = ok(write_csvs(tmp_path / "shop", {"orders": orders_with(*rows), "events": events}), out, params)
    found = problems(out)
    assert {"amount >= 0", "unparseable order_ts", "value within the range of its event_type"} <= set(found)
    for rule in ("amount >= 0", "unparseable order_ts", "value within the range of its event_type"):
        assert rule in result.output
    assert "row 1: not a date" in result.output
    assert json.loads(json.dumps(report(out)))["tables"]["orders"]["rows_quarantined"] == 2


# ---- events: streamed in batches -------------------------------------------------------------------------


def _events_frame(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"{i:05d}" for i in range(n)],
            "event_ts": pd.date_range("2024-01-01", periods=n, freq="D"),
            "event_type": ["review"] * n,
            "value": [4.0] * n,
            "debug": ["x"] * n,
        }
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_events_are_validated_in_batches_with_global_row_numbers(tmp_path, params, fmt):
    events = _events_frame()
    events.loc[1, "value"] = 9.0
    events.loc[8, "customer_id"] = None
    data = write_csvs(tmp_path / "shop", {"orders": ORDERS})
    if fmt == "parquet":
        table = pa.Table.from_pandas(events, preserve_index=False)
        table = table.set_column(2, "event_type", table["event_type"].dictionary_encode())
        pq.write_table(table, data / "events.parquet", row_group_size=4)
    else:
        events.to_csv(data / "events.csv", index=False)
    out = tmp_path / "out"
    rep = stage.run(data=data, out=out, params_path=params, batch_rows=3)
    clean = pd.read_parquet(out / "events.parquet")
    assert len(clean) == 8 and clean["customer_id"].iloc[0] == "00000"
    assert pq.read_schema(out / "events.parquet").field("event_ts").type == pa.timestamp("us")
    q = quarantine(out, "events")
    assert q["_row"].tolist() == [1, 8]
    assert list(q.columns) == ["customer_id", "event_ts", "event_type", "value", "_row", "_reason"]
    assert rep["tables"]["events"]["rows_in"] == 10 and rep["tables"]["events"]["rows_quarantined"] == 2
    by_rule = {p["rule"]: p for p in rep["problems"] if p["table"] == "events"}
    assert by_rule["extra columns dropped (not in the contract)"]["column"] == "debug"
    assert by_rule["customer_id is missing"]["examples"] == ["row 8"]


def test_mixed_zones_across_event_batches(tmp_path, params):
    events = "customer_id,event_ts,event_type,value\n" + "".join(
        f"1,2024-01-0{d}T00:00:00{'+01:00' if d > 3 else ''},session,\n" for d in range(1, 7)
    )
    out = tmp_path / "out"
    rep = stage.run(
        data=write_csvs(tmp_path / "shop", {"orders": ORDERS, "events": events}),
        out=out,
        params_path=params,
        batch_rows=3,
    )
    (mixed,) = [p for p in rep["problems"] if p["rule"] == "mixed time zones (all converted to UTC)"]
    assert mixed["table"] == "events" and mixed["rows"] == 3


def test_same_data_gives_byte_identical_output_whatever_the_clock_says(tmp_path):
    """max_timestamp defaults to the run time; the output must not record it, or DVC sees a change each run."""
    data = write_csvs(tmp_path / "in", SHOP)
    params = tmp_path / "params_now.yaml"
    params.write_text("validate:\n  max_timestamp: null\n")
    stage.run(data=data, out=tmp_path / "a", metrics=None, params_path=params, now=pd.Timestamp("2026-01-01"))
    stage.run(data=data, out=tmp_path / "b", metrics=None, params_path=params, now=pd.Timestamp("2026-06-30 13:45"))
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


# ---- contacts (issue 15): optional, checked against the clean customers and orders -----------------------

CONTACTS = """customer_id,contact_ts,action,group,campaign_id,cost
007,2024-01-04,winback_email_coupon,treatment,c1,2.5
008,2024-02-05,winback_email_coupon, Control ,c1,
007,2024-03-02,birthday_mail,treatment,c2,0
999,2024-03-02,onboarding,treatment,c2,1
008,2024-03-02,onboarding,test,c2,1
008,2024-03-02,onboarding,control,c2,-1
007,2024-01-04,winback_email_coupon,treatment,c1,2.5
"""


def test_contacts_are_validated_with_the_other_tables(tmp_path, params):
    data = write_csvs(tmp_path / "shop", {**SHOP, "contacts": CONTACTS})
    out, metrics = tmp_path / "out", tmp_path / "validation.json"
    result = ok(data, out, params, "--metrics", str(metrics))
    clean = pd.read_parquet(out / "contacts.parquet")
    assert clean[["customer_id", "group", "campaign_id"]].values.tolist() == [
        ["007", "treatment", "c1"],
        ["008", "control", "c1"],
        ["007", "treatment", "c2"],
    ]
    schema = pq.read_schema(out / "contacts.parquet")
    assert schema.field("contact_ts").type == pa.timestamp("us") and schema.field("cost").type == pa.float64()
    q = quarantine(out, "contacts").set_index("_row")["_reason"].to_dict()
    assert q == {
        3: "customer_id in neither the clean customers nor clean orders (unknown or quarantined)",
        4: "group is treatment or control: test",
        5: "cost >= 0: -1.0",
        6: "exact duplicate row: same as row 0",
    }
    rep = report(out)
    assert rep["tables"]["contacts"] == {
        "file": "contacts.csv",
        "rows_in": 7,
        "rows_clean": 3,
        "rows_quarantined": 4,
        "columns": ["customer_id", "contact_ts", "action", "group", "campaign_id", "cost"],
    }
    assert rep["tables_absent"] == []
    found = problems(out, "contacts")
    unknown = found["customer_id in neither the clean customers nor clean orders (unknown or quarantined)"]
    assert unknown["detail"].startswith(
        "contacts for customers the orders and customers tables do not know: 1 rows quarantined to "
        "quarantine/contacts.parquet; export the contacts from the same shop"
    )
    early = found["contact_ts before the customer's first order, or no order at all (kept)"]
    assert (early["severity"], early["rows"], early["examples"]) == ("warning", 1, ["row 0"])
    actions = found["action the pipeline does not know (kept, measured as it is)"]
    assert actions["detail"] == (
        "1 contacts of 3 rows have actions the pipeline does not know: birthday_mail (1); they are kept and "
        "measured as they are."
    )
    # every detail is printed under the problem table, without an id
    for p in rep["problems"]:
        if p.get("detail"):
            assert p["detail"] in result.output
    assert "999" not in result.output
    assert json.loads(metrics.read_text())["tables"]["contacts"] == {
        "rows_in": 7,
        "rows_clean": 3,
        "rows_quarantined": 4,
    }


def test_contacts_without_control_rows_are_kept_with_a_warning(tmp_path, params):
    contacts = "customer_id,contact_ts,action,group\n007,2024-03-02,onboarding,treatment\n"
    out = tmp_path / "out"
    result = ok(write_csvs(tmp_path / "shop", {"orders": ORDERS, "contacts": contacts}), out, params)
    assert len(pd.read_parquet(out / "contacts.parquet")) == 1
    warning = problems(out)["treatment rows but no control rows: the actions' effect cannot be measured"]
    assert warning["severity"] == "warning" and "needs a control group" in warning["detail"]
    assert "needs a control group" in result.output


def test_a_contacts_table_lacking_group_is_fatal(tmp_path, params):
    contacts = "customer_id,contact_ts,action\n007,2024-03-02,onboarding\n"
    data = write_csvs(tmp_path / "shop", {"orders": ORDERS, "contacts": contacts})
    fails(data, tmp_path / "out", params, "(table contacts) lacks required column(s) group")


def test_a_validated_contacts_table_does_not_disturb_features(tmp_path, params):
    from churn_pipeline.pipelines.io import check_tables, connect

    out = tmp_path / "out"
    ok(write_csvs(tmp_path / "shop", {**SHOP, "contacts": CONTACTS}), out, params)
    assert check_tables(out)["contacts"].rows == 3
    con = connect(out)  # views of the tables the features read; contacts is not one of them (yet)
    path = str(out / "contacts.parquet")
    assert con.execute("""SELECT count(*) FROM read_parquet(?) WHERE "group" = 'control'""", [path]).fetchall() == [
        (1,)
    ]
