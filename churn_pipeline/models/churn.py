"""Churn classifier: preprocessing + LightGBM + a probability calibrator in one scikit-learn estimator.

Grain: one row per (customer, cutoff). The label ``churned`` at cutoff ``c`` is "no order in ``[c, c + churn
horizon)``"; features see only ``< c``. Training rows come from the training cutoffs, early stopping and
calibration from the validation cutoffs (later in time, label horizons purged: :mod:`models.split`), so the
probabilities are calibrated on data the booster did not fit. No test row enters any fit.

Calibration (``calibration="auto"``), two steps on the validation rows:

1. Level check (only with an ``offset`` prior): which *level* of the probabilities carries forward in time,
   the booster's own, learnt from the training cutoffs, or the prior's, re-estimated at every cutoff? Both
   are fitted before the validation cutoffs, so the validation rows test both out of time: the booster's
   ``sigmoid(margin)`` against the prior level ``sigmoid(margin - m)``, where ``m`` is the trees' mean
   correction (log-odds) over the training rows (a stride sample of at most 200,000), so that the
   corrections average zero there; the ranking is the same. If the prior level has the lower validation
   Brier score, the level learnt on earlier cutoffs did not carry forward to later ones, so a level learnt
   on the validation cutoffs is not trusted to carry forward to the test and scoring cutoffs either: the
   prior level is kept (method ``"prior"``) and no label of the validation rows enters the probabilities
   (they chose the number of trees only). Ties go to the booster's level.
2. Otherwise the validation rows are split in two halves by a deterministic hash of ``customer_id`` (a
   customer's rows stay in one half). Isotonic regression and Platt scaling (a logistic regression on the
   booster's log-odds) are each fitted on one half and scored on the other, both ways round (2-fold
   cross-fitting), so every validation row gets an out-of-fold calibrated probability from both methods.
   The method with the lower out-of-fold Brier score is chosen and refitted on all validation rows.

Step 1 cannot compare against step 2: a calibrator fitted on the validation cutoffs wins on them by
construction whatever happens later (customer halves share the cutoff, hence its season). ``calibration_report_``
records the choice with every candidate's Brier score and ECE on the validation rows (isotonic and Platt
out of fold; the uncalibrated booster and the prior level on all rows, as neither saw their labels) and the
prior level's shift (``prior_shift``, log-odds). ``calibration`` ``"isotonic"``, ``"sigmoid"`` or
``"prior"`` fixes the method. The same validation rows also chose the number of trees (early stopping on log
loss): a single integer, so they stay close to unseen for the calibrator.

Measured, the test Brier score of each calibration on Online Retail II and the synthetic shop:
docs/experiments.md#churn-calibration.

Class imbalance (``imbalance``): churners are the *majority* here (58-67 % per cutoff on the synthetic
shop: the panel keeps customers up to a year after their last order), and the model's output is a
calibrated probability, not a decision at a fixed threshold, so re-weighting classes only distorts the raw
probabilities that calibration then has to undo.
The default is ``"none"`` (measured: docs/experiments.md#churn-imbalance). ``"is_unbalance"`` (LightGBM's class
re-weighting) and ``"scale_pos_weight"`` (weight of the positive class; None = n_neg / n_pos of the training rows) stay
available for shops where churners are rare.

Structural prior (``offset``): the name of a feature holding a churn probability computed point-in-time,
by default ``bgnbd_churn_probability`` (BG/NBD refitted at every cutoff on that cutoff's customers:
:mod:`features.build`). The booster starts from its log-odds (LightGBM ``init_score``) instead of the base
rate and learns only corrections (engagement, seasonality, whatever the counting model misses); the prior's
log-odds are added back at predict time, and a missing prior gets the median training log-odds
(``offset_fill_``). Where labelled history is short or unlike the present, the corrections stay small and the
model falls back on the structural prior instead of extrapolating trees.
Measured: docs/experiments.md#churn-prior. The prior is also what makes the ``"prior"`` level possible: without
an offset the level check is skipped.

Early stopping (``early_stopping_metric``): ``"logloss"`` or ``"auc"`` (the default). Log loss also scores the
level of the probabilities, so when validation cutoffs sit in another season than the training cutoffs it can
stop after one tree; AUC only ranks (calibration sets the level afterwards).
Measured: docs/experiments.md#churn-early-stopping. The estimator's defaults are params.yaml's
``train.churn`` (the offset, AUC stopping, learning rate 0.1, at most 300 trees, 63 bins;
``tests/pipelines/test_params_defaults.py``).

Determinism: ``deterministic=True``, ``force_row_wise=True`` (measured 2.3 s against 3.3 s column-wise on the
default shop's panel, 2 threads; forcing one also removes LightGBM's timing-based choice), one ``seed`` for every
LightGBM random source, and a fixed customer hash for the calibration halves: the same data and parameters
give identical predictions (measured identical with 1 and 2 threads too), and on any CPU: ``exp``/``log`` come
from the C library and Platt scaling runs without BLAS, as in :mod:`churn_pipeline.btyd`
(``tests/models/test_reproducible_models.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import boxcox1p, expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.utils.validation import check_is_fitted

from churn_pipeline.btyd import _exp, _log
from churn_pipeline.models import metrics
from churn_pipeline.models.preprocess import FeaturePreprocessor

__all__ = ["ChurnClassifier", "customer_half"]

IMBALANCE_MODES = ("none", "is_unbalance", "scale_pos_weight")
CALIBRATION_MODES = ("auto", "isotonic", "sigmoid", "prior")
STOPPING_METRICS = {"logloss": "binary_logloss", "auc": "auc"}
# A prior probability used as the booster's starting point is kept inside [OFFSET_EPS, 1 - OFFSET_EPS], so
# its log-odds stay finite.
OFFSET_EPS = 1e-4
# Calibrated probabilities are kept inside [PROB_EPS, 1 - PROB_EPS]: isotonic regression can return exact
# 0 or 1, a certainty no churn model has.
PROB_EPS = 1e-6
# The booster's mean correction (the "prior" level) is estimated on at most this many training rows (a stride
# sample): its standard error is then far below anything that moves a Brier score, at any panel size.
LEVEL_SAMPLE_ROWS = 200_000
# Platt scaling's Newton iterations stop once a step moves (a, b) by less than PLATT_TOL (absolute plus relative
# to their size; Newton converges quadratically, so the next step would be ~PLATT_TOL**2), or after
# PLATT_MAX_ITER steps (separable halves, where the unpenalised optimum lies at infinity; sklearn's limit).
PLATT_TOL = 1e-10
PLATT_MAX_ITER = 100


def booster_kwargs(est: Any) -> dict[str, Any]:
    """LightGBM scikit-learn keyword arguments shared by every booster of the package, from an estimator
    carrying the common hyper-parameters (names as in params files: LightGBM's own names)."""
    return {
        "n_estimators": est.n_estimators,
        "learning_rate": est.learning_rate,
        "num_leaves": est.num_leaves,
        "min_child_samples": est.min_child_samples,
        "colsample_bytree": est.feature_fraction,
        "subsample": est.bagging_fraction,
        "subsample_freq": est.bagging_freq,
        "reg_lambda": est.lambda_l2,
        # Histogram resolution: fewer bins train faster on big panels at a small cost in fit.
        "max_bin": getattr(est, "max_bin", 255),
        "random_state": est.seed,
        "n_jobs": est.n_jobs,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }


def early_stopping(est: Any) -> list:
    """The early-stopping callback (first metric only, silent)."""
    return [lgb.early_stopping(est.early_stopping_rounds, first_metric_only=True, verbose=False)]


def as_binary(y: Any, name: str = "y") -> np.ndarray:
    """Labels as a 0/1 int8 array; raises ``ValueError`` on nulls or values other than 0/1/False/True."""
    s = pd.Series(y) if not isinstance(y, pd.Series) else y
    if s.isna().any():
        raise ValueError(f"{name} has {int(s.isna().sum())} null label(s): drop rows whose label horizon is incomplete")
    v = s.to_numpy(dtype=np.float64)
    if not np.isin(v, (0.0, 1.0)).all():
        raise ValueError(f"{name} must be binary (0/1 or booleans)")
    return v.astype(np.int8)


def customer_half(ids: pd.Series | np.ndarray | Sequence[str]) -> np.ndarray:
    """0/1 half of each row, from a fixed hash of its customer id (pandas' SipHash with its default key):
    deterministic across runs and machines, and the same customer always lands in the same half."""
    s = pd.Series(np.asarray(ids)).astype(str)
    return (pd.util.hash_pandas_object(s, index=False).to_numpy() % np.uint64(2)).astype(np.int8)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` with the C library's ``exp`` on every CPU (scipy's ``expit``), not numpy's
    AVX-512 kernel: the same bits on every machine (:mod:`churn_pipeline.btyd`, "Reproducible to the bit")."""
    return expit(z)


def _logistic_loss(z: np.ndarray, y: np.ndarray) -> float:
    """Summed negative log-likelihood of labels ``y`` under log-odds ``z``: ``sum(log(1 + e^z) - y z)``,
    stable for any ``z``, with the C library's ``exp`` and ``log1p`` (as :func:`_sigmoid`)."""
    return float((np.maximum(z, 0.0) + boxcox1p(_exp(-np.abs(z)), 0.0) - y * z).sum())


class _Platt:
    """Platt scaling: ``p = sigmoid(a * margin + b)``, fitted by unpenalised logistic regression."""

    def fit(self, margin: np.ndarray, y: np.ndarray) -> _Platt:
        """Newton's method on the two parameters from ``(1, 0)`` (the booster's own probabilities), each step
        halved until the loss does not rise. Not sklearn's ``LogisticRegression``: its solver runs on OpenBLAS,
        whose kernels are chosen per CPU (:mod:`churn_pipeline.btyd`, "Reproducible to the bit"); here every
        operation is elementwise or a fixed-order sum, so the same inputs give the same bits everywhere."""
        x, t = np.asarray(margin, dtype=np.float64), np.asarray(y, dtype=np.float64)
        a, b = 1.0, 0.0
        loss = _logistic_loss(a * x + b, t)
        for _ in range(PLATT_MAX_ITER):
            p = _sigmoid(a * x + b)
            r, w = p - t, p * (1.0 - p)
            ga, gb = float((r * x).sum()), float(r.sum())
            haa, hab, hbb = float((w * x * x).sum()), float((w * x).sum()), float(w.sum())
            det = haa * hbb - hab * hab
            if not det > 0.0:
                break
            da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
            step = 1.0
            while True:
                trial = _logistic_loss((a - step * da) * x + (b - step * db), t)
                if trial <= loss or step < 1e-10:
                    break
                step *= 0.5
            if not trial <= loss:
                break
            a, b, loss = a - step * da, b - step * db, trial
            if max(abs(step * da) / (1.0 + abs(a)), abs(step * db) / (1.0 + abs(b))) < PLATT_TOL:
                break
        self.a_, self.b_ = a, b
        return self

    def predict(self, margin: np.ndarray) -> np.ndarray:
        return _sigmoid(self.a_ * margin + self.b_)


class _Isotonic:
    """Isotonic regression of the label on the booster's margin (non-decreasing, clipped outside the range)."""

    def fit(self, margin: np.ndarray, y: np.ndarray) -> _Isotonic:
        self.iso_ = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        self.iso_.fit(margin, y)
        return self

    def predict(self, margin: np.ndarray) -> np.ndarray:
        return self.iso_.predict(margin)


class _PriorLevel:
    """The booster's corrections re-centred on the structural prior: ``p = sigmoid(margin - mean correction)``.

    ``margin`` is the prior's log-odds plus the trees' correction; ``mean correction`` is the trees' mean
    correction over the training rows (log-odds), so the corrections average zero there and the level of the
    probabilities is the prior's, re-estimated at every cutoff. Fitted on training rows only: no label of
    the validation rows goes into it."""

    def fit(self, correction_train: np.ndarray) -> _PriorLevel:
        self.shift_ = -float(np.mean(correction_train))
        return self

    def predict(self, margin: np.ndarray) -> np.ndarray:
        return _sigmoid(margin + self.shift_)


_CALIBRATORS = {"isotonic": _Isotonic, "sigmoid": _Platt}


class ChurnClassifier(ClassifierMixin, BaseEstimator):
    """P(churn in the horizon) for each (customer, cutoff) row: ONE artefact from feature table to calibrated
    probability.

    ``fit(X_train, y_train, X_valid, y_valid)`` fits the preprocessor on the training rows, LightGBM with
    early stopping on the validation rows, then the calibration: the prior level (trees' mean training
    correction removed) when it beats the booster's own level on the validation rows, else a calibrator fitted
    on them (module docstring; ``calibration``: ``"auto"``, ``"isotonic"``, ``"sigmoid"`` or ``"prior"``).
    ``X_*`` are feature tables (extra columns such as keys and labels are ignored); ``X_valid`` must also
    carry ``calibration_key`` (``customer_id``) for the calibration halves. ``y_*``: ``churned`` (0/1 or
    bool, no nulls).

    ``offset``: a numeric feature holding a prior P(churn) the booster starts from (module docstring);
    ``early_stopping_metric``: ``"logloss"`` or ``"auc"`` on the validation rows.

    ``predict_proba(X)`` -> (n, 2) calibrated probabilities [P(stay), P(churn)]; ``predict(X)`` -> 1 where
    P(churn) >= 0.5. A table lacking a fitted feature column raises ``ValueError`` naming the columns.
    """

    def __init__(
        self,
        features: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        min_category_count: int = 20,
        max_category_levels: int = 50,
        imbalance: str = "none",
        scale_pos_weight: float | None = None,
        calibration: str = "auto",
        calibration_key: str = "customer_id",
        offset: str | None = "bgnbd_churn_probability",
        early_stopping_metric: str = "auc",
        num_leaves: int = 31,
        learning_rate: float = 0.1,
        n_estimators: int = 300,
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
        self.imbalance = imbalance
        self.scale_pos_weight = scale_pos_weight
        self.calibration = calibration
        self.calibration_key = calibration_key
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

    # ------------------------------------------------------------------ fit
    def fit(self, X_train: pd.DataFrame, y_train: Any, X_valid: pd.DataFrame, y_valid: Any) -> ChurnClassifier:
        """Preprocessor and booster on the training rows (early stopping on the validation rows), then the
        calibration chosen on the validation rows (module docstring). Returns self."""
        if self.imbalance not in IMBALANCE_MODES:
            raise ValueError(f"imbalance must be one of {IMBALANCE_MODES}, got {self.imbalance!r}")
        if self.calibration not in CALIBRATION_MODES:
            raise ValueError(f"calibration must be one of {CALIBRATION_MODES}, got {self.calibration!r}")
        if self.early_stopping_metric not in STOPPING_METRICS:
            raise ValueError(
                f"early_stopping_metric must be one of {tuple(STOPPING_METRICS)}, got {self.early_stopping_metric!r}"
            )
        if self.calibration == "prior" and self.offset is None:
            raise ValueError("calibration 'prior' keeps the level of the offset prior: set offset to a prior feature")
        if self.calibration_key not in X_valid.columns:
            raise ValueError(
                f"X_valid needs the column {self.calibration_key!r}: validation rows are split into "
                f"calibration halves by customer"
            )
        yt, yv = as_binary(y_train, "y_train"), as_binary(y_valid, "y_valid")
        if len(yt) != len(X_train) or len(yv) != len(X_valid):
            raise ValueError("X and y must have the same number of rows")
        if yt.min() == yt.max() or yv.min() == yv.max():
            raise ValueError("training and validation labels must each contain both classes")

        self.preprocessor_ = FeaturePreprocessor(
            self.features, self.categorical, self.min_category_count, self.max_category_levels
        )
        Xt = self.preprocessor_.fit_transform(X_train)
        Xv = self.preprocessor_.transform(X_valid)
        self.offset_fill_ = 0.0
        if self.offset is not None:
            if self.offset not in self.preprocessor_.features_ or self.offset in self.preprocessor_.categorical_:
                raise ValueError(f"offset {self.offset!r} must be one of the numeric features (it is read at predict)")
            train_offset = self._offset_margin(Xt, fill=False)
            seen = train_offset[np.isfinite(train_offset)]
            self.offset_fill_ = float(np.median(seen)) if seen.size else 0.0

        extra: dict[str, Any] = {}
        if self.imbalance == "is_unbalance":
            extra["is_unbalance"] = True
        elif self.imbalance == "scale_pos_weight":
            n_pos = int(yt.sum())
            extra["scale_pos_weight"] = (
                float(self.scale_pos_weight) if self.scale_pos_weight is not None else (len(yt) - n_pos) / n_pos
            )
        self.booster_params_ = {"objective": "binary", **booster_kwargs(self), **extra}
        self.model_ = lgb.LGBMClassifier(**self.booster_params_)
        self.model_.fit(
            Xt,
            yt,
            init_score=self._offset_margin(Xt),
            eval_X=(Xv,),
            eval_y=(yv,),
            eval_init_score=[self._offset_margin(Xv)],
            eval_metric=STOPPING_METRICS[self.early_stopping_metric],
            feature_name=list(self.preprocessor_.features_),
            categorical_feature=list(self.preprocessor_.categorical_indices_),
            callbacks=early_stopping(self),
        )
        self.best_iteration_ = int(self.model_.best_iteration_ or self.n_estimators)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = self.preprocessor_.n_features_in_
        self.n_train_rows_, self.n_valid_rows_ = len(yt), len(yv)
        self.positive_rate_train_ = float(yt.mean())

        correction_train = None
        if self.offset is not None:
            # The trees' corrections to the prior on (a stride sample of) the training rows: their mean is the
            # level shift the booster learnt from the training cutoffs.
            correction_train = self._trees(Xt[:: max(1, -(-len(Xt) // LEVEL_SAMPLE_ROWS))])
        self._fit_calibrator(self._margin(Xv), yv, customer_half(X_valid[self.calibration_key]), correction_train)
        return self

    def _fit_calibrator(
        self, margin: np.ndarray, y: np.ndarray, half: np.ndarray, correction_train: np.ndarray | None
    ) -> None:
        """Cross-fit isotonic and Platt over the two customer halves; with an offset, score the prior level
        (``_PriorLevel``, fitted on ``correction_train``) against the booster's own level on all validation
        rows; choose (module docstring) and refit."""
        for h in (0, 1):
            yh = y[half == h]
            if yh.size == 0 or yh.min() == yh.max():
                raise ValueError("each calibration half of the validation rows needs both classes")
        oof = {name: np.empty(y.size) for name in _CALIBRATORS}
        for h in (0, 1):
            fit_rows, eval_rows = half == h, half != h
            for name, cls in _CALIBRATORS.items():
                cal = cls().fit(margin[fit_rows], y[fit_rows])
                oof[name][eval_rows] = cal.predict(margin[eval_rows])
        scored = {"uncalibrated": _sigmoid(margin), **{k: np.clip(v, PROB_EPS, 1 - PROB_EPS) for k, v in oof.items()}}
        prior = None if correction_train is None else _PriorLevel().fit(correction_train)
        if prior is not None:
            # Fitted without validation labels: scored on every validation row, out of time like the booster.
            scored["prior"] = prior.predict(margin)
        report: dict[str, Any] = {}
        for name, p in scored.items():
            report[f"brier_{name}"] = metrics.brier(y, p)
            report[f"ece_{name}"] = metrics.expected_calibration_error(y, p)
        chosen = self.calibration
        if chosen == "auto":
            # Level check first, between the two levels fitted before the validation cutoffs (ties: the
            # booster's); then isotonic or Platt, ties to Platt scaling: two parameters, smooth.
            if prior is not None and report["brier_prior"] < report["brier_uncalibrated"]:
                chosen = "prior"
            else:
                chosen = "isotonic" if report["brier_isotonic"] < report["brier_sigmoid"] else "sigmoid"
        self.calibrator_ = prior if chosen == "prior" else _CALIBRATORS[chosen]().fit(margin, y)
        self.calibration_report_ = {
            "method": chosen,
            "selection": "auto" if self.calibration == "auto" else "fixed",
            **report,
            "n_rows": int(y.size),
            "n_rows_half_0": int((half == 0).sum()),
            "n_rows_half_1": int((half == 1).sum()),
            "positive_rate": float(y.mean()),
        }
        if prior is not None:
            # log-odds added to the booster's margin by the prior level: minus its mean training correction.
            self.calibration_report_["prior_shift"] = prior.shift_
        if chosen == "sigmoid":
            # slope 1, intercept 0 = the booster was already calibrated on these rows.
            self.calibration_report_["sigmoid_slope"] = self.calibrator_.a_
            self.calibration_report_["sigmoid_intercept"] = self.calibrator_.b_

    # -------------------------------------------------------------- predict
    def _offset_margin(self, Xp: np.ndarray, fill: bool = True) -> np.ndarray | None:
        """Log-odds of the ``offset`` column (None without an offset); missing priors get ``offset_fill_``, the
        median training log-odds (NaN when ``fill`` is False)."""
        if self.offset is None:
            return None
        p = np.clip(
            Xp[:, self.preprocessor_.features_.index(self.offset)].astype(np.float64), OFFSET_EPS, 1 - OFFSET_EPS
        )
        # The C library's log and log1p on every CPU, as in _sigmoid.
        margin = _log(p) - boxcox1p(-p, 0.0)
        return np.where(np.isnan(margin), self.offset_fill_, margin) if fill else margin

    def offset_contribution(self, Xp: np.ndarray) -> np.ndarray:
        """Per row of a preprocessed matrix, the offset prior's log-odds minus ``offset_fill_`` (its training
        median): what the prior adds to the raw score beyond a constant (zeros without an offset)."""
        if getattr(self, "offset", None) is None:  # estimators pickled before offsets existed have none
            return np.zeros(len(Xp))
        return self._offset_margin(Xp) - self.offset_fill_

    def _trees(self, Xp: np.ndarray) -> np.ndarray:
        """The trees' raw score up to the best iteration (with an offset: the correction to the prior)."""
        # The Booster itself: the matrix is already checked and ordered by the preprocessor.
        return np.asarray(self.model_.booster_.predict(Xp, raw_score=True, num_iteration=self.best_iteration_), float)

    def _margin(self, Xp: np.ndarray) -> np.ndarray:
        raw = self._trees(Xp)
        # LightGBM does not store the init score: the prior's log-odds are added back here.
        # getattr: estimators pickled before ``offset`` existed have no such attribute.
        return raw if getattr(self, "offset", None) is None else raw + self._offset_margin(Xp)

    def predict_margin(self, X: pd.DataFrame) -> np.ndarray:
        """The booster's raw score (log-odds, before calibration), shape (n,)."""
        check_is_fitted(self, "calibrator_")
        return self._margin(self.preprocessor_.transform(X))

    def predict_uncalibrated(self, X: pd.DataFrame) -> np.ndarray:
        """The booster's own P(churn), ``sigmoid(margin)``, shape (n,): for comparison with the calibrated one."""
        return _sigmoid(self.predict_margin(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities, shape (n, 2): column 0 P(no churn), column 1 P(churn)."""
        p = np.clip(self.calibrator_.predict(self.predict_margin(X)), PROB_EPS, 1 - PROB_EPS)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 (churn) where the calibrated P(churn) >= 0.5, else 0."""
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)]

    # ------------------------------------------------------------ inspect
    @property
    def features_(self) -> list[str]:
        """The fitted feature columns, in model order."""
        check_is_fitted(self, "preprocessor_")
        return list(self.preprocessor_.features_)

    def feature_importance(self) -> pd.DataFrame:
        """Per feature: ``gain`` (total loss reduction of its splits) and ``split`` (number of splits), over
        the trees up to the best iteration; sorted by gain, descending."""
        check_is_fitted(self, "model_")
        return importance_frame(self.model_.booster_, self.best_iteration_)


def importance_frame(booster: lgb.Booster, iteration: int | None) -> pd.DataFrame:
    """Gain and split importance of a booster as a DataFrame (feature, gain, split), by gain descending."""
    frame = pd.DataFrame(
        {
            "feature": booster.feature_name(),
            "gain": booster.feature_importance("gain", iteration=iteration).astype(np.float64),
            "split": booster.feature_importance("split", iteration=iteration).astype(np.int64),
        }
    )
    return frame.sort_values(["gain", "feature"], ascending=[False, True], ignore_index=True)
