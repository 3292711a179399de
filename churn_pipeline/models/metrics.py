"""Metric functions used to choose and gate models: pure numpy (scikit-learn only for the two ranking areas).

Grain: one value per scored row (a customer at one cutoff). ``y_true`` are observed labels (0/1 for churn,
money in the shop's currency or counts for CLV), ``y_pred`` / ``y_prob`` the model's outputs for the same rows
in the same order. Every function needs complete, finite inputs of equal, non-zero length and raises
``ValueError`` otherwise (null labels, i.e. rows whose horizon is incomplete, must be dropped first).
Every metric is invariant to the order of the rows (ties are averaged, never broken by position).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "bias",
    "brier",
    "expected_calibration_error",
    "log_loss",
    "mae",
    "normalized_gini",
    "pr_auc",
    "probability_bins",
    "rmse",
    "roc_auc",
    "spearman",
    "truth_gini",
]


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as 1-D float64 arrays, checked: same length, non-empty, finite."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but the prediction has {p.size}")
    if t.size == 0:
        raise ValueError("metrics need at least one row")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("metrics need finite values: drop rows with a null label before scoring")
    return t, p


def _binary(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = _pair(y_true, y_prob)
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError("binary metrics need labels in {0, 1} (or booleans)")
    return t, p


def _probabilities(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = _binary(y_true, y_prob)
    if (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1]")
    return t, p


def _both_classes(t: np.ndarray) -> None:
    if t.min() == t.max():
        raise ValueError("ranking metrics need both classes in y_true; only one is present")


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative,
    ties counting one half (Mann-Whitney U / (n_pos * n_neg)). 0.5 is random ranking, 1 perfect."""
    t, s = _binary(y_true, y_score)
    _both_classes(t)
    return float(roc_auc_score(t, s))


def pr_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision: ``sum_k (R_k - R_{k-1}) * P_k`` over
    the distinct score thresholds in decreasing order (step-wise, no interpolation; tied scores form one
    threshold). A random ranking scores about the positive rate."""
    t, s = _binary(y_true, y_score)
    _both_classes(t)
    return float(average_precision_score(t, s))


def brier(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Brier score: ``mean((p - y)^2)`` for the positive-class probability ``p`` and ``y`` in {0, 1}.
    Lower is better; 0 is perfect, ``r * (1 - r)`` is the constant forecast of the base rate ``r``."""
    t, p = _probabilities(y_true, y_prob)
    return float(np.mean((p - t) ** 2))


