"""Classic churn and CLV baselines, scored on the same customers and cutoff as the LightGBM models.

Grain: one row per (customer, cutoff). Every baseline answers the models' two questions for the rows of one
cutoff ``c``: ``churn_probability`` = P(no order in ``[c, c + churn horizon)``) and ``predicted_clv`` = net
revenue (orders minus refunds, shop currency) over ``[c, c + CLV horizon)``. Inputs are the panel's features,
which see only rows before ``c``, so every baseline is point-in-time correct.

Three baselines (:data:`BASELINES`), all through :func:`fit_predict_baselines`:

- ``recency_rule``: the churn rate and the mean future revenue observed in ``history`` (labelled rows of
  earlier cutoffs) per ``recency_days`` bucket. Buckets are the deciles of the history's ``recency_days``
  (:class:`RecencyRule`; ties merge edges, so a shop may get fewer than 10). The per-bucket rates are then
  made monotone with isotonic regression weighted by bucket size (churn rate non-decreasing, mean revenue
  non-increasing in recency): "the longer since the last order, the likelier gone", and nothing else.
- ``rfm``: classic R, F, M scores 1-5 (recency_days, frequency, monetary_value), each value's quintile
  within the history (:class:`RFMScorer`); each target row gets the churn rate and mean future revenue of
  its RFM cell in history, falling back to its (R, F) cell, then its R score, then the history mean, when a
  cell holds fewer than ``min_cell_rows`` (50) labelled rows.
- ``bgnbd``: BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way") for the purchase
  process and Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV", section 4) for spend, both fitted on the
  target rows themselves: each row's calibration period is the customer's whole history before ``c``, so
  the fit uses nothing after ``c``. Inputs, in **days**: ``x`` = ``frequency`` (repeat orders), ``t_x`` =
  ``tenure_days - recency_days`` (time of the last order since the first), ``T`` = ``tenure_days``.
  ``churn_probability`` = P(no order in ``(T, T + h]``) = ``(1 - P(alive)) + P(alive) * ((alpha + T) /
  (alpha + T + h))^(r + x)``; ``predicted_clv`` = expected orders in ``h`` days (BG/NBD conditional
  expectation) times the Gamma-Gamma expected order value.

Approximations of ``bgnbd`` (stated, not hidden):

- The panel's ``monetary_value`` is the mean over *all* the customer's orders, first one included (the
  textbook recipe averages repeat orders only). Gamma-Gamma is fitted on customers with ``x > 0`` with
  ``n = orders_total`` (= x + 1) as the number of orders behind that mean, which is what the mean is;
  one-order customers get the fitted population mean ``p * v / (q - 1)``, as in the textbook recipe.
- Gamma-Gamma needs positive spend: mean order values below 1 % of the median positive value (zero or
  negative after discounts) are raised to that floor. ``q`` is kept above 1 (a finite mean spend).
- Order values are gross; the CLV label is net of refunds, so ``bgnbd`` over-predicts by about the shop's
  refund share (returns are not part of the classic model).
- The training panel leaves out customers lapsed longer than ``features.max_recency_days``; fitted on such a
  target, BG/NBD sees fewer dead customers than exist and estimates a lower drop-out probability.

The models themselves (likelihoods, fits, predictions, and the per-cutoff fit that also feeds the ``bgnbd_*``
features) live in the leaf :mod:`churn_pipeline.btyd`; this module turns panel rows into their inputs
(:func:`bgnbd_inputs`) and their outputs into baseline predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.utils.validation import check_is_fitted

from churn_pipeline.btyd import MIN_FIT_ROWS, bgnbd_quantities

__all__ = [
    "BASELINES",
    "RFMScorer",
    "RecencyRule",
    "bgnbd_inputs",
    "fit_predict_baselines",
]

BASELINES = ("recency_rule", "rfm", "bgnbd")
OUTPUT_COLUMNS = ("churn_probability", "predicted_clv")


# ------------------------------------------------------------------------------ recency rule and RFM
def _check_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}: pass panel rows with the purchase features")


def _labelled(history: pd.DataFrame, label: str) -> pd.DataFrame:
    rows = history.loc[history[label].notna()]
    if rows.empty:
        raise ValueError(
            f"history has no rows with a {label} label: pass labelled panel rows of earlier cutoffs whose "
            f"{label} horizon is complete"
        )
    return rows


def _quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner edges at the 1/n .. (n-1)/n quantiles, duplicates merged (heavy ties give fewer bins)."""
    return np.unique(np.quantile(values, np.arange(1, n_bins) / n_bins))


