"""Pure validation functions on tiny hand-made frames: parsing, schema rules, table rules, reasons."""

from __future__ import annotations

import datetime as dt
import os
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from churn_pipeline.features import validation as v
from churn_pipeline.features.contract import EVENT_VALUE_RANGES, TABLES
from churn_pipeline.features.schemas import arrow_schema, table_schema
from churn_pipeline.pandera_shim import pandera

BOUNDS = v.Bounds(pd.Timestamp("1990-01-01"), pd.Timestamp("2025-01-01"), pd.Timedelta(days=1))


def text(**columns: list) -> pd.DataFrame:
    """A raw CSV-like frame: every column text, None = empty cell."""
    return pd.DataFrame({k: pd.Series(vals, dtype="str") for k, vals in columns.items()})


def orders(**overrides: list) -> pd.DataFrame:
    base = {
        "customer_id": ["007", "008", "009"],
        "order_id": ["A", "B", "C"],
        "order_ts": ["2024-01-01", "2024-01-02", "2024-01-03"],
        "amount": ["10", "20", "30"],
    }
    base.update(overrides)
    return text(**base)


def reasons(result: v.TableResult) -> dict[int, str]:
    return dict(zip(result.quarantine["_row"], result.quarantine["_reason"], strict=True))


def rules(result: v.TableResult, severity: str = "error") -> set[str]:
    return {p.rule for p in result.problems if p.severity == severity}


# ---- schemas ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", list(TABLES))
def test_schema_columns_come_from_the_contract(table):
    schema = table_schema(table)
    spec = TABLES[table]
    assert list(schema.columns) == list(spec.column_names)
    assert {c for c, col in schema.columns.items() if col.required} == set(spec.required_columns)
    assert [f.name for f in arrow_schema(table)] == list(spec.column_names)


def test_schema_rejects_unparsed_types():
    raw = pd.DataFrame({"customer_id": ["1"], "order_id": ["A"], "order_ts": ["2024-01-01"], "amount": [1.0]})
    with pytest.raises(pandera().errors.SchemaErrors):
        table_schema("orders").validate(raw, lazy=True)


def test_importing_pandera_does_not_break_pyarrow_time_zones():
    # pandera sets PYARROW_IGNORE_TIMEZONE=1, which makes pyarrow read 10:00+01:00 as 10:00Z.
    pandera()
    assert "PYARROW_IGNORE_TIMEZONE" not in os.environ
    berlin = dt.datetime(2024, 1, 5, 10, tzinfo=ZoneInfo("Europe/Berlin"))
    assert pa.array([berlin], pa.timestamp("ms", tz="UTC"))[0].as_py() == dt.datetime(2024, 1, 5, 9, tzinfo=dt.UTC)


# ---- ids -------------------------------------------------------------------------------------------------


def test_text_ids_keep_leading_zeros_and_lose_surrounding_spaces():
    result = v.validate_table("orders", orders(customer_id=["007", " 0042 ", "00000"]), BOUNDS)
    assert list(result.clean["customer_id"]) == ["007", "0042", "00000"]
    assert result.clean["customer_id"].dtype == "str"


@pytest.mark.parametrize("spelling", [None, "", "  ", "NaN", "nan", "NULL", "None", "<NA>"])
def test_missing_ids_are_quarantined(spelling):
    result = v.validate_table("orders", orders(customer_id=["007", spelling, "009"]), BOUNDS)
    assert result.rows_clean == 2
    assert reasons(result) == {1: "customer_id is missing"}


def test_integer_ids_are_converted_with_a_warning():
    raw = orders().assign(customer_id=pd.array([7, 42, None], dtype="Int64"))
    result = v.validate_table("orders", raw, BOUNDS)
    assert list(result.clean["customer_id"]) == ["7", "42"]
    assert v.INTEGER_ID_RULE in rules(result, "warning")
    assert reasons(result) == {2: "customer_id is missing"}


def test_float_ids_from_integer_columns_with_gaps():
    raw = orders().assign(customer_id=[7.0, np.nan, 2.5])
    result = v.validate_table("orders", raw, BOUNDS)
    assert list(result.clean["customer_id"]) == ["7"]
    assert reasons(result) == {1: "customer_id is missing", 2: "unparseable customer_id: 2.5"}


