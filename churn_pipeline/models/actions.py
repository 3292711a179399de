"""What to do about each scored customer: a rule table, first match wins, plus a stable control group.

Grain: one row per scored customer. **Rules** (params.yaml ``score.actions``) are tried top to bottom; a
customer gets the ``action`` of the first rule whose every condition holds. Conditions (all optional):

- ``tiers``: the customer's ``risk_tier`` is one of these (``high``, ``medium``, ``low``, ``lapsed``);
- ``min_value_percentile`` / ``max_value_percentile``: ``value_percentile`` (1-100, 100 = most valuable) is at
  least / at most this. It ranks ``value_if_retained``, the revenue over the CLV horizon *if the customer stays*
  (models.evaluation.value_if_retained), the value a retention action can save, so a risky customer is not ranked
  low merely because the CLV model already discounts them for leaving;
- ``min_clv``: ``predicted_clv`` (shop currency, expected revenue over the CLV horizon) is at least this;
- ``min_value_if_retained``: ``value_if_retained`` (shop currency, revenue over the CLV horizon if the customer
  stays) is at least this: a **value floor** below which an action with a cost loses money. For a contact that
  costs ``f``, offers an incentive ``d`` and wins back a share ``gamma`` of the would-be churners, worth the
  margin ``m`` of their value ``v`` (the evaluate stage's campaign, models.evaluation), contacting a customer
  with churn probability ``p`` pays on average ``p * (gamma * (m * v - d) - f) - (1 - p) * (d + f)``, so it
  breaks even at :func:`break_even_value`, ``v = (d * (1 - p + p * gamma) + f) / (p * gamma * m)``: lowest for a
  sure churner (``p = 1``: ``(d + f / gamma) / m``) and higher the likelier the customer stays anyway. A rule's
  floor is that value at the lowest churn probability of its tiers (params.yaml ``score.actions`` comments);
- ``max_tenure_days`` / ``min_tenure_days``: days since the first order are below / at least this ("new
  customers": ``max_tenure_days: 60``);
- ``reason_features``: one of the customer's reason codes starts with one of these feature-name prefixes
  (``email_`` matches every e-mail feature, ``recency_days`` just that one);
- ``max_days_to_next_order`` / ``min_days_to_next_order``: ``days_to_next_order`` (scores v1.2: the median days
  from the as-of date to the next order, from the next-order survival model; empty when the customer is not
  expected to order within 180 days) is at most / at least this, days in [0, 180]. An empty
  ``days_to_next_order`` (not expected to order within 180 days, so later than any bound) never matches
  ``max_days_to_next_order`` and always matches ``min_days_to_next_order`` ("due soon": ``max_days_to_next_order:
  30``; "overdue or drifting away": ``min_days_to_next_order: 90``).

- ``min_expected_profit``: the expected profit of contacting the customer with the rule's action (shop currency,
  scores v1.3 ``expected_profit``, :mod:`models.targeting`) is at least this: from the uplift model where it
  covers the action (margin x the predicted revenue uplift - the action's cost), else from the campaign
  economics above (``p * (gamma * (m * v - d) - f) - (1 - p) * (d + f)``).

The special action ``most_profitable`` gives each customer the action the **uplift model** expects to pay most
(the argmax of the expected profits over the actions it covers); such a rule must have ``min_expected_profit``
(it fires only where the best action pays at least that). Without an uplift model (no contacts table, too few
contacts) :func:`applicable_rules` drops it with a warning and its customers fall through to the rules below, so
the default table targets by expected profit where a shop's campaign history allows and by the rules elsewhere.

The last rule must have no condition: it is the default (``no_action``). A rule that can never fire because an
unconditional rule comes before it is an error, and so is an unknown tier or key (the params loader names the
rule). A rule whose ``reason_features`` match no feature of the churn model (e.g. e-mail and session rules on a
shop without events) is not an error: :func:`applicable_rules` drops it with a warning, so one rule table serves
shops with and without engagement data; its customers fall through to the next rule that matches.
:func:`recommend` evaluates the whole table at once (``np.select``), never customer by customer.

**Control group**: a share of customers held out from every action, to measure what the actions achieve. Who is
in it depends only on ``customer_id`` and a salt: a keyed 64-bit SipHash-2-4 of the id (pandas' ``hash_array``,
key derived from the salt) scaled to [0, 1) and compared with the share. So a customer stays in (or out of) the
control group in every run, whatever the row order, the other customers or the run date, as long as the salt
and the share stay; a larger share keeps everyone who was in and adds more. Change the salt to draw a new group.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from churn_pipeline.models.crm import keyed_hash
from churn_pipeline.models.scores_schema import NEXT_ORDER_HORIZON_DAYS
from churn_pipeline.models.tiers import TIER_ORDER

__all__ = [
    "DEFAULT_ACTION",
    "DEFAULT_ACTIONS",
    "MOST_PROFITABLE",
    "ActionRule",
    "applicable_rules",
    "break_even_value",
    "control_group",
    "recommend",
    "validate_rules",
]

DEFAULT_ACTION = "no_action"
# A rule action resolved per customer to the uplift model's most profitable action (module docstring).
MOST_PROFITABLE = "most_profitable"
_ACTION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Reserved for control-group customers (models.scores_schema.HOLD_OUT); a rule may not hand it out.
_RESERVED = ("hold_out",)


@dataclass(frozen=True)
class ActionRule:
    """One row of the rule table (module docstring); ``name`` is a label for people and error messages."""

    action: str
    name: str = ""
    tiers: tuple[str, ...] | None = None
    min_value_percentile: int | None = None
    max_value_percentile: int | None = None
    min_clv: float | None = None
    min_value_if_retained: float | None = None
    max_tenure_days: float | None = None
    min_tenure_days: float | None = None
    reason_features: tuple[str, ...] | None = None
    max_days_to_next_order: float | None = None
    min_days_to_next_order: float | None = None
    min_expected_profit: float | None = None

    def __post_init__(self) -> None:
        label = self.label
        if not isinstance(self.action, str) or not _ACTION_NAME.match(self.action):
            raise ValueError(f"{label}: action must be a lower_snake_case name, got {self.action!r}")
        if self.action in _RESERVED:
            raise ValueError(f"{label}: {self.action!r} is reserved for the control group")
        if self.tiers is not None:
            unknown = [t for t in self.tiers if t not in TIER_ORDER]
            if unknown or not self.tiers:
                raise ValueError(f"{label}: unknown tier(s) {unknown or '[]'}; tiers are {list(TIER_ORDER)}")
        for key in ("min_value_percentile", "max_value_percentile"):
            value = getattr(self, key)
            if value is not None and not 1 <= value <= 100:
                raise ValueError(f"{label}: {key} must be a percentile 1-100, got {value}")
        if (
            self.min_value_percentile is not None
            and self.max_value_percentile is not None
            and self.min_value_percentile > self.max_value_percentile
        ):
            raise ValueError(f"{label}: min_value_percentile is above max_value_percentile, so it never matches")
        if self.min_value_if_retained is not None and not np.isfinite(self.min_value_if_retained):
            raise ValueError(f"{label}: min_value_if_retained must be finite, got {self.min_value_if_retained}")
        for key in ("max_tenure_days", "min_tenure_days"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ValueError(f"{label}: {key} must be >= 0 days, got {value}")
        for key in ("max_days_to_next_order", "min_days_to_next_order"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= NEXT_ORDER_HORIZON_DAYS:  # NaN fails too
                raise ValueError(
                    f"{label}: {key} must be days in [0, {NEXT_ORDER_HORIZON_DAYS}] (days_to_next_order is empty "
                    f"beyond the next-order model's {NEXT_ORDER_HORIZON_DAYS} days), got {value}"
                )
        if (
            self.min_days_to_next_order is not None
            and self.max_days_to_next_order is not None
            and self.min_days_to_next_order > self.max_days_to_next_order
        ):
            raise ValueError(f"{label}: min_days_to_next_order is above max_days_to_next_order, so it never matches")
        if self.min_expected_profit is not None and not np.isfinite(self.min_expected_profit):
            raise ValueError(f"{label}: min_expected_profit must be finite, got {self.min_expected_profit}")
        if self.action == MOST_PROFITABLE and self.min_expected_profit is None:
            raise ValueError(
                f"{label}: action {MOST_PROFITABLE!r} needs min_expected_profit (the least expected profit, shop "
                f"currency, at which the uplift model's best action is worth a contact; e.g. 1.0)"
            )
        if self.reason_features is not None and (
            not self.reason_features or not all(isinstance(p, str) and p for p in self.reason_features)
        ):
            raise ValueError(f"{label}: reason_features must list feature names or prefixes")

    @property
    def label(self) -> str:
        return f"rule {self.name!r}" if self.name else f"rule with action {self.action!r}"

    @property
    def uses_days_to_next_order(self) -> bool:
        """True when a condition compares ``days_to_next_order``."""
        return self.max_days_to_next_order is not None or self.min_days_to_next_order is not None

    @property
    def is_default(self) -> bool:
        """True when the rule has no condition (it matches everyone)."""
        return all(getattr(self, f.name) is None for f in fields(self) if f.name not in ("action", "name"))


def break_even_value(
    contact_cost: float,
    incentive_cost: float,
    acceptance_rate: float,
    value_margin: float,
    churn_probability: float = 1.0,
) -> float:
    """The value if retained (shop currency) at which contacting a customer with ``churn_probability`` breaks
    even (module docstring, ``min_value_if_retained``): ``(d * (1 - p + p * gamma) + f) / (p * gamma * m)``.

    With the shop's costs (params.yaml ``evaluate``: f = 1, d = 10, gamma = 0.3, m = 0.3) it is 44.44 for a sure
    churner (p = 1), 75.00 at p = 0.8 and 166.67 at p = 0.5. Infinite when the action can never pay
    (``p * gamma * m == 0``)."""
    p, f, d, gamma, m = churn_probability, contact_cost, incentive_cost, acceptance_rate, value_margin
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"churn_probability must lie in [0, 1], got {p}")
    gain = p * gamma * m
    return float("inf") if gain <= 0 else (d * (1.0 - p + p * gamma) + f) / gain


def validate_rules(rules: Sequence[ActionRule]) -> None:
    """Raise ``ValueError`` unless the table is usable: at least one rule, the last one unconditional, none after
    an unconditional one (it could never fire)."""
    if not rules:
        raise ValueError(f"the action rule table is empty; end it with a rule without conditions ({DEFAULT_ACTION})")
    for i, rule in enumerate(rules[:-1]):
        if rule.is_default:
            raise ValueError(
                f"actions[{i}] ({rule.label}) has no condition, so the {len(rules) - i - 1} rule(s) after it never "
                f"fire; give it a condition or move it to the end"
            )
    if not rules[-1].is_default:
        raise ValueError(
            f"the last action rule ({rules[-1].label}) has conditions; end the table with a rule without conditions "
            f"(e.g. action: {DEFAULT_ACTION}) so every customer gets an action"
        )


def applicable_rules(
    rules: Sequence[ActionRule], features: Sequence[str], uplift_actions: Sequence[str] | None = None
) -> tuple[tuple[ActionRule, ...], list[str]]:
    """The rules the churn model's ``features`` can satisfy, and one warning per rule left out or narrowed.

    ``uplift_actions``: the actions the uplift model covers (None or empty: no uplift model); a
    ``most_profitable`` rule is left out, with a warning, when there are none.

    A rule whose ``reason_features`` prefixes all match none of ``features`` can never fire (the model has no
    such reason to give, e.g. e-mail rules for a model trained without events): it is left out, with a warning
    naming it (``actions[i]``) and why. A rule with some prefixes that match and some that do not is kept (the
    matching ones work) with a warning naming the dead prefixes, which may be typos. The table must already be
    valid (:func:`validate_rules`); the default rule has no ``reason_features``, so what is kept stays valid.
    """
    kept: list[ActionRule] = []
    warnings: list[str] = []
    for i, rule in enumerate(rules):
        if rule.action == MOST_PROFITABLE and not uplift_actions:
            warnings.append(
                f"actions[{i}] ({rule.label}) skipped: no uplift model (it needs a contacts table with enough "
                f"treated and control customers per action: `churn uplift`); its customers go to the next matching "
                f"rule"
            )
            continue
        prefixes = rule.reason_features or ()
        dead = [p for p in prefixes if not any(f.startswith(p) for f in features)]
        if prefixes and len(dead) == len(prefixes):
            warnings.append(
                f"actions[{i}] ({rule.label}) skipped: none of its reason_features {list(prefixes)} is a feature of "
                f"the churn model (trained without that data, e.g. no events table); its customers go to the next "
                f"matching rule"
            )
            continue
        if dead:
            warnings.append(
                f"actions[{i}] ({rule.label}): reason_features {dead} match no feature of the churn model (a typo, or "
                f"data the model was trained without); the rule uses the others"
            )
        kept.append(rule)
    return tuple(kept), warnings


def recommend(
    rules: Sequence[ActionRule],
    risk_tier: np.ndarray,
    value_percentile: np.ndarray,
    predicted_clv: np.ndarray,
    tenure_days: np.ndarray,
    reason_codes: Sequence[np.ndarray],
    value_if_retained: np.ndarray | None = None,
    days_to_next_order: np.ndarray | None = None,
    expected_profit: Callable[[str], np.ndarray] | None = None,
    most_profitable: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The action of the first matching rule for every customer (object array of names).

    All inputs are row-aligned arrays: ``value_percentile`` 1-100 (rank of value if retained, module docstring),
    ``predicted_clv`` in shop currency, ``tenure_days`` in days (NaN = unknown, matches no tenure condition);
    ``reason_codes`` holds one array of feature names (None = no reason) per reason slot; ``value_if_retained``
    in shop currency (NaN matches no value floor), required when a rule has ``min_value_if_retained``;
    ``days_to_next_order`` in days after the as-of date (NaN or None = empty: not expected to order within 180
    days), required when a rule has ``max_days_to_next_order`` or ``min_days_to_next_order``.
    """
    validate_rules(rules)
    n = len(risk_tier)
    if value_if_retained is None and any(r.min_value_if_retained is not None for r in rules):
        raise ValueError("a rule has min_value_if_retained: pass value_if_retained")
    timed = [r.label for r in rules if r.uses_days_to_next_order]
    if days_to_next_order is None and timed:
        raise ValueError(
            f"{', '.join(timed)} compare(s) days_to_next_order (max/min_days_to_next_order), but the scores have no "
            f"days_to_next_order: it needs scores schema v1.2 and the next-order (survival) model; pass "
            f"days_to_next_order or drop those conditions"
        )
    if expected_profit is None and any(r.min_expected_profit is not None for r in rules):
        raise ValueError("a rule has min_expected_profit: pass expected_profit")
    if most_profitable is None and any(r.action == MOST_PROFITABLE for r in rules):
        raise ValueError(f"a rule has action {MOST_PROFITABLE!r}: pass most_profitable (needs an uplift model)")
    retained = np.full(n, np.nan) if value_if_retained is None else np.asarray(value_if_retained, dtype=np.float64)
    next_order = np.full(n, np.nan) if days_to_next_order is None else _days(days_to_next_order)
    tier = np.asarray(risk_tier, dtype=object)
    value_pct = np.asarray(value_percentile)
    clv = np.asarray(predicted_clv, dtype=np.float64)
    tenure = np.asarray(tenure_days, dtype=np.float64)
    codes = [pd.Series(np.asarray(c, dtype=object)).astype(object) for c in reason_codes]
    conditions, choices = [], []
    for rule in rules:
        ok = np.ones(n, dtype=bool)
        if rule.min_expected_profit is not None:
            if rule.action == MOST_PROFITABLE:
                ok &= np.asarray(most_profitable[1], dtype=np.float64) >= rule.min_expected_profit
            else:
                ok &= np.asarray(expected_profit(rule.action), dtype=np.float64) >= rule.min_expected_profit
        if rule.tiers is not None:
            ok &= np.isin(tier, list(rule.tiers))
        if rule.min_value_percentile is not None:
            ok &= value_pct >= rule.min_value_percentile
        if rule.max_value_percentile is not None:
            ok &= value_pct <= rule.max_value_percentile
        if rule.min_clv is not None:
            ok &= clv >= rule.min_clv
        if rule.min_value_if_retained is not None:
            ok &= retained >= rule.min_value_if_retained
        if rule.max_tenure_days is not None:
            ok &= tenure < rule.max_tenure_days
        if rule.min_tenure_days is not None:
            ok &= tenure >= rule.min_tenure_days
        if rule.max_days_to_next_order is not None:
            ok &= next_order <= rule.max_days_to_next_order  # empty (NaN): not within 180 days, never matches
        if rule.min_days_to_next_order is not None:
            ok &= (next_order >= rule.min_days_to_next_order) | np.isnan(next_order)  # empty: later than any bound
        if rule.reason_features is not None:
            prefixes = tuple(rule.reason_features)
            hit = np.zeros(n, dtype=bool)
            for slot in codes:
                hit |= slot.str.startswith(prefixes).fillna(False).to_numpy(dtype=bool)
            ok &= hit
        conditions.append(ok)
        choices.append(np.asarray(most_profitable[0], dtype=object) if rule.action == MOST_PROFITABLE else rule.action)
    return np.select(conditions, choices, default=rules[-1].action).astype(object)


