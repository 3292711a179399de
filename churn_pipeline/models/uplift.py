"""Uplift: what a retention action changes, per customer, learnt from the shop's past campaigns (issue 15).

Grain: one row per campaign contact (customer, contact), treatment or control, with the customer's features at
the contact's day (cutoff = the contact day at midnight, so they see only data before the contact:
``pipelines/uplift.py``) and two outcomes measured from the contact on (``models.measure.contact_outcomes``):

- ``retained``: an order within ``retention_days`` (= ``labels.churn_horizon_days``) of the contact (0/1);
- ``net_revenue``: orders minus refunds within ``revenue_days`` (= ``labels.clv_horizon_days``), shop currency.

Contacts were split at random into treatment and control within each campaign, so for one action the uplift
``tau(x) = E[Y | x, treated] - E[Y | x, control]`` is identified within the population that action's campaigns
targeted (not beyond it: a model of win-back e-mails to lapsed customers says little about loyal ones).

:class:`UpliftModel` learns, per action, ``tau`` for both outcomes on LightGBM with the churn model's feature
preprocessing (:class:`models.preprocess.FeaturePreprocessor`, fitted once on all contacts, so preprocessing and
models travel as one artefact). Two meta-learners (``learner``):

- ``"t"`` (T-learner, Kuenzel et al. 2019): outcome models ``mu1`` on the treated and ``mu0`` on the control
  contacts (a classifier for retention, a Tweedie or L2 regressor for revenue); ``tau = mu1 - mu0``.
- ``"x"`` (X-learner, same paper; the default): the T-learner's ``mu0``/``mu1`` impute each contact's effect
  (treated: ``y - mu0(x)``, control: ``mu1(x) - y``, each predicted by the model that did not see the row), L2
  boosters ``tau1``/``tau0`` fit those, and ``tau = g tau0 + (1 - g) tau1`` with ``g`` the action's treated share
  (the propensity of a randomised campaign). The effect models fit the effect itself, so the strong main effects
  (recency, frequency) that ``mu1`` and ``mu0`` each learn with their own noise do not enter ``tau`` twice.

``control_pool="all"`` fits one control model per outcome on every control contact, whatever the action (more
rows, valid only if all actions' campaigns target comparable customers at comparable times); ``"action"`` (default)
uses the action's own control group.

Measured, T- against X-learner with each learning rate, offset and control pool:
docs/experiments.md#uplift-learners.

Each outcome booster stops early on a held-out fifth of its own rows (by a fixed hash of ``customer_id``, so a
customer's contacts stay on one side; row stride without the column) and is then refitted on all of them with
that many trees: control groups are small (a tenth of a campaign), every row counts. Retention models start from
the BG/NBD prior (``retention_offset``: log-odds of 1 - ``bgnbd_churn_probability``, P(an order in the churn
horizon)) and, optionally, Tweedie revenue models from ``log(bgnbd_clv)`` (``revenue_offset``, off by default:
docs/experiments.md#uplift-learners), learning corrections only, as the churn and CLV models do; an offset
cancels in ``mu1 - mu0`` except through the trees. One LightGBM thread by default (``n_jobs``): these boosters
have a few thousand rows, and on the 2-core machine with other work running the deployed fit took 2.1 s with one
thread, 24 s with two.

Evaluation (pure, for held-out campaigns): :func:`qini_curve`, :func:`uplift_curve`, :func:`qini_coefficient`,
:func:`auuc`, :func:`random_targeting` and :func:`targeting_report`, defined below. The curves and coefficients
equal scikit-uplift 0.5.1's (``qini_auc_score``, ``uplift_auc_score``) to the last digit on 0/1 outcomes (checked
on random data with ties); sklift refuses revenue outcomes, has had no release since 2022 and calls a
scikit-learn helper deprecated in 1.8 (removed in 1.10), and causalml would add some twenty packages (xgboost,
numba, a 350 MB NCCL wheel), so neither is a dependency. Determinism: LightGBM ``deterministic`` with one seed
(``models.churn.booster_kwargs``), fixed hashes, seeded shuffles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit, logit
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from churn_pipeline.models.churn import as_binary, booster_kwargs, importance_frame
from churn_pipeline.models.clv import MIN_SPEND
from churn_pipeline.models.preprocess import FeaturePreprocessor

__all__ = [
    "LEARNERS",
    "REVENUE_OBJECTIVES",
    "UpliftModel",
    "auuc",
    "qini_coefficient",
    "qini_curve",
    "random_targeting",
    "targeting_report",
    "uplift_columns",
    "uplift_curve",
]

LEARNERS = ("t", "x")
REVENUE_OBJECTIVES = ("tweedie", "l2")
CONTROL_POOLS = ("action", "all")
OUTCOMES = ("retention", "revenue")
# Priors are kept inside [EPS, 1 - EPS] before taking log-odds (as models.churn.OFFSET_EPS).
EPS = 1e-4
# Share of an outcome model's rows held out for early stopping (by customer hash), before the refit on all.
VALIDATION_SHARE = 0.2
# random_targeting evaluates its shuffled rankings in chunks of at most this many (ranking x contact) cells.
RANDOM_CHUNK_CELLS = 4_000_000


def uplift_columns(actions: Sequence[str]) -> list[str]:
    """``uplift_retention__<action>`` and ``uplift_revenue__<action>`` for each action, in that order."""
    return [f"uplift_{outcome}__{a}" for a in actions for outcome in OUTCOMES]


# --------------------------------------------------------------------------------------------- evaluation
def _ranked(uplift_score: Any, treated: Any, outcome: Any) -> tuple[np.ndarray, ...]:
    """Cumulative counts at each distinct score, best score first: (targeted, treated, control, treated outcome
    sum, control outcome sum), each with a leading 0 (nobody targeted). Ties are one step (their order within
    the tie would be arbitrary)."""
    s = np.asarray(uplift_score, dtype=np.float64)
    t = as_binary(treated, "treated").astype(np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    if not (s.shape == t.shape == y.shape) or s.ndim != 1:
        raise ValueError(
            f"uplift_score, treated and outcome must be 1-d of one length, got {s.shape}, {t.shape}, {y.shape}"
        )
    if np.isnan(s).any() or np.isnan(y).any():
        raise ValueError("uplift_score and outcome must not hold NaN")
    order = np.argsort(-s, kind="mergesort")
    s, t, y = s[order], t[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1] if s.size else np.empty(0, dtype=np.int64)
    n = (last + 1).astype(np.float64)
    n_t = np.cumsum(t)[last]
    y_t = np.cumsum(y * t)[last]
    y_c = np.cumsum(y * (1.0 - t))[last]
    return tuple(np.r_[0.0, a] for a in (n, n_t, n - n_t, y_t, y_c))


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def _values(curve: str, n: np.ndarray, n_t: np.ndarray, n_c: np.ndarray, y_t: np.ndarray, y_c: np.ndarray):
    """The Qini or uplift curve's values from cumulative counts and sums (any shape, elementwise)."""
    if curve == "qini":
        return y_t - y_c * _ratio(n_t, n_c)
    return (_ratio(y_t, n_t) - _ratio(y_c, n_c)) * n