def test_categorical_ids_are_plain_text():
    raw = orders().assign(customer_id=pd.Categorical(["007", "007", None]))
    result = v.validate_table("orders", raw, BOUNDS)
    assert list(result.clean["customer_id"]) == ["007", "007"]


# ---- timestamps ------------------------------------------------------------------------------------------


def test_naive_is_utc_and_aware_is_converted():
    raw = orders(order_ts=["2024-01-01 10:00:00", "2024-01-01T10:00:00+02:00", "2024-01-01T10:00:00Z"])
    result = v.validate_table("orders", raw, BOUNDS)
    assert result.clean["order_ts"].dtype == "datetime64[us]"
    assert list(result.clean["order_ts"]) == [
        pd.Timestamp("2024-01-01 10:00"),
        pd.Timestamp("2024-01-01 08:00"),
        pd.Timestamp("2024-01-01 10:00"),
    ]


def test_mixed_time_zones_are_a_warning_with_counts():
    raw = orders(order_ts=["2024-01-01 10:00", "2024-01-01T10:00:00+02:00", "2024-01-05 10:00"])
    result = v.validate_table("orders", raw, BOUNDS)
    (mixed,) = [p for p in result.problems if p.rule == v.MIXED_ZONES_RULE]
    assert mixed.severity == "warning"
    assert mixed.examples == (f"{v.NAIVE_ZONE}: 2 rows", "+02:00: 1 rows")
    assert result.rows_clean == 3


def test_date_only_is_not_an_offset():
    result = v.validate_table("orders", orders(order_ts=["2024-01-05", "2024-01-06", "2024-01-07"]), BOUNDS)
    assert v.MIXED_ZONES_RULE not in rules(result, "warning")


def test_tz_aware_column_is_converted():
    ts = pd.Series(pd.to_datetime(["2024-07-01 12:00"] * 3)).dt.tz_localize("Europe/Berlin")
    result = v.validate_table("orders", orders().assign(order_ts=ts), BOUNDS)
    assert (result.clean["order_ts"] == pd.Timestamp("2024-07-01 10:00")).all()
    assert result.clean["order_ts"].dtype == "datetime64[us]"


def test_unparseable_dates_are_quarantined_with_the_value():
    result = v.validate_table("orders", orders(order_ts=["2024-01-01", "yesterday", "2024-13-45"]), BOUNDS)
    assert reasons(result) == {1: "unparseable order_ts: yesterday", 2: "unparseable order_ts: 2024-13-45"}
    (problem,) = [p for p in result.problems if p.rule == "unparseable order_ts"]
    assert (problem.rows, problem.examples) == (2, ("row 1: yesterday", "row 2: 2024-13-45"))


def test_non_iso_dates_are_guessed_with_a_warning():
    result = v.validate_table("orders", orders(order_ts=["03/04/2024", "2024-01-02", "2024-01-03"]), BOUNDS)
    assert result.clean["order_ts"].iloc[0] == pd.Timestamp("2024-03-04")
    assert v.GUESSED_FORMAT_RULE in rules(result, "warning")


def test_numeric_timestamps_are_refused():
    result = v.validate_table("orders", orders().assign(order_ts=[1_700_000_000, 1, 2]), BOUNDS)
    assert result.rows_clean == 0
    assert reasons(result)[0] == "unparseable order_ts: 1700000000"


def test_timestamps_outside_the_bounds():
    result = v.validate_table("orders", orders(order_ts=["1970-01-01", "2024-12-31 23:59:59", "2031-01-01"]), BOUNDS)
    assert set(reasons(result)) == {0, 2}
    assert reasons(result)[0].startswith("order_ts >= min_timestamp")
    assert reasons(result)[2].startswith("order_ts <= max_timestamp")


# ---- numbers and bools -----------------------------------------------------------------------------------


def test_negative_and_unparseable_amounts():
    result = v.validate_table("orders", orders(amount=["-5", "abc", "1e3"]), BOUNDS)
    assert reasons(result) == {0: "amount >= 0: -5.0", 1: "unparseable amount: abc"}
    assert list(result.clean["amount"]) == [1000.0]