def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index 0..len(edges): the number of edges strictly below the value (a tie with an edge falls in
    the lower bin)."""
    return np.searchsorted(edges, values, side="left")


@dataclass(frozen=True)
class _BinStats:
    churn_rate: np.ndarray
    mean_revenue: np.ndarray


class RecencyRule(BaseEstimator):
    """Churn rate and mean future revenue per ``recency_days`` bucket, learnt from labelled history.

    Buckets: the ``n_bins`` quantiles of the history's ``recency_days`` (edges merged where tied). Rates are
    pooled into a monotone sequence by weighted isotonic regression (churn non-decreasing and revenue
    non-increasing in recency), so the rule can never say that a more recent buyer is likelier gone.
    """

    def __init__(self, n_bins: int = 10):
        self.n_bins = n_bins

    @staticmethod
    def _per_bin(idx: np.ndarray, y: np.ndarray, k: int, increasing: bool) -> np.ndarray:
        counts = np.bincount(idx, minlength=k).astype(np.float64)
        sums = np.bincount(idx, weights=y, minlength=k)
        seen = counts > 0
        means = np.full(k, np.nan)
        means[seen] = sums[seen] / counts[seen]
        iso = IsotonicRegression(increasing=increasing, out_of_bounds="clip")
        iso.fit(np.flatnonzero(seen), means[seen], sample_weight=counts[seen])
        return iso.predict(np.arange(k))  # empty buckets take their neighbours' pooled value

    def fit(self, history: pd.DataFrame):
        _check_columns(history, ("recency_days", "churned", "future_revenue"), "history")
        churn_rows, clv_rows = _labelled(history, "churned"), _labelled(history, "future_revenue")
        rec = pd.concat([churn_rows["recency_days"], clv_rows["recency_days"]]).to_numpy(np.float64)
        self.edges_ = _quantile_edges(rec, self.n_bins)
        k = self.edges_.size + 1
        self.stats_ = _BinStats(
            churn_rate=self._per_bin(
                _bin(churn_rows["recency_days"].to_numpy(np.float64), self.edges_),
                churn_rows["churned"].astype(bool).to_numpy(np.float64),
                k,
                increasing=True,
            ),
            mean_revenue=self._per_bin(
                _bin(clv_rows["recency_days"].to_numpy(np.float64), self.edges_),
                clv_rows["future_revenue"].to_numpy(np.float64),
                k,
                increasing=False,
            ),
        )
        return self

    def predict(self, target: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "stats_")
        _check_columns(target, ("recency_days",), "target")
        idx = _bin(target["recency_days"].to_numpy(np.float64), self.edges_)
        return pd.DataFrame(
            {"churn_probability": self.stats_.churn_rate[idx], "predicted_clv": self.stats_.mean_revenue[idx]},
            index=target.index,
        )


class RFMScorer(BaseEstimator):
    """Classic RFM cells: R, F, M scores 1-5 by quintile of history, and per cell the churn rate and mean
    future revenue observed in history.

    R scores ``recency_days`` (5 = most recent), F ``frequency`` and M ``monetary_value`` (5 = highest). A
    value's score is the quintile of its mid-rank among the history's values: ``1 + floor(5 * (n_below +
    n_equal / 2) / n)``, capped at 5. Continuous values get plain quintiles; tied values share one score
    (with most customers at ``frequency`` 0, those all score 2 or 3, not a mix of 1s and 2s). A target row
    gets its (R, F, M) cell's rates when that cell holds at least ``min_cell_rows`` labelled history rows,
    else its (R, F) cell's, else its R score's, else the history's mean (for each label separately).
    """

    VARIABLES = ("recency_days", "frequency", "monetary_value")

    def __init__(self, min_cell_rows: int = 50):
        self.min_cell_rows = min_cell_rows

    @staticmethod
    def _score(below: np.ndarray, at_or_below: np.ndarray, n: int, reverse: bool) -> np.ndarray:
        mid_rank = (below + at_or_below) / 2.0 / n
        score = np.minimum(1 + np.floor(5.0 * mid_rank), 5).astype(np.int8)
        return (6 - score if reverse else score).astype(np.int8)

    def scores(self, frame: pd.DataFrame) -> pd.DataFrame:
        """R, F, M scores (int8, 1-5) of each row of ``frame``, same index."""
        check_is_fitted(self, "ranks_")
        out = {}
        for name, col in zip(("r_score", "f_score", "m_score"), self.VARIABLES, strict=True):
            values, cum = self.ranks_[col]
            v = np.nan_to_num(frame[col].to_numpy(np.float64), nan=0.0)
            below = cum[np.searchsorted(values, v, side="left")]
            at_or_below = cum[np.searchsorted(values, v, side="right")]
            out[name] = self._score(below, at_or_below, cum[-1], reverse=col == "recency_days")
        return pd.DataFrame(out, index=frame.index)

    @staticmethod
    def _keys(s: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell keys of the three levels, as small integers: RFM (111..555), RF (11..55), R (1..5)."""
        r, f, m = (s[c].to_numpy(np.int64) for c in ("r_score", "f_score", "m_score"))
        return r * 100 + f * 10 + m, r * 10 + f, r

    def _table(self, keys: tuple[np.ndarray, ...], y: np.ndarray) -> dict:
        """Per level, a dense array over keys: the mean of ``y`` in cells with >= min_cell_rows rows, else NaN."""
        levels = []
        for key in keys:
            n = np.bincount(key, minlength=556)
            total = np.bincount(key, weights=y, minlength=556)
            levels.append(np.where(n >= self.min_cell_rows, total / np.maximum(n, 1), np.nan))
        return {"levels": levels, "global": float(y.mean())}

    def fit(self, history: pd.DataFrame):
        _check_columns(history, (*self.VARIABLES, "churned", "future_revenue"), "history")
        _labelled(history, "churned"), _labelled(history, "future_revenue")
        has_churn = history["churned"].notna().to_numpy()
        has_clv = history["future_revenue"].notna().to_numpy()
        rows = history.loc[has_churn | has_clv, list(self.VARIABLES)]
        has_churn, has_clv = has_churn[has_churn | has_clv], has_clv[has_churn | has_clv]
        self.ranks_, scores = {}, {}
        for name, c in zip(("r_score", "f_score", "m_score"), self.VARIABLES, strict=True):
            # Distinct history values and the number of values below each (a compact empirical CDF); the
            # history's own scores come from np.unique's inverse (a search per row is slow at millions).
            values, inv, counts = np.unique(
                np.nan_to_num(rows[c].to_numpy(np.float64), nan=0.0), return_inverse=True, return_counts=True
            )
            cum = np.r_[0, np.cumsum(counts)]
            self.ranks_[c] = (values, cum)
            scores[name] = self._score(cum[inv], cum[inv + 1], cum[-1], reverse=c == "recency_days")
        keys = self._keys(pd.DataFrame(scores))
        churned = history.loc[history["churned"].notna(), "churned"].astype(bool).to_numpy(np.float64)
        revenue = history.loc[history["future_revenue"].notna(), "future_revenue"].to_numpy(np.float64)
        self.churn_ = self._table(tuple(k[has_churn] for k in keys), churned)
        self.clv_ = self._table(tuple(k[has_clv] for k in keys), revenue)
        return self

    @staticmethod
    def _lookup(keys: tuple[np.ndarray, ...], table: dict) -> np.ndarray:
        out = np.full(keys[0].size, np.nan)
        for key, level in zip(keys, table["levels"], strict=True):  # finest level first
            out = np.where(np.isnan(out), level[key], out)
        return np.where(np.isnan(out), table["global"], out)

    def predict(self, target: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "ranks_")
        _check_columns(target, self.VARIABLES, "target")
        keys = self._keys(self.scores(target))
        return pd.DataFrame(
            {"churn_probability": self._lookup(keys, self.churn_), "predicted_clv": self._lookup(keys, self.clv_)},
            index=target.index,
        )


