"""Population stability index (PSI): has the population being scored moved away from the one a model learnt from?

Grain: one value per feature (or score) per comparison. A *reference* is fitted once, at training time, on the
model's own training rows and stored with the model; at scoring time the same bins are filled with the scored
customers and compared:

    PSI = sum over bins of (actual_share - expected_share) * ln(actual_share / expected_share)

Bins (fixed by the reference, so both sides are counted the same way):

- numeric: the deciles of the reference's non-missing values (edges deduplicated, so a feature that is mostly
  0 gets one bin for 0 rather than nine empty ones); bin k holds ``edge[k-1] < x <= edge[k]``, the first and
  last bins are open-ended;
- categorical (integer level codes from the model's preprocessor): one bin per level code seen in the reference,
  plus one for codes it never saw;
- missing values (NaN) are always a bin of their own: a feature going missing is drift too.

An empty bin on either side counts as ``EPSILON`` (a share), so one empty bin gives a large but finite PSI.
The scored population must be the one the model was trained on: ``churn score`` compares only its non-lapsed
customers, since training rows leave out customers lapsed for more than ``features.max_recency_days``.

Usual reading: below 0.1 stable, 0.1-0.2 moderate shift, above 0.2 a shift worth investigating.

**Unseen levels** (:func:`level_counts`, :func:`unseen_levels`): a categorical value the model's preprocessor
did not keep at training (``categories_``: never seen, or too rare there and folded) is scored silently as
``"__other__"``. PSI shows it only for the ten reference features and only as a share; the scoring run counts,
for every categorical feature, the scored customers (all of them, lapsed included) whose value is not a fitted
level, and lists the most common such levels, so a new country or channel is named rather than absorbed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CALENDAR_FEATURES",
    "EPSILON",
    "N_BINS",
    "UNSEEN_TOP",
    "bin_reference",
    "level_counts",
    "population_stability_index",
    "psi_against",
    "reference_for",
    "unseen_levels",
]

EPSILON = 1e-4
N_BINS = 10
# Properties of the cutoff, not of the customers: never part of a drift reference.
CALENDAR_FEATURES = ("cutoff_month", "cutoff_day_of_year")
# Unseen levels listed by name per column (the most common first); the counts cover all of them.
UNSEEN_TOP = 5


def _proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts, dtype=np.float64)


def population_stability_index(expected: Sequence[float], actual: Sequence[float], epsilon: float = EPSILON) -> float:
    """PSI between two share vectors over the same bins (each summing to 1); empty bins count as ``epsilon``."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    if e.shape != a.shape:
        raise ValueError(f"expected and actual need the same bins, got {e.shape} and {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def _counts(values: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """Counts of ``values`` in the bins of ``spec``: the value bins, then the missing-value bin last."""
    v = np.asarray(values, dtype=np.float64)
    missing = np.isnan(v)
    present = v[~missing]
    if spec["kind"] == "numeric":
        edges = np.asarray(spec["edges"], dtype=np.float64)
        idx = np.searchsorted(edges, present, side="left")
        counts = np.bincount(idx, minlength=len(edges) + 1)
    else:
        levels = np.asarray(spec["levels"], dtype=np.float64)
        pos = np.searchsorted(levels, present)
        known = pos < len(levels)
        known[known] = levels[pos[known]] == present[known]
        # Codes the reference never saw share the bin after the known levels.
        counts = np.bincount(np.where(known, pos, len(levels)), minlength=len(levels) + 1)
    return np.append(counts, missing.sum()).astype(np.float64)


def bin_reference(values: Sequence[float], categorical: bool = False, n_bins: int = N_BINS) -> dict[str, Any]:
    """The reference bins of one feature or score and its shares in them (JSON-ready).

    ``values``: the reference rows' values (float; NaN = missing; categorical = integer level codes).
    Returns ``{"kind", "edges" | "levels", "proportions"}``; ``proportions`` has one entry per value bin, the
    unseen-level bin for categoricals, and the missing bin last.
    """
    v = np.asarray(values, dtype=np.float64)
    present = v[~np.isnan(v)]
    if categorical:
        spec: dict[str, Any] = {"kind": "categorical", "levels": np.unique(present).tolist()}
    else:
        qs = np.linspace(0, 1, n_bins + 1)[1:-1]
        edges = np.unique(np.quantile(present, qs)) if present.size else np.array([])
        spec = {"kind": "numeric", "edges": edges.tolist()}
    spec["proportions"] = _proportions(_counts(v, spec)).tolist()
    return spec


def psi_against(spec: Mapping[str, Any], values: Sequence[float], epsilon: float = EPSILON) -> float:
    """PSI of ``values`` (the scored population) against a reference made by :func:`bin_reference`."""
    return population_stability_index(spec["proportions"], _proportions(_counts(values, spec)), epsilon)


def reference_for(
    matrix: np.ndarray,
    feature_names: Sequence[str],
    categorical: Sequence[str],
    importance: Mapping[str, float],
    scores: Mapping[str, np.ndarray],
    top_n: int = 10,
    exclude: Sequence[str] = CALENDAR_FEATURES,
) -> dict[str, Any]:
    """A model's drift reference: bins of its ``top_n`` most important features and of its scores.

    ``matrix``: the reference rows as the model's preprocessor outputs them (n_rows x features, columns in
    ``feature_names`` order; categoricals as level codes). ``importance``: feature -> gain. ``scores``: score
    name -> the model's predictions on the same rows. Features are chosen by gain (ties by name), leaving out
    ``exclude``: calendar features are one value per cutoff, so a scoring date always "drifts" from them.
    """
    candidates = [f for f in feature_names if f not in set(exclude)]
    ranked = sorted(candidates, key=lambda f: (-float(importance.get(f, 0.0)), f))[:top_n]
    cats = set(categorical)
    col = {f: j for j, f in enumerate(feature_names)}
    return {
        "n_rows": int(matrix.shape[0]),
        "n_bins": N_BINS,
        "features": {f: bin_reference(matrix[:, col[f]], categorical=f in cats) for f in ranked},
        "scores": {name: bin_reference(values) for name, values in scores.items()},
    }


# ------------------------------------------------------------------ unseen levels
def level_counts(values: pd.Series) -> pd.Series:
    """Customers per level of a categorical column (index: the level as text, as the preprocessor reads it;
    missing values left out: they stay missing, not a level)."""
    return values.dropna().astype(str).value_counts(sort=False)


def unseen_levels(
    counts: pd.Series | Mapping[str, int], fitted: Sequence[str], top: int = UNSEEN_TOP
) -> dict[str, Any]:
    """The levels of ``counts`` (level -> customers, e.g. :func:`level_counts`) that are not in ``fitted`` (a
    preprocessor's ``categories_[column]``): ``{"customers", "levels", "top": [{"level", "customers"}, ...]}``,
    ``top`` the ``top`` most common (ties by level), JSON-ready. Zeros and an empty list when every level is known.
    """
    counts = pd.Series(counts, dtype="int64") if not isinstance(counts, pd.Series) else counts.astype("int64")
    counts.index = counts.index.astype(str)
    counts = counts.groupby(level=0).sum()  # one entry per level, whatever the caller passed
    unseen = counts[~counts.index.isin(list(fitted)) & (counts.to_numpy() > 0)]
    ordered = unseen.sort_index().sort_values(ascending=False, kind="stable")
    return {
        "customers": int(ordered.sum()),
        "levels": int(ordered.size),
        "top": [{"level": str(k), "customers": int(v)} for k, v in ordered.head(top).items()],
    }