def test_optional_numbers_discount_and_items():
    raw = orders(discount_amount=["1.5", "-1", None], items=["2", "2.5", "-1"])
    result = v.validate_table("orders", raw, BOUNDS)
    assert result.clean["items"].dtype == "Int64"
    assert reasons(result) == {
        1: "unparseable items: 2.5; discount_amount >= 0: -1.0",
        2: "items >= 0: -1.0",
    }


def test_infinite_amount_is_quarantined():
    result = v.validate_table("orders", orders(amount=["inf", "1", "2"]), BOUNDS)
    assert reasons(result) == {0: "amount is finite: inf"}


def test_return_amount_must_be_positive():
    raw = text(customer_id=["1", "1"], order_id=["A", "A"], return_ts=["2024-01-02"] * 2, amount=["0", "5"])
    result = v.validate_table("returns", raw, BOUNDS)
    assert reasons(result) == {0: "amount > 0: 0.0"}


def test_bools_from_text():
    raw = text(
        customer_id=["1", "2", "3", "4"],
        signup_ts=["2024-01-01"] * 4,
        email_opt_in=["yes", "FALSE", None, "maybe"],
    )
    result = v.validate_table("customers", raw, BOUNDS)
    assert result.clean["email_opt_in"].tolist() == [True, False, pd.NA]
    assert reasons(result) == {3: "unparseable email_opt_in: maybe"}


# ---- events ----------------------------------------------------------------------------------------------


def test_event_values_within_their_type_range():
    _, hi = EVENT_VALUE_RANGES["review"]
    raw = text(
        customer_id=["1"] * 6,
        event_ts=["2024-01-01"] * 6,
        event_type=["review", "review", "nps", "nps", "some_new_type", "review"],
        value=[str(hi), str(hi + 2), "10", "-1", "12345", None],
    )
    result = v.validate_table("events", raw, BOUNDS, first_row=100)
    assert set(reasons(result)) == {101, 103}
    assert reasons(result)[101] == f"{v.EVENT_VALUE_RULE}: event_type review, value {hi + 2}"
    assert result.rows_clean == 4


def test_exact_duplicate_events_are_kept():
    raw = text(customer_id=["1", "1"], event_ts=["2024-01-01"] * 2, event_type=["page_view"] * 2)
    assert v.validate_table("events", raw, BOUNDS).rows_clean == 2


# ---- duplicates ------------------------------------------------------------------------------------------


def test_exact_duplicate_orders_keep_one_copy():
    raw = orders(
        order_id=["A", "A", "B"],
        customer_id=["007", "007", "008"],
        order_ts=["2024-01-01"] * 3,
        amount=["10", "10", "20"],
    )
    result = v.validate_table("orders", raw, BOUNDS)
    assert list(result.clean["order_id"]) == ["A", "B"]
    assert reasons(result) == {1: "exact duplicate row: same as row 0"}


def test_exact_duplicate_after_parsing_counts():
    raw = orders(
        order_id=["A", "A", "B"],
        customer_id=["007"] * 3,
        order_ts=["2024-01-01T00:00:00Z", "2024-01-01 00:00:00", "2024-01-01"],
    )
    raw["amount"] = ["10", "10.0", "1"]
    result = v.validate_table("orders", raw, BOUNDS)
    assert reasons(result) == {1: "exact duplicate row: same as row 0"}


def test_conflicting_order_ids_quarantine_every_copy():
    result = v.validate_table("orders", orders(order_id=["A", "B", "A"]), BOUNDS)
    assert list(result.clean["order_id"]) == ["B"]
    assert set(reasons(result)) == {0, 2}
    assert "duplicate order_id with differing rows" in reasons(result)[0]


