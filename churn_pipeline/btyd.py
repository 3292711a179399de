"""Buy-till-you-die models: BG/NBD for the purchase process and Gamma-Gamma for spend, fitted by maximum
likelihood, and their per-cutoff fit (a leaf: imports no project module).

Grain: one customer per array position; arrays, not frames. Time in the unit of the inputs (**days**
everywhere in the project): ``frequency`` ``x`` = repeat orders (orders after the first), ``t_x`` = time of the
last order since the first (0 when ``x = 0``), ``T`` = time since the first order, all measured at one cutoff
``c`` from orders before ``c`` only; money in shop currency. Predictions are for the horizon ``(T, T + h]``
after the cutoff.

- :class:`BGNBD` (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): P(alive), P(no order in
  the horizon), expected orders in the horizon.
- :class:`GammaGamma` (Fader, Hardie & Lee 2005, "RFM and CLV", section 4): expected order value.
- :func:`fit_bgnbd_prior` / :class:`BGNBDPrior` / :func:`bgnbd_quantities`: both fitted on one cutoff's
  customers (at most :data:`MAX_FIT_ROWS`, the sample :func:`fit_sample_positions` picks) and applied to any
  of them. Used by the ``bgnbd_*`` features (:mod:`churn_pipeline.features.derive`, ``build``, ``spark``) and
  by the ``bgnbd`` baseline (:mod:`churn_pipeline.models.baselines`).

Library or own code: ``lifetimes`` and ``pymc-marketing`` against this module, measured in
docs/experiments.md#btyd-libraries.

So the project carries its own implementation, tested by recovering known parameters from data simulated with
the models (``tests/models/test_baselines.py``), with no archived package and no compiler stack in the
pipeline.

Reproducible to the bit on any machine: the fits feed the ``bgnbd_*`` features, and a fit on a flat likelihood
(large ``a`` and ``b`` with ``a / (a + b)`` pinned down, common on real shops) turns a last-bit difference in
one evaluation into parameters that differ in the 4th digit. Two such differences were found between machines
and are removed: numpy's AVX-512 kernels of ``exp`` and ``log`` round differently from the C library that
numpy uses on other CPUs (so :func:`_exp` and :func:`_log` call the C library on every CPU), and scipy's
L-BFGS-B runs on OpenBLAS, whose kernels (and their summation order) are chosen per CPU (so
:func:`_minimize_in_box` does the search with elementwise numpy only). The same data then gives the same
features on an AVX-512 machine, an AVX2 one, and under any OpenBLAS kernel (``tests/features/test_reproducible.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betaln, boxcox, digamma, expit, gammaln, hyp2f1, inv_boxcox
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "BGNBD",
    "BGNBD_QUANTITIES",
    "MAX_FIT_ROWS",
    "MIN_FIT_ROWS",
    "BGNBDPrior",
    "GammaGamma",
    "bgnbd_quantities",
    "fit_bgnbd_prior",
    "fit_sample_positions",
    "spend_floor",
]

# Log-parameters are searched inside [-LOG_BOUND, LOG_BOUND] (1e-9..1e9): wide enough for any shop in days,
# narrow enough that exp() never overflows.
LOG_BOUND = 9.0 * math.log(10.0)
# The search stops when the value fell by less than _FTOL of itself in one step, or no free log-parameter has a
# gradient above _PGTOL: tighter than scipy's L-BFGS-B defaults (2.2e-9, 1e-5), which stopped one fit of the
# default shop early; on its 24 cutoffs the fits end within 3e-9 of L-BFGS-B's value or below it (22 of 24),
# at ~1.5x its evaluations.
_FTOL = 1e-10
_PGTOL = 1e-6


def _log(x: ArrayLike) -> np.ndarray:
    """Natural log from the C library on every CPU. ``np.log`` has AVX-512 kernels whose last bit differs from
    the C library's (used where AVX-512 is missing), which moved the fits between machines. ``boxcox(x, 0)``
    is scipy's scalar loop over the C library's ``log``."""
    return boxcox(x, 0.0)


def _exp(x: ArrayLike) -> np.ndarray:
    """``exp`` from the C library on every CPU, for the same reason as :func:`_log` (``inv_boxcox(x, 0)``
    is the C library's ``exp``)."""
    return inv_boxcox(x, 0.0)


def _minimize_in_box(fun, theta0: np.ndarray, max_iter: int) -> tuple[np.ndarray, float, int, bool]:
    """Minimise ``fun(theta) -> (value, gradient)`` over ``[-LOG_BOUND, LOG_BOUND]`` per coordinate: BFGS on
    the few parameters, projected on the box, with a backtracking (Armijo) line search, stopping at
    :data:`_FTOL` or :data:`_PGTOL`. Returns (theta, value, iterations, converged).

    Not scipy's L-BFGS-B: it calls OpenBLAS, which picks its kernels per CPU, so the same data gave different
    fits on different machines. Here every step is an elementwise operation or a sum of a handful of numbers
    in a fixed order: the same inputs give the same bits everywhere."""
    theta = np.clip(np.asarray(theta0, dtype=np.float64), -LOG_BOUND, LOG_BOUND)
    value, grad = fun(theta)
    eye = np.eye(theta.size)
    inv_hess = eye
    for iteration in range(1, max_iter + 1):
        # A coordinate at a bound whose gradient pushes it outwards stays there.
        free = ~(((theta <= -LOG_BOUND) & (grad > 0)) | ((theta >= LOG_BOUND) & (grad < 0)))
        if np.abs(np.where(free, grad, 0.0)).max() <= _PGTOL:
            return theta, value, iteration - 1, True
        step_dir = np.where(free, -(inv_hess * grad).sum(axis=1), 0.0)
        if not (grad * step_dir).sum() < 0:
            # The curvature estimate went stale: restart from steepest descent.
            inv_hess = eye
            step_dir = np.where(free, -grad, 0.0)
        # A short first step, as in L-BFGS-B: no log-parameter moves by more than 1 (a factor e).
        step = min(1.0, 1.0 / float(np.abs(step_dir).max())) if iteration == 1 else 1.0
        while True:
            trial = np.clip(theta + step * step_dir, -LOG_BOUND, LOG_BOUND)
            trial_value, trial_grad = fun(trial)
            if trial_value <= value + 1e-4 * float((grad * (trial - theta)).sum()):
                break
            step *= 0.5
            if step < 1e-20:  # no decrease along a descent direction: as good as this precision allows
                return theta, value, iteration, False
        s, y = trial - theta, trial_grad - grad
        sy, yy = float((s * y).sum()), float((y * y).sum())
        if sy > float(np.finfo(np.float64).eps) * yy:
            if inv_hess is eye:
                inv_hess = eye * (sy / yy)  # the usual scaling of the first estimate (Nocedal & Wright 6.20)
            # BFGS update of the inverse Hessian, written out with outer products: a matrix product would go to BLAS.
            hy = (inv_hess * y).sum(axis=1)
            rho = 1.0 / sy
            inv_hess = (
                inv_hess
                - rho * (np.multiply.outer(s, hy) + np.multiply.outer(hy, s))
                + (rho * rho * float((y * hy).sum()) + rho) * np.multiply.outer(s, s)
            )
        decrease = (value - trial_value) / max(abs(value), abs(trial_value), 1.0)
        theta, value, grad = trial, trial_value, trial_grad
        if decrease <= _FTOL:
            return theta, value, iteration, True
    return theta, value, max_iter, False


def _arrays(**named: ArrayLike) -> dict[str, np.ndarray]:
    """Named inputs as equal-length finite 1-D float64 arrays; ``ValueError`` naming the first bad one."""
    out = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in named.items()}
    sizes = {k: v.size for k, v in out.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"inputs differ in length: {sizes}")
    for k, v in out.items():
        if not np.isfinite(v).all():
            raise ValueError(f"{k} has {int((~np.isfinite(v)).sum())} non-finite value(s)")
    return out


