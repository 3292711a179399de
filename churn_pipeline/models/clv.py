"""Customer lifetime value over the CLV horizon: future revenue and expected order count, one estimator.

Grain: one row per (customer, cutoff). Targets at cutoff ``c`` (horizon ``h`` = ``labels.clv_horizon_days``):
``future_revenue`` = orders minus refunds in ``[c, c + h)`` in the shop's currency (zero for about half the
rows, heavy right tail, slightly negative when refunds exceed new orders) and ``future_orders`` = orders in
``[c, c + h)``. Features see only ``< c``.

Two revenue models, selected by ``objective``:

- ``"tweedie"``: one LightGBM booster with the Tweedie objective (compound Poisson-Gamma, log link; variance
  power ``tweedie_variance_power``), trained on revenue clipped at 0 (Tweedie needs y >= 0).
- ``"two_part"``: P(any order in the horizon) from a binary booster times E[revenue | any order] from a
  Gamma booster (log link, so it estimates the conditional mean directly, not a log-scale median) fitted on
  the buyers only, their net revenue floored at ``MIN_SPEND`` (Gamma needs y > 0; a fully refunded buyer
  counts as ``MIN_SPEND``).

Either way a separate Poisson booster predicts ``future_orders`` (``predict_orders``). Every booster stops
early on its own validation deviance (Tweedie / log loss / Gamma / Poisson); ``early_stopping_metric="gini"``
stops the revenue booster on the normalised Gini of its validation predictions instead (rank-based, blind to
a seasonal level shift between training and validation cutoffs).

Structural prior (``offset``, Tweedie only): the name of a feature holding an expected revenue over the
horizon computed point-in-time, by default ``bgnbd_clv`` (BG/NBD expected orders times Gamma-Gamma order
value, refitted at every cutoff: :mod:`features.build`). The revenue booster starts from its log (floored at
``MIN_SPEND``; missing priors get the median training log, ``offset_fill_``) and learns corrections; the
prior is added back at predict time.
Measured: docs/experiments.md#clv-prior. The estimator's defaults are params.yaml's ``train.clv``
(Tweedie power 1.5 with the ``bgnbd_clv`` offset, Gini stopping, learning rate 0.075, at most 400 trees, 63 bins;
``tests/pipelines/test_params_defaults.py``); the measurements (docs/experiments.md#clv-objectives) ran with the
earlier defaults (power 1.3, no offset, deviance stopping, learning rate 0.05, 1000 trees, 255 bins).

Measured with :func:`compare_clv_objectives`, Tweedie against two-part on the synthetic shop:
docs/experiments.md#clv-objectives.

The default is ``"tweedie"``: CLV is an expected value, and the metrics of a mean (RMSE, the bias of the
total a budget is built on) favour it, with one booster instead of two; ``two_part`` ranks the top spenders
slightly better (Gini +0.008) and its MAE is 0.9 % lower. It stays available, and
:func:`compare_clv_objectives` re-runs this comparison on a shop's own data.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from churn_pipeline.btyd import _exp, _log
from churn_pipeline.models import metrics
from churn_pipeline.models.churn import booster_kwargs, early_stopping, importance_frame
from churn_pipeline.models.preprocess import FeaturePreprocessor

__all__ = ["MIN_SPEND", "OBJECTIVES", "CLVRegressor", "compare_clv_objectives"]

OBJECTIVES = ("tweedie", "two_part")
STOPPING_METRICS = ("deviance", "gini")
# Floor of a buyer's net revenue for the Gamma part of the two-part model (currency units).
MIN_SPEND = 1.0


def _values(y: Any, name: str, integer: bool = False) -> np.ndarray:
    s = y if isinstance(y, pd.Series) else pd.Series(np.asarray(y))
    if s.isna().any():
        raise ValueError(f"{name} has {int(s.isna().sum())} null value(s): drop rows whose CLV horizon is incomplete")
    v = s.to_numpy(dtype=np.float64)
    if integer and ((v < 0).any() or (v != np.round(v)).any()):
        raise ValueError(f"{name} must be non-negative whole numbers (order counts)")
    return v


class CLVRegressor(RegressorMixin, BaseEstimator):
    """Expected net revenue (and order count) per (customer, cutoff) over the CLV horizon.

    ``fit(X_train, y_train, X_valid, y_valid, orders_train, orders_valid)``: ``y_*`` is ``future_revenue``,
    ``orders_*`` is ``future_orders`` for the same rows (no nulls); ``X_*`` feature tables (extra columns
    ignored). ``predict(X)`` -> expected revenue (currency, >= 0); ``predict_orders(X)`` -> expected number
    of orders (>= 0). A table lacking a fitted feature column raises ``ValueError`` naming the columns.
    ``offset``: a numeric feature holding a prior expected revenue the Tweedie booster starts from;
    ``early_stopping_metric``: ``"deviance"`` or ``"gini"`` (revenue booster; module docstring).
    """

    def __init__(
        self,
        features: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        min_category_count: int = 20,
        max_category_levels: int = 50,
        objective: str = "tweedie",
        tweedie_variance_power: float = 1.5,
        offset: str | None = "bgnbd_clv",
        early_stopping_metric: str = "gini",
        num_leaves: int = 31,
        learning_rate: float = 0.075,
        n_estimators: int = 400,
        min_child_samples: int = 100,
        feature_fraction: float = 0.8,
        bagging_fraction: float = 0.8,
        bagging_freq: int = 1,
        lambda_l2: float = 1.0,
        max_bin: int = 63,
        early_stopping_rounds: int = 50,
        seed: int = 42,
        n_jobs: int = -1,
    ):
        self.features = features
        self.categorical = categorical
        self.min_category_count = min_category_count
        self.max_category_levels = max_category_levels
        self.objective = objective
        self.tweedie_variance_power = tweedie_variance_power
        self.offset = offset
        self.early_stopping_metric = early_stopping_metric
        self.num_leaves = num_leaves
        self.learning_rate = learning_rate
        self.n_estimators = n_estimators
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.bagging_freq = bagging_freq
        self.lambda_l2 = lambda_l2
        self.max_bin = max_bin
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.n_jobs = n_jobs

    def _boost(
        self,
        cls: type,
        params: dict[str, Any],
        metric: Any,
        Xt: np.ndarray,
        yt: np.ndarray,
        Xv,
        yv,
        init: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[lgb.LGBMModel, int]:
        if callable(metric):  # the custom metric alone decides early stopping
            params = {**params, "metric": "None"}
        model = cls(**booster_kwargs(self), **params)
        model.fit(
            Xt,
            yt,
            init_score=None if init is None else init[0],
            eval_X=(Xv,),
            eval_y=(yv,),
            eval_init_score=None if init is None else [init[1]],
            eval_metric=metric,
            feature_name=list(self.preprocessor_.features_),
            categorical_feature=list(self.preprocessor_.categorical_indices_),
            callbacks=early_stopping(self),
        )
        return model, int(model.best_iteration_ or self.n_estimators)

    def fit(
        self,
        X_train: pd.DataFrame,
        y_train: Any,
        X_valid: pd.DataFrame,
        y_valid: Any,
        orders_train: Any,
        orders_valid: Any,
    ) -> CLVRegressor:
        """Preprocessor on the training rows; revenue booster(s) and the orders booster with early stopping on
        the validation rows. Returns self."""
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if not 1.0 < self.tweedie_variance_power < 2.0:
            raise ValueError(f"tweedie_variance_power must lie in (1, 2), got {self.tweedie_variance_power}")
        if self.early_stopping_metric not in STOPPING_METRICS:
            raise ValueError(
                f"early_stopping_metric must be one of {STOPPING_METRICS}, got {self.early_stopping_metric!r}"
            )
        if self.offset is not None and self.objective != "tweedie":
            raise ValueError("offset needs objective 'tweedie' (one log-link booster to start from the prior)")
        yt, yv = _values(y_train, "y_train"), _values(y_valid, "y_valid")
        ot, ov = _values(orders_train, "orders_train", True), _values(orders_valid, "orders_valid", True)
        if not (len(yt) == len(ot) == len(X_train) and len(yv) == len(ov) == len(X_valid)):
            raise ValueError("X, y and orders must have the same number of rows")

        self.preprocessor_ = FeaturePreprocessor(
            self.features, self.categorical, self.min_category_count, self.max_category_levels
        )
        Xt = self.preprocessor_.fit_transform(X_train)
        Xv = self.preprocessor_.transform(X_valid)
        self.offset_fill_ = 0.0
        init = None
        if self.offset is not None:
            if self.offset not in self.preprocessor_.features_ or self.offset in self.preprocessor_.categorical_:
                raise ValueError(f"offset {self.offset!r} must be one of the numeric features (it is read at predict)")
            train_offset = self._offset_log(Xt, fill=False)
            seen = train_offset[np.isfinite(train_offset)]
            self.offset_fill_ = float(np.median(seen)) if seen.size else 0.0
            init = (self._offset_log(Xt), self._offset_log(Xv))
        self.boosters_: dict[str, lgb.LGBMModel] = {}
        self.best_iterations_: dict[str, int] = {}

        def put(name: str, fitted: tuple[lgb.LGBMModel, int]) -> None:
            self.boosters_[name], self.best_iterations_[name] = fitted

        revenue_metric = _GiniEval() if self.early_stopping_metric == "gini" else None
        if self.objective == "tweedie":
            params = {"objective": "tweedie", "tweedie_variance_power": self.tweedie_variance_power}
            put(
                "revenue",
                self._boost(
                    lgb.LGBMRegressor,
                    params,
                    revenue_metric or "tweedie",
                    Xt,
                    np.clip(yt, 0, None),
                    Xv,
                    np.clip(yv, 0, None),
                    init,
                ),
            )
        else:
            bt, bv = ot > 0, ov > 0
            if bt.all() or not bt.any() or bv.all() or not bv.any():
                raise ValueError("two_part needs buyers and non-buyers in both training and validation rows")
            put(
                "purchase",
                self._boost(
                    lgb.LGBMClassifier,
                    {"objective": "binary"},
                    "binary_logloss",
                    Xt,
                    bt.astype(np.int8),
                    Xv,
                    bv.astype(np.int8),
                ),
            )
            spend_t, spend_v = np.maximum(yt[bt], MIN_SPEND), np.maximum(yv[bv], MIN_SPEND)
            put(
                "spend",
                self._boost(lgb.LGBMRegressor, {"objective": "gamma"}, "gamma", Xt[bt], spend_t, Xv[bv], spend_v),
            )
        put("orders", self._boost(lgb.LGBMRegressor, {"objective": "poisson"}, "poisson", Xt, ot, Xv, ov))
        self.n_features_in_ = self.preprocessor_.n_features_in_
        self.n_train_rows_, self.n_valid_rows_ = len(yt), len(yv)
        return self

    def _offset_log(self, Xp: np.ndarray, fill: bool = True) -> np.ndarray:
        """log of the ``offset`` column (prior expected revenue), floored at ``MIN_SPEND``; missing priors get
        ``offset_fill_``, the median training value (NaN when ``fill`` is False)."""
        prior = Xp[:, self.preprocessor_.features_.index(self.offset)].astype(np.float64)
        # The C library's log (and exp in _predict) on every CPU, not numpy's AVX-512 kernels: the same bits on
        # every machine (churn_pipeline.btyd, "Reproducible to the bit").
        log_prior = _log(np.maximum(prior, MIN_SPEND))
        return np.where(np.isnan(log_prior), self.offset_fill_, log_prior) if fill else log_prior

    def _predict(self, name: str, Xp: np.ndarray) -> np.ndarray:
        # The Booster itself: the matrix is already checked and ordered by the preprocessor.
        booster = self.boosters_[name].booster_
        n = self.best_iterations_[name]
        if name == "revenue" and getattr(self, "offset", None) is not None:
            # LightGBM does not store the init score: add the prior back on the log scale.
            return _exp(np.asarray(booster.predict(Xp, raw_score=True, num_iteration=n), float) + self._offset_log(Xp))
        return np.asarray(booster.predict(Xp, num_iteration=n), dtype=np.float64)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Expected net revenue over the CLV horizon (currency units), shape (n,)."""
        check_is_fitted(self, "boosters_")
        Xp = self.preprocessor_.transform(X)
        if self.objective == "tweedie":
            return self._predict("revenue", Xp)
        return self._predict("purchase", Xp) * self._predict("spend", Xp)

    def predict_orders(self, X: pd.DataFrame) -> np.ndarray:
        """Expected number of orders over the CLV horizon, shape (n,)."""
        check_is_fitted(self, "boosters_")
        return self._predict("orders", self.preprocessor_.transform(X))

    @property
    def features_(self) -> list[str]:
        """The fitted feature columns, in model order."""
        check_is_fitted(self, "preprocessor_")
        return list(self.preprocessor_.features_)

    def feature_importance(self, part: str = "revenue") -> pd.DataFrame:
        """(feature, gain, split) of one part, by gain descending. ``part``: ``"revenue"`` (for ``two_part``
        the sum over its ``"purchase"`` and ``"spend"`` boosters), ``"orders"``, or a key of ``boosters_``."""
        check_is_fitted(self, "boosters_")
        names = ["purchase", "spend"] if part == "revenue" and self.objective == "two_part" else [part]
        unknown = [n for n in names if n not in self.boosters_]
        if unknown:
            raise ValueError(f"no booster {part!r}; fitted parts: {['revenue', *self.boosters_]}")
        frames = [importance_frame(self.boosters_[n].booster_, self.best_iterations_[n]) for n in names]
        total = pd.concat(frames).groupby("feature", as_index=False)[["gain", "split"]].sum()
        return total.sort_values(["gain", "feature"], ascending=[False, True], ignore_index=True)