def qini_curve(uplift_score: Any, treated: Any, outcome: Any) -> tuple[np.ndarray, np.ndarray]:
    """Radcliffe's (2007) Qini curve: targeting the ``k`` contacts with the highest ``uplift_score``, the
    incremental outcome ``Q(k) = Y_t(k) - Y_c(k) N_t(k) / N_c(k)`` (treated outcome sum minus the control
    group's, scaled to the treated count; 0 while no control contact is in the top ``k``). Returns
    ``(k, Q(k))`` at every distinct score, from ``(0, 0)``; ``Q(n)`` is the whole campaign's incremental
    outcome (responses, or currency for revenue). As ``sklift.metrics.qini_curve``."""
    n, n_t, n_c, y_t, y_c = _ranked(uplift_score, treated, outcome)
    return n, _values("qini", n, n_t, n_c, y_t, y_c)


def uplift_curve(uplift_score: Any, treated: Any, outcome: Any) -> tuple[np.ndarray, np.ndarray]:
    """The uplift curve (Rzepakowski & Jaroszewicz 2012; Gutierrez & Gerardy 2016): ``U(k) = (Y_t(k) / N_t(k) -
    Y_c(k) / N_c(k)) k``, the difference in mean outcome between the treated and control contacts of the top
    ``k`` times ``k`` (a mean of an empty group counts 0). Returns ``(k, U(k))`` from ``(0, 0)``. As
    ``sklift.metrics.uplift_curve``."""
    n, n_t, n_c, y_t, y_c = _ranked(uplift_score, treated, outcome)
    return n, _values("uplift", n, n_t, n_c, y_t, y_c)


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.trapezoid(y, x))


