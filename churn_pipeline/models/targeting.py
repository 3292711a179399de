"""Targeting by expected profit: each scored customer's expected uplift and profit of a retention action, and the
contact list (scores schema v1.3: ``expected_uplift``, ``expected_profit``, ``contact``).

Grain: one row per scored customer at the as-of date. Money is shop currency over the CLV horizon
(``labels.clv_horizon_days``), probabilities are shares 0-1.

Two sources of the expected profit of contacting a customer with action ``a``:

- **The uplift model** (:mod:`models.uplift`, trained on the shop's own campaigns, treatment against control),
  where it covers ``a``: ``margin x uplift_revenue_a - cost_a``, with ``uplift_revenue_a`` the predicted change in
  net revenue over the CLV horizon had the customer been contacted, ``cost_a`` the mean cost of a treated contact of
  ``a`` in the contact history (the campaign economics' ``contact_cost + incentive_cost`` where unknown).
  ``expected_uplift`` is its predicted change in P(an order within the churn horizon). The revenue uplift already
  counts what a retained customer buys within the horizon; value beyond it is not counted (a conservative choice).
- **The campaign economics** (params ``evaluate``: Verbraken et al.'s campaign, :func:`models.evaluation.
  campaign_value_score`) for every other action: ``p (gamma (m v - d) - f) - (1 - p)(d + f)`` with the churn
  probability ``p`` and the value if retained ``v``. ``expected_uplift`` is empty: nothing was measured.

``no_action`` and ``hold_out`` (the control group) cost and earn nothing: expected profit 0 for no_action; a
control-group customer carries the expected profit of the action held back from them (so the CRM sees what the
hold-out costs), but is never contacted. ``contact`` is true exactly where the recommended action is a real action
with positive expected profit: contacting those customers, and nobody else, maximises the expected profit of the
campaign under the models (each contact's profit adds up), which is the contact-list form of the evaluation's
best share (``churn evaluate``: the share of customers whose contact maximises the campaign's profit).

Pure functions: no I/O, no params reading, inputs never mutated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churn_pipeline.models.actions import DEFAULT_ACTION
from churn_pipeline.models.evaluation import Campaign, campaign_value_score
from churn_pipeline.models.scores_schema import NOT_CONTACTED

__all__ = ["UpliftPredictions", "contact_list", "expected_profit_for", "most_profitable", "uplift_predictions"]


@dataclass(frozen=True)
class UpliftPredictions:
    """The uplift model's predictions for a batch of customers, row-aligned: per covered action the predicted
    change in retention probability and in net revenue over the CLV horizon, and the action's cost per contact."""

    retention: dict[str, np.ndarray]
    revenue: dict[str, np.ndarray]
    cost: dict[str, float]

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self.retention)

    def profit(self, action: str, margin: float) -> np.ndarray:
        """Expected profit (shop currency) of contacting with a covered ``action``: margin x revenue uplift - cost."""
        return margin * self.revenue[action] - self.cost[action]


def uplift_predictions(model: Any, frame: pd.DataFrame, campaign: Campaign) -> UpliftPredictions:
    """Predictions of a fitted :class:`models.uplift.UpliftModel` for ``frame`` (feature rows). An action whose
    contacts carried no cost is charged the campaign economics' ``contact_cost + incentive_cost``."""
    table = model.predict_uplift(frame)
    fallback = campaign.contact_cost + campaign.incentive_cost
    retention, revenue, cost = {}, {}, {}
    for action in model.actions_:
        retention[action] = table[f"uplift_retention__{action}"].to_numpy(np.float64)
        revenue[action] = table[f"uplift_revenue__{action}"].to_numpy(np.float64)
        known = float(model.cost_.get(action, np.nan))
        cost[action] = known if np.isfinite(known) else fallback
    return UpliftPredictions(retention, revenue, cost)


def most_profitable(uplift: UpliftPredictions, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's most profitable covered action and its expected profit (ties: the first action in the
    model's order). Raises ValueError when the model covers no action."""
    if not uplift.actions:
        raise ValueError("the uplift model covers no action")
    profits = np.column_stack([uplift.profit(a, margin) for a in uplift.actions])
    best = np.argmax(profits, axis=1)
    return np.asarray(uplift.actions, dtype=object)[best], profits[np.arange(len(best)), best]


def expected_profit_for(
    action: np.ndarray | Sequence[str],
    churn_probability: np.ndarray,
    value_if_retained: np.ndarray,
    campaign: Campaign,
    uplift: UpliftPredictions | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(expected_uplift, expected_profit)`` of each customer's ``action`` (module docstring): the uplift
    model's where it covers the action (uplift in probability points as a share, profit in currency), else
    empty uplift (NaN) and the campaign economics' profit; 0 profit for ``no_action``."""
    action = np.asarray(action, dtype=object)
    n = len(action)
    expected_uplift = np.full(n, np.nan)
    expected_profit = campaign_value_score(churn_probability, value_if_retained, campaign)
    expected_profit[action == DEFAULT_ACTION] = 0.0
    for a in uplift.actions if uplift is not None else ():
        rows = action == a
        if rows.any():
            expected_uplift[rows] = uplift.retention[a][rows]
            expected_profit[rows] = uplift.profit(a, campaign.value_margin)[rows]
    return expected_uplift, expected_profit


def contact_list(recommended_action: np.ndarray | Sequence[str], expected_profit: np.ndarray) -> np.ndarray:
    """True where the recommended action is a real action (not no_action, not the control group's hold_out) and
    its expected profit is positive (module docstring)."""
    recommended = np.asarray(recommended_action, dtype=object)
    return ~np.isin(recommended, NOT_CONTACTED) & (np.asarray(expected_profit, dtype=np.float64) > 0.0)
