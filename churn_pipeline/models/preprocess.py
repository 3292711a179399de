"""Feature preprocessing fixed at training time, so that scoring cannot diverge from training.

Grain: one row per (customer, cutoff) as in the feature panel; the preprocessor never looks at keys, labels
or row order. ``fit`` freezes

- the ordered feature list (``features_``): ``transform`` selects columns **by name** in this order, so a
  reordered table gives the same matrix; extra columns (keys, labels, anything else) are ignored; a missing
  feature column (or a renamed one, which is missing under its fitted name) raises ``ValueError`` naming
  every missing column. This is the guard LightGBM lacks: it scores a matrix by position and accepts a
  table whose columns are reordered or renamed.
- for each categorical column, its sorted level list (``categories_``): levels seen fewer than
  ``min_category_count`` times in the training rows are folded into ``"__other__"``, which is always the
  last level. ``transform`` maps a value to its level's integer code (0, 1, ...); a value not in the list
  (unseen at training, or folded) gets the code of ``"__other__"``; a missing value (null/NaN) stays NaN,
  which LightGBM treats as missing. Codes are only meaningful to a model told that these columns are
  categorical: pass ``categorical_indices_`` as LightGBM's ``categorical_feature`` (numbers passed as
  plain numerics would be split on as if ``"FR" < "NL"`` meant something).
- high-cardinality guards, with one warning each (``warnings_``, also raised as ``HighCardinalityWarning``): a
  categorical column keeps at most ``max_category_levels`` levels (the most frequent; ties by name), the rest are folded
  into ``"__other__"`` too (a ``country`` column holding the customer id would otherwise be the top feature
  with hundreds of levels); a categorical column with more distinct values than half the training rows is an
  identifier, not a category, and is dropped from ``features_`` (``dropped_``) — folding would leave one
  ``"__other__"`` level that says nothing. The shipped shop's categoricals (``country``, ``acquisition_channel``,
  a handful of levels each) are below both limits and unchanged.

Output: a float32 numpy array (n_rows, n_features), Fortran-ordered (LightGBM reads it without a copy);
numerics are cast to float32 (nullable integers' and booleans' nulls become NaN).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

__all__ = ["OTHER", "FeaturePreprocessor", "HighCardinalityWarning", "check_columns"]

OTHER = "__other__"


class HighCardinalityWarning(UserWarning):
    """A categorical column with too many levels was folded, or one that looks like an identifier dropped."""


def check_columns(X: pd.DataFrame, required: Sequence[str], what: str = "feature") -> None:
    """Raise ``ValueError`` naming every column of ``required`` that ``X`` lacks (and the unexpected ones,
    which often are the same columns renamed)."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame with named columns, got {type(X).__name__}")
    have = set(map(str, X.columns))
    missing = [c for c in required if c not in have]
    if missing:
        extra = sorted(have - set(required))
        hint = f"; columns present but not expected: {extra[:20]}{' ...' if len(extra) > 20 else ''}" if extra else ""
        raise ValueError(f"{len(missing)} required {what} column(s) missing: {missing}{hint}")


def _is_text(s: pd.Series) -> bool:
    return (
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(s.dtype)
        or pd.api.types.is_object_dtype(s.dtype)
    )