def _days(values: np.ndarray | pd.Series | Sequence[float | None]) -> np.ndarray:
    """Days as float64 with NaN for empty (None or NaN; pandas NA too in a Series)."""
    if isinstance(values, pd.Series):
        return pd.to_numeric(values).to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(values, dtype=np.float64)


def unit_hash(values: Sequence[str] | np.ndarray | pd.Series, salt: str) -> np.ndarray:
    """A keyed hash of each text value mapped to [0, 1): the same value and salt give the same number on every
    run, machine and row order."""
    # The top 53 bits give a double in [0, 1) exactly.
    return (keyed_hash(values, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def control_group(customer_ids: Sequence[str] | np.ndarray | pd.Series, share: float, salt: str) -> np.ndarray:
    """True for customers held out of every action (module docstring); about ``share`` of them."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"control group share must be in [0, 1), got {share}")
    return unit_hash(customer_ids, salt) < share


# The default rule table: the one source of pipelines.params.ScoreParams.actions; params.yaml ``score.actions`` ships
# the same rules (tests/pipelines/test_params_defaults.py checks that they agree).
DEFAULT_ACTIONS = (
    ActionRule(name="uplift model: the most profitable action", action=MOST_PROFITABLE, min_expected_profit=1.0),
    ActionRule(
        name="new customers at risk: onboarding journey",
        tiers=("high", "medium", "low"),
        max_tenure_days=60.0,
        action="onboarding",
    ),
    ActionRule(
        name="valuable customers at high risk: personal outreach",
        tiers=("high",),
        min_value_percentile=60,
        action="personal_outreach",
    ),
    # Value floors: break-even value if retained at the evaluate costs (params.yaml score.actions comments).
    ActionRule(
        name="lapsed, worth the coupon: win-back e-mail with coupon",
        tiers=("lapsed",),
        min_value_if_retained=45.0,
        action="winback_email_coupon",
    ),
    ActionRule(
        name="high risk, worth the coupon: win-back e-mail with coupon",
        tiers=("high",),
        min_value_if_retained=75.0,
        action="winback_email_coupon",
    ),
    ActionRule(
        name="medium risk, disengaging: loyalty points boost",
        tiers=("medium",),
        reason_features=("sessions_", "days_since_last_session", "page_views_", "email_", "days_since_last_email"),
        action="loyalty_points_boost",
    ),
    ActionRule(
        name="medium risk otherwise, worth the coupon: win-back e-mail with coupon",
        tiers=("medium",),
        min_value_if_retained=167.0,
        action="winback_email_coupon",
    ),
    ActionRule(
        name="safe and valuable: cross-sell / upsell",
        tiers=("low",),
        min_value_percentile=80,
        action="cross_sell_upsell",
    ),
    ActionRule(name="everyone else", action="no_action"),
)
