"""Metric functions against values worked out by hand on tiny inputs (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from churn_pipeline.models import metrics

Y = [0, 0, 1, 1]
S = [0.1, 0.4, 0.35, 0.8]


def test_roc_auc_counts_correctly_ordered_pairs():
    # positive/negative pairs: 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> 3/4
    assert metrics.roc_auc(Y, S) == pytest.approx(0.75)
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert metrics.roc_auc(np.array([True, False]), [0.9, 0.2]) == pytest.approx(1.0)  # booleans are labels


def test_pr_auc_is_step_wise_average_precision():
    # scores descending: 0.8 (pos) P=1 R=.5 | 0.4 (neg) P=.5 R=.5 | 0.35 (pos) P=2/3 R=1 | 0.1 (neg)
    # AP = .5 * 1 + 0 * .5 + .5 * 2/3 + 0 = 0.8333
    assert metrics.pr_auc(Y, S) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_brier_and_log_loss():
    assert metrics.brier([1, 0], [0.8, 0.3]) == pytest.approx((0.2**2 + 0.3**2) / 2)  # 0.065
    assert metrics.log_loss([1, 0], [0.8, 0.3]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert math.isfinite(metrics.log_loss([1], [0.0]))  # clipped, finite


def test_expected_calibration_error_equal_width_bins():
    y, p = [0, 1, 1, 0], [0.05, 0.15, 0.85, 0.95]
    # 10 bins: one row each in bins 0, 1, 8, 9: (|0-.05| + |1-.15| + |1-.85| + |0-.95|) / 4 = 2.0 / 4
    assert metrics.expected_calibration_error(y, p) == pytest.approx(0.5)
    # 2 bins: [0, .5): mean p .1 vs rate .5; [.5, 1]: mean p .9 vs rate .5 -> .5 * .4 + .5 * .4
    assert metrics.expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.4)
    assert metrics.expected_calibration_error([1, 1], [1.0, 1.0]) == pytest.approx(0.0)  # p = 1 is in the last bin
    assert metrics.expected_calibration_error([0, 1], [0.5, 0.5], n_bins=1) == pytest.approx(0.0)


def test_normalized_gini_by_hand():
    y, pred = [0, 0, 1, 3], [0.1, 0.4, 0.3, 0.9]
    # by pred desc y = 3, 0, 1, 0: Lorenz .75 .75 1 1, area = .25*(.375+.75+.875+1) = .75 -> Gini .5
    # by y desc    y = 3, 1, 0, 0: Lorenz .75 1 1 1,    area = .25*(.375+.875+1+1) = .8125 -> Gini .625
    assert metrics.normalized_gini(y, pred) == pytest.approx(0.5 / 0.625)
    assert metrics.normalized_gini(y, y) == pytest.approx(1.0)
    assert metrics.normalized_gini(y, [1, 1, 1, 1]) == pytest.approx(0.0)  # ties averaged: a constant is random
    assert metrics.normalized_gini(y, -np.asarray(pred)) < 0


def test_normalized_gini_matches_kaggle_formula_without_ties():
    rng = np.random.default_rng(0)
    y, pred = rng.gamma(0.5, 50, 200), rng.normal(size=200)

    def kaggle(actual, p):
        a = actual[np.argsort(-p, kind="stable")]
        n = len(a)
        return a.cumsum().sum() / a.sum() / n - (n + 1) / (2 * n)

    assert metrics.normalized_gini(y, pred) == pytest.approx(kaggle(y, pred) / kaggle(y, y))


def test_ranking_metrics_ignore_row_order_even_with_ties():
    y = np.array([0, 5, 0, 2, 9, 0, 1, 0])
    pred = np.array([1.0, 2.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0])
    perm = np.array([3, 7, 1, 0, 6, 2, 5, 4])
    assert metrics.normalized_gini(y, pred) == pytest.approx(metrics.normalized_gini(y[perm], pred[perm]))
    assert metrics.spearman(y, pred) == pytest.approx(metrics.spearman(y[perm], pred[perm]))
    assert metrics.roc_auc(y > 0, pred) == pytest.approx(metrics.roc_auc((y > 0)[perm], pred[perm]))


def test_spearman_by_hand_and_with_ties():
    # rank differences 0, 1, 1, 0 -> 1 - 6 * 2 / (4 * 15) = 0.8
    assert metrics.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # y ranks 1, 2.5, 2.5, 4 vs 1..4: cov 4.5, var 4.5 and 5 -> 4.5 / sqrt(22.5)
    assert metrics.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, 50), rng.normal(size=50)
    assert metrics.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert math.isnan(metrics.spearman([1, 2, 3], [5, 5, 5]))


def test_regression_errors_and_bias():
    y, p = [1, 2, 3], [2, 2, 5]
    assert metrics.mae(y, p) == pytest.approx(1.0)  # (1 + 0 + 2) / 3
    assert metrics.rmse(y, p) == pytest.approx(math.sqrt(5 / 3))  # sqrt((1 + 0 + 4) / 3)
    assert metrics.bias(y, p) == pytest.approx(1.0)  # mean(p - y)
    assert metrics.bias(y, p, relative=True) == pytest.approx(0.5)  # (9 - 6) / 6


@pytest.mark.parametrize(
    ("fn", "y", "p", "message"),
    [
        (metrics.mae, [1, 2], [1], "has 2 values"),
        (metrics.brier, [1, np.nan], [0.5, 0.5], "finite"),
        (metrics.brier, pd.array([True, None], dtype="boolean"), [0.5, 0.5], "finite"),
        (metrics.brier, [1, 0], [1.2, 0.5], r"\[0, 1\]"),
        (metrics.brier, [2, 0], [0.5, 0.5], "binary"),
        (metrics.roc_auc, [1, 1], [0.2, 0.5], "both classes"),
        (metrics.rmse, [], [], "at least one row"),
        (metrics.normalized_gini, [0, 0], [1, 2], "positive total"),
    ],
)
def test_bad_inputs_raise_value_error(fn, y, p, message):
    with pytest.raises(ValueError, match=message):
        fn(y, p)


def test_the_calibration_error_and_the_reliability_curve_share_one_binning():
    rng = np.random.default_rng(7)
    p = np.r_[rng.random(500), 0.0, 0.3, 0.7, 1.0]  # exact bin edges land in the bin they open (1.0: the last)
    y = (rng.random(p.size) < p).astype(float)
    counts, sum_y, sum_p = metrics.probability_bins(y, p, 10)
    assert counts.sum() == p.size and counts.size == 10
    assert metrics.expected_calibration_error(y, p) == pytest.approx(np.abs(sum_y - sum_p).sum() / p.size, abs=0)
    from churn_pipeline.models.evaluation import reliability_curve

    curve = reliability_curve(y, p, 10)
    seen = counts > 0
    np.testing.assert_array_equal(curve["customers"], counts[seen])
    np.testing.assert_array_equal(curve["mean_predicted"], sum_p[seen] / counts[seen])
    gaps = (curve["customers"] * (curve["observed_rate"] - curve["mean_predicted"]).abs()).sum() / p.size
    assert gaps == pytest.approx(metrics.expected_calibration_error(y, p))
    _, _, edges = metrics.probability_bins(np.zeros(3), np.array([0.3, 0.7, 1.0]), 10)
    assert np.flatnonzero(edges).tolist() == [3, 7, 9]
