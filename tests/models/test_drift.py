"""Population stability index: hand-computed values, bins fixed by the reference, missing values as a bin."""

import math

import numpy as np
import pytest

from models.drift import (
    CALENDAR_FEATURES,
    EPSILON,
    bin_reference,
    population_stability_index,
    psi_against,
    reference_for,
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