def test_duplicate_customers():
    raw = text(
        customer_id=["1", "1", "2", "2", "3"],
        signup_ts=["2024-01-01", "2024-01-01", "2024-01-01", "2024-02-01", "2024-01-01"],
    )
    result = v.validate_table("customers", raw, BOUNDS)
    assert list(result.clean["customer_id"]) == ["1", "3"]
    assert reasons(result)[1] == "exact duplicate row: same as row 0"
    assert (
        reasons(result)[2]
        == reasons(result)[3]
        == ("duplicate customer_id with differing rows (all copies): 2 in 2 rows")
    )


# ---- cross-table -----------------------------------------------------------------------------------------


def test_orders_before_signup_beyond_the_grace_period():
    customers = v.validate_table(
        "customers", text(customer_id=["007", "008"], signup_ts=["2024-01-10"] * 2), BOUNDS
    ).clean
    raw = orders(customer_id=["007", "008", "009"], order_ts=["2024-01-09 12:00", "2024-01-05", "2020-01-01"])
    result = v.validate_table("orders", raw, BOUNDS, customers=customers)
    assert set(reasons(result)) == {1}
    assert "before customer signup_ts" in reasons(result)[1]
    # 009 has no customers row: kept, but reported
    assert v.UNKNOWN_CUSTOMER_RULE in rules(result, "warning")


def test_return_rules():
    clean_orders = v.validate_table("orders", orders(), BOUNDS).clean
    raw = text(
        customer_id=["007", "008", "007", "x"],
        order_id=["A", "B", "Z", "C"],
        return_ts=["2024-01-05", "2024-01-01", "2024-01-05", "2024-01-05"],
        amount=["5", "5", "5", "5"],
    )
    result = v.validate_table("returns", raw, BOUNDS, orders=clean_orders)
    assert list(result.clean["order_id"]) == ["A"]
    assert reasons(result) == {
        1: "return_ts before its order's order_ts: 2024-01-01 < order_ts 2024-01-02",
        2: f"{v.RETURN_UNKNOWN_ORDER_RULE}: Z",
        3: f"{v.RETURN_OTHER_CUSTOMER_RULE}: x vs order's 009",
    }


# ---- result shape ----------------------------------------------------------------------------------------


def test_all_reasons_of_a_row_are_joined_and_raw_text_is_kept():
    raw = orders(
        customer_id=["007", None, "009"],
        amount=["10", "-1", "30"],
        order_ts=["2024-01-01", "x", "2024-01-03"],
    )
    result = v.validate_table("orders", raw, BOUNDS, first_row=10)
    q = result.quarantine
    assert list(q.columns) == ["customer_id", "order_id", "order_ts", "amount", "_row", "_reason"]
    assert len(q) == 1
    row = q.iloc[0]
    assert pd.isna(row["customer_id"])
    assert (row["order_id"], row["order_ts"], row["amount"], row["_row"]) == ("B", "x", "-1", 11)
    assert row["_reason"] == "unparseable order_ts: x; customer_id is missing; amount >= 0: -1.0"
    assert list(result.clean["order_id"]) == ["A", "C"]


def test_extra_columns_are_dropped_and_optional_columns_stay_absent():
    result = v.validate_table("orders", orders().assign(note=["a", "b", "c"], Amount2=["1", "2", "3"]), BOUNDS)
    assert list(result.clean.columns) == ["customer_id", "order_id", "order_ts", "amount"]
    assert result.dropped_columns == ("note", "Amount2")
    (extra,) = [p for p in result.problems if p.rule == v.EXTRA_COLUMNS_RULE]
    assert extra.examples == ("note", "Amount2") and extra.severity == "warning"


def test_missing_required_column_is_reported_with_a_hint():
    assert v.missing_columns("orders", ["customer_id", "Order_ID", "order_ts"]) == ["order_id", "amount"]
    assert v.column_hints(["order_id"], ["customer_id", "Order_ID"]) == {"order_id": "Order_ID"}
    with pytest.raises(ValueError, match="order_id"):
        v.parse_table("orders", text(customer_id=["1"]))


def test_problems_have_counts_and_at_most_five_examples():
    raw = orders(customer_id=["1"] * 7, order_id=list("ABCDEFG"), order_ts=["2024-01-01"] * 7, amount=["-1"] * 7)
    (problem,) = v.validate_table("orders", raw, BOUNDS).problems
    assert problem.rows == 7
    assert len(problem.examples) == 5
    assert problem.to_dict()["severity"] == "error"


