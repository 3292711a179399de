"""Bad input through the real entry point (``pipelines.cli.main``, issue 18): every case exits 3 (the data is
unusable, DataContractError) or 4 (a bad argument, UsageError / ParamsError) with one paragraph naming the file,
the column, the rows and the fix, writes nothing, and never prints an id or personal value.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop
from churn_pipeline.pipelines.cli import main

PARAMS = """\
validate:
  max_timestamp: '2026-06-01'
  min_timestamp: '1990-01-01'
features:
  cutoffs:
    frequency: monthly
    count: 3
  windows_days: [30, 90]
labels:
  churn_horizon_days: 60
  clv_horizon_days: 120
"""
ORDERS = """customer_id,order_id,order_ts,amount,discount_amount,items,channel
007,A1,2024-01-05T10:00:00,10.50,0,1,web
008,A2,2024-02-01T11:00:00,20,2.5,2,app
007,A3,2024-03-01,5,,1,web
"""
EMAIL = "jane.doe@example.com"


pytestmark = pytest.mark.usefixtures("wide_console")  # tests/pipelines/conftest.py


@pytest.fixture
def params(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS, encoding="utf-8")
    return path


@pytest.fixture
def churn(tmp_path, monkeypatch, capsys):
    """``churn ARGS`` in-process through ``main``: (exit code, stderr + stdout). Models come from a store that
    does not exist, so a data or argument check that fires after loading the models would fail differently."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'no-store' / 'mlflow.db'}")

    def run(*args: str | Path) -> tuple[int, str]:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["churn", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        code = exit_info.value.code
        captured = capsys.readouterr()
        return (0 if code is None else int(code)), captured.err + captured.out

    return run


@pytest.fixture(scope="module")
def validated(tmp_path_factory) -> Path:
    """A small synthetic shop validated by `churn validate` (what `churn features` and `churn score` read)."""
    root = tmp_path_factory.mktemp("shop")
    raw = root / "raw"
    raw.mkdir()
    for name, table in generate_shop(SyntheticShopConfig(customers=600, seed=3)).items():
        pq.write_table(table, raw / f"{name}.parquet")
    (root / "params.yaml").write_text(PARAMS, encoding="utf-8")
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", ["churn", "validate", "--data", str(raw), "--out", str(root / "validated"),
                             "--params", str(root / "params.yaml")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    mp.undo()
    assert exit_info.value.code in (None, 0)
    return root / "validated"


def copy_with(validated: Path, directory: Path, table: str, change) -> Path:
    """A copy of the validated directory with ``change(arrow table)`` applied to one table."""
    shutil.copytree(validated, directory)
    path = directory / f"{table}.parquet"
    pq.write_table(change(pq.read_table(path)), path)
    return directory


def all_null(column: str):
    def change(table: pa.Table) -> pa.Table:
        i = table.schema.get_field_index(column)
        return table.set_column(i, table.schema.field(i), pa.nulls(table.num_rows, table.schema.field(i).type))

    return change


def write_shop(directory: Path, **tables: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in tables.items():
        (directory / f"{name}.csv").write_text(content, encoding="utf-8")
    return directory


def nothing_in(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


# ------------------------------------------------------------------ 1. all-null columns
@pytest.mark.parametrize(
    ("table", "content", "column", "rows"),
    [
        ("orders", ORDERS.replace(",10.50,", ",NULL,").replace(",20,", ",,").replace(",5,", ",nan,"), "amount", 3),
        ("returns", "customer_id,order_id,return_ts,amount\n007,A1,2024-01-10,\n008,A2,2024-02-03,NULL\n", "amount", 2),
        ("customers", "customer_id,signup_ts,country\n007,,DE\n008,NaN,FR\n", "signup_ts", 2),
        ("events", "customer_id,event_ts,event_type,value\n007,2024-01-04,,\n008,2024-02-02,,9\n", "event_type", 2),
    ],
)
def test_validate_refuses_a_required_column_that_is_null_in_every_row(
    churn, tmp_path, params, table, content, column, rows
):
    tables = {"orders": ORDERS, table: content}
    data = write_shop(tmp_path / "shop", **tables)
    code, err = churn("validate", "--data", data, "--out", tmp_path / "out", "--params", params)
    assert code == 3, err
    assert f"{data / (table + '.csv')} (table {table})" in err
    assert f"required column(s) {column} empty in all {rows} rows" in err and "Fix the export" in err
    assert "Nothing was written" in err and nothing_in(tmp_path / "out")


def test_validate_drops_an_optional_column_that_is_null_in_every_row_with_a_warning(churn, tmp_path, params):
    data = write_shop(tmp_path / "shop", orders=ORDERS.replace(",web\n", ",\n").replace(",app\n", ", \n"))
    code, err = churn("validate", "--data", data, "--out", tmp_path / "out", "--params", params)
    assert code == 0, err
    assert "channel" not in pq.read_schema(tmp_path / "out" / "orders.parquet").names
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    warning = [p for p in report["problems"] if p["column"] == "channel"]
    assert warning and warning[0]["severity"] == "warning" and "dropped, as if absent" in warning[0]["rule"]
    assert "channel" not in report["tables"]["orders"]["columns"]


@pytest.mark.parametrize("command", ["features", "score"])
def test_a_validated_directory_with_an_all_null_amount_is_refused(churn, tmp_path, validated, params, command):
    data = copy_with(validated, tmp_path / "data", "orders", all_null("amount"))
    out = tmp_path / "out.parquet"
    code, err = churn(command, "--data", data, "--out", out, "--params", params)
    assert code == 3, err
    assert f"{data / 'orders.parquet'} (table orders): required column(s) amount empty (null) in all" in err
    assert "churn validate" in err and "This is a bug" not in err
    assert not out.exists() and not (tmp_path / "no-store").exists()


def test_an_all_null_optional_column_of_a_validated_directory_is_treated_as_absent(churn, tmp_path, validated, params):
    data = copy_with(validated, tmp_path / "data", "orders", all_null("discount_amount"))
    code, err = churn("features", "--data", data, "--out", tmp_path / "f.parquet", "--params", params)
    assert code == 0, err
    assert "optional column discount_amount is empty in all" in err and "treated as absent" in err
    names = pq.read_schema(tmp_path / "f.parquet").names
    assert not any(n.startswith("discount") for n in names)


# ------------------------------------------------------------------ 2. validated data lacking a required column
@pytest.mark.parametrize("command", ["features", "score"])
@pytest.mark.parametrize(("table", "column"), [("orders", "amount"), ("events", "event_type"), ("returns", "order_id")])
def test_a_validated_directory_lacking_a_required_column_names_it(
    churn, tmp_path, validated, params, command, table, column
):
    data = copy_with(validated, tmp_path / "data", table, lambda t: t.drop_columns([column]))
    out = tmp_path / "out.parquet"
    code, err = churn(command, "--data", data, "--out", out, "--params", params)
    assert code == 3, err
    assert f"{data / (table + '.parquet')} (table {table}," in err and f"lacks required column(s) {column}" in err
    assert "churn validate" in err and "BinderException" not in err and "This is a bug" not in err
    assert not out.exists()


# ------------------------------------------------------------------ 3. out-of-range timestamps with nanoseconds
def test_nanosecond_timestamps_mixed_with_9999_12_31_are_quarantined_not_a_crash(churn, tmp_path, params):
    orders = (
        "customer_id,order_id,order_ts,amount\n"
        "007,A1,2024-01-05T10:00:00.123456789,10.5\n"
        "008,A2,9999-12-31,20\n"
        "007,A3,2024-03-01 08:00:00.000000001,5\n"
        "008,A4,31/12/9999,7\n"
    )
    data = write_shop(tmp_path / "shop", orders=orders)
    code, err = churn("validate", "--data", data, "--out", tmp_path / "out", "--params", params)
    assert code == 0, err
    clean = pd.read_parquet(tmp_path / "out" / "orders.parquet")
    assert list(clean["order_id"]) == ["A1", "A3"]
    assert list(clean["order_ts"]) == [pd.Timestamp("2024-01-05 10:00:00.123456"), pd.Timestamp("2024-03-01 08:00")]
    quarantine = pd.read_parquet(tmp_path / "out" / "quarantine" / "orders.parquet")
    assert list(quarantine["_row"]) == [1, 3]
    assert quarantine["_reason"].str.contains("order_ts <= max_timestamp").all()


# ------------------------------------------------------------------ 4. dates
BAD_DATES = ["2025-13-01", "2025-13-45", "2025-02-30", "0000-01-01", "01/06/2025", "2025-6-1", "20250601"]


@pytest.mark.parametrize("as_of", BAD_DATES)
@pytest.mark.parametrize("command", ["features", "score"])
def test_as_of_must_be_an_iso_date(churn, tmp_path, validated, params, command, as_of):
    out = tmp_path / "out.parquet"
    code, err = churn(command, "--data", validated, "--out", out, "--as-of", as_of, "--params", params)
    assert code == 4, err
    assert f"--as-of {as_of!r} is not a date in the form YYYY-MM-DD" in err and "This is a bug" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("command", "as_of", "why"),
    [("features", "2025-13-45", "month must be in 1..12"), ("score", "2025-02-30", "day is out of range for month")],
)
def test_an_as_of_day_that_does_not_exist_says_so_and_is_a_usage_error(
    churn, tmp_path, validated, params, command, as_of, why
):
    out = tmp_path / "out.parquet"
    code, err = churn(command, "--data", validated, "--out", out, "--as-of", as_of, "--params", params)
    assert code == 4, err
    assert f"--as-of {as_of!r} is not a date in the form YYYY-MM-DD" in err
    assert f"there is no such day ({why})" in err and "This is a bug" not in err
    assert not out.exists()


@pytest.mark.parametrize("sent_on", ["2026-02-30", "2026-13-45", "2026-02-30T10:00", "2026-01-02T24:00"])
def test_a_sent_on_day_or_time_that_does_not_exist_is_a_usage_error(churn, tmp_path, sent_on):
    # The date is checked before the scores file is read: a file that is not there changes nothing.
    out = tmp_path / "contacts.parquet"
    code, err = churn("contacts", "--scores", tmp_path / "scores.csv", "--sent-on", sent_on, "--out", out)
    assert code == 4, err
    assert f"--sent-on {sent_on!r} is not a date in the form YYYY-MM-DD" in err and "This is a bug" not in err
    assert not out.exists()


def test_a_params_scoring_date_must_be_an_iso_date(churn, tmp_path, validated):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.replace("count: 3", "count: 3\n    scoring_date: 01/06/2025"), encoding="utf-8")
    code, err = churn("features", "--data", validated, "--out-dir", tmp_path / "features", "--params", params)
    assert code == 4, err
    assert "params.yaml:features.cutoffs.scoring_date '01/06/2025' is not a date in the form YYYY-MM-DD" in err
    assert not (tmp_path / "features").exists()


def test_a_params_validate_bound_must_be_iso_8601(churn, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.replace("max_timestamp: '2026-06-01'", "max_timestamp: '01/06/2025'"), encoding="utf-8")
    data = write_shop(tmp_path / "shop", orders=ORDERS)
    code, err = churn("validate", "--data", data, "--out", tmp_path / "out", "--params", params)
    assert code == 4, err
    assert "params validate.max_timestamp = '01/06/2025' is not an ISO 8601 timestamp" in err
    assert nothing_in(tmp_path / "out")


def test_an_iso_as_of_date_still_works(churn, tmp_path, validated, params):
    code, err = churn("features", "--data", validated, "--out", tmp_path / "f.parquet", "--as-of", "2025-06-01",
                      "--params", params)
    assert code == 0, err
    cutoffs = pc.unique(pq.read_table(tmp_path / "f.parquet", columns=["cutoff"]).column(0)).to_pylist()
    assert [str(pd.Timestamp(c).date()) for c in cutoffs] == ["2025-06-01"]


# ------------------------------------------------------------------ 5. privacy
@pytest.mark.parametrize("lines", [1, 2])
def test_a_csv_without_a_header_row_is_named_without_echoing_its_first_row(churn, tmp_path, params, lines):
    rows = "".join([f"C0042,O9001,2024-01-05,10.5,{EMAIL}\n", "C0043,O9002,2024-01-06,12,x@example.org\n"][:lines])
    data = write_shop(tmp_path / "shop", orders=rows)
    code, err = churn("validate", "--data", data, "--out", tmp_path / "out", "--params", params)
    assert code == 3, err
    assert f"{data / 'orders.csv'} (table orders) has no header row" in err and "looks like data" in err
    assert "none of the 5 cells" in err and "add a header row" in err
    for value in (EMAIL, "C0042", "O9001", "10.5"):
        assert value not in err
    assert nothing_in(tmp_path / "out")


def test_a_long_column_listing_is_capped(churn, tmp_path, params):
    header = "customer_id,order_id,amount," + ",".join(f"extra_{i}" for i in range(40))
    data = write_shop(tmp_path / "shop", orders=header + "\n" + ",".join(["1"] * 43) + "\n")
    code, err = churn("validate", "--data", data, "--out", tmp_path / "out", "--params", params)
    assert code == 3, err
    assert "lacks required column(s) order_ts; it has 43 column(s):" in err and "and 33 more" in err
    assert "'extra_6'" in err and "'extra_7'" not in err


def test_problem_examples_never_show_ids_or_e_mail_addresses(churn, tmp_path, params):
    orders = (
        "customer_id,order_id,order_ts,amount,channel\n"
        "C0042,O9000,2024-01-04,9.5,web\n"
        "C0042,O9001,2024-01-05,10.5,web\n"
        "C0043,O9001,2024-01-06,12,web\n"  # conflicting duplicate order_id
        f"C0044,O9003,2024-01-07,{EMAIL},web\n"  # a shifted export: an e-mail address where the amount goes
    )
    customers = "customer_id,signup_ts\nC0042,2023-01-01\n"
    data = write_shop(tmp_path / "shop", orders=orders, customers=customers)
    code, err = churn("validate", "--data", data, "--out", tmp_path / "out", "--params", params)
    assert code == 0, err
    report = (tmp_path / "out" / "report.json").read_text()
    for text in (err, report):
        assert "duplicate order_id" in text and "unparseable amount" in text
        for value in ("C0042", "C0043", "C0044", "O9001", EMAIL):
            assert value not in text
    # The quarantine keeps the rejected rows as they were: that is its purpose.
    assert set(pd.read_parquet(tmp_path / "out" / "quarantine" / "orders.parquet")["order_id"]) == {"O9001", "O9003"}


# ------------------------------------------------------------------ 6. rename hints
def test_no_rename_hint_from_a_merely_similar_name(churn, tmp_path, params):
    data = write_shop(tmp_path / "shop", orders="customer_id,order_id,amount\n007,A1,10\n")
    code, err = churn("validate", "--data", data, "--out", tmp_path / "out", "--params", params)
    assert code == 3, err
    assert "lacks required column(s) order_ts" in err and "rename '" not in err
    assert "Fix: add the column(s) to the file." in err


def test_a_rename_hint_for_a_case_or_space_difference(churn, tmp_path, params):
    data = write_shop(tmp_path / "shop", orders=" Customer_ID ,order_id,Order_TS,amount\n007,A1,2024-01-05,10\n")
    code, err = churn("validate", "--data", data, "--out", tmp_path / "out", "--params", params)
    assert code == 3, err
    assert "rename ' Customer_ID ' to 'customer_id'; rename 'Order_TS' to 'order_ts'" in err


# ------------------------------------------------------------------ 7. progress
def test_features_prints_a_line_per_cutoff_block(churn, tmp_path, validated, params):
    code, err = churn("features", "--data", validated, "--out-dir", tmp_path / "features", "--params", params)
    assert code == 0, err
    lines = [line for line in err.splitlines() if " cutoff " in line and "rows in" in line]
    assert len(lines) == 4 and "(4/4)" in lines[-1] and lines[-1].lstrip().startswith("scoring cutoff")
    assert "source rows read and rolled up in" in err and "orders," in err


# ------------------------------------------------------------------ 8. contacts (issue 15)
def test_contacts_problems_never_show_ids(churn, tmp_path, params):
    customers = "customer_id,signup_ts\nC0042,2023-01-01\nC0050,2023-01-01\n"
    orders = "customer_id,order_id,order_ts,amount\nC0042,O1,2024-01-05,10\n"
    contacts = (
        "customer_id,contact_ts,action,group\n"
        "C0042,2024-01-01,winback_email_coupon,treatment\n"  # before C0042's first order: kept, flagged
        "C0050,2024-01-01,winback_email_coupon,control\n"  # a sign-up without orders: kept, flagged
        "C0777,2024-01-01,winback_email_coupon,control\n"  # unknown customer: quarantined
        f"C0042,2024-02-01,{EMAIL},treatment\n"  # an unknown action that looks like an e-mail address
    )
    data = write_shop(tmp_path / "shop", orders=orders, customers=customers, contacts=contacts)
    code, err = churn("validate", "--data", data, "--out", tmp_path / "out", "--params", params)
    assert code == 0, err
    report = (tmp_path / "out" / "report.json").read_text()
    for text in (err, report):
        assert "contacts for customers the orders and customers tables do not know: 1 rows quarantined" in text
        assert "contacts are dated before their customer's first order" in text
        assert "have actions the pipeline does not know" in text
        for value in ("C0042", "C0050", "C0777", EMAIL):
            assert value not in text
    assert len(pd.read_parquet(tmp_path / "out" / "contacts.parquet")) == 3


def test_a_validated_directory_with_contacts_still_builds_features(churn, tmp_path, validated, params):
    data = tmp_path / "data"
    shutil.copytree(validated, data)
    ids = pq.read_table(data / "orders.parquet", columns=["customer_id"]).column(0).unique()[:10]
    n = len(ids)
    contacts = pa.table(
        {
            "customer_id": ids,
            "contact_ts": pa.array([pd.Timestamp("2025-05-01")] * n, pa.timestamp("us")),
            "action": ["winback_email_coupon"] * n,
            "group": ["treatment", "control"] * (n // 2),
            "campaign_id": ["c1"] * n,
            "cost": pa.nulls(n, pa.float64()),  # an optional column without values: treated as absent
        }
    )
    pq.write_table(contacts, data / "contacts.parquet")
    code, err = churn("features", "--data", data, "--out", tmp_path / "f.parquet", "--params", params)
    assert code == 0, err
    assert pq.read_metadata(tmp_path / "f.parquet").num_rows > 0
