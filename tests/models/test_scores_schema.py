"""Scores schema v1.1: fixed column order, documented columns, and the rules a scores table must keep."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from models.scores_schema import (
    COLUMNS,
    HOLD_OUT,
    MAX_MONEY,
    RANGES,
    SCHEMA_VERSION,
    VOCABULARIES,
    arrow_schema,
    columns_markdown,
    validate_scores,
    value_problems,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "scores_schema.md"

ORDER = [
    "customer_id",
    "as_of_date",
    "churn_probability",
    "churn_percentile",
    "risk_tier",
    "predicted_clv",
    "clv_percentile",
    "expected_orders",
    "value_if_retained",
    "value_percentile",
    "value_at_risk",
    "reason_1",
    "reason_2",
    "reason_3",
    "reason_code_1",
    "reason_code_2",
    "reason_code_3",
    "recommended_action",
    "intended_action",
    "control_group",
    "model_version",
    "schema_version",
]


def scores_frame() -> pd.DataFrame:
    # Value if retained = CLV / max(1 - p, 0.05): 10 / 0.1 = 100 and 250 / 0.8 = 312.5.
    p, clv, retained = np.array([0.9, 0.2]), np.array([10.0, 250.0]), np.array([100.0, 312.5])
    return pd.DataFrame(
        {
            "customer_id": ["A1", "B2"],
            "as_of_date": pd.to_datetime(["2026-01-01", "2026-01-01"]),
            "churn_probability": p,
            "churn_percentile": np.array([100, 50], dtype=np.int16),
            "risk_tier": ["high", "low"],
            "predicted_clv": clv,
            "clv_percentile": np.array([50, 100], dtype=np.int16),
            "expected_orders": [0.1, 3.0],
            "value_if_retained": retained,
            "value_percentile": np.array([50, 100], dtype=np.int16),
            "value_at_risk": p * retained,
            "reason_1": ["no order for 120 days; usually orders every 30 days", None],
            "reason_2": ["2 orders in the last 90 days", None],
            "reason_3": [None, None],
            "reason_code_1": ["recency_days", None],
            "reason_code_2": ["orders_90d", None],
            "reason_code_3": [None, None],
            "recommended_action": [HOLD_OUT, "cross_sell_upsell"],
            "intended_action": ["winback_email_coupon", "cross_sell_upsell"],
            "control_group": [True, False],
            "model_version": ["churn:v1;clv:v1"] * 2,
            "schema_version": [SCHEMA_VERSION] * 2,
        }
    )


def test_the_column_order_is_fixed():
    assert [c.name for c in COLUMNS] == ORDER
    assert arrow_schema().names == ORDER


def test_the_docs_list_every_column_in_order_with_its_meaning():
    text = DOC.read_text(encoding="utf-8")
    assert columns_markdown() in text  # regenerate the table from models.scores_schema.columns_markdown()


def test_a_well_formed_table_passes():
    validate_scores(scores_frame())


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("churn_probability", 1.5, "churn_probability"),
        ("churn_percentile", 0, "churn_percentile"),
        ("risk_tier", "urgent", "risk_tier"),
        ("predicted_clv", -1.0, "predicted_clv"),
        ("schema_version", "2", "schema_version"),
        ("value_at_risk", 123.0, "value_at_risk = churn_probability x value_if_retained"),
        ("value_percentile", 101, "value_percentile"),
        ("recommended_action", "winback_email_coupon", "control_group customers"),
    ],
)
def test_a_broken_rule_is_named(column, value, rule):
    frame = scores_frame()
    frame.loc[0, column] = value
    if column in ("churn_probability", "predicted_clv"):
        frame["value_at_risk"] = frame["churn_probability"] * frame["value_if_retained"]
    with pytest.raises(ValueError, match=rule):
        validate_scores(frame)


def test_value_at_risk_of_v1_probability_times_predicted_clv_is_refused():
    frame = scores_frame()
    frame["value_at_risk"] = frame["churn_probability"] * frame["predicted_clv"]
    with pytest.raises(ValueError, match="value_at_risk = churn_probability x value_if_retained"):
        validate_scores(frame)


@pytest.mark.parametrize("retained", [9.0, 101.0])
def test_a_value_if_retained_below_the_clv_or_above_clv_over_stay_probability_is_refused(retained):
    # Customer A1: CLV 10 at p 0.9, so the value if retained lies in [10, 10 / 0.1 = 100].
    frame = scores_frame()
    frame.loc[0, "value_if_retained"] = retained
    frame["value_at_risk"] = frame["churn_probability"] * frame["value_if_retained"]
    with pytest.raises(ValueError, match="predicted_clv <= value_if_retained"):
        validate_scores(frame)


def test_the_schema_version_is_1_1():
    assert SCHEMA_VERSION == "1.1"
    assert "`1.1`" in DOC.read_text(encoding="utf-8")  # the docs list what the version changed


def test_reordered_or_extra_columns_are_refused():
    frame = scores_frame()
    with pytest.raises(ValueError, match=r"schema v1\.1"):
        validate_scores(frame[ORDER[::-1]])
    with pytest.raises(ValueError, match=r"schema v1\.1"):
        validate_scores(frame.assign(extra=1))


def test_customer_ids_are_unique():
    frame = scores_frame()
    frame.loc[1, "customer_id"] = "A1"
    with pytest.raises(ValueError, match="customer_id"):
        validate_scores(frame)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("predicted_clv", 1.5e17),
        ("predicted_clv", np.inf),
        ("value_if_retained", np.inf),
        ("expected_orders", -1.0),
        ("expected_orders", 1e10),
    ],
)
def test_money_and_orders_must_be_finite_and_within_their_bounds(column, value):
    frame = scores_frame()
    frame.loc[1, column] = value
    with pytest.raises(ValueError, match=f"{column}: in_range"):
        validate_scores(frame)


def test_the_range_rules_are_one_source_for_pandera_and_arrow():
    assert RANGES["churn_probability"] == (0.0, 1.0)
    assert RANGES["predicted_clv"] == RANGES["value_if_retained"] == RANGES["value_at_risk"] == (0.0, MAX_MONEY)
    assert MAX_MONEY * 10 < 10**16  # below what the export's decimal(18, 2) holds
    assert VOCABULARIES["risk_tier"] == ("high", "medium", "low", "lapsed")
    assert value_problems(_table(scores_frame())) == []


def _table(frame: pd.DataFrame) -> pa.Table:
    """The frame as the Arrow table `churn score` writes (NaN stays NaN in float columns, None is null elsewhere)."""
    arrays = []
    for c in COLUMNS:
        values = frame[c.name].dt.date if c.name == "as_of_date" else frame[c.name]
        arrays.append(pa.array(values.tolist(), type=c.arrow_type, from_pandas=not pa.types.is_floating(c.arrow_type)))
    return pa.Table.from_arrays(arrays, schema=arrow_schema())


def test_value_problems_count_the_broken_rows_of_each_rule_and_never_show_a_value():
    frame = scores_frame()
    frame["churn_probability"] = [np.nan, 1.5]
    frame.loc[0, "predicted_clv"] = 1.5e17
    frame.loc[1, "risk_tier"] = "urgent"
    frame.loc[0, "recommended_action"] = "winback_email_coupon"  # a control-group customer
    problems = value_problems(_table(frame))
    assert problems == [
        "churn_probability: 2 rows NaN, infinite or outside [0, 1]",
        "predicted_clv: 1 rows NaN, infinite or outside [0, 1e+13]",
        "risk_tier: 1 rows not one of high, medium, low, lapsed",
        "recommended_action: 1 control_group rows not 'hold_out' (never act on them)",
    ]


def test_schema_errors_never_show_customer_ids():
    frame = scores_frame()
    frame.loc[1, "customer_id"] = "A1"  # repeated
    frame.loc[0, "recommended_action"] = "winback_email_coupon"  # a rule over the whole row
    with pytest.raises(ValueError, match="field_uniqueness") as info:
        validate_scores(frame)
    assert "A1" not in str(info.value) and "B2" not in str(info.value)
    assert "control_group customers have recommended_action 'hold_out' (1 rows)" in str(info.value)