def test_batches_combine_problems_and_time_zones():
    first = v.validate_table("orders", orders(order_ts=["2024-01-01"] * 3, amount=["-1", "1", "2"]), BOUNDS)
    second = v.validate_table(
        "orders",
        orders(order_id=["D", "E", "F"], order_ts=["2024-01-01T00:00:00+01:00"] * 3, amount=["-2", "1", "2"]),
        BOUNDS,
        first_row=3,
    )
    combined = v.combine_problems("orders", [first, second])
    by_rule = {p.rule: p for p in combined}
    assert by_rule["amount >= 0"].rows == 2
    assert by_rule["amount >= 0"].examples == ("row 0: -1.0", "row 3: -2.0")
    # each batch alone has one zone; together they are mixed
    assert v.MIXED_ZONES_RULE not in {p.rule for p in first.problems + second.problems}
    assert by_rule[v.MIXED_ZONES_RULE].rows == 3


# ------------------------------------------------------------------ issue 18: bad input
def test_rename_hints_only_for_case_or_surrounding_spaces():
    assert v.column_hints(["order_ts"], ["customer_id", "order_id", "amount"]) == {}
    assert v.column_hints(["customer_id", "order_ts"], [" Customer_ID ", "ORDER_TS"]) == {
        "customer_id": " Customer_ID ",
        "order_ts": "ORDER_TS",
    }


def test_a_first_row_without_any_contract_column_name_looks_like_data():
    assert v.looks_like_data("orders", ["C0042", "O1", "2024-01-05", "10.5", "jane@example.com"])
    assert not v.looks_like_data("orders", ["customer_id", "when", "what"])
    assert not v.looks_like_data("orders", [" Amount "])
    assert v.column_listing([f"c{i}" for i in range(12)], limit=3) == "'c0', 'c1', 'c2' and 9 more"


def test_nanosecond_timestamps_with_a_far_future_date_parse_at_microseconds():
    raw = orders(order_ts=["2024-01-01T10:00:00.123456789", "9999-12-31", "12/31/9999"])
    result = v.validate_table("orders", raw, BOUNDS)
    assert list(result.clean["order_ts"]) == [pd.Timestamp("2024-01-01 10:00:00.123456")]
    assert set(reasons(result)) == {1, 2}
    assert all("order_ts <= max_timestamp" in r for r in reasons(result).values())


def test_columns_without_any_value_are_counted_as_empty():
    result = v.validate_table("orders", orders(amount=[None, "NULL", "nan"]).assign(channel=[None, " ", None]), BOUNDS)
    assert result.present["amount"] == 0 and result.present["channel"] == 0 and result.present["order_id"] == 3
    assert v.empty_columns("orders", result.present) == (["amount"], ["channel"])
    # a value that does not parse is present: it is reported as unparseable, not as an empty column
    assert v.validate_table("orders", orders(amount=["x", None, None]), BOUNDS).present["amount"] == 1


def test_examples_never_show_id_values_or_e_mail_addresses():
    raw = orders(order_id=["A", "A", "C"], amount=["1", "2", "jane@example.com"])
    shown = " ".join(e for p in v.validate_table("orders", raw, BOUNDS).problems for e in p.examples)
    assert "row 0" in shown and "row 2" in shown
    assert "jane@example.com" not in shown and "A in 2 rows" not in shown
    assert v.shown_value("orders", "customer_id", "007") == ""
    assert v.shown_value("orders", "amount", "-1.0") == "-1.0"


# ------------------------------------------------------------------ issue 15: contacts
# Clean orders: 007 first ordered on 2024-01-05, 008 on 2024-02-01. Clean customers: 007, 008 and 010 (a sign-up
# without any order).
CLEAN_ORDERS = v.validate_table(
    "orders",
    orders(customer_id=["007", "008", "007"], order_ts=["2024-01-05", "2024-02-01", "2024-03-01"]),
    BOUNDS,
).clean
CLEAN_CUSTOMERS = v.validate_table(
    "customers", text(customer_id=["007", "008", "010"], signup_ts=["2023-01-01"] * 3), BOUNDS
).clean


