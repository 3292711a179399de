"""``churn contacts``: a small scores file through ``churn export`` -> ``churn contacts`` -> ``churn validate``.

Six customers, every expected row can be read off the fixture: 0001 treatment and 0002 control for
winback_email_coupon, =A17 (a formula-like id the export escapes) treatment for cross_sell_upsell, 0005 control
for onboarding; 0004 (treatment) and 0006 (control) have intended_action no_action and are left out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from churn_pipeline.errors import DataContractError, UsageError
from churn_pipeline.models import scoring
from churn_pipeline.models.contact_log import build_contacts, checked_scores
from churn_pipeline.models.scores_schema import COLUMNS, HOLD_OUT, SCHEMA_VERSION, validate_scores
from churn_pipeline.pipelines import contacts as stage
from churn_pipeline.pipelines import export as export_stage
from churn_pipeline.pipelines import validate as validate_stage
from churn_pipeline.pipelines.cli import main

IDS = ["0001", "0002", "=A17", "0004", "0005", "0006"]
INTENDED = ["winback_email_coupon", "winback_email_coupon", "cross_sell_upsell", "no_action", "onboarding", "no_action"]
CONTROL = [False, True, False, False, True, True]
AS_OF = "2026-01-01"
EXPECTED = [
    ["0001", "winback_email_coupon", "treatment"],
    ["0002", "winback_email_coupon", "control"],
    ["=A17", "cross_sell_upsell", "treatment"],
    ["0005", "onboarding", "control"],
]

pytestmark = pytest.mark.usefixtures("wide_console")  # tests/pipelines/conftest.py


def scores_frame(ids=IDS, intended=INTENDED, control=CONTROL) -> pd.DataFrame:
    """A valid scores table of the current schema: the columns contacts reads as given, the others plain."""
    n = len(ids)
    control = np.asarray(control, dtype=bool)
    given = {
        "customer_id": list(ids),
        "as_of_date": pd.to_datetime([AS_OF] * n),
        "churn_probability": 0.5,
        "churn_percentile": np.int16(50),
        "risk_tier": "medium",
        "predicted_clv": 10.0,
        "clv_percentile": np.int16(50),
        "expected_orders": 1.0,
        "value_if_retained": 20.0,
        "value_percentile": np.int16(50),
        "value_at_risk": 10.0,
        "recommended_action": np.where(control, HOLD_OUT, np.asarray(intended, dtype=object)),
        "intended_action": list(intended),
        "control_group": control,
        "model_version": "churn:v1;clv:v1",
        "schema_version": SCHEMA_VERSION,
        "order_probability_30d": 0.1,
        "order_probability_90d": 0.1,
        "order_probability_180d": 0.1,
        "days_to_next_order": np.nan,
        "lifetime_value": 5.0,
        # v1.3: every real action is expected to pay 5.0, so the contact list is everyone acted on.
        "expected_profit": np.where(np.asarray(intended, dtype=object) == "no_action", 0.0, 5.0),
        "contact": ~control & (np.asarray(intended, dtype=object) != "no_action"),
    }
    columns = {}
    for col in COLUMNS:  # columns of later schema versions: empty, false or 0
        if col.name in given:
            columns[col.name] = given[col.name]
        elif col.nullable:
            columns[col.name] = pd.Series([None] * n, dtype="datetime64[ns]" if "date" in col.name else object)
        else:
            columns[col.name] = False if pa.types.is_boolean(col.arrow_type) else 0.0
    return validate_scores(pd.DataFrame(columns, index=range(n)))


def write_scores(path: Path, frame: pd.DataFrame | None = None) -> Path:
    frame = scores_frame() if frame is None else frame
    pq.write_table(scoring.to_arrow(frame, {"as_of_date": AS_OF}), path)
    return path


def export(tmp_path: Path, fmt: str = "csv", **params) -> Path:
    scores = write_scores(tmp_path / "scores.parquet")
    params_path = tmp_path / "export_params.yaml"
    params_path.write_text(yaml.safe_dump({"export": params}))
    out = tmp_path / "export" / f"scores.{fmt}"
    export_stage.run(scores, fmt, out, params_path)
    return out


def rows(path: Path) -> list[list[str]]:
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    return frame[["customer_id", "action", "group"]].values.tolist()


def shop_with_orders(tmp_path: Path) -> Path:
    shop = tmp_path / "shop"
    shop.mkdir()
    orders = "".join(f"{i},O{k},2025-0{k + 1}-01,10\n" for k, i in enumerate(IDS))
    (shop / "orders.csv").write_text("customer_id,order_id,order_ts,amount\n" + orders, encoding="utf-8")
    return shop


# ---- the loop: export -> contacts -> validate -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_export_becomes_a_clean_contacts_table(tmp_path, fmt):
    exported = export(tmp_path, fmt)
    exported_ids = pd.read_csv(exported, dtype=str) if fmt == "csv" else pd.read_parquet(exported)
    assert exported_ids["customer_id"][2] == "'=A17"  # formula-escaped in the CRM file, unescaped in the contacts
    shop = shop_with_orders(tmp_path)
    summary = stage.run(exported, "2026-01-02", shop / "contacts.parquet")
    assert summary["rows_added"] == 4
    assert summary["by_action_group"] == {
        "cross_sell_upsell/treatment": 1,
        "onboarding/control": 1,
        "winback_email_coupon/control": 1,
        "winback_email_coupon/treatment": 1,
    }
    written = pd.read_parquet(shop / "contacts.parquet")
    assert written[["customer_id", "action", "group"]].values.tolist() == EXPECTED  # no_action rows left out
    assert written["contact_ts"].unique().tolist() == [pd.Timestamp("2026-01-02")]
    assert written["campaign_id"].tolist()[:3] == [
        "2026-01-02-winback_email_coupon",
        "2026-01-02-winback_email_coupon",
        "2026-01-02-cross_sell_upsell",
    ]
    # channel and cost have no value: left out rather than written empty (validate would warn about them)
    assert list(written.columns) == ["customer_id", "contact_ts", "action", "group", "campaign_id"]
    params = tmp_path / "params.yaml"
    params.write_text("validate:\n  max_timestamp: '2026-06-01'\n")
    report = validate_stage.run(shop, tmp_path / "validated", params_path=params)
    assert report["tables"]["contacts"]["rows_clean"] == 4 and report["tables"]["contacts"]["rows_quarantined"] == 0
    assert [p for p in report["problems"] if p["table"] == "contacts"] == []
    assert rows(tmp_path / "validated" / "contacts.parquet") == EXPECTED


def test_the_scores_file_itself_works_and_its_ids_are_left_as_they_are(tmp_path):
    scores = write_scores(tmp_path / "scores.parquet", scores_frame(ids=["'=x", *IDS[1:]]))
    stage.run(scores, "2026-01-02", tmp_path / "contacts.csv")
    assert rows(tmp_path / "contacts.csv")[0] == ["'=x", "winback_email_coupon", "treatment"]


def test_crm_column_names_are_mapped_back_through_the_manifest(tmp_path):
    mapping = {"customer_id": "external_id", "control_group": "holdout", "intended_action": "planned"}
    exported = export(tmp_path, "csv", column_names=mapping)
    stage.run(exported, "2026-01-02", tmp_path / "contacts.parquet")
    assert rows(tmp_path / "contacts.parquet") == EXPECTED
    # without the manifest, the renamed columns cannot be found, and the message says why
    exported.with_name(exported.name + ".manifest.json").unlink()
    with pytest.raises(DataContractError, match=r"lacks column\(s\) customer_id.*keep its manifest beside it"):
        stage.run(exported, "2026-01-02", tmp_path / "other.parquet")


def test_a_split_export_is_read_whole_by_its_name_or_one_part_at_a_time(tmp_path):
    exported = export(tmp_path, "csv", max_rows_per_file=4)
    assert not exported.exists() and exported.with_name("scores.part-0002.csv").is_file()
    stage.run(exported, "2026-01-02", tmp_path / "all.csv")
    assert rows(tmp_path / "all.csv") == EXPECTED
    stage.run(exported.with_name("scores.part-0002.csv"), "2026-01-02", tmp_path / "second.csv")
    assert rows(tmp_path / "second.csv") == EXPECTED[3:]


def test_sent_on_with_a_time_and_zone_campaign_id_and_costs(tmp_path):
    exported = export(tmp_path)
    out = tmp_path / "contacts.csv"
    stage.run(
        exported,
        "2026-01-09T10:30:00+02:00",
        out,
        campaign_id="jan-winback",
        cost=["winback_email_coupon=2.5", "0.1"],
    )
    frame = pd.read_csv(out, dtype=str)
    assert set(frame["contact_ts"]) == {"2026-01-09T08:30:00"}  # UTC, no zone written (naive = UTC)
    assert set(frame["campaign_id"]) == {"jan-winback"}
    # treatment rows cost what --cost says; control rows were never contacted: 0
    assert frame["cost"].tolist() == ["2.5", "0", "0.1", "0"]


# ---- --append ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_append_adds_a_new_send_and_never_the_same_one_twice(tmp_path, suffix):
    exported = export(tmp_path)
    out = tmp_path / f"contacts{suffix}"
    stage.run(exported, "2026-01-02", out)
    before = out.read_bytes()
    again = stage.run(exported, "2026-01-02", out, append=True)
    assert (again["rows_added"], again["rows_already_there"], again["rows_in_file"]) == (0, 4, 4)
    assert rows(out) == EXPECTED and (suffix == ".parquet" or out.read_bytes() == before)
    later = stage.run(exported, "2026-02-02", out, append=True, cost=["1"])
    assert (later["rows_added"], later["rows_in_file"]) == (4, 8)
    frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out, dtype=str)
    assert frame["campaign_id"].str.startswith("2026-01-02").sum() == 4
    assert frame["cost"].isna().sum() == 4  # the first send had no cost; the column was added for the second


def test_append_keeps_a_shops_own_csv_rows_as_they_are(tmp_path):
    out = tmp_path / "contacts.csv"
    own = 'customer_id,contact_ts,action,group,channel\n"0009",01/12/2025,newsletter,Treatment,email\n'
    out.write_text(own, encoding="utf-8")
    stage.run(export(tmp_path), "2026-01-02", out, append=True)
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["customer_id", "contact_ts", "action", "group", "channel", "campaign_id"]
    assert frame.iloc[0].tolist() == ["0009", "01/12/2025", "newsletter", "Treatment", "email", ""]
    assert frame["customer_id"].tolist()[1:] == ["0001", "0002", "=A17", "0005"]


def test_an_existing_out_is_refused_without_append(tmp_path):
    exported = export(tmp_path)
    out = tmp_path / "contacts.parquet"
    stage.run(exported, "2026-01-02", out)
    before = out.read_bytes()
    with pytest.raises(UsageError, match="exists and may hold earlier campaigns: pass --append"):
        stage.run(exported, "2026-02-02", out)
    assert out.read_bytes() == before


def test_append_to_a_file_that_is_not_a_contacts_table_is_refused(tmp_path):
    out = tmp_path / "contacts.csv"
    out.write_text("customer_id,when\n1,2024-01-01\n", encoding="utf-8")
    with pytest.raises(DataContractError, match=r"lacks the contacts column\(s\) contact_ts, action, group"):
        stage.run(export(tmp_path), "2026-01-02", out, append=True)
    assert out.read_text(encoding="utf-8") == "customer_id,when\n1,2024-01-01\n"


# ---- refused -----------------------------------------------------------------------------------------------


@pytest.fixture
def churn(tmp_path, monkeypatch, capsys):
    """``churn ARGS`` through the real entry point: (exit code, stderr + stdout)."""

    def run(*args: str | Path) -> tuple[int, str]:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["churn", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        code = exit_info.value.code
        captured = capsys.readouterr()
        return (0 if code is None else int(code)), captured.err + captured.out

    return run


def test_the_cli_writes_the_contacts_and_a_one_line_summary(churn, tmp_path):
    exported = export(tmp_path)
    code, err = churn("contacts", "--scores", exported, "--sent-on", "2026-01-02", "--out", tmp_path / "c.parquet")
    assert code == 0, err
    line = next(x for x in err.splitlines() if "contacts:" in x)
    assert "4 rows, cross_sell_upsell 1 treatment / 0 control; onboarding 0 treatment / 1 control; " in line
    assert "winback_email_coupon 1 treatment / 1 control" in line
    assert rows(tmp_path / "c.parquet") == EXPECTED


@pytest.mark.parametrize("sent_on", ["2026-13-01", "01/02/2026", "2026-1-2", "20260102", "tomorrow", ""])
def test_a_bad_sent_on_is_a_usage_error(churn, tmp_path, sent_on):
    exported = export(tmp_path)
    code, err = churn("contacts", "--scores", exported, "--sent-on", sent_on, "--out", tmp_path / "c.parquet")
    assert code == UsageError.exit_code == 4, err
    assert f"--sent-on {sent_on!r} is not a date in the form YYYY-MM-DD" in err and "This is a bug" not in err
    assert not (tmp_path / "c.parquet").exists()


def test_a_sent_on_before_the_scores_as_of_date_is_refused(churn, tmp_path):
    code, err = churn("contacts", "--scores", export(tmp_path), "--sent-on", "2025-12-31", "--out", tmp_path / "c.csv")
    assert code == 4, err
    assert "is before the scores' as_of_date 2026-01-01" in err and not (tmp_path / "c.csv").exists()


@pytest.mark.parametrize("cost", ["winback_email_coupon=-1", "=2", "two", "x=nan"])
def test_a_bad_cost_is_a_usage_error(tmp_path, cost):
    with pytest.raises(UsageError, match="is not ACTION=AMOUNT"):
        stage.run(export(tmp_path), "2026-01-02", tmp_path / "c.csv", cost=[cost])


def test_a_pseudonymised_export_is_refused(churn, tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_PSEUDONYM_KEY", "secret")
    exported = export(tmp_path, "csv", pseudonymise_ids=True)
    code, err = churn("contacts", "--scores", exported, "--sent-on", "2026-01-02", "--out", tmp_path / "c.parquet")
    assert code == DataContractError.exit_code == 3, err
    assert "the customer ids are pseudonymised (its manifest says pseudonymised_ids: true" in err
    assert "cannot be joined to the shop's orders and customers" in err and "Nothing was written" in err
    assert not (tmp_path / "c.parquet").exists()
    # without its manifest, the ids' form gives them away
    manifest = exported.with_name(exported.name + ".manifest.json")
    assert json.loads(manifest.read_text())["pseudonymised_ids"] is True
    manifest.unlink()
    with pytest.raises(DataContractError, match=r"every id is 'p' \+ 16 hex digits"):
        stage.run(exported, "2026-01-02", tmp_path / "c.parquet")


def test_a_file_without_the_needed_columns_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("customer_id,action\n1,x\n", encoding="utf-8")
    with pytest.raises(DataContractError, match=r"lacks column\(s\) intended_action, control_group"):
        stage.run(path, "2026-01-02", tmp_path / "c.csv")


def test_control_rows_not_held_out_mean_a_damaged_file(tmp_path):
    exported = export(tmp_path)
    text = exported.read_text(encoding="utf-8").replace('"hold_out"', '"winback_email_coupon"', 1)
    exported.write_text(text, encoding="utf-8")
    with pytest.raises(DataContractError, match="control_group and recommended_action 'hold_out' out of step"):
        stage.run(exported, "2026-01-02", tmp_path / "c.csv")


def test_an_out_with_another_suffix_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"must end in \.parquet or \.csv"):
        stage.run(export(tmp_path), "2026-01-02", tmp_path / "contacts.xlsx")


def test_from_v1_3_only_the_contact_list_is_treated_and_control_customers_whose_action_would_not_pay_are_left_out(
    tmp_path,
):
    frame = scores_frame(
        ids=["1", "2", "3", "4"],
        intended=["winback_email_coupon"] * 4,
        control=[False, False, True, True],
    )
    # Customer 2's coupon is not expected to pay: not on the list, not contacted; so is control customer 4's.
    frame["expected_profit"] = [3.0, -1.0, 2.0, -0.5]
    frame["contact"] = [True, False, False, False]
    source = stage.read_scores_file(write_scores(tmp_path / "s.parquet", frame))
    assert not source.exported  # written by `churn score`: the ids are taken as they are
    built = build_contacts(
        checked_scores(source.frame, "s.parquet", exported=source.exported), pd.Timestamp("2026-01-05")
    )
    assert built["customer_id"].tolist() == ["1", "3"]
    assert built["group"].tolist() == ["treatment", "control"]