class FeaturePreprocessor(TransformerMixin, BaseEstimator):
    """Selects the fitted features by name, encodes categoricals with fitted levels, casts to float32.

    Parameters
    ----------
    features:
        Feature columns in model order (the manifest's ``features``). None: every column of the training
        table, in its order.
    categorical:
        Categorical feature columns (the manifest's ``categorical``). None: the text/categorical-dtype
        columns among ``features``. Must be a subset of ``features``.
    min_category_count:
        Levels with fewer training rows than this are folded into ``"__other__"``.
    max_category_levels:
        At most this many levels (``"__other__"`` not counted) are kept per categorical column: the most
        frequent ones; the rest are folded into ``"__other__"`` with a warning.
    identifier_share:
        A categorical column with more distinct values than this share of the training rows is an identifier:
        dropped from the features with a warning.

    Fitted attributes: ``features_`` (list), ``categorical_`` (list), ``categories_`` (dict column ->
    level list, ``"__other__"`` last), ``categorical_indices_`` (positions of ``categorical_`` in
    ``features_``), ``n_features_in_``, ``dropped_`` (identifier columns left out), ``warnings_`` (the
    high-cardinality warnings, one line each).
    """

    def __init__(
        self,
        features: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        min_category_count: int = 20,
        max_category_levels: int = 50,
        identifier_share: float = 0.5,
    ):
        self.features = features
        self.categorical = categorical
        self.min_category_count = min_category_count
        self.max_category_levels = max_category_levels
        self.identifier_share = identifier_share

    def fit(self, X: pd.DataFrame, y=None) -> FeaturePreprocessor:
        """Freeze the feature order and the categorical levels from the training rows ``X``."""
        features = [str(c) for c in (X.columns if self.features is None else self.features)]
        if len(set(features)) != len(features):
            dupes = sorted({c for c in features if features.count(c) > 1})
            raise ValueError(f"duplicate feature names: {dupes}")
        check_columns(X, features)
        if self.categorical is None:
            categorical = [c for c in features if _is_text(X[c])]
        else:
            categorical = [str(c) for c in self.categorical]
            unknown = [c for c in categorical if c not in features]
            if unknown:
                raise ValueError(f"categorical column(s) not among the features: {unknown}")
        if self.min_category_count < 1:
            raise ValueError(f"min_category_count must be >= 1, got {self.min_category_count}")
        max_levels, share = self.max_category_levels, self.identifier_share
        if isinstance(max_levels, bool) or not isinstance(max_levels, int) or max_levels < 1:
            raise ValueError(f"max_category_levels must be a whole number >= 1, got {max_levels!r}")
        categories: dict[str, list[str]] = {}
        notes: list[str] = []
        dropped: list[str] = []
        for c in categorical:
            counts = X[c].dropna().astype(str).value_counts()
            if len(counts) > share * len(X) and len(counts) > max_levels:
                dropped.append(c)
                notes.append(
                    f"categorical feature {c!r} has {len(counts):,} distinct values in {len(X):,} training rows "
                    f"(more than {share:.0%}): an identifier, not a category; dropped from the features"
                )
                continue
            frequent = counts[(counts.to_numpy() >= self.min_category_count) & (counts.index != OTHER)]
            if len(frequent) > max_levels:
                # the most frequent, ties broken by name, so the kept set does not depend on row order
                top = frequent.sort_index().sort_values(ascending=False, kind="stable").index[:max_levels]
                notes.append(
                    f"categorical feature {c!r} has {len(frequent):,} levels seen at least {self.min_category_count} "
                    f"times ({len(counts):,} distinct): kept the {max_levels} most frequent, folded the other "
                    f"{len(frequent) - max_levels:,} into {OTHER!r} (train.max_category_levels)"
                )
                frequent = frequent[frequent.index.isin(top)]
            categories[c] = [*sorted(frequent.index.tolist()), OTHER]
        for note in notes:
            warnings.warn(note, HighCardinalityWarning, stacklevel=2)
        features = [c for c in features if c not in set(dropped)]
        self.dropped_ = dropped
        self.warnings_ = notes
        self.features_ = features
        self.categorical_ = [c for c in features if c in set(categorical) - set(dropped)]
        self.categories_ = categories
        self.categorical_indices_ = [features.index(c) for c in self.categorical_]
        self.n_features_in_ = len(features)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The fitted features of ``X`` as a float32 (n_rows, n_features) array, columns in ``features_``
        order. Raises ``ValueError`` naming every missing feature column."""
        check_is_fitted(self, "features_")
        check_columns(X, self.features_)
        out = np.empty((len(X), len(self.features_)), dtype=np.float32, order="F")
        cats = set(self.categorical_)
        for j, c in enumerate(self.features_):  # a loop over columns, never rows
            col = X[c]
            if c in cats:
                out[:, j] = self._codes(col, self.categories_[c])
            elif _is_text(col):
                raise ValueError(f"feature column {c!r} was numeric at training but is {col.dtype} now")
            else:
                out[:, j] = col.to_numpy(dtype=np.float32, na_value=np.nan)
        return out

    def category_codes(self, col: pd.Series, name: str) -> np.ndarray:
        """The codes ``transform`` gives the categorical feature ``name`` for the values ``col`` (float32; unseen
        levels -> the "__other__" code, missing stays NaN)."""
        check_is_fitted(self, "features_")
        return self._codes(col, self.categories_[name])

    @staticmethod
    def _codes(col: pd.Series, levels: list[str]) -> np.ndarray:
        codes = pd.Index(levels).get_indexer(col.astype(str)).astype(np.float32)
        codes[codes < 0] = len(levels) - 1  # unseen or folded -> "__other__" (the last level)
        codes[col.isna().to_numpy()] = np.nan  # missing stays missing
        return codes

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The output column names: ``features_``."""
        check_is_fitted(self, "features_")
        return np.asarray(self.features_, dtype=object)

    def to_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """``transform`` as a DataFrame with the fitted column names (float32; categoricals as codes)."""
        return pd.DataFrame(self.transform(X), columns=self.features_, index=X.index)