def log_loss(y_true: ArrayLike, y_prob: ArrayLike, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood in nats: ``-mean(y log p + (1 - y) log(1 - p))``, ``p`` clipped to
    ``[eps, 1 - eps]`` so that a confident mistake costs a large but finite amount."""
    t, p = _probabilities(y_true, y_prob)
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(t * np.log(p) + (1.0 - t) * np.log1p(-p)))


def expected_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width probability bins.

    Bin ``k`` is ``[k/n, (k+1)/n)``, the last one closed at 1. ECE = ``sum_k (n_k / N) * |mean(y)_k -
    mean(p)_k|`` over non-empty bins: the row-weighted gap between the observed rate and the mean
    predicted probability. 0 means every bin's average forecast matches its observed rate.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    t, p = _probabilities(y_true, y_prob)
    # (n_k / N) * |sum_y_k / n_k - sum_p_k / n_k| = |sum_y_k - sum_p_k| / N; empty bins add 0.
    _, sum_y, sum_p = probability_bins(t, p, n_bins)
    return float(np.abs(sum_y - sum_p).sum() / t.size)


def probability_bins(y: np.ndarray, p: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one binning of calibration (``expected_calibration_error``, ``models.evaluation.reliability_curve``):
    ``n_bins`` equal-width bins of the probabilities ``p`` (checked in [0, 1] by the caller), bin ``k`` being
    ``[k/n, (k+1)/n)``, the last one closed at 1. Returns per bin (all ``n_bins``, empty ones too) the row count,
    the sum of the labels ``y`` and the sum of ``p``."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    k = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    return (
        np.bincount(k, minlength=n_bins),
        np.bincount(k, weights=y, minlength=n_bins),
        np.bincount(k, weights=p, minlength=n_bins),
    )


def _lorenz_area(t: np.ndarray, order_by: np.ndarray) -> float:
    """Area under the cumulative-share-of-``t`` curve with rows sorted by ``order_by`` descending, from
    (0, 0) to (1, 1), trapezoidal between the ends of groups of tied ``order_by`` (the average over every
    order of the tied rows)."""
    order = np.argsort(-order_by, kind="stable")
    s, y = order_by[order], t[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last row of each tie group
    x = np.r_[0.0, (ends + 1) / t.size]
    lor = np.r_[0.0, np.cumsum(y)[ends] / y.sum()]
    return float(np.sum((x[1:] - x[:-1]) * (lor[1:] + lor[:-1]) / 2.0))


def truth_gini(y_true: ArrayLike) -> float:
    """``Gini(y_true)``, the denominator of :func:`normalized_gini`: the Gini of the ordering by ``y_true`` itself
    (a function of the labels only, so an eval function called every boosting round computes it once)."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    return 2.0 * _lorenz_area(t, t) - 1.0


def normalized_gini(y_true: ArrayLike, y_pred: ArrayLike, truth: float | None = None) -> float:
    """Normalised Gini: how well ``y_pred`` orders rows by ``y_true`` (e.g. revenue), 1 for the ordering by
    ``y_true`` itself, 0 for a random one, negative for a reversed one.

    ``Gini(s) = 2 * A(s) - 1`` with ``A(s)`` the area under the Lorenz curve (cumulative share of the total
    ``y_true`` against cumulative share of rows, rows sorted by ``s`` descending; ties in ``s`` averaged);
    the result is ``Gini(y_pred) / Gini(y_true)``. Equals the Kaggle "normalized Gini" when there are no
    ties. Needs ``sum(y_true) > 0`` and a ``y_true`` that is not constant. ``truth``: :func:`truth_gini` of
    this ``y_true`` when the caller has it already.
    """
    t, p = _pair(y_true, y_pred)
    if t.sum() <= 0:
        raise ValueError("normalized_gini needs a positive total of y_true")
    best = 2.0 * _lorenz_area(t, t) - 1.0 if truth is None else truth
    if best == 0:
        raise ValueError("normalized_gini needs a y_true that is not constant")
    return float((2.0 * _lorenz_area(t, p) - 1.0) / best)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="stable")
    s = x[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    group_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman rank correlation: Pearson correlation of the average ranks (ties share their mean rank).
    NaN when either input is constant."""
    t, p = _pair(y_true, y_pred)
    rt, rp = _average_ranks(t), _average_ranks(p)
    rt -= rt.mean()
    rp -= rp.mean()
    den = np.sqrt((rt**2).sum() * (rp**2).sum())
    return float((rt * rp).sum() / den) if den > 0 else float("nan")


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error ``mean(|y_pred - y_true|)``, in the unit of ``y_true`` (currency, orders)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(p - t)))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error ``sqrt(mean((y_pred - y_true)^2))``, in the unit of ``y_true``."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def bias(y_true: ArrayLike, y_pred: ArrayLike, relative: bool = False) -> float:
    """Mean error ``mean(y_pred - y_true)`` in the unit of ``y_true``: positive means over-prediction.

    ``relative=True`` gives the total bias ``(sum(y_pred) - sum(y_true)) / |sum(y_true)|`` instead, a
    fraction (0.05 = the predicted total is 5 % too high); it needs ``sum(y_true) != 0``.
    """
    t, p = _pair(y_true, y_pred)
    if not relative:
        return float(np.mean(p - t))
    total = t.sum()
    if total == 0:
        raise ValueError("relative bias needs a non-zero total of y_true")
    return float((p.sum() - total) / abs(total))