class _GiniEval:
    """LightGBM eval function: normalised Gini of the validation predictions (higher is better). Rank-based,
    so a level shift between the training and validation periods (a season) does not move it.

    LightGBM passes the same validation label array every round: its Gini (the denominator, a third of the cost:
    0.1 of 0.27 s per round on 900,000 rows) is computed once per array, the same value to the last bit."""

    def __init__(self) -> None:
        self._labels: np.ndarray | None = None
        self._truth = 0.0

    def __call__(self, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[str, float, bool]:
        if y_true is not self._labels:
            self._labels, self._truth = y_true, metrics.truth_gini(y_true)
        return "gini", metrics.normalized_gini(y_true, y_pred, truth=self._truth), True


def compare_clv_objectives(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    test: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str] | None = None,
    revenue_label: str = "future_revenue",
    orders_label: str = "future_orders",
    objectives: Sequence[str] = OBJECTIVES,
    **params: Any,
) -> pd.DataFrame:
    """Fit one :class:`CLVRegressor` per objective on the same split and score it on the test rows.

    ``train`` / ``valid`` / ``test``: panel rows of the (purged, time-ordered) split with complete CLV labels.
    ``params``: further ``CLVRegressor`` arguments; without an ``offset`` among them both objectives start from
    the base rate (``two_part`` takes no offset), so they compete like for like. Returns one row per objective
    (index ``objective``) with the revenue metrics on raw net revenue: ``mae``, ``rmse`` (currency),
    ``normalized_gini``, ``spearman``, ``bias`` (mean error, currency), ``total_bias`` (relative error of the
    total, a fraction), plus ``orders_mae`` (of the Poisson orders model), ``n_test_rows`` and ``fit_seconds``
    (wall clock).
    """
    y = test[revenue_label].to_numpy(dtype=np.float64)
    params = {"offset": None, **params}
    rows = []
    for objective in objectives:
        start = time.perf_counter()
        model = CLVRegressor(features=features, categorical=categorical, objective=objective, **params).fit(
            train, train[revenue_label], valid, valid[revenue_label], train[orders_label], valid[orders_label]
        )
        seconds = time.perf_counter() - start
        pred = model.predict(test)
        rows.append(
            {
                "objective": objective,
                "mae": metrics.mae(y, pred),
                "rmse": metrics.rmse(y, pred),
                "normalized_gini": metrics.normalized_gini(y, pred),
                "spearman": metrics.spearman(y, pred),
                "bias": metrics.bias(y, pred),
                "total_bias": metrics.bias(y, pred, relative=True),
                "orders_mae": metrics.mae(test[orders_label].to_numpy(dtype=np.float64), model.predict_orders(test)),
                "n_test_rows": len(y),
                "fit_seconds": seconds,
            }
        )
    return pd.DataFrame(rows).set_index("objective")
