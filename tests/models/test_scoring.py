"""models.scoring: the engine-independent parts of scoring, on hand-made inputs (no registry, no data files).

The whole stage (features, registered models, the written file) is tested in tests/pipelines/test_score.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.errors import DataContractError, ParamsError
from churn_pipeline.models.evaluation import Campaign
from churn_pipeline.models.scoring import (
    PERCENTILES,
    PREDICTIONS,
    LoadedModel,
    check_model_features,
    contact_line,
    contact_record,
    contact_summary,
    model_version_label,
    next_order_predictions,
    percentile_1_100,
    retention_days,
    tier_counts,
    unseen_lines,
)

CAMPAIGN = Campaign(contact_cost=1.0, incentive_cost=5.0, acceptance_rate=0.2, value_margin=0.3)


def _model(kind: str, version: str = "3", name: str | None = None, features=("recency_days",)) -> LoadedModel:
    estimator = SimpleNamespace(features_=list(features))
    return LoadedModel(kind, f"models:/{name or kind}/{version}", name or kind, version, "run", estimator, None, 180)


# ------------------------------------------------------------------ percentiles, labels
def test_percentiles_run_from_1_to_100_and_ties_share_the_higher_one():
    assert percentile_1_100(np.array([3.0, 1.0, 2.0, 2.0])).tolist() == [100, 25, 75, 75]
    assert percentile_1_100(np.linspace(0, 1, 1000)).min() == 1
    assert percentile_1_100(np.array([])).dtype == np.int16


def test_every_percentile_ranks_one_of_the_predictions():
    assert set(PERCENTILES.values()) <= set(PREDICTIONS)


def test_the_model_version_label_spells_out_registered_names_other_than_the_kind():
    models = {"clv": _model("clv", "2"), "churn": _model("churn", "7", name="my-churn")}
    assert model_version_label(models) == "churn=my-churn:v7;clv:v2"


def test_tier_counts_name_every_tier_in_order_with_zero_for_the_empty_ones():
    assert tier_counts(pd.Series(["low", "high", "low"])) == {"high": 1, "medium": 0, "low": 2, "lapsed": 0}


# ------------------------------------------------------------------ the next-order columns
def test_a_next_order_model_without_the_30_90_180_day_edges_is_a_params_error_naming_the_grid():
    model = SimpleNamespace(
        uri="models:/next_order/3", version="3", estimator=SimpleNamespace(grid_=np.array([60, 120]))
    )
    frame = pd.DataFrame(
        {"order_probability_60d": [0.2], "order_probability_120d": [0.4], "days_to_next_order": [np.nan]}
    )
    with pytest.raises(ParamsError, match=r"no P\(order within \[30, 90, 180\] days\).*labels.next_order_days"):
        next_order_predictions(frame, {"next_order": model})


def test_the_lifetime_retention_is_read_at_the_clv_horizon_or_the_largest_edge_below_it():
    def models(horizon):
        grid = np.array([14, 30, 60, 90, 120, 180])
        return {
            "next_order": SimpleNamespace(estimator=SimpleNamespace(grid_=grid)),
            "clv": SimpleNamespace(horizon_days=horizon),
        }

    assert retention_days(models(180)) == 180
    assert retention_days(models(100)) == 90
    assert retention_days(models(7)) == 14


# ------------------------------------------------------------------ the missing-feature check
def test_features_a_model_needs_but_the_scoring_table_lacks_are_a_data_error_naming_model_and_columns():
    models = {"churn": _model("churn", features=("recency_days", "sessions_30d")), "clv": _model("clv")}
    with pytest.raises(
        DataContractError, match=r"churn model models:/churn/3 \(version 3\).*missing: \['sessions_30d'\]"
    ):
        check_model_features(["customer_id", "recency_days"], models, "data/validated")


def test_a_scoring_table_with_every_feature_passes_the_check():
    check_model_features(["customer_id", "recency_days"], {"clv": _model("clv")}, "data/validated")


# ------------------------------------------------------------------ the contact list
def _contact_scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "contact": [True, True, False, True],
            "expected_profit": [1.004, 2.0, -1.0, 0.5],
            "recommended_action": ["winback_email_coupon", "onboarding", "no_action", "winback_email_coupon"],
            "intended_action": ["winback_email_coupon", "onboarding", "no_action", "winback_email_coupon"],
            "expected_uplift": [0.1, np.nan, np.nan, 0.2],
        }
    )


def test_the_contact_summary_counts_the_contacted_customers_per_action_with_their_expected_profit():
    summary = contact_summary(_contact_scores(), CAMPAIGN)
    assert summary["rows"] == 3 and summary["share"] == 0.75 and summary["expected_profit"] == 3.5
    assert summary["by_action"] == {
        "onboarding": {"rows": 1, "expected_profit": 2.0},
        "winback_email_coupon": {"rows": 2, "expected_profit": 1.5},
    }
    assert summary["uplift_model_actions"] == ["winback_email_coupon"]
    assert summary["economics"]["contact_cost"] == 1.0


def test_the_contact_record_of_totals_aggregated_elsewhere_equals_the_summary_of_the_scores():
    record = contact_record(
        4, 3, 3.504, {"winback_email_coupon": (2, 1.504), "onboarding": (1, 2.0)}, ["winback_email_coupon"], CAMPAIGN
    )
    assert record == contact_summary(_contact_scores(), CAMPAIGN)
    assert list(record["by_action"]) == ["onboarding", "winback_email_coupon"]  # sorted, whatever the input order


def test_no_scored_customers_give_an_empty_contact_list_with_share_zero():
    assert contact_record(0, 0, 0.0, {}, [], CAMPAIGN)["share"] == 0.0


def test_the_contact_line_says_where_the_expected_profit_comes_from():
    line = contact_line(contact_summary(_contact_scores(), CAMPAIGN))
    assert line.startswith("contact list: 3 customers (75.0%) with positive expected profit, 3.50 in total")
    assert "(uplift model for winback_email_coupon, campaign economics otherwise)" in line
    assert line.endswith(": onboarding 1, winback_email_coupon 2")


# ------------------------------------------------------------------ warnings to print
def test_the_drift_lines_come_first_then_the_unseen_levels_then_the_unknown_event_types():
    drift = {
        "warnings": ["churn model: feature x has PSI 0.300"],
        "unseen_level_warnings": ["churn model: country has 1 level(s) unseen"],
        "unseen_event_types": {
            "types": 6,
            "customers": 12,
            "top": [{"event_type": "wishlist", "customers": 9, "events": 20}],
            "counted_in_other_events": {"churn": True, "clv": False},
        },
    }
    lines = unseen_lines(drift)
    assert [line.split(":")[0] for line in lines] == ["drift", "unseen levels", "unseen event types"]
    assert lines[2] == (
        "unseen event types: 6 event type(s) outside the data contract for 12 customer(s), counted only in the "
        "other_events_* features (churn): 'wishlist' (9 customer(s)) and 5 more"
    )


def test_a_clean_drift_report_prints_nothing():
    assert unseen_lines({"warnings": [], "unseen_event_types": {"types": 0}}) == []