# ------------------------------------------------------------------------------------------------ BG/NBD
class BGNBD(BaseEstimator):
    """BG/NBD purchase model (Fader, Hardie & Lee 2005), fitted by maximum likelihood.

    While alive a customer orders as a Poisson process with rate ``lambda ~ Gamma(r, alpha)`` (shape ``r``,
    rate ``alpha``, in the unit of time of the inputs: days here); after each order they drop out for good
    with probability ``p ~ Beta(a, b)``. Per customer: ``frequency`` = repeat orders ``x`` (orders after the
    first), ``t_x`` = time of the last order since the first (``lifetimes`` calls it "recency"; 0 when
    ``x = 0``), ``T`` = time since the first order. ``params_`` = ``{"r", "alpha", "a", "b"}``.

    ``max_iter`` caps the search's iterations (:func:`_minimize_in_box`); ``converged_`` records whether it
    met its stopping rule.
    """

    def __init__(self, max_iter: int = 500):
        self.max_iter = max_iter

    @staticmethod
    def _inputs(frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = _arrays(frequency=frequency, t_x=t_x, T=T)
        x, tx, big_t = v["frequency"], v["t_x"], v["T"]
        if (x < 0).any() or (x != np.round(x)).any():
            raise ValueError("frequency must be whole numbers >= 0 (repeat orders)")
        if (big_t < 0).any():
            raise ValueError("T must be >= 0")
        # Float rounding in tenure - recency can leave t_x a hair outside [0, T]; one-order customers have
        # t_x = 0 by definition.
        tx = np.where(x > 0, np.clip(tx, 0.0, big_t), 0.0)
        return x, tx, big_t

    @staticmethod
    def _neg_loglik(
        theta: np.ndarray, ux: np.ndarray, inv: np.ndarray, tx: np.ndarray, big_t: np.ndarray, w: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """Weighted mean negative log-likelihood and its gradient in log-parameters."""
        r, alpha, a, b = _exp(theta)
        rep = ux > 0
        # Terms that depend on x only, once per distinct x.
        common = gammaln(r + ux) - gammaln(r) + r * _log(alpha)
        t1_x = betaln(a, b + ux) - betaln(a, b)
        t2_x = np.where(rep, betaln(a + 1.0, b + np.maximum(ux, 1.0) - 1.0) - betaln(a, b), -np.inf)
        x = ux[inv]
        rx = r + x
        log_at, log_atx = _log(alpha + big_t), _log(alpha + tx)
        l1 = t1_x[inv] - rx * log_at
        l2 = t2_x[inv] - rx * log_atx
        lse = np.logaddexp(l1, l2)
        ll = common[inv] + lse
        # Posterior weights of the two mixture terms (term 2 exists only for x > 0).
        s1 = _exp(l1 - lse)
        s2 = 1.0 - s1
        dr = digamma(r + ux)[inv] - digamma(r) + _log(alpha) - s1 * log_at - s2 * log_atx
        dalpha = r / alpha - s1 * rx / (alpha + big_t) - s2 * rx / (alpha + tx)
        d_ab = digamma(a + b)
        da_1 = (digamma(a) - digamma(a + b + ux) - digamma(a) + d_ab)[inv]
        da_2 = (digamma(a + 1.0) - digamma(a + b + ux) - digamma(a) + d_ab)[inv]
        db_1 = (digamma(b + ux) - digamma(a + b + ux) - digamma(b) + d_ab)[inv]
        db_2 = (digamma(b + np.maximum(ux, 1.0) - 1.0) - digamma(a + b + ux) - digamma(b) + d_ab)[inv]
        da = s1 * da_1 + s2 * np.where(s2 > 0, da_2, 0.0)
        db = s1 * db_1 + s2 * np.where(s2 > 0, db_2, 0.0)
        total = w.sum()
        grad = np.array([(w * d).sum() for d in (dr, dalpha, da, db)]) / total * np.array([r, alpha, a, b])
        return -float((w * ll).sum() / total), -grad

    def fit(self, frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike, sample_weight: ArrayLike | None = None):
        x, tx, big_t = self._inputs(frequency, t_x, T)
        if x.size == 0:
            raise ValueError("BGNBD.fit needs at least one customer")
        w = np.ones_like(x) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).ravel()
        ux, inv = np.unique(x, return_inverse=True)
        # Start where the mean purchase rate matches the data: r / alpha = repeat orders per unit of time.
        rate = max(float((w * x).sum() / max((w * big_t).sum(), 1e-9)), 1e-6)
        theta0 = _log(np.array([1.0, 1.0 / rate, 1.0, 1.0]))
        theta, value, n_iter, converged = _minimize_in_box(
            lambda t: self._neg_loglik(t, ux, inv, tx, big_t, w), theta0, self.max_iter
        )
        r, alpha, a, b = _exp(theta)
        self.params_ = {"r": float(r), "alpha": float(alpha), "a": float(a), "b": float(b)}
        self.log_likelihood_ = -float(value) * float(w.sum())
        self.converged_ = converged
        self.n_iter_ = n_iter
        return self

    def _log_odds_dead(self, x: np.ndarray, tx: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        """log of ``a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x)`` (-inf for x = 0)."""
        p = self.params_
        r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
        lo = _log(a) - _log(b + np.maximum(x, 1.0) - 1.0) + (r + x) * (_log(alpha + big_t) - _log(alpha + tx))
        return np.where(x > 0, lo, -np.inf)

    def p_alive(self, frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
        """P(still alive at T | x, t_x, T). Exactly 1 for x = 0: drop-out only happens right after an order."""
        check_is_fitted(self, "params_")
        x, tx, big_t = self._inputs(frequency, t_x, T)
        return expit(-self._log_odds_dead(x, tx, big_t))

    def p_no_order(self, horizon: float, frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
        """P(no order in (T, T + horizon]): dead, or alive with no Poisson event in the horizon (the posterior
        rate of an alive customer is Gamma(r + x, alpha + T), so that is ((alpha+T)/(alpha+T+h))^(r+x))."""
        check_is_fitted(self, "params_")
        x, tx, big_t = self._inputs(frequency, t_x, T)
        p = self.params_
        alive = expit(-self._log_odds_dead(x, tx, big_t))
        silent = _exp((p["r"] + x) * (_log(p["alpha"] + big_t) - _log(p["alpha"] + big_t + horizon)))
        return np.clip((1.0 - alive) + alive * silent, 0.0, 1.0)

    def expected_orders(self, horizon: float, frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
        """E[orders in (T, T + horizon] | x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10)."""
        check_is_fitted(self, "params_")
        x, tx, big_t = self._inputs(frequency, t_x, T)
        p = self.params_
        r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
        t = float(horizon)
        z = t / (alpha + big_t + t)
        silent = _exp((r + x) * (_log(alpha + big_t) - _log(alpha + big_t + t)))
        bracket = 1.0 - silent * hyp2f1(r + x, b + x, a + b + x - 1.0, z)
        given_alive = (a + b + x - 1.0) / (a - 1.0) * bracket
        out = given_alive * expit(-self._log_odds_dead(x, tx, big_t))
        # Outside its numerically safe range (very large x with z near 1) hyp2f1 can return inf/nan; the
        # expected count is then bounded by an alive customer's Poisson mean (r + x) / (alpha + T) * t.
        cap = (r + x) / (alpha + big_t) * t
        return np.where(np.isfinite(out), np.clip(out, 0.0, cap), cap)


# ------------------------------------------------------------------------------------------ Gamma-Gamma
class GammaGamma(BaseEstimator):
    """Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV", section 4), fitted by maximum
    likelihood.

    Each order value is ``Gamma(p, nu)``; a customer's ``nu ~ Gamma(q, v)``. Per customer: ``n_orders`` = the
    number of orders averaged, ``mean_order_value`` > 0 their mean value (currency). ``params_`` =
    ``{"p", "q", "v"}``, with ``q > 1`` enforced (the population mean spend ``p * v / (q - 1)`` is finite).
    """

    def __init__(self, max_iter: int = 500):
        self.max_iter = max_iter

    @staticmethod
    def _inputs(n_orders: ArrayLike, mean_order_value: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        v = _arrays(n_orders=n_orders, mean_order_value=mean_order_value)
        n, m = v["n_orders"], v["mean_order_value"]
        if (n < 1).any():
            raise ValueError("n_orders must be >= 1")
        if (m <= 0).any():
            raise ValueError("mean_order_value must be > 0: clip non-positive spend before fitting")
        return n, m

    @staticmethod
    def _neg_loglik(
        theta: np.ndarray,
        un: np.ndarray,
        inv: np.ndarray,
        n: np.ndarray,
        log_n: np.ndarray,
        log_m: np.ndarray,
        nm: np.ndarray,
        w: np.ndarray,
    ) -> tuple[float, np.ndarray]:
        """Weighted mean negative log-likelihood and its gradient in log-parameters. The gamma functions
        depend on the order count only: evaluated once per distinct count (``un``, rows ``inv``)."""
        p, q1, v = _exp(theta)
        q = 1.0 + q1
        pn, pu = p * n, p * un
        log_nmv = _log(nm + v)
        ll = (gammaln(pu + q) - gammaln(pu))[inv] - gammaln(q) + q * _log(v) + (pn - 1.0) * log_m + pn * log_n
        ll -= (pn + q) * log_nmv
        d_pq = digamma(pu + q)[inv]
        dp = n * (d_pq - digamma(pu)[inv] + log_m + log_n - log_nmv)
        dq = d_pq - digamma(q) + _log(v) - log_nmv
        dv = q / v - (pn + q) / (nm + v)
        total = w.sum()
        grad = np.array([(w * d).sum() for d in (dp, dq, dv)]) / total * np.array([p, q1, v])
        return -float((w * ll).sum() / total), -grad

    def fit(self, n_orders: ArrayLike, mean_order_value: ArrayLike, sample_weight: ArrayLike | None = None):
        n, m = self._inputs(n_orders, mean_order_value)
        if n.size == 0:
            raise ValueError("GammaGamma.fit needs at least one customer")
        w = np.ones_like(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).ravel()
        # Start at p = 1, q = 2, v = the mean spend: population mean p v / (q - 1) = the data's mean.
        theta0 = _log(np.array([1.0, 1.0, float(np.average(m, weights=w))]))
        un, inv = np.unique(n, return_inverse=True)
        args = (un, inv, n, _log(n), _log(m), n * m, w)
        theta, _, _, converged = _minimize_in_box(lambda t: self._neg_loglik(t, *args), theta0, self.max_iter)
        p, q1, v = _exp(theta)
        self.params_ = {"p": float(p), "q": float(1.0 + q1), "v": float(v)}
        self.converged_ = converged
        return self

    @property
    def population_mean_(self) -> float:
        """Mean order value of a customer we know nothing about: ``p * v / (q - 1)``."""
        check_is_fitted(self, "params_")
        p = self.params_
        return p["p"] * p["v"] / (p["q"] - 1.0)

    def expected_order_value(self, n_orders: ArrayLike, mean_order_value: ArrayLike) -> np.ndarray:
        """E[order value | n orders averaging m] = ``p (v + n m) / (p n + q - 1)``: a weighted mean of the
        population mean and the customer's own mean, the latter weighing more the more orders they made."""
        check_is_fitted(self, "params_")
        n, m = self._inputs(n_orders, mean_order_value)
        p, q, v = self.params_["p"], self.params_["q"], self.params_["v"]
        return p * (v + n * m) / (p * n + q - 1.0)


def spend_floor(mean_order_value: np.ndarray) -> float:
    """1 % of the median positive mean order value (1e-6 when none is positive): the smallest spend
    Gamma-Gamma is given."""
    pos = mean_order_value[mean_order_value > 0]
    return float(0.01 * np.median(pos)) if pos.size else 1e-6


# Per-cutoff BG/NBD fits in the feature table use at most this many customers (an evenly spaced sample in
# customer order): four population parameters are pinned down long before that, and the fit stays ~1 s.
MAX_FIT_ROWS = 100_000
# Fewer customers than this at a cutoff: no fit, the quantities are NaN (a tree model treats them as missing).
MIN_FIT_ROWS = 20


@dataclass(frozen=True)
class BGNBDPrior:
    """BG/NBD + Gamma-Gamma fitted on one cutoff's customers: applied to any of them, in any batch.

    ``gamma_gamma`` is None when there were no repeat buyers to fit it on (everyone keeps their own mean
    spend); ``spend_floor`` is the smallest spend Gamma-Gamma sees (:func:`spend_floor` of the fit rows).
    """

    bgnbd: BGNBD
    gamma_gamma: GammaGamma | None
    spend_floor: float

    def quantities(
        self,
        frequency: ArrayLike,
        t_x: ArrayLike,
        T: ArrayLike,
        orders_total: ArrayLike,
        monetary_value: ArrayLike,
        churn_horizon_days: float,
        clv_horizon_days: float,
    ) -> dict[str, np.ndarray]:
        """Per customer (float64): ``p_alive``, ``churn_probability`` (P(no order in the churn horizon)),
        ``expected_orders`` and ``clv`` (expected orders times expected order value, over the CLV horizon)
        and ``order_value`` (one-order customers get the population mean)."""
        v = _arrays(frequency=frequency, t_x=t_x, T=T, orders_total=orders_total)
        x, tx, big_t, orders = v["frequency"], v["t_x"], v["T"], v["orders_total"]
        spend = np.nan_to_num(np.asarray(monetary_value, dtype=np.float64).ravel(), nan=0.0)
        spend = np.maximum(spend, self.spend_floor)
        repeat = x > 0
        if self.gamma_gamma is not None:
            value = np.full(x.size, self.gamma_gamma.population_mean_)
            value[repeat] = self.gamma_gamma.expected_order_value(orders[repeat], spend[repeat])
        else:
            value = spend
        expected = self.bgnbd.expected_orders(clv_horizon_days, x, tx, big_t)
        return {
            "p_alive": self.bgnbd.p_alive(x, tx, big_t),
            "churn_probability": self.bgnbd.p_no_order(churn_horizon_days, x, tx, big_t),
            "expected_orders": expected,
            "order_value": value,
            "clv": expected * value,
        }


BGNBD_QUANTITIES = ("p_alive", "churn_probability", "expected_orders", "order_value", "clv")


def fit_bgnbd_prior(
    frequency: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    orders_total: ArrayLike,
    monetary_value: ArrayLike,
    fit_mask: ArrayLike | None = None,
    max_fit_rows: int | None = MAX_FIT_ROWS,
) -> BGNBDPrior | None:
    """BG/NBD + Gamma-Gamma fitted on the customers ``fit_mask`` selects (default all; at most
    ``max_fit_rows`` of them, evenly spaced in the given order); None when fewer than ``MIN_FIT_ROWS``.
    Inputs per customer in days and currency (see :func:`bgnbd_inputs`)."""
    v = _arrays(frequency=frequency, t_x=t_x, T=T, orders_total=orders_total)
    x, tx, big_t, orders = v["frequency"], v["t_x"], v["T"], v["orders_total"]
    spend = np.nan_to_num(np.asarray(monetary_value, dtype=np.float64).ravel(), nan=0.0)
    fit = np.ones(x.size, dtype=bool) if fit_mask is None else np.asarray(fit_mask, dtype=bool).ravel()
    rows = np.flatnonzero(fit)
    if rows.size < MIN_FIT_ROWS:
        return None
    if max_fit_rows is not None and rows.size > max_fit_rows:
        rows = rows[fit_sample_positions(rows.size, max_fit_rows)]
    bg = BGNBD().fit(x[rows], tx[rows], big_t[rows])
    floor = spend_floor(spend[rows])
    spend = np.maximum(spend, floor)
    fit_repeat = rows[x[rows] > 0]
    gg = GammaGamma().fit(orders[fit_repeat], spend[fit_repeat]) if fit_repeat.size >= 2 else None
    return BGNBDPrior(bg, gg, floor)


def fit_sample_positions(n_rows: int, max_fit_rows: int) -> np.ndarray:
    """Which of ``n_rows`` ordered candidates a capped fit uses: ``max_fit_rows`` evenly spaced positions
    (0-based). One rule for every engine, so a sample drawn on Spark is the sample drawn in memory."""
    if n_rows <= max_fit_rows:
        return np.arange(n_rows, dtype=np.int64)
    return np.linspace(0, n_rows - 1, max_fit_rows).astype(np.int64)


def bgnbd_quantities(
    frequency: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    orders_total: ArrayLike,
    monetary_value: ArrayLike,
    churn_horizon_days: float,
    clv_horizon_days: float,
    fit_mask: ArrayLike | None = None,
    max_fit_rows: int | None = MAX_FIT_ROWS,
) -> dict[str, np.ndarray]:
    """BG/NBD + Gamma-Gamma fitted on the customers of one cutoff and applied to every one of them.

    :func:`fit_bgnbd_prior` then :meth:`BGNBDPrior.quantities`; all NaN when fewer than ``MIN_FIT_ROWS``
    customers are there to fit on.
    """
    prior = fit_bgnbd_prior(frequency, t_x, T, orders_total, monetary_value, fit_mask, max_fit_rows)
    if prior is None:
        n = np.asarray(frequency).size
        return {q: np.full(n, np.nan) for q in BGNBD_QUANTITIES}
    return prior.quantities(frequency, t_x, T, orders_total, monetary_value, churn_horizon_days, clv_horizon_days)