# ------------------------------------------------------------------------------------------ entry point
def bgnbd_inputs(target: pd.DataFrame) -> dict[str, np.ndarray]:
    """BG/NBD inputs in days from panel rows: x = frequency, t_x = tenure - recency, T = tenure."""
    _check_columns(target, ("frequency", "recency_days", "tenure_days"), "target")
    x = target["frequency"].to_numpy(np.float64)
    big_t = target["tenure_days"].to_numpy(np.float64)
    t_x = big_t - target["recency_days"].to_numpy(np.float64)
    return {"frequency": x, "t_x": t_x, "T": big_t}


def fit_predict_bgnbd(target: pd.DataFrame, churn_horizon_days: int, clv_horizon_days: int) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma fitted on ``target`` (one cutoff's rows, all of them) and applied to it."""
    _check_columns(target, ("monetary_value", "orders_total"), "target")
    q = bgnbd_quantities(
        **bgnbd_inputs(target),
        orders_total=target["orders_total"],
        monetary_value=target["monetary_value"],
        churn_horizon_days=churn_horizon_days,
        clv_horizon_days=clv_horizon_days,
        max_fit_rows=None,
    )
    return pd.DataFrame({"churn_probability": q["churn_probability"], "predicted_clv": q["clv"]}, index=target.index)


def fit_predict_baselines(
    history: pd.DataFrame, target: pd.DataFrame, churn_horizon_days: int, clv_horizon_days: int
) -> dict[str, pd.DataFrame]:
    """Every baseline's predictions for the rows of one cutoff.

    ``target``: panel rows (customer_id, cutoff, features) of one cutoff ``c``; not modified. ``history``:
    labelled panel rows of earlier cutoffs whose label windows end on or before ``c`` (the caller's
    guarantee), with ``churned`` and ``future_revenue`` for the same horizons as ``churn_horizon_days`` /
    ``clv_horizon_days``; rows with a null label are ignored for that label. Returns ``{name: frame}`` for
    each name in :data:`BASELINES`: indexed like ``target``, float64 columns ``churn_probability`` (P(no
    order in ``[c, c + churn_horizon_days)``)) and ``predicted_clv`` (net revenue over ``[c, c +
    clv_horizon_days)``), no NaN. Raises ``ValueError`` when a needed column or label is missing.
    """
    if "cutoff" in target.columns and len(target) and (target["cutoff"] != target["cutoff"].iloc[0]).any():
        raise ValueError(f"target must hold the rows of one cutoff, got {target['cutoff'].nunique()} cutoffs")
    if target.empty:
        empty = {c: np.empty(0, dtype=np.float64) for c in OUTPUT_COLUMNS}
        return {name: pd.DataFrame(empty, index=target.index) for name in BASELINES}
    out = {
        "recency_rule": RecencyRule().fit(history).predict(target),
        "rfm": RFMScorer().fit(history).predict(target),
        "bgnbd": fit_predict_bgnbd(target, churn_horizon_days, clv_horizon_days),
    }
    for name, frame in out.items():
        frame = frame.astype(np.float64)
        if frame.isna().to_numpy().any():
            raise ValueError(
                f"baseline {name} produced NaN predictions ({len(target)} target rows; bgnbd needs at least "
                f"{MIN_FIT_ROWS} to fit on)"
            )
        out[name] = frame
    return out