def contacts(**overrides: list) -> pd.DataFrame:
    base = {
        "customer_id": ["007", "008", "007"],
        "contact_ts": ["2024-03-01", "2024-03-01", "2024-03-02"],
        "action": ["winback_email_coupon", "winback_email_coupon", "onboarding"],
        "group": ["treatment", "control", "treatment"],
    }
    base.update(overrides)
    return text(**base)


def validate_contacts(raw: pd.DataFrame, customers: pd.DataFrame | None = CLEAN_CUSTOMERS) -> v.TableResult:
    return v.validate_table("contacts", raw, BOUNDS, customers=customers, orders=CLEAN_ORDERS)


def problem(result: v.TableResult, rule: str) -> v.Problem:
    (found,) = [p for p in result.problems if p.rule == rule]
    return found


def test_clean_contacts_pass_with_types_from_the_contract():
    result = validate_contacts(contacts(cost=["2.5", None, "0"], campaign_id=["c1", "c1", "c2"]))
    assert result.rows_clean == 3 and result.problems == []
    assert list(result.clean.columns) == ["customer_id", "contact_ts", "action", "group", "campaign_id", "cost"]
    assert result.clean["contact_ts"].dtype == "datetime64[us]"
    assert result.clean["cost"].tolist()[::2] == [2.5, 0.0] and np.isnan(result.clean["cost"][1])


def test_group_is_normalised_and_anything_else_is_quarantined():
    raw = contacts(
        customer_id=["007"] * 6,
        contact_ts=["2024-03-01"] * 6,
        action=["onboarding"] * 6,
        group=[" Treatment", "CONTROL ", "test", "holdout", None, "treatment"],
        campaign_id=list("abcdef"),
    )
    result = validate_contacts(raw)
    assert result.clean["group"].tolist() == ["treatment", "control", "treatment"]
    assert reasons(result) == {
        2: "group is treatment or control: test",
        3: "group is treatment or control: holdout",
        4: "group is missing",
    }
    assert problem(result, "group is treatment or control").rows == 2


def test_a_negative_or_unparseable_cost_is_quarantined_and_a_missing_one_kept():
    result = validate_contacts(contacts(cost=["-1", "abc", None]))
    assert reasons(result) == {0: "cost >= 0: -1.0", 1: "unparseable cost: abc"}
    assert result.rows_clean == 1 and np.isnan(result.clean["cost"][0])


def test_contact_ts_must_parse_and_lie_within_the_bounds():
    result = validate_contacts(contacts(contact_ts=["2024-03-01", "2026-01-01", "soon"]))
    assert reasons(result) == {
        1: "contact_ts <= max_timestamp (2025-01-01 00:00:00): 2026-01-01 00:00:00",
        2: "unparseable contact_ts: soon",
    }


def test_required_contact_columns_and_values():
    assert v.missing_columns("contacts", ["customer_id", "contact_ts", "action"]) == ["group"]
    result = validate_contacts(contacts(action=["onboarding", None, "onboarding"]))
    assert reasons(result) == {1: "action is missing"}


def test_exact_duplicate_contacts_keep_the_first_copy():
    raw = contacts(
        customer_id=["007", "007", "007"],
        contact_ts=["2024-03-01"] * 3,
        action=["onboarding"] * 3,
        group=["treatment", "Treatment ", "control"],
    )
    result = validate_contacts(raw)
    # rows 0 and 1 are the same once the group is normalised; row 2 differs (control)
    assert reasons(result) == {1: "exact duplicate row: same as row 0"}


def test_unknown_actions_are_kept_and_counted():
    raw = contacts(
        customer_id=["007"] * 5,
        contact_ts=["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05"],
        action=["birthday_mail", "onboarding", "birthday_mail", "sms_blast", "winback_email_coupon"],
        group=["treatment", "control", "treatment", "treatment", "control"],
    )
    result = validate_contacts(raw)
    assert result.rows_clean == 5 and result.rows_quarantined == 0
    found = problem(result, v.CONTACT_UNKNOWN_ACTION_RULE)
    assert (found.severity, found.column, found.rows) == ("warning", "action", 3)
    assert found.examples == ("birthday_mail (2)", "sms_blast (1)")
    assert found.detail == (
        "3 contacts of 5 rows have actions the pipeline does not know: birthday_mail (2), sms_blast (1); they are "
        "kept and measured as they are."
    )
    assert found.to_dict()["detail"] == found.detail


