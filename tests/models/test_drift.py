"""Population stability index: hand-computed values, bins fixed by the reference, missing values as a bin."""

import math

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.models.drift import (
    CALENDAR_FEATURES,
    EPSILON,
    bin_reference,
    level_counts,
    population_stability_index,
    psi_against,
    reference_for,
    unseen_levels,
)


def test_psi_of_two_bins_matches_the_formula_by_hand():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert population_stability_index([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert expected == pytest.approx(0.2747, abs=1e-4)


def test_identical_shares_have_zero_psi():
    assert population_stability_index([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_an_empty_bin_counts_as_epsilon_so_the_psi_stays_finite():
    value = population_stability_index([1.0, 0.0], [0.5, 0.5])
    by_hand = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert value == pytest.approx(by_hand)


def test_numeric_bins_are_reference_deciles_with_the_missing_bin_last():
    spec = bin_reference(np.arange(1.0, 101.0))
    assert spec["kind"] == "numeric"
    assert len(spec["edges"]) == 9
    assert spec["proportions"][:-1] == pytest.approx([0.1] * 10)
    assert spec["proportions"][-1] == 0.0  # no missing values in the reference


def test_a_feature_that_is_mostly_zero_gets_one_bin_for_zero():
    values = np.r_[np.zeros(70), np.arange(1.0, 31.0)]
    spec = bin_reference(values)
    assert spec["edges"][0] == 0.0
    assert spec["proportions"][0] == pytest.approx(0.7)


def test_the_same_distribution_scores_near_zero_and_a_shifted_one_above_the_warning_line():
    rng = np.random.default_rng(0)
    spec = bin_reference(rng.normal(0, 1, 20_000))
    assert psi_against(spec, rng.normal(0, 1, 20_000)) < 0.01
    assert psi_against(spec, rng.normal(1, 1, 20_000)) > 0.2


def test_values_going_missing_is_drift():
    spec = bin_reference(np.arange(1000.0))
    half_missing = np.r_[np.arange(0.0, 1000.0, 2), np.full(500, np.nan)]
    assert psi_against(spec, half_missing) > 1.0


def test_categorical_codes_get_one_bin_each_and_unseen_codes_share_one():
    spec = bin_reference(np.array([0, 0, 1, 1, 2, 2, 2, 2.0]), categorical=True)
    assert spec["levels"] == [0.0, 1.0, 2.0]
    assert spec["proportions"] == pytest.approx([0.25, 0.25, 0.5, 0.0, 0.0])
    assert psi_against(spec, np.array([0, 1, 2, 2.0])) == pytest.approx(0.0)
    assert psi_against(spec, np.array([7, 7, 7, 7.0])) > 1.0


def test_the_reference_keeps_the_most_important_features_but_never_calendar_ones():
    names = ["a", "b", "cutoff_month", "c"]
    matrix = np.arange(40.0).reshape(10, 4)
    importance = {"a": 1.0, "b": 5.0, "cutoff_month": 100.0, "c": 3.0}
    ref = reference_for(matrix, names, [], importance, {"churn_probability": np.linspace(0, 1, 10)}, top_n=2)
    assert list(ref["features"]) == ["b", "c"]
    assert "cutoff_month" in CALENDAR_FEATURES
    assert ref["n_rows"] == 10 and "churn_probability" in ref["scores"]


# ------------------------------------------------------------------ unseen levels (issue 18)
def test_unseen_levels_are_counted_and_the_most_common_listed():
    counts = pd.Series({"DE": 50, "FR": 20, "LU": 3, "XX": 7, "YY": 7, "ZZ": 1, "__other__": 2})
    found = unseen_levels(counts, ["DE", "FR", "__other__"], top=2)
    assert found == {
        "customers": 18,
        "levels": 4,
        "top": [{"level": "XX", "customers": 7}, {"level": "YY", "customers": 7}],  # ties by level
    }
    assert unseen_levels(pd.Series({"DE": 5}), ["DE", "__other__"]) == {"customers": 0, "levels": 0, "top": []}


def test_level_counts_read_levels_as_text_and_leave_missing_values_out():
    counts = level_counts(pd.Series(["DE", None, "DE", "AT", np.nan], dtype=object))
    assert counts.sort_index().to_dict() == {"AT": 1, "DE": 2}


def _model(preprocessor):
    from types import SimpleNamespace

    estimator = SimpleNamespace(preprocessor_=preprocessor, features_=preprocessor.features_)
    return SimpleNamespace(estimator=estimator, drift_reference=None, version="1")


def test_the_drift_report_lists_unseen_levels_of_every_scored_customer_per_model():
    from churn_pipeline.models.preprocess import FeaturePreprocessor
    from churn_pipeline.models.scoring import drift_report

    train = pd.DataFrame({"country": ["DE"] * 30 + ["FR"] * 30 + ["LU"] * 2, "x": np.arange(62.0)})
    pre = FeaturePreprocessor(["country", "x"], ["country"], min_category_count=20).fit(train)
    frame = pd.DataFrame(
        {"country": ["DE", "AT", "AT", "LU", None, "FR"], "x": np.arange(6.0), "is_lapsed": [False] * 5 + [True]}
    )
    scores = {"churn_probability": np.full(6, 0.5)}
    report = drift_report(frame, scores, {"churn": _model(pre), "clv": _model(pre)}, 0.2)
    # AT never seen, LU too rare at training (folded): both scored as "__other__"; the missing value is no level.
    assert report["unseen_levels"]["churn"]["country"] == {
        "customers": 3,
        "levels": 2,
        "top": [{"level": "AT", "customers": 2}, {"level": "LU", "customers": 1}],
    }
    assert report["unseen_levels"]["clv"] == report["unseen_levels"]["churn"]
    assert len(report["unseen_level_warnings"]) == 1  # the same finding for both models: one line
    line = report["unseen_level_warnings"][0]
    assert line.startswith(
        "churn and clv models: country has 2 level(s) unseen at training (or too rare there to keep) for 3 customer(s)"
    )
    assert "'AT' 2" in line and "'LU' 1" in line
    # Counted on every scored customer (lapsed included) or on the counts a caller passes (Spark).
    report = drift_report(frame, scores, {"churn": _model(pre)}, 0.2, levels={"country": pd.Series({"AT": 10})})
    assert report["unseen_levels"]["churn"]["country"]["customers"] == 10
    assert report["warnings"] == ["churn model v1 carries no drift reference (logged before drift checks): retrain "
                                  "to get one"]  # fmt: skip


def test_event_types_outside_the_contract_are_listed_with_whether_a_model_counts_them():
    from churn_pipeline.models.scoring import unseen_event_types

    with_other = _model_features(["orders_30d", "other_events_30d"])
    without = _model_features(["orders_30d"])
    found = unseen_event_types([("chat", 1, 4), ("wishlist", 2, 2)], 3, {"churn": with_other, "clv": without})
    assert found == {
        "customers": 3,
        "types": 2,
        "events": 6,
        "top": [
            {"event_type": "wishlist", "customers": 2, "events": 2},
            {"event_type": "chat", "customers": 1, "events": 4},
        ],
        "counted_in_other_events": {"churn": True, "clv": False},
    }


def _model_features(features):
    from types import SimpleNamespace

    return SimpleNamespace(estimator=SimpleNamespace(features_=features))
