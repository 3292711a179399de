"""The contacts of one send from a scores frame, and the append-merge into a contacts file's rows (no files)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from churn_pipeline.errors import DataContractError
from churn_pipeline.models.contact_log import (
    build_contacts,
    checked_scores,
    contacts_summary,
    contacts_table,
    merge_contacts,
)

SENT = pd.Timestamp("2026-01-02")


def scores(**columns) -> pd.DataFrame:
    base = {
        "customer_id": ["1", "2", "'=A3", "4"],
        "intended_action": ["winback_email_coupon", "winback_email_coupon", "onboarding", "no_action"],
        "control_group": [False, True, False, False],
    }
    return pd.DataFrame(base | columns)


def test_an_exports_formula_escaping_is_undone_and_a_scores_files_ids_are_kept_as_they_are():
    exported = checked_scores(scores(), "x.csv", exported=True)
    assert exported["customer_id"].tolist() == ["1", "2", "=A3", "4"]
    assert checked_scores(scores(), "x.parquet", exported=False)["customer_id"].tolist()[2] == "'=A3"


def test_ids_that_all_look_like_pseudonyms_are_refused_unless_the_manifest_says_they_are_not():
    frame = scores(customer_id=[f"p{i:016x}" for i in range(4)])
    with pytest.raises(DataContractError, match=r"x\.csv: the customer ids are pseudonymised \(every id is"):
        checked_scores(frame, "x.csv", exported=True)
    assert len(checked_scores(frame, "x.csv", exported=True, flagged=False)) == 4
    with pytest.raises(DataContractError, match="its manifest says pseudonymised_ids: true"):
        checked_scores(scores(), "x.csv", exported=True, flagged=True)


def test_empty_and_repeated_ids_are_refused_by_row_number_never_by_id():
    with pytest.raises(DataContractError, match=r"column customer_id is empty in 1 of 4 rows \(row 1;"):
        checked_scores(scores(customer_id=["1", " ", "3", "4"]), "x.csv", exported=True)
    with pytest.raises(DataContractError, match=r"customer_id repeats in 1 of 4 rows \(row 3\)") as caught:
        checked_scores(scores(customer_id=["secret", "2", "3", "secret"]), "x.csv", exported=True)
    assert "secret" not in str(caught.value)


def test_control_group_as_csv_text_is_read_and_other_text_is_refused():
    text = checked_scores(scores(control_group=["false", "TRUE", "0", "no"]), "x.csv", exported=True)
    assert text["control_group"].tolist() == [False, True, False, False]
    with pytest.raises(DataContractError, match=r"control_group is empty or not true/false in 1 of 4 rows \(row 2;"):
        checked_scores(scores(control_group=["false", "true", "maybe", "no"]), "x.csv", exported=True)


def test_control_rows_must_be_exactly_the_hold_out_rows():
    frame = scores(recommended_action=["winback_email_coupon", "winback_email_coupon", "onboarding", "no_action"])
    with pytest.raises(DataContractError, match=r"1 of 4 rows have control_group and recommended_action 'hold_out'"):
        checked_scores(frame, "x.csv", exported=True)


def test_a_send_leaves_no_action_out_names_campaigns_by_day_and_action_and_costs_control_rows_nothing():
    built = build_contacts(
        checked_scores(scores(), "x.csv", exported=True), SENT, costs=(0.1, {"winback_email_coupon": 2.5})
    )
    assert built["customer_id"].tolist() == ["1", "2", "=A3"]
    assert built["group"].tolist() == ["treatment", "control", "treatment"]
    assert built["campaign_id"].tolist() == [
        "2026-01-02-winback_email_coupon",
        "2026-01-02-winback_email_coupon",
        "2026-01-02-onboarding",
    ]
    assert built["cost"].tolist() == [2.5, 0.0, 0.1]
    assert (built["contact_ts"] == SENT).all() and built["contact_ts"].dtype == "datetime64[us]"


def test_without_costs_the_cost_column_is_left_out_and_one_campaign_id_names_every_row():
    built = build_contacts(checked_scores(scores(), "x.csv", exported=True), SENT, campaign_id="c1")
    assert "cost" not in built.columns
    assert set(built["campaign_id"]) == {"c1"}


def test_contacts_as_csv_text_have_iso_timestamps_without_a_zone():
    built = build_contacts(checked_scores(scores(), "x.csv", exported=True), pd.Timestamp("2026-01-02 09:30"))
    text = contacts_table(built, csv=True)
    assert all(pa.types.is_string(f.type) for f in text.schema)
    assert text["contact_ts"].to_pylist()[0] == "2026-01-02T09:30:00"
    assert pa.types.is_timestamp(contacts_table(built, csv=False).schema.field("contact_ts").type)


def test_an_append_adds_only_the_customer_and_campaign_pairs_not_yet_there_in_the_old_column_order():
    built = build_contacts(checked_scores(scores(), "x.csv", exported=True), SENT, campaign_id="c1")
    old = pa.table(
        {
            "campaign_id": ["c0", "c1"],
            "customer_id": ["1", " 2 "],
            "contact_ts": pa.array([SENT, SENT], pa.timestamp("us")),
            "action": ["onboarding", "winback_email_coupon"],
            "group": ["treatment", "control"],
            "channel": ["email", "email"],
        }
    )
    merged, already = merge_contacts(old, contacts_table(built, csv=False), "--out c.parquet")
    assert already == 1  # customer 2 in campaign c1, whitespace aside
    assert merged.column_names == old.column_names
    assert merged["customer_id"].to_pylist() == ["1", " 2 ", "1", "=A3"]
    assert merged["channel"].to_pylist() == ["email", "email", None, None]


def test_an_old_file_without_campaign_ids_matches_nothing_and_a_type_it_cannot_take_is_refused():
    built = build_contacts(checked_scores(scores(), "x.csv", exported=True), SENT)
    old = pa.table(
        {
            "customer_id": ["1"],
            "contact_ts": pa.array([SENT], pa.timestamp("us")),
            "action": ["onboarding"],
            "group": ["treatment"],
        }
    )
    merged, already = merge_contacts(old, contacts_table(built, csv=False), "--out c.parquet")
    assert already == 0 and merged.num_rows == 4
    bad = old.set_column(1, "contact_ts", pa.array([True]))
    with pytest.raises(DataContractError, match=r"--out c\.parquet stores column contact_ts as bool"):
        merge_contacts(bad, contacts_table(built, csv=False), "--out c.parquet")


def test_the_summary_counts_treatment_and_control_per_action():
    built = build_contacts(checked_scores(scores(), "x.csv", exported=True), SENT)
    assert contacts_summary(built) == (
        "onboarding 1 treatment / 0 control; winback_email_coupon 1 treatment / 1 control"
    )
    assert contacts_summary(built.iloc[:0]) == "no contacts"