def test_contacts_before_the_first_order_are_kept_and_flagged_by_row_number_only():
    raw = contacts(
        customer_id=["007", "007", "008", "010", "008"],
        contact_ts=["2024-01-04", "2024-01-05", "2024-01-20", "2024-03-01", "2024-02-01"],
        action=["onboarding"] * 5,
        group=["treatment", "treatment", "control", "treatment", "control"],
    )
    result = validate_contacts(raw)
    assert result.rows_clean == 5
    found = problem(result, v.CONTACT_BEFORE_FIRST_ORDER_RULE)
    # row 0: a day before 007's first order; row 2: before 008's; row 3: 010 never ordered. Rows 1 and 4 are on
    # the day of the first order.
    assert (found.severity, found.rows, found.examples) == ("warning", 3, ("row 0", "row 2", "row 3"))
    assert found.detail == (
        "3 of 5 contacts are dated before their customer's first order (1 of them for customers without any "
        "order); they are kept, since a shop may contact sign-ups."
    )
    assert not any(i in " ".join(p.examples) + p.detail for p in result.problems for i in ("007", "008", "010"))


def test_contacts_for_unknown_customers_are_quarantined_with_the_fix():
    raw = contacts(customer_id=["007", "999", "0007"])
    result = validate_contacts(raw)
    assert result.clean["customer_id"].tolist() == ["007"]
    assert set(reasons(result).values()) == {v.CONTACT_UNKNOWN_CUSTOMER_RULE}
    found = problem(result, v.CONTACT_UNKNOWN_CUSTOMER_RULE)
    assert (found.severity, found.rows, found.examples) == ("error", 2, ("row 1", "row 2"))
    assert found.detail.startswith(
        "contacts for customers the orders and customers tables do not know: 2 rows quarantined to "
        "quarantine/contacts.parquet; export the contacts from the same shop"
    )


def test_without_a_customers_table_the_orders_say_who_is_known():
    raw = contacts(customer_id=["007", "010", "008"])
    result = validate_contacts(raw, customers=None)
    assert reasons(result) == {1: v.CONTACT_UNKNOWN_CUSTOMER_RULE}  # 010 is known from customers only
    assert problem(result, v.CONTACT_UNKNOWN_CUSTOMER_RULE).detail.startswith(
        "contacts for customers the orders table does not know: 1 rows quarantined"
    )
    # with the customers table, 010 (a sign-up) is known and kept
    assert validate_contacts(raw).rows_clean == 3


def test_treatment_without_any_control_row_is_a_warning():
    result = validate_contacts(contacts(group=["treatment", "Treatment", "treatment"]))
    assert result.rows_clean == 3
    found = problem(result, v.CONTACT_NO_CONTROL_RULE)
    assert (found.severity, found.column, found.rows) == ("warning", "group", 3)
    assert "no control rows: measuring what an action does needs a control group" in found.detail
    assert found.detail.endswith("The rows are kept.")
    # one control row anywhere is enough
    assert v.CONTACT_NO_CONTROL_RULE not in rules(validate_contacts(contacts()), "warning")


def test_contacts_without_the_other_tables_get_the_table_rules_only():
    result = v.validate_table("contacts", contacts(customer_id=["999", "998", "997"]), BOUNDS)
    assert result.rows_clean == 3 and result.problems == []


def test_order_warnings_name_source_rows():
    raw = orders(customer_id=["007", "-", "999"], amount=["-1", "1", "1"])  # row 0 quarantined, 999 unknown
    result = v.validate_table("orders", raw, BOUNDS, customers=CLEAN_CUSTOMERS)
    assert problem(result, v.UNKNOWN_CUSTOMER_RULE).examples == ("row 1", "row 2")
