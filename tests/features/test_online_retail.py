"""The Online Retail II → contract transform: a hand-checked fixture, and invariants on the real file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.errors import DataContractError
from churn_pipeline.features.online_retail import DROPPED_REASONS, KEPT_REASONS, online_retail_to_contract

REAL_DIR = Path(__file__).parents[2].parent / "shared/data/online_retail_ii"
REAL_FILE = REAL_DIR / "online_retail_ii.parquet"

# (Invoice, StockCode, Quantity, InvoiceDate as UK wall-clock time, Price, Customer ID, Country);
# the comments give the expected outcome of each line.
LINES = [
    ("500001", "85123A", 6, "2010-01-10 10:00", 2.55, 12346, "United Kingdom"),  # 1 order 500001, 15.30
    ("500001", "22423", 2, "2010-01-10 10:01", 12.75, 12346, "United Kingdom"),  # 2 order 500001, 25.50
    ("500001", "POST", 1, "2010-01-10 10:01", 18.00, 12346, "United Kingdom"),  # 3 postage, excluded
    ("500002", "85123A", 4, "2010-07-01 12:00", 2.55, 12346, "United Kingdom"),  # 4 order 500002 (BST), 10.20
    ("500002", "D", 1, "2010-07-01 12:00", 1.20, 12346, "United Kingdom"),  # 5 discount on 500002
    ("C500003", "85123A", -2, "2010-07-05 09:30", 2.55, 12346, "United Kingdom"),  # 6 → 500002 by code
    ("C500003", "22423", -1, "2010-07-05 09:30", 12.75, 12346, "United Kingdom"),  # 7 → 500001 by code
    ("C500004", "21212", -3, "2010-08-01 15:00", 0.55, 12346, "United Kingdom"),  # 8 → 500002 (previous)
    ("500005", "21212", 12, "2010-03-28 01:30", 0.55, 12347, "Iceland"),  # 9 skipped hour → 01:00 UTC
    ("500005", "22000", 1, "2010-03-28 01:30", 0.0, 12347, "Iceland"),  # 10 zero price
    ("C500006", "21212", -1, "2010-03-20 10:00", 0.55, 12347, "Iceland"),  # 11 no earlier order: unmatched
    ("500007", "22001", 2, "2010-10-31 01:30", 3.00, 12347, "Germany"),  # 12 repeated hour read as BST
    ("500008", "85123A", 1, "2010-02-01 10:00", 2.55, None, "United Kingdom"),  # 13 no customer
    ("500009", "M", 1, "2010-02-02 10:00", 5.00, 12348, "France"),  # 14 manual; 12348 has no order
    ("500010", "22002", -5, "2010-02-03 10:00", 0.0, 12346, "United Kingdom"),  # 15 negative qty on invoice
    ("500011", "D", 1, "2010-02-04 10:00", 3.00, 12346, "United Kingdom"),  # 16 discount, no products
    ("C500012", "D", -1, "2010-09-01 10:00", 2.00, 12346, "United Kingdom"),  # 17 discount credit → 500002
    ("A500013", "B", 1, "2010-04-29 10:00", -100.0, None, "United Kingdom"),  # 18 bad debt, no customer
    ("500014", "22003", 1, "2010-05-01 10:00", 1.00, 12349, "Unspecified"),  # 19 order 500014
    ("500014", "22003", 1, "2010-05-01 10:00", 1.00, 12349, "Unspecified"),  # 20 exact duplicate, kept
]


def raw_fixture() -> pd.DataFrame:
    """The fixture with the published file's dtypes."""
    df = pd.DataFrame(
        LINES, columns=["Invoice", "StockCode", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"]
    )
    return pd.DataFrame(
        {
            "Invoice": df["Invoice"].astype(str),
            "StockCode": df["StockCode"].astype(str),
            "Description": "x",
            "Quantity": df["Quantity"].astype("Int64"),
            "InvoiceDate": pd.to_datetime(df["InvoiceDate"]).astype("datetime64[us]"),
            "Price": df["Price"].astype("float64"),
            "Customer ID": df["Customer ID"].astype("Int64"),
            "Country": df["Country"].astype(str),
        }
    )


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


@pytest.fixture(scope="module")
def converted():
    return online_retail_to_contract(raw_fixture())


def test_orders_by_hand(converted):
    orders = converted[0]["orders"]
    expected = pd.DataFrame(
        {
            "customer_id": ["12346", "12347", "12349", "12346", "12347"],
            "order_id": ["500001", "500005", "500014", "500002", "500007"],
            "order_ts": [
                ts("2010-01-10 10:00"),
                ts("2010-03-28 01:00"),
                ts("2010-05-01 09:00"),
                ts("2010-07-01 11:00"),
                ts("2010-10-31 00:30"),
            ],
            "amount": [40.80, 6.60, 2.00, 9.00, 6.00],
            "discount_amount": [0.0, 0.0, 0.0, 1.20, 0.0],
            "items": pd.array([8, 12, 2, 4, 2], dtype="Int64"),
        }
    ).astype({"customer_id": str, "order_id": str, "order_ts": "datetime64[us]"})
    pd.testing.assert_frame_equal(orders, expected, check_exact=False, atol=1e-9)


def test_returns_by_hand(converted):
    returns = converted[0]["returns"]
    expected = pd.DataFrame(
        {
            "customer_id": ["12346", "12346", "12346", "12346"],
            "order_id": ["500001", "500002", "500002", "500002"],
            "return_ts": [
                ts("2010-07-05 08:30"),
                ts("2010-07-05 08:30"),
                ts("2010-08-01 14:00"),
                ts("2010-09-01 09:00"),
            ],
            "amount": [12.75, 5.10, 1.65, 2.00],
        }
    ).astype({"customer_id": str, "order_id": str, "return_ts": "datetime64[us]"})
    pd.testing.assert_frame_equal(returns, expected, check_exact=False, atol=1e-9)


def test_customers_by_hand(converted):
    customers = converted[0]["customers"]
    expected = pd.DataFrame(
        {
            "customer_id": ["12346", "12347", "12349"],
            # 12347's first line is a cancellation that predates its first order.
            "signup_ts": [ts("2010-01-10 10:00"), ts("2010-03-20 10:00"), ts("2010-05-01 09:00")],
            "country": ["United Kingdom", "Iceland", np.nan],
        }
    ).astype({"customer_id": str, "signup_ts": "datetime64[us]", "country": str})
    pd.testing.assert_frame_equal(customers, expected)


def test_report_by_hand(converted):
    report = converted[1]
    expected = {
        "order_product_line": 7,
        "order_discount_line": 1,
        "return_line_same_stockcode": 2,
        "return_line_previous_order": 2,
        "no_customer": 2,
        "non_product:postage": 1,
        "non_product:manual": 1,
        "zero_price": 1,
        "negative_quantity_on_invoice": 1,
        "discount_without_order": 1,
        "unmatched_cancellation": 1,
    }
    assert {c.reason: c.rows for c in report.lines if c.rows} == expected
    assert [c.reason for c in report.lines] == [*KEPT_REASONS, *DROPPED_REASONS]
    assert (report.input_rows, report.kept_rows, report.dropped_rows) == (20, 12, 8)
    assert (report.orders, report.returns, report.customers) == (5, 4, 3)
    assert report.duplicate_lines_kept == 1
    assert report.returns_above_order_amount == 0
    assert report.customers_without_order == 1
    values = {c.reason: c.value for c in report.lines}
    assert values["order_product_line"] == pytest.approx(15.30 + 25.50 + 10.20 + 6.60 + 6.00 + 2 * 1.00)
    assert values["non_product:postage"] == pytest.approx(18.00)
    assert values["return_line_same_stockcode"] == pytest.approx(-(5.10 + 12.75))
    assert values["unmatched_cancellation"] == pytest.approx(-0.55)
    assert report.as_dict()["dropped"]["no_customer"] == 2


def test_output_does_not_depend_on_input_row_order(converted):
    shuffled = raw_fixture().sample(frac=1.0, random_state=7).reset_index(drop=True)
    tables, report = online_retail_to_contract(shuffled)
    for name, table in converted[0].items():
        pd.testing.assert_frame_equal(tables[name], table)
    assert report == converted[1]


def test_text_input_like_a_csv_gives_the_same_tables(converted):
    # A CSV read as text: every column a string, ids possibly written as floats, missing ids empty.
    raw = raw_fixture()
    text = raw.astype(str).assign(
        **{"Customer ID": raw["Customer ID"].astype("Float64").astype(str).where(raw["Customer ID"].notna())},
        InvoiceDate=raw["InvoiceDate"].dt.strftime("%Y-%m-%d %H:%M:%S"),
    )
    tables, report = online_retail_to_contract(text)
    for name, table in converted[0].items():
        pd.testing.assert_frame_equal(tables[name], table)
    assert report == converted[1]


def test_unreadable_lines_are_dropped_and_counted():
    raw = raw_fixture().astype({"Quantity": object, "Customer ID": object})
    raw.loc[0, "Quantity"] = "six"
    raw.loc[1, "Customer ID"] = "abc"
    tables, report = online_retail_to_contract(raw)
    assert report.rows("unreadable") == 2
    assert report.kept_rows + report.dropped_rows == len(raw)
    # Invoice 500001 keeps no product line, so it is no order, and its cancellations fall back to 500002.
    assert "500001" not in set(tables["orders"]["order_id"])
    assert set(tables["returns"]["order_id"]) == {"500002"}


def test_invoice_with_two_customers_is_dropped_whole():
    raw = raw_fixture()
    raw.loc[1, "Customer ID"] = 99999
    tables, report = online_retail_to_contract(raw)
    assert report.rows("conflicting_customer") == 3
    assert "500001" not in set(tables["orders"]["order_id"])
    assert "99999" not in set(tables["customers"]["customer_id"])


def test_missing_column_is_a_contract_error():
    with pytest.raises(DataContractError, match="Customer ID"):
        online_retail_to_contract(raw_fixture().drop(columns="Customer ID"))


# --- the real file ---


@pytest.fixture(scope="module")
def real():
    if not REAL_FILE.is_file():
        pytest.skip(f"the real Online Retail II file is not at {REAL_FILE} (it lives in the shared workspace)")
    raw = pd.read_parquet(REAL_FILE)
    tables, report = online_retail_to_contract(raw)
    return raw, tables, report


def test_real_file_every_line_is_accounted_for(real):
    raw, tables, report = real
    assert report.input_rows == len(raw) == 1_044_847
    assert report.kept_rows + report.dropped_rows == len(raw)
    assert report.rows("no_customer") == int(raw["Customer ID"].isna().sum()) == 235_287
    assert report.rows("order_product_line") > 700_000
    assert (report.orders, report.returns, report.customers) == (
        len(tables["orders"]),
        len(tables["returns"]),
        len(tables["customers"]),
    )


def test_real_file_tables_keep_the_contract(real):
    _, tables, _ = real
    orders, returns, customers = tables["orders"], tables["returns"], tables["customers"]
    assert orders["order_id"].is_unique
    assert (orders["amount"] >= 0).all() and (orders["discount_amount"] >= 0).all()
    assert (orders["items"] > 0).all()
    assert (returns["amount"] > 0).all()
    assert returns["order_id"].isin(orders["order_id"]).all()
    refunded = returns.merge(orders[["order_id", "customer_id", "order_ts"]], on="order_id", suffixes=("", "_o"))
    assert (refunded["customer_id"] == refunded["customer_id_o"]).all()
    assert (refunded["return_ts"] >= refunded["order_ts"]).all()
    assert customers["customer_id"].is_unique and len(customers) >= 5_000
    assert set(customers["customer_id"]) == set(orders["customer_id"])
    first_order = orders.groupby("customer_id")["order_ts"].min()
    assert (customers.set_index("customer_id")["signup_ts"] <= first_order.reindex(customers["customer_id"])).all()
    assert customers["customer_id"].str.fullmatch(r"\d{5}").all()
    for table, col in ((orders, "order_ts"), (returns, "return_ts"), (customers, "signup_ts")):
        assert table[col].dtype == "datetime64[us]"
        assert table["customer_id"].dtype == "str"
    assert orders["amount"].dtype == "float64" and returns["amount"].dtype == "float64"


def test_real_file_times_are_utc(real):
    raw, tables, _ = real
    orders = tables["orders"].set_index("order_id")["order_ts"]
    local = raw.groupby("Invoice")["InvoiceDate"].min()
    summer = local[(local > "2011-07-01") & local.index.isin(orders.index)].index[0]
    winter = local[(local > "2011-01-10") & local.index.isin(orders.index)].index[0]
    assert orders[summer] == local[summer] - pd.Timedelta(hours=1)  # BST = UTC+1
    assert orders[winter] == local[winter]  # GMT = UTC
