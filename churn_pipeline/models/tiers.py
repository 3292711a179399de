"""Risk tiers: one label per customer from their calibrated churn probability, for the CRM to act on.

Grain: one value per scored row (a customer at one cutoff). Tiers, most urgent first: ``high``, ``medium``,
``low``, and ``lapsed`` for customers whose last order is so long ago (``is_lapsed`` in the scoring table)
that they are treated as gone whatever the model says.

Two ways to draw the lines (params.yaml top-level section ``risk_tiers``):

- ``method: probability`` (default): ``p >= high`` is high, ``medium <= p < high`` is medium, the rest low.
  The thresholds are calibrated probabilities, so "high" means the same churn risk from run to run, and
  the tier sizes move with the shop's churn rate.
- ``method: share``: the ``high`` share of (non-lapsed) customers with the largest probabilities is high,
  the next ones up to a cumulative ``medium`` share are medium, the rest low. Fixed campaign sizes whatever
  the probabilities; ties at a boundary go to the more urgent tier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["METHODS", "TIER_ORDER", "RiskTiers", "assign_risk_tier"]

TIER_ORDER = ("high", "medium", "low", "lapsed")
METHODS = ("probability", "share")


@dataclass(frozen=True)
class RiskTiers:
    """params.yaml ``risk_tiers``: how churn probabilities map to tiers (see the module docstring).

    ``method="probability"``: ``high`` and ``medium`` are probability thresholds, ``0 < medium < high <= 1``.
    ``method="share"``: ``high`` and ``medium`` are cumulative shares of customers, ``0 < high < medium <= 1``.
    The defaults are thresholds measured on the default synthetic shop (see params.yaml for the tier sizes
    and observed churn rates they give).
    """

    method: str = "probability"
    high: float = 0.8
    medium: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("high", "medium"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if self.method == "probability" and not 0 < self.medium < self.high <= 1:
            raise ValueError(
                f"probability thresholds need 0 < medium < high <= 1, got medium={self.medium}, high={self.high}"
            )
        if self.method == "share" and not 0 < self.high < self.medium <= 1:
            raise ValueError(
                f"cumulative shares need 0 < high < medium <= 1 (high is the most urgent share), "
                f"got high={self.high}, medium={self.medium}"
            )


def _share_cut(p: np.ndarray, share: float) -> float:
    """The probability at which the top ``share`` of ``p`` starts: ``p >= cut`` holds for about ``share`` of rows
    (ties at the cut all included, so a boundary never splits equal probabilities)."""
    k = int(np.ceil(share * p.size))
    if k <= 0:
        return np.inf
    return float(np.sort(p)[::-1][k - 1])


def assign_risk_tier(churn_probability: ArrayLike, tiers: RiskTiers, is_lapsed: ArrayLike | None = None) -> np.ndarray:
    """The tier name (object array of ``str``, values in ``TIER_ORDER``) of each row.

    ``churn_probability``: calibrated probabilities in [0, 1], finite. ``is_lapsed``: optional booleans of the
    same length; True rows get ``"lapsed"`` whatever their probability and, with ``method="share"``, do not
    count towards the shares. Raises ``ValueError`` on a length mismatch, a non-finite or out-of-range
    probability.
    """
    p = np.asarray(churn_probability, dtype=np.float64).ravel()
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("churn_probability must hold finite probabilities in [0, 1]")
    lapsed = np.zeros(p.size, dtype=bool) if is_lapsed is None else np.asarray(is_lapsed, dtype=bool).ravel()
    if lapsed.size != p.size:
        raise ValueError(f"is_lapsed has {lapsed.size} values but churn_probability has {p.size}")
    if tiers.method == "probability":
        high_cut, medium_cut = tiers.high, tiers.medium
    else:
        active = p[~lapsed]
        high_cut, medium_cut = _share_cut(active, tiers.high), _share_cut(active, tiers.medium)
    out = np.full(p.size, "low", dtype=object)
    out[p >= medium_cut] = "medium"
    out[p >= high_cut] = "high"
    out[lapsed] = "lapsed"
    return out
