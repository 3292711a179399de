"""Scores schema v1.3: fixed column order, documented columns, and the rules a scores table must keep."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from churn_pipeline.models.lifetime import LifetimeValueParams, discounted_lifetime_value
from churn_pipeline.models.scores_schema import (
    COLUMNS,
    HOLD_OUT,
    MAX_MONEY,
    NEXT_ORDER_RULES,
    RANGES,
    SCHEMA_VERSION,
    VOCABULARIES,
    arrow_schema,
    columns_markdown,
    validate_scores,
    value_problems,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "scores_schema.md"

V1_1 = [
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
NEW_IN_V1_2 = [
    "order_probability_30d",
    "order_probability_90d",
    "order_probability_180d",
    "days_to_next_order",
    "expected_next_order_date",
    "lifetime_value",
]
NEW_IN_V1_3 = ["expected_uplift", "expected_profit", "contact"]
ORDER = V1_1 + NEW_IN_V1_2 + NEW_IN_V1_3


def targeting_columns(expected_uplift, expected_profit, contact) -> dict:
    """The v1.3 columns of a scores frame (models.targeting)."""
    return {
        "expected_uplift": np.asarray(expected_uplift, dtype=np.float64),
        "expected_profit": np.asarray(expected_profit, dtype=np.float64),
        "contact": np.asarray(contact, dtype=bool),
    }


def next_order_columns(as_of: str, p30, p90, p180, days, clv) -> dict:
    """The v1.2 columns of a scores frame from order probabilities and medians (NaN = not within 180 days):
    the next-order date as_of + ceil(days), the lifetime value from models.lifetime at the default params."""
    days = np.asarray(days, dtype=np.float64)
    start = pd.Timestamp(as_of)
    dates = [pd.NaT if np.isnan(d) else start + pd.Timedelta(days=int(np.ceil(d))) for d in days]
    lv = LifetimeValueParams()
    value = discounted_lifetime_value(
        clv,
        p180,
        period_days=180,
        margin=lv.margin,
        annual_discount_rate=lv.annual_discount_rate,
        horizon_months=lv.horizon_months,
    )
    return {
        "order_probability_30d": np.asarray(p30, dtype=np.float64),
        "order_probability_90d": np.asarray(p90, dtype=np.float64),
        "order_probability_180d": np.asarray(p180, dtype=np.float64),
        "days_to_next_order": days,
        "expected_next_order_date": pd.to_datetime(pd.Series(dates, dtype="datetime64[ns]")),
        "lifetime_value": value,
    }


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
            # A1 is not expected to order within 180 days (P 0.3 < 0.5): no median, no date. B2's median is 47.3
            # days: 2026-01-01 + 48 days.
            **next_order_columns("2026-01-01", [0.05, 0.4], [0.15, 0.7], [0.3, 0.85], [np.nan, 47.3], clv),
            # A1 is held out (never contacted); B2's cross-sell is expected to pay 4.2 per the uplift model.
            **targeting_columns([np.nan, 0.02], [12.5, 4.2], [False, True]),
        }
    )


def test_the_column_order_is_fixed():
    assert [c.name for c in COLUMNS] == ORDER
    assert arrow_schema().names == ORDER


def test_v1_2_appends_its_columns_after_schema_version_so_positional_v1_1_importers_keep_working():
    names = [c.name for c in COLUMNS]
    assert names[: len(V1_1)] == V1_1 and names[len(V1_1) : len(V1_1) + len(NEW_IN_V1_2)] == NEW_IN_V1_2
    types = {c.name: (str(c.arrow_type), c.nullable) for c in COLUMNS}
    assert {n: types[n] for n in NEW_IN_V1_2} == {
        "order_probability_30d": ("double", False),
        "order_probability_90d": ("double", False),
        "order_probability_180d": ("double", False),
        "days_to_next_order": ("double", True),
        "expected_next_order_date": ("date32[day]", True),
        "lifetime_value": ("double", False),
    }
    assert all("new in v1.2" in c.meaning for c in COLUMNS if c.name in NEW_IN_V1_2)
    text = DOC.read_text(encoding="utf-8")
    assert "| `1.2` |" in text and "by position" in text


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


def test_the_schema_version_is_1_3():
    assert SCHEMA_VERSION == "1.3"
    text = DOC.read_text(encoding="utf-8")
    assert "`1.1`" in text and "`1.2`" in text and "`1.3`" in text  # the docs list what each version changed
    assert text.startswith("# Scores schema v1.3")


def test_v1_3_appends_its_columns_after_lifetime_value_so_positional_v1_2_importers_keep_working():
    names = [c.name for c in COLUMNS]
    assert names[: len(V1_1) + len(NEW_IN_V1_2)] == V1_1 + NEW_IN_V1_2 and names[-3:] == NEW_IN_V1_3
    types = {c.name: (str(c.arrow_type), c.nullable) for c in COLUMNS}
    assert {n: types[n] for n in NEW_IN_V1_3} == {
        "expected_uplift": ("double", True),
        "expected_profit": ("double", False),
        "contact": ("bool", False),
    }
    assert all("new in v1.3" in c.meaning for c in COLUMNS if c.name in NEW_IN_V1_3)


@pytest.mark.parametrize(
    "change",
    [
        {"contact": [False, True], "recommended_action": [HOLD_OUT, "no_action"]},
        {"contact": [False, True], "expected_profit": [12.5, 0.0]},
        {"contact": [True, True]},
    ],
    ids=["no_action", "zero profit", "control group"],
)
def test_a_contact_needs_a_real_action_with_positive_expected_profit(change):
    frame = scores_frame().assign(**change)
    with pytest.raises(ValueError, match="contact only where"):
        validate_scores(frame)
    problems = value_problems(pa.Table.from_pandas(frame, preserve_index=False))
    assert any(p.startswith("contact: 1 rows") for p in problems)


def test_reordered_or_extra_columns_are_refused():
    frame = scores_frame()
    with pytest.raises(ValueError, match=r"schema v1\.3"):
        validate_scores(frame[ORDER[::-1]])
    with pytest.raises(ValueError, match=r"schema v1\.3"):
        validate_scores(frame.assign(extra=1))
    with pytest.raises(ValueError, match=r"schema v1\.3"):
        validate_scores(frame[V1_1 + NEW_IN_V1_2])  # a v1.2 table lacks the new columns


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
        ("lifetime_value", -1.0),
        ("lifetime_value", np.inf),
        ("lifetime_value", 1.5e17),
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
    assert RANGES["lifetime_value"] == (0.0, MAX_MONEY)
    assert RANGES["order_probability_30d"] == RANGES["order_probability_90d"] == RANGES["order_probability_180d"]
    assert RANGES["order_probability_180d"] == (0.0, 1.0) and RANGES["days_to_next_order"] == (0.0, 180.0)
    assert MAX_MONEY * 10 < 10**16  # below what the export's decimal(18, 2) holds
    assert VOCABULARIES["risk_tier"] == ("high", "medium", "low", "lapsed")
    assert value_problems(_table(scores_frame())) == []


def _table(frame: pd.DataFrame) -> pa.Table:
    """The frame as the Arrow table `churn score` writes (NaN stays NaN in float columns, None is null elsewhere)."""
    arrays = []
    for c in COLUMNS:
        if pa.types.is_date32(c.arrow_type):
            arrays.append(pa.array(frame[c.name].to_numpy(), type=c.arrow_type))  # NaT is null
            continue
        # Empty cells of a nullable number column are null (as `churn score` writes them); elsewhere NaN stays.
        keep_nan = pa.types.is_floating(c.arrow_type) and not c.nullable
        arrays.append(pa.array(frame[c.name].tolist(), type=c.arrow_type, from_pandas=not keep_nan))
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


# ---- v1.2: next-order (survival) columns and lifetime value ------------------------------------------------------
def test_empty_next_order_cells_are_allowed_where_no_order_is_expected_within_180_days():
    frame = validate_scores(scores_frame())
    assert frame["days_to_next_order"].isna().tolist() == [True, False]
    assert frame["expected_next_order_date"].isna().tolist() == [True, False]
    assert frame.loc[1, "expected_next_order_date"] == pd.Timestamp("2026-02-18")  # 2026-01-01 + ceil(47.3)
    table = _table(frame)
    assert table.column("days_to_next_order").null_count == 1
    assert table.column("expected_next_order_date").to_pylist()[1].isoformat() == "2026-02-18"
    assert value_problems(table) == []


def test_every_next_order_rule_is_checked_by_pandera_and_arrow():
    assert [rule for _, rule in NEXT_ORDER_RULES] == [
        "order_probability_30d <= order_probability_90d <= order_probability_180d",
        "days_to_next_order is empty exactly when order_probability_180d < 0.5",
        "days_to_next_order <= 30 (90) exactly when order_probability_30d (_90d) >= 0.5",
        "expected_next_order_date = as_of_date + ceil(days_to_next_order), empty when days_to_next_order is",
    ]


def _broken(change) -> pd.DataFrame:
    frame = scores_frame()
    change(frame)
    return frame


BROKEN_NEXT_ORDER = {
    "decreasing probabilities": (
        lambda f: f.__setitem__("order_probability_90d", [0.15, 0.9]),  # B2: 0.9 at 90 days > 0.85 at 180
        "order_probability_30d <= order_probability_90d <= order_probability_180d",
        "order_probability_90d: 1 rows break order_probability_30d <= order_probability_90d",
    ),
    "a median where none is expected": (
        lambda f: (
            f.__setitem__("days_to_next_order", [170.0, 47.3]),
            f.__setitem__("expected_next_order_date", pd.to_datetime(["2026-06-20", "2026-02-18"])),
        ),
        "days_to_next_order is empty exactly when order_probability_180d < 0.5",
        "days_to_next_order: 1 rows break days_to_next_order is empty exactly when",
    ),
    "no median where one is expected": (
        lambda f: (
            f.__setitem__("days_to_next_order", [np.nan, np.nan]),
            f.__setitem__("expected_next_order_date", pd.to_datetime([None, None])),
        ),
        "days_to_next_order is empty exactly when order_probability_180d < 0.5",
        "days_to_next_order: 1 rows break days_to_next_order is empty exactly when",
    ),
    "a median before 30 days at P(30 days) < 0.5": (
        lambda f: (
            f.__setitem__("days_to_next_order", [np.nan, 20.0]),
            f.__setitem__("expected_next_order_date", pd.to_datetime([None, "2026-01-21"])),
        ),
        "days_to_next_order <= 30 (90) exactly when",
        "days_to_next_order: 1 rows break days_to_next_order <= 30 (90) exactly when",
    ),
    "a date rounded down": (
        lambda f: f.__setitem__("expected_next_order_date", pd.to_datetime([None, "2026-02-17"])),
        "expected_next_order_date = as_of_date + ceil(days_to_next_order)",
        "expected_next_order_date: 1 rows break expected_next_order_date = as_of_date + ceil",
    ),
    "a date without a median": (
        lambda f: f.__setitem__("expected_next_order_date", pd.to_datetime(["2026-05-01", "2026-02-18"])),
        "expected_next_order_date = as_of_date + ceil(days_to_next_order)",
        "expected_next_order_date: 1 rows break expected_next_order_date = as_of_date + ceil",
    ),
}


@pytest.mark.parametrize("case", BROKEN_NEXT_ORDER)
def test_next_order_columns_out_of_step_are_refused_by_validate_scores(case):
    change, rule, _ = BROKEN_NEXT_ORDER[case]
    with pytest.raises(ValueError, match=re.escape(rule) + r".*\(1 rows\)"):
        validate_scores(_broken(change))


@pytest.mark.parametrize("case", BROKEN_NEXT_ORDER)
def test_next_order_columns_out_of_step_are_counted_by_value_problems(case):
    change, _, problem = BROKEN_NEXT_ORDER[case]
    problems = value_problems(_table(_broken(change)))
    assert len(problems) == 1 and problems[0].startswith(problem), problems


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("order_probability_30d", -0.1, "order_probability_30d: 1 rows NaN, infinite or outside [0, 1]"),
        ("order_probability_180d", 1.2, "order_probability_180d: 1 rows NaN, infinite or outside [0, 1]"),
        ("order_probability_90d", np.nan, "order_probability_90d: 1 rows NaN, infinite or outside [0, 1]"),
        ("days_to_next_order", 200.0, "days_to_next_order: 1 rows NaN, infinite or outside [0, 180]"),
        ("days_to_next_order", -1.0, "days_to_next_order: 1 rows NaN, infinite or outside [0, 180]"),
        ("lifetime_value", np.inf, "lifetime_value: 1 rows NaN, infinite or outside [0, 1e+13]"),
        ("lifetime_value", np.nan, "lifetime_value: 1 rows NaN, infinite or outside [0, 1e+13]"),
    ],
)
def test_new_columns_out_of_range_are_refused(column, value, problem):
    frame = scores_frame()
    frame.loc[1, column] = value
    assert problem in value_problems(_table(frame))
    with pytest.raises(ValueError, match=column):
        validate_scores(frame)


def test_a_nan_median_in_the_file_is_not_an_empty_cell():
    # NaN in a nullable double is a broken number, not "no order expected": the export refuses it.
    table = _table(scores_frame())
    i = table.schema.get_field_index("days_to_next_order")
    table = table.set_column(i, table.schema.field(i), pa.array([float("nan"), 47.3], pa.float64(), from_pandas=False))
    assert "days_to_next_order: 1 rows NaN, infinite or outside [0, 180]" in value_problems(table)


def test_empty_non_nullable_new_columns_are_refused():
    frame = scores_frame()
    frame.loc[0, "lifetime_value"] = np.nan
    table = _table(frame)
    i = table.schema.get_field_index("lifetime_value")
    table = table.set_column(i, table.schema.field(i), pa.array([None, 1.0], pa.float64()))
    assert "lifetime_value: 1 rows empty" in value_problems(table)
    with pytest.raises(ValueError, match="lifetime_value"):
        validate_scores(frame)
