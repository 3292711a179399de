"""Behavioural model tests: directional expectations, invariances, minimum quality (``-m behavioural``).

Directional tests perturb real test-cutoff rows consistently (an order in the last 30 days is also in the
90/180/365-day windows, raises the trends of the windows that contain it and makes the last order recent)
and compare the *mean* prediction: a single row may move either way (the model has no monotonic
constraints), the average must not move against common sense.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from churn_pipeline.models import metrics

pytestmark = pytest.mark.behavioural

WINDOWS = (30, 90, 180, 365)


@pytest.fixture(scope="module")
def rows(churn_frames) -> pd.DataFrame:
    return churn_frames[2]


def more_recent_orders(df: pd.DataFrame) -> pd.DataFrame:
    """One more order 15 days before the cutoff."""
    out = df.copy()
    for w in WINDOWS:
        out[f"orders_{w}d"] += 1
        out[f"orders_trend_{w}d"] += 1
    out["orders_total"] += 1
    out["frequency"] += 1
    out["recency_days"] = np.minimum(out["recency_days"], 15.0)
    out["overdue_ratio"] = out["recency_days"] / out["gap_mean_days"]
    return out


def more_recent_sessions(df: pd.DataFrame) -> pd.DataFrame:
    """Three more web sessions, the last of them 5 days before the cutoff."""
    out = df.copy()
    for w in WINDOWS:
        out[f"sessions_{w}d"] += 3
        out[f"sessions_trend_{w}d"] += 3
    out["days_since_last_session"] = np.fmin(out["days_since_last_session"], 5.0).fillna(5.0)
    return out


def lower_recency(df: pd.DataFrame) -> pd.DataFrame:
    """The last order half as long ago (only where that keeps it inside the 30-day windows' story)."""
    out = df.copy()
    shorter = out["recency_days"] > 30
    out.loc[shorter, "recency_days"] = np.maximum(out.loc[shorter, "recency_days"] / 2, 30.0)
    out["overdue_ratio"] = out["recency_days"] / out["gap_mean_days"]
    return out


@pytest.mark.parametrize("perturb", [more_recent_orders, more_recent_sessions, lower_recency])
def test_more_recent_activity_does_not_raise_churn_probability(churn_model, rows, perturb):
    before = churn_model.predict_proba(rows)[:, 1]
    after = churn_model.predict_proba(perturb(rows))[:, 1]
    assert after.mean() < before.mean(), perturb.__name__
    assert (after > before).mean() < 0.1  # and few rows move the other way


def test_more_recent_orders_do_not_lower_expected_value(clv_model, clv_frames):
    test = clv_frames[2]
    assert clv_model.predict(more_recent_orders(test)).mean() > clv_model.predict(test).mean()
    assert clv_model.predict_orders(more_recent_orders(test)).mean() > clv_model.predict_orders(test).mean()


def test_reordering_rows_changes_nothing(churn_model, clv_model, rows, clv_frames):
    perm = np.random.default_rng(3).permutation(len(rows))
    np.testing.assert_array_equal(churn_model.predict_proba(rows.iloc[perm]), churn_model.predict_proba(rows)[perm])
    test = clv_frames[2]
    perm = np.random.default_rng(4).permutation(len(test))
    np.testing.assert_array_equal(clv_model.predict(test.iloc[perm]), clv_model.predict(test)[perm])
    np.testing.assert_array_equal(clv_model.predict_orders(test.iloc[perm]), clv_model.predict_orders(test)[perm])


def renamed(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(customer_id="X-" + df["customer_id"].str[::-1])


def test_renaming_customer_ids_changes_no_score(churn_model, clv_model, rows, clv_frames):
    np.testing.assert_array_equal(churn_model.predict_proba(renamed(rows)), churn_model.predict_proba(rows))
    test = clv_frames[2]
    np.testing.assert_array_equal(clv_model.predict(renamed(test)), clv_model.predict(test))


def test_renaming_customer_ids_at_training_leaves_the_booster_alone(churn_model, churn_frames, rows):
    """Ids are no feature: the booster is identical. They only pick the calibration halves (a hash), which
    can at most flip the isotonic/Platt choice; the same choice means identical probabilities."""
    train, valid, _ = churn_frames
    model = clone(churn_model).fit(renamed(train), train["churned"], renamed(valid), valid["churned"])
    np.testing.assert_array_equal(model.predict_margin(rows), churn_model.predict_margin(rows))
    if model.calibration_report_["method"] == churn_model.calibration_report_["method"]:
        np.testing.assert_array_equal(model.predict_proba(rows), churn_model.predict_proba(rows))
    else:
        np.testing.assert_allclose(model.predict_proba(rows), churn_model.predict_proba(rows), atol=0.05)


def test_minimum_quality_on_the_test_cutoff(churn_model, clv_model, rows, clv_frames):
    y = rows["churned"].astype(int)
    p = churn_model.predict_proba(rows)[:, 1]
    assert metrics.roc_auc(y, p) > 0.75
    assert metrics.expected_calibration_error(y, p) < 0.05
    assert metrics.brier(y, p) < metrics.brier(y, np.full(len(y), y.mean())) - 0.03  # beats the base rate
    test = clv_frames[2]
    assert metrics.normalized_gini(test["future_revenue"], clv_model.predict(test)) > 0.6
    assert metrics.spearman(test["future_orders"], clv_model.predict_orders(test)) > 0.4