def _perfect_score(treated: Any, outcome: Any, curve: str) -> np.ndarray:
    """An oracle ranking: treated contacts with the best outcomes first, control contacts with the best outcomes
    last (``y (2t - 1)``; sklift's ``perfect_qini_curve`` with negative effects). For the uplift curve of a 0/1
    outcome, sklift's ``perfect_uplift_curve`` ordering (Gutierrez & Gerardy's four groups)."""
    t = as_binary(treated, "treated").astype(np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    if curve == "uplift" and np.isin(y, (0.0, 1.0)).all():
        control_responders = np.sum((y == 1) & (t == 0))
        treated_nonresponders = np.sum((y == 0) & (t == 1))
        summand = y if control_responders > treated_nonresponders else t
        return 2.0 * (y == t) + summand
    return y * (2.0 * t - 1.0)


def _bounds(curve: str, treated: Any, outcome: Any) -> tuple[float, float]:
    """The random line's area (from (0, 0) to (n, total)) and the oracle's area above it."""
    fn = qini_curve if curve == "qini" else uplift_curve
    px, py = fn(_perfect_score(treated, outcome, curve), treated, outcome)
    baseline = 0.5 * px[-1] * py[-1]
    return baseline, _area(px, py) - baseline


def _normalised(curve: str, uplift_score: Any, treated: Any, outcome: Any) -> float:
    fn = qini_curve if curve == "qini" else uplift_curve
    x, y = fn(uplift_score, treated, outcome)
    if x.size < 2:
        return float("nan")
    baseline, best = _bounds(curve, treated, outcome)
    return (_area(x, y) - baseline) / best if best > 0 else float("nan")


def qini_coefficient(uplift_score: Any, treated: Any, outcome: Any) -> float:
    """The normalised Qini coefficient: the area between the Qini curve (:func:`qini_curve`) and the random
    line (from (0, 0) to (n, Q(n))), divided by the same area of the oracle ranking (:func:`_perfect_score`).

    ``q = (A(model) - A(random)) / (A(perfect) - A(random))``, areas by the trapezoid rule over the number
    targeted. 0 = no better than random targeting (in expectation, by construction), 1 = the oracle, < 0 worse
    than random. Radcliffe (2007), "Using control groups to target on predicted lift", normalised as in
    Gutierrez & Gerardy (2016), "Causal inference and uplift modelling: a review of the literature", and
    scikit-uplift's ``qini_auc_score(negative_effect=True)`` (same curve, same oracle, same number). Works for a
    0/1 outcome and for revenue (the oracle then ranks treated by revenue first, control by revenue last). NaN
    when the oracle is no better than random (e.g. no outcome at all)."""
    return _normalised("qini", uplift_score, treated, outcome)


def auuc(uplift_score: Any, treated: Any, outcome: Any) -> float:
    """The normalised area under the uplift curve (:func:`uplift_curve`), as :func:`qini_coefficient`:
    ``(A(model) - A(random)) / (A(perfect) - A(random))``; for a 0/1 outcome the oracle is scikit-uplift's
    ``perfect_uplift_curve`` (its ``uplift_auc_score``), for revenue the ranking ``y (2t - 1)``. Gutierrez &
    Gerardy (2016); Rzepakowski & Jaroszewicz (2012)."""
    return _normalised("uplift", uplift_score, treated, outcome)


def random_targeting(treated: Any, outcome: Any, shuffles: int = 200, seed: int = 0) -> dict[str, float]:
    """Random targeting, empirically: the Qini coefficient and AUUC of ``shuffles`` random rankings (seeded):
    their means (about 0, the value random targeting has by construction) and 95th percentiles (what a model
    must beat to be better than luck at the 5 % level: a permutation test). All rankings of a chunk at once, as
    one (rankings x contacts) matrix of at most ``RANDOM_CHUNK_CELLS`` cells."""
    t = as_binary(treated, "treated").astype(np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    if shuffles == 0 or t.size == 0:
        return {k: float("nan") for k in ("qini_mean", "qini_q95", "auuc_mean", "auuc_q95")}
    rng = np.random.default_rng(seed)
    n = np.arange(1, t.size + 1, dtype=np.float64)
    found: dict[str, list[np.ndarray]] = {"qini": [], "uplift": []}
    bounds = {curve: _bounds(curve, t, y) for curve in found}
    step = max(1, RANDOM_CHUNK_CELLS // t.size)
    for start in range(0, shuffles, step):  # chunks of rankings; each chunk vectorised over rankings and rows
        k = min(step, shuffles - start)
        order = rng.permuted(np.broadcast_to(np.arange(t.size), (k, t.size)), axis=1)
        tt, yy = t[order], y[order]
        n_t = np.cumsum(tt, axis=1)
        y_t, y_c = np.cumsum(yy * tt, axis=1), np.cumsum(yy * (1.0 - tt), axis=1)
        for curve, (baseline, best) in bounds.items():
            values = np.c_[np.zeros(k), _values(curve, n, n_t, n - n_t, y_t, y_c)]
            area = np.trapezoid(values, dx=1.0, axis=1)
            found[curve].append((area - baseline) / best if best > 0 else np.full(k, np.nan))
    qs, us = np.concatenate(found["qini"]), np.concatenate(found["uplift"])
    return {
        "qini_mean": float(np.mean(qs)),
        "qini_q95": float(np.quantile(qs, 0.95)),
        "auuc_mean": float(np.mean(us)),
        "auuc_q95": float(np.quantile(us, 0.95)),
    }


def targeting_report(
    scores: dict[str, Any], treated: Any, outcome: Any, shuffles: int = 200, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Per ranking in ``scores`` (name -> score, higher = target first): its Qini coefficient and AUUC; and
    ``random``: 0 for both (random targeting, by construction) with the mean and 95th percentile of ``shuffles``
    seeded random rankings (:func:`random_targeting`)."""
    out = {
        name: {"qini": qini_coefficient(s, treated, outcome), "auuc": auuc(s, treated, outcome)}
        for name, s in scores.items()
    }
    r = random_targeting(treated, outcome, shuffles, seed)
    out["random"] = {
        "qini": 0.0,
        "auuc": 0.0,
        "qini_shuffled_mean": r["qini_mean"],
        "qini_shuffled_q95": r["qini_q95"],
        "auuc_shuffled_mean": r["auuc_mean"],
        "auuc_shuffled_q95": r["auuc_q95"],
    }
    return out


# ----------------------------------------------------------------------------------------------- estimator
def _hash_fold(ids: pd.Series | None, n: int, share: float) -> np.ndarray:
    """True for the rows held out for early stopping: a fixed hash of the customer id (all of a customer's rows
    on one side; pandas' SipHash, as models.churn.customer_half), every k-th row without ids."""
    if ids is None:
        return (np.arange(n) % max(2, round(1 / share))) == 0
    h = pd.util.hash_pandas_object(pd.Series(np.asarray(ids)).astype(str), index=False).to_numpy()
    return (h % np.uint64(1000)) < np.uint64(round(1000 * share))


class _Booster:
    """One LightGBM outcome model with an optional offset: early stopping on the held-out rows, then refitted on
    all rows with the number of trees found. ``kind``: binary (log-odds), tweedie (log), l2 (identity)."""

    def __init__(self, kind: str, params: dict[str, Any], tweedie_power: float) -> None:
        self.kind = kind
        objective = {"binary": {"objective": "binary"}, "l2": {"objective": "regression"}}.get(
            kind, {"objective": "tweedie", "tweedie_variance_power": tweedie_power}
        )
        self.params = {**params, **objective}

    def fit(
        self,
        Xp: np.ndarray,
        y: np.ndarray,
        init: np.ndarray | None,
        held: np.ndarray,
        names: list[str],
        cat: list[int],
        rounds: int,
    ) -> _Booster:
        fit_rows = ~held
        trees = self.params["n_estimators"]
        # Early stopping needs both sides populated (and for binary, both classes on each).
        usable = held.any() and fit_rows.any()
        if usable and self.kind == "binary":
            usable = all(np.unique(y[r]).size == 2 for r in (held, fit_rows))
        cls = lgb.LGBMClassifier if self.kind == "binary" else lgb.LGBMRegressor
        if usable:
            probe = cls(**self.params)
            probe.fit(
                Xp[fit_rows],
                y[fit_rows],
                init_score=None if init is None else init[fit_rows],
                eval_X=(Xp[held],),
                eval_y=(y[held],),
                eval_init_score=None if init is None else [init[held]],
                feature_name=names,
                categorical_feature=cat,
                callbacks=[lgb.early_stopping(rounds, first_metric_only=True, verbose=False)],
            )
            trees = int(probe.best_iteration_ or trees)
        self.n_trees_ = max(1, trees)
        self.model_ = cls(**{**self.params, "n_estimators": self.n_trees_})
        self.model_.fit(Xp, y, init_score=init, feature_name=names, categorical_feature=cat)
        return self

    def predict(self, Xp: np.ndarray, init: np.ndarray | None) -> np.ndarray:
        raw = np.asarray(self.model_.booster_.predict(Xp, raw_score=True), dtype=np.float64)
        if init is not None:
            raw = raw + init
        if self.kind == "binary":
            return expit(raw)
        if self.kind == "tweedie":
            return np.exp(raw)
        return raw


class UpliftModel(BaseEstimator):
    """Per-action uplift on retention and net revenue: ONE artefact from a feature table to uplift columns.

    ``fit(X, y_retained, y_revenue, action, treated, cost=None)``: ``X`` a feature table, one row per followed-up
    contact (extra columns ignored; ``customer_id``, when there, keeps a customer's rows on one side of the
    early-stopping split); ``y_retained`` 0/1, ``y_revenue`` net revenue (shop currency), ``action`` the
    contact's action, ``treated`` 0/1 (treatment vs control), ``cost`` the contact's cost (NaN = unknown), all
    aligned with ``X``. Actions with fewer than ``min_group_size`` treated or control contacts are left out
    (``skipped_actions_``: action -> why); ValueError when none is left. Inputs are not modified.

    ``predict_uplift(X)`` -> DataFrame (``X``'s index) with ``uplift_retention__<action>`` (treatment minus
    control P(an order within ``retention_days``), in probability points: 0.05 = 5 percentage points) and
    ``uplift_revenue__<action>`` (net revenue over ``revenue_days``, shop currency) per modelled action.

    Fitted: ``actions_`` (sorted), ``cost_`` (action -> mean cost of a treated contact, NaN when unknown),
    ``features_``, ``retention_days_``, ``revenue_days_``, ``group_sizes_`` (action -> treated/control counts),
    ``treated_share_``, ``skipped_actions_``, ``preprocessor_``, ``n_trees_`` (action -> model -> trees).
    """

    def __init__(
        self,
        features: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        min_category_count: int = 20,
        max_category_levels: int = 50,
        learner: str = "x",
        revenue_objective: str = "tweedie",
        tweedie_variance_power: float = 1.5,
        retention_offset: str | None = "bgnbd_churn_probability",
        revenue_offset: str | None = None,
        min_group_size: int = 100,
        control_pool: str = "action",
        retention_days: int = 90,
        revenue_days: int = 180,
        num_leaves: int = 15,
        learning_rate: float = 0.02,
        n_estimators: int = 300,
        min_child_samples: int = 50,
        feature_fraction: float = 0.8,
        bagging_fraction: float = 0.8,
        bagging_freq: int = 1,
        lambda_l2: float = 1.0,
        max_bin: int = 63,
        early_stopping_rounds: int = 30,
        seed: int = 42,
        n_jobs: int = 1,
    ):
        self.features = features
        self.categorical = categorical
        self.min_category_count = min_category_count
        self.max_category_levels = max_category_levels
        self.learner = learner
        self.revenue_objective = revenue_objective
        self.tweedie_variance_power = tweedie_variance_power
        self.retention_offset = retention_offset
        self.revenue_offset = revenue_offset
        self.min_group_size = min_group_size
        self.control_pool = control_pool
        self.retention_days = retention_days
        self.revenue_days = revenue_days
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
    def _check_params(self) -> None:
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {LEARNERS}, got {self.learner!r}")
        if self.revenue_objective not in REVENUE_OBJECTIVES:
            raise ValueError(f"revenue_objective must be one of {REVENUE_OBJECTIVES}, got {self.revenue_objective!r}")
        if isinstance(self.min_group_size, bool) or not isinstance(self.min_group_size, int) or self.min_group_size < 2:
            raise ValueError(f"min_group_size must be a whole number >= 2, got {self.min_group_size!r}")
        if self.control_pool not in CONTROL_POOLS:
            raise ValueError(f"control_pool must be one of {CONTROL_POOLS}, got {self.control_pool!r}")
        if not 1.0 < self.tweedie_variance_power < 2.0:
            raise ValueError(f"tweedie_variance_power must lie in (1, 2), got {self.tweedie_variance_power}")

    def fit(
        self, X: pd.DataFrame, y_retained: Any, y_revenue: Any, action: Any, treated: Any, cost: Any = None
    ) -> UpliftModel:
        """Fit the per-action outcome (and, for the X-learner, effect) models; see the class docstring."""
        self._check_params()
        n = len(X)
        yr = as_binary(y_retained, "y_retained").astype(np.float64)
        yv = np.asarray(y_revenue, dtype=np.float64)
        act = np.asarray(pd.Series(action).astype(str))
        t = as_binary(treated, "treated").astype(bool)
        c = np.full(n, np.nan) if cost is None else np.asarray(pd.to_numeric(pd.Series(cost)), dtype=np.float64)
        if not (len(yr) == len(yv) == len(act) == len(t) == len(c) == n):
            raise ValueError("X, outcomes, action, treated and cost must have the same number of rows")
        if np.isnan(yv).any():
            raise ValueError("y_revenue has null value(s): drop contacts that are not followed up")

        self.retention_days_, self.revenue_days_ = int(self.retention_days), int(self.revenue_days)
        self.preprocessor_ = FeaturePreprocessor(
            self.features, self.categorical, self.min_category_count, self.max_category_levels
        )
        Xp = self.preprocessor_.fit_transform(X)
        for name in (self.retention_offset, self.revenue_offset):
            if name is not None and (
                name not in self.preprocessor_.features_ or name in self.preprocessor_.categorical_
            ):
                raise ValueError(f"offset {name!r} must be one of the numeric features (it is read at predict)")
        self.offset_fill_ = {
            "retention": self._fill(self._retention_prior(Xp)),
            "revenue": self._fill(self._revenue_prior(Xp)),
        }
        held_all = _hash_fold(X["customer_id"] if "customer_id" in X.columns else None, n, VALIDATION_SHARE)
        cat = list(self.preprocessor_.categorical_indices_)
        params = booster_kwargs(self)

        self.group_sizes_, self.skipped_actions_, self.cost_, self.treated_share_ = {}, {}, {}, {}
        self.models_: dict[str, dict[str, _Booster]] = {}
        observed = {"retention": yr, "revenue": yv}
        targets = {"retention": yr, "revenue": np.maximum(yv, 0.0) if self.revenue_objective == "tweedie" else yv}
        shared = None
        for a in sorted(set(act)):  # a loop over actions; every fit is vectorised over rows
            rows = act == a
            n_t, n_c = int((rows & t).sum()), int((rows & ~t).sum())
            self.group_sizes_[a] = {"treated": n_t, "control": n_c}
            if min(n_t, n_c) < self.min_group_size:
                self.skipped_actions_[a] = (
                    f"{n_t:,} treated and {n_c:,} control contacts: fewer than min_group_size {self.min_group_size} "
                    f"in a group"
                )
                continue
            known = c[rows & t]
            known = known[~np.isnan(known)]
            self.cost_[a] = float(known.mean()) if known.size else float("nan")
            control = ~t if self.control_pool == "all" else rows & ~t
            self.treated_share_[a] = n_t / (n_t + int(control.sum()))
            if self.control_pool == "all" and shared is None:
                # One control model per outcome on every control contact, whatever the action: shared by all.
                shared = {o: self._fit_outcome(Xp, o, targets[o], ~t, held_all, cat, params) for o in OUTCOMES}
            self.models_[a] = self._fit_action(Xp, targets, observed, rows & t, control, held_all, shared, cat, params)
        if not self.models_:
            raise ValueError(
                "no action has at least min_group_size "
                f"({self.min_group_size}) treated and control contacts: {self.skipped_actions_}"
            )
        self.actions_ = sorted(self.models_)
        self.n_trees_ = {a: {k: m.n_trees_ for k, m in ms.items()} for a, ms in self.models_.items()}
        self.n_features_in_ = self.preprocessor_.n_features_in_
        return self

    def _fill(self, prior: np.ndarray | None) -> float:
        if prior is None:
            return 0.0
        seen = prior[np.isfinite(prior)]
        return float(np.median(seen)) if seen.size else 0.0

    def _retention_prior(self, Xp: np.ndarray, fill: float | None = None) -> np.ndarray | None:
        """log-odds of P(an order within the churn horizon) = 1 - the churn prior; NaN (or ``fill``) when missing."""
        if self.retention_offset is None:
            return None
        p_churn = Xp[:, self.preprocessor_.features_.index(self.retention_offset)].astype(np.float64)
        margin = logit(np.clip(1.0 - p_churn, EPS, 1 - EPS))
        return margin if fill is None else np.where(np.isnan(margin), fill, margin)

    def _revenue_prior(self, Xp: np.ndarray, fill: float | None = None) -> np.ndarray | None:
        """log of the prior expected revenue (floored at MIN_SPEND), Tweedie only; NaN (or ``fill``) when missing."""
        if self.revenue_offset is None or self.revenue_objective != "tweedie":
            return None
        v = Xp[:, self.preprocessor_.features_.index(self.revenue_offset)].astype(np.float64)
        margin = np.log(np.maximum(v, MIN_SPEND))
        return margin if fill is None else np.where(np.isnan(margin), fill, margin)

    def _inits(self, Xp: np.ndarray) -> dict[str, np.ndarray | None]:
        return {
            "retention": self._retention_prior(Xp, self.offset_fill_["retention"]),
            "revenue": self._revenue_prior(Xp, self.offset_fill_["revenue"]),
        }

    def _fit_outcome(
        self,
        Xp: np.ndarray,
        outcome: str,
        y: np.ndarray,
        rows: np.ndarray,
        held: np.ndarray,
        cat: list[int],
        params: dict[str, Any],
    ) -> _Booster:
        """One outcome model (retention classifier or revenue regressor, from its prior) on the rows ``rows``."""
        kind = "binary" if outcome == "retention" else self.revenue_objective
        init = self._inits(Xp[rows])[outcome]
        return _Booster(kind, params, self.tweedie_variance_power).fit(
            Xp[rows], y[rows], init, held[rows], list(self.preprocessor_.features_), cat, self.early_stopping_rounds
        )

    def _fit_action(
        self,
        Xp: np.ndarray,
        targets: dict[str, np.ndarray],
        observed: dict[str, np.ndarray],
        treated: np.ndarray,
        control: np.ndarray,
        held: np.ndarray,
        shared: dict[str, _Booster] | None,
        cat: list[int],
        params: dict[str, Any],
    ) -> dict[str, _Booster]:
        """The boosters of one action from the rows ``treated`` and ``control`` (masks over ``Xp``):
        ``<outcome>_<group>`` outcome models (group ``t``/``c``; the control ones are ``shared`` when the control
        contacts are pooled) and, for the X-learner, ``<outcome>_tau_<group>`` effect models."""
        inits = self._inits(Xp)
        rounds, power = self.early_stopping_rounds, self.tweedie_variance_power
        names = list(self.preprocessor_.features_)
        out: dict[str, _Booster] = {}
        for outcome in OUTCOMES:
            init = inits[outcome]
            out[f"{outcome}_t"] = self._fit_outcome(Xp, outcome, targets[outcome], treated, held, cat, params)
            out[f"{outcome}_c"] = (
                shared[outcome]
                if shared is not None
                else self._fit_outcome(Xp, outcome, targets[outcome], control, held, cat, params)
            )
            if self.learner == "x":
                # Imputed effects, each from the outcome model that did not see the row (raw revenue, not clipped).
                for group, rows, other in (("t", treated, "c"), ("c", control, "t")):
                    mu_other = out[f"{outcome}_{other}"].predict(Xp[rows], None if init is None else init[rows])
                    y_obs = observed[outcome][rows]
                    d = y_obs - mu_other if group == "t" else mu_other - y_obs
                    out[f"{outcome}_tau_{group}"] = _Booster("l2", params, power).fit(
                        Xp[rows], d, None, held[rows], names, cat, rounds
                    )
        return out

    # -------------------------------------------------------------- predict
    def predict_uplift(self, X: pd.DataFrame) -> pd.DataFrame:
        """Uplift per modelled action and outcome (class docstring), one row per row of ``X``."""
        check_is_fitted(self, "models_")
        Xp = self.preprocessor_.transform(X)
        inits = self._inits(Xp)
        out: dict[str, np.ndarray] = {}
        for a in self.actions_:
            ms = self.models_[a]
            for outcome in OUTCOMES:
                if self.learner == "x":
                    g = self.treated_share_[a]
                    tau = g * ms[f"{outcome}_tau_c"].predict(Xp, None) + (1 - g) * ms[f"{outcome}_tau_t"].predict(
                        Xp, None
                    )
                else:
                    init = inits[outcome]
                    tau = ms[f"{outcome}_t"].predict(Xp, init) - ms[f"{outcome}_c"].predict(Xp, init)
                out[f"uplift_{outcome}__{a}"] = tau
        return pd.DataFrame(out, index=X.index)

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """:meth:`predict_uplift`."""
        return self.predict_uplift(X)

    # ------------------------------------------------------------ inspect
    @property
    def features_(self) -> list[str]:
        """The fitted feature columns, in model order."""
        check_is_fitted(self, "preprocessor_")
        return list(self.preprocessor_.features_)

    @property
    def output_columns_(self) -> list[str]:
        """The columns :meth:`predict_uplift` returns."""
        check_is_fitted(self, "actions_")
        return uplift_columns(self.actions_)

    def feature_importance(self, action: str, model: str = "retention_t") -> pd.DataFrame:
        """Gain and split importance of one booster (``<outcome>_<t|c>``, or ``<outcome>_tau_<t|c>``)."""
        check_is_fitted(self, "models_")
        booster = self.models_[action][model].model_.booster_
        return importance_frame(booster, None)
