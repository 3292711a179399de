"""The scores table, schema version 1.3: one row per scored customer, the columns a CRM imports.

Written by ``churn score`` (Parquet) and turned into the CRM file by ``churn export``. Every column's meaning
and unit is listed in :data:`COLUMNS` (and in ``docs/scores_schema.md``, which a test keeps in step); the order
of :data:`COLUMNS` is the file's fixed column order. :func:`validate_scores` checks a table against it with
pandera before anything is written; :func:`value_problems` checks the same value rules (:data:`RANGES`,
:data:`VOCABULARIES`) on an Arrow table, for ``churn export`` reading a scores file. A change to a column's name,
type or meaning is a new ``SCHEMA_VERSION``.

Versions (``docs/scores_schema.md`` keeps the list for CRM users):

- ``1``: the first layout.
- ``1.1``: adds ``value_if_retained`` (revenue over the CLV horizon if the customer stays) and
  ``value_percentile`` (its rank, which the action rules' value conditions use), and ``value_at_risk`` becomes
  churn_probability x value_if_retained. In v1 it was churn_probability x predicted_clv, which counted the
  churn risk twice (predicted_clv is an expected revenue that already discounts for leaving), so the safest
  tier carried more value at risk than the riskiest.
- ``1.2``: adds, after ``schema_version`` (so the 22 columns of v1.1 keep their positions), the next-order
  (survival) model's ``order_probability_30d`` / ``_90d`` / ``_180d`` (P(at least one order within 30 / 90 / 180
  days of as_of_date), non-decreasing), ``days_to_next_order`` (the median of the survival curve, days; null
  when P(order within 180 days) < 0.5) and ``expected_next_order_date`` (as_of_date + that, rounded up to whole
  days; null with it), and ``lifetime_value`` (discounted gross margin over ``score.lifetime_value``
  horizon_months, models.lifetime).
- ``1.3``: adds, after ``lifetime_value`` (so v1.2's 28 columns keep their positions), targeting by expected
  profit (models.targeting): ``expected_uplift`` (the uplift model's predicted change in P(an order within the
  churn horizon) from the intended action; null where no uplift model covers it), ``expected_profit`` (shop
  currency: the expected profit of contacting with the intended action; 0 for no_action) and ``contact``
  (true exactly where the recommended action is a real action and its expected profit is positive: the
  contact list that maximises the campaign's expected profit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn_pipeline.models.tiers import TIER_ORDER
from churn_pipeline.pandera_shim import pandera

if TYPE_CHECKING:
    import pandera.pandas as pdr

# Key of the run summary (as-of date, models, counts) in a scores file's Parquet metadata.
METADATA_KEY = b"churn.scores"


def summary_from_metadata(metadata: dict[bytes, bytes] | None) -> dict:
    """The run summary stored under ``METADATA_KEY`` in a scores table's schema metadata ({} when absent)."""
    raw = (metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def summary_path(out: str) -> str:
    """Where the Spark engine writes the run summary beside a scores directory: ``scores.parquet`` ->
    ``scores.summary.json`` (a single file keeps it in its Parquet metadata instead)."""
    return str(out).rstrip("/").removesuffix(".parquet") + ".summary.json"


__all__ = [
    "COLUMNS",
    "HOLD_OUT",
    "MAX_MONEY",
    "MAX_ORDERS",
    "NEXT_ORDER_HORIZON_DAYS",
    "NEXT_ORDER_RULES",
    "ORDER_PROBABILITY_COLUMNS",
    "RANGES",
    "SCHEMA_VERSION",
    "VOCABULARIES",
    "Column",
    "arrow_schema",
    "columns_markdown",
    "validate_scores",
    "value_problems",
]

SCHEMA_VERSION = "1.3"
# The longest horizon of the next-order (survival) model, days: days_to_next_order is at most this, or null.
NEXT_ORDER_HORIZON_DAYS = 180
# P(at least one order within d days of as_of_date) for d = 30, 90, 180: non-decreasing along this tuple.
ORDER_PROBABILITY_COLUMNS = ("order_probability_30d", "order_probability_90d", "order_probability_180d")
# The recommended_action of control-group customers: never act on them.
HOLD_OUT = "hold_out"
# Recommended actions that are not a contact (models.actions.DEFAULT_ACTION and the control group's HOLD_OUT).
NOT_CONTACTED = ("no_action", HOLD_OUT)
CONTACT_RULE = "contact only where recommended_action is an action (not no_action, hold_out) with expected_profit > 0"


@dataclass(frozen=True)
class Column:
    """One column of the scores table: name, Arrow type, unit (or "-") and meaning."""

    name: str
    arrow_type: pa.DataType
    unit: str
    meaning: str
    nullable: bool = False


_REASON = (
    "the {nth} reason the churn model sees for this customer's risk (a feature pushing the score towards churn), "
    "as a plain sentence with the customer's own values, e.g. 'no order for 120 days; usually orders every 30 "
    "days'; empty when there is no {nth} such feature"
)
_NTH = {1: "strongest", 2: "second-strongest", 3: "third-strongest"}
_CODE = "the model feature behind reason_{n} (e.g. recency_days); empty when reason_{n} is"

COLUMNS: tuple[Column, ...] = (
    Column("customer_id", pa.string(), "-", "the shop's customer id, as in the input data (text)"),
    Column(
        "as_of_date",
        pa.date32(),
        "date (ISO 8601)",
        "the scoring cutoff: features use only data before 00:00 UTC of this day; horizons start on it",
    ),
    Column(
        "churn_probability",
        pa.float64(),
        "probability 0-1",
        "calibrated probability that the customer places no order in the churn horizon after as_of_date",
    ),
    Column(
        "churn_percentile",
        pa.int16(),
        "percentile 1-100",
        "rank of churn_probability among all customers in this file: 100 = the riskiest 1 %, ties share the "
        "higher percentile",
    ),
    Column(
        "risk_tier",
        pa.string(),
        "one of " + ", ".join(TIER_ORDER),
        "high / medium / low from churn_probability (params risk_tiers); lapsed = last order more than "
        "features.max_recency_days before as_of_date, whatever the probability",
    ),
    Column(
        "predicted_clv",
        pa.float64(),
        "shop currency",
        "expected net revenue (orders minus refunds) over the CLV horizon after as_of_date",
    ),
    Column(
        "clv_percentile",
        pa.int16(),
        "percentile 1-100",
        "rank of predicted_clv among all customers in this file: 100 = the most valuable 1 %",
    ),
    Column("expected_orders", pa.float64(), "orders", "expected number of orders over the CLV horizon"),
    Column(
        "value_if_retained",
        pa.float64(),
        "shop currency",
        "net revenue over the CLV horizon if the customer stays: predicted_clv / max(1 - churn_probability, "
        "score.min_stay_probability), since predicted_clv already discounts for leaving (new in v1.1)",
    ),
    Column(
        "value_percentile",
        pa.int16(),
        "percentile 1-100",
        "rank of value_if_retained among all customers in this file: 100 = the most valuable 1 % if kept; the "
        "action rules' min/max_value_percentile compare this (new in v1.1)",
    ),
    Column(
        "value_at_risk",
        pa.float64(),
        "shop currency",
        "churn_probability x value_if_retained: the revenue expected to be lost to churn (v1: x predicted_clv)",
    ),
    *(Column(f"reason_{n}", pa.string(), "-", _REASON.format(n=n, nth=_NTH[n]), nullable=True) for n in (1, 2, 3)),
    *(Column(f"reason_code_{n}", pa.string(), "-", _CODE.format(n=n), nullable=True) for n in (1, 2, 3)),
    Column(
        "recommended_action",
        pa.string(),
        "action name",
        f"what the CRM should do: the first matching rule of params score.actions; '{HOLD_OUT}' for the control "
        f"group (do nothing)",
    ),
    Column(
        "intended_action",
        pa.string(),
        "action name",
        "the rule table's action for every customer, control group included (what a control customer would have "
        "got): compare outcomes of treated and control customers with the same intended_action",
    ),
    Column(
        "control_group",
        pa.bool_(),
        "true/false",
        "held out from every action to measure the effect of the actions; stable for a customer across runs "
        "(keyed hash of customer_id, params score.control_group)",
    ),
    Column(
        "model_version",
        pa.string(),
        "-",
        "registered model versions that produced the row, e.g. 'churn:v7;clv:v7;next_order:v7'",
    ),
    Column("schema_version", pa.string(), "-", f"version of this column layout ('{SCHEMA_VERSION}')"),
    # New in v1.2, after schema_version so that positional importers of v1.1 keep working.
    *(
        Column(
            f"order_probability_{d}d",
            pa.float64(),
            "probability 0-1",
            f"probability that the customer places at least one order in [as_of_date, as_of_date + {d} days), from "
            f"the next-order (survival) model; order_probability_30d <= _90d <= _180d (new in v1.2)",
        )
        for d in (30, 90, 180)
    ),
    Column(
        "days_to_next_order",
        pa.float64(),
        "days",
        f"median time to the next order after as_of_date from the survival curve (the day by which the customer "
        f"has ordered with probability 0.5); empty when the customer is not expected to order within "
        f"{NEXT_ORDER_HORIZON_DAYS} days (order_probability_180d < 0.5) (new in v1.2)",
        nullable=True,
    ),
    Column(
        "expected_next_order_date",
        pa.date32(),
        "date (ISO 8601)",
        "as_of_date + days_to_next_order rounded up to whole days; empty when days_to_next_order is (new in v1.2)",
        nullable=True,
    ),
    Column(
        "lifetime_value",
        pa.float64(),
        "shop currency",
        "discounted gross margin over score.lifetime_value.horizon_months (default 36) in periods of the CLV "
        "horizon: predicted_clv in the first, each later one the previous one's revenue x the chance of an order "
        "within a CLV horizon (order_probability_180d at the default 180 days), all x margin and discounted at "
        "annual_discount_rate a year with cash at mid-period (models.lifetime) (new in v1.2)",
    ),
    # New in v1.3, after lifetime_value so that positional importers of v1.2 keep working.
    Column(
        "expected_uplift",
        pa.float64(),
        "probability -1 to 1",
        "the uplift model's predicted change in the probability of an order within the churn horizon had the "
        "customer been contacted with intended_action, trained on the shop's own campaigns (treatment against "
        "control); empty when no uplift model covers that action (new in v1.3)",
        nullable=True,
    ),
    Column(
        "expected_profit",
        pa.float64(),
        "shop currency",
        "expected profit of contacting the customer with intended_action over the CLV horizon: margin x the uplift "
        "model's predicted revenue uplift - the action's cost where the model covers the action, else the "
        "campaign economics of params evaluate (p (gamma (m v - d) - f) - (1 - p)(d + f)); 0 for no_action; may be "
        "negative (models.targeting) (new in v1.3)",
    ),
    Column(
        "contact",
        pa.bool_(),
        "true/false",
        "contact this customer now: recommended_action is a real action (not no_action, not hold_out) and its "
        "expected_profit is positive; the contact list that maximises the campaign's expected profit (new in v1.3)",
    ),
)

TEXT_COLUMNS = tuple(c.name for c in COLUMNS if pa.types.is_string(c.arrow_type))

# The value rules of the numeric columns, one source for validate_scores (pandera, before `churn score` writes)
# and value_problems (Arrow, when `churn export` reads a scores file): every value finite and within
# [low, high], bounds included. Money is net revenue of one customer over the CLV horizon: MAX_MONEY (ten
# trillion in any currency) is far beyond any real customer and far below what the export's decimal(18, 2)
# holds (1e16), so a broken model or a damaged file can never be printed as a wrong number.
MAX_MONEY = 1e13
MAX_ORDERS = 1e9
RANGES: dict[str, tuple[float, float]] = {
    "churn_probability": (0.0, 1.0),
    "churn_percentile": (1, 100),
    "predicted_clv": (0.0, MAX_MONEY),
    "clv_percentile": (1, 100),
    "expected_orders": (0.0, MAX_ORDERS),
    "value_if_retained": (0.0, MAX_MONEY),
    "value_percentile": (1, 100),
    "value_at_risk": (0.0, MAX_MONEY),
    **{name: (0.0, 1.0) for name in ORDER_PROBABILITY_COLUMNS},
    # Empty (null) beyond the survival model's horizon, never a number above it.
    "days_to_next_order": (0.0, float(NEXT_ORDER_HORIZON_DAYS)),
    "lifetime_value": (0.0, MAX_MONEY),
    "expected_uplift": (-1.0, 1.0),
    "expected_profit": (-MAX_MONEY, MAX_MONEY),
}
# Text columns whose values come from a fixed list.
VOCABULARIES: dict[str, tuple[str, ...]] = {"risk_tier": tuple(TIER_ORDER), "schema_version": (SCHEMA_VERSION,)}


# Rules across the next-order columns (new in v1.2), one numpy source for validate_scores and value_problems.
# Each rule marks the rows that break it among those whose inputs are present: an empty or NaN input is the
# range and empty-cell rules' business, not counted twice. Tolerances absorb rounding only.
_PROBABILITY_TOLERANCE = 1e-9
_DAYS_TOLERANCE = 1e-6
_NEXT_ORDER_INPUTS = (
    "as_of_date",
    *ORDER_PROBABILITY_COLUMNS,
    "days_to_next_order",
    "expected_next_order_date",
)
# (column reported, rule), in the order of _next_order_rules' masks.
NEXT_ORDER_RULES: tuple[tuple[str, str], ...] = (
    ("order_probability_90d", "order_probability_30d <= order_probability_90d <= order_probability_180d"),
    ("days_to_next_order", "days_to_next_order is empty exactly when order_probability_180d < 0.5"),
    ("days_to_next_order", "days_to_next_order <= 30 (90) exactly when order_probability_30d (_90d) >= 0.5"),
    (
        "expected_next_order_date",
        "expected_next_order_date = as_of_date + ceil(days_to_next_order), empty when days_to_next_order is",
    ),
)


def _next_order_rules(v: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The rows breaking each of :data:`NEXT_ORDER_RULES` (boolean masks). ``v`` holds float arrays, NaN = empty:
    the probabilities, days_to_next_order (days) and the two dates as days since 1970-01-01."""
    p30, p90, p180 = (v[name] for name in ORDER_PROBABILITY_COLUMNS)
    days, as_of, next_date = v["days_to_next_order"], v["as_of_date"], v["expected_next_order_date"]
    eps, tol = _PROBABILITY_TOLERANCE, _DAYS_TOLERANCE
    with np.errstate(invalid="ignore"):
        unordered = (p30 > p90 + eps) | (p90 > p180 + eps)
        empty_days = np.isnan(days)
        median_beyond = np.isfinite(p180) & (empty_days != (p180 < 0.5))
        # The median of the curve lies within d days exactly when P(an order within d days) reaches 0.5.
        disagrees = np.zeros(len(days), dtype=bool)
        for d, p in ((30, p30), (90, p90)):
            disagrees |= ((p > 0.5 + eps) & (days > d + tol)) | ((p < 0.5 - eps) & (days < d - tol))
        wrong_date = (np.isnan(next_date) != empty_days) | (
            ~empty_days & ~np.isnan(next_date) & ~np.isnan(as_of) & (next_date - as_of != np.ceil(days))
        )
    return [unordered, median_beyond, disagrees, wrong_date]


def _epoch_days(values: pd.Series) -> np.ndarray:
    """Dates (datetime64, date objects or None) as float days since 1970-01-01, NaN = empty."""
    stamps = pd.to_datetime(pd.Series(values).reset_index(drop=True))
    return ((stamps - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64, na_value=np.nan)


def _frame_rule(i: int):
    """Pandera check function of the i-th next-order rule: True where the row keeps it."""

    def check(df: pd.DataFrame) -> pd.Series:
        v = {
            name: _epoch_days(df[name]) if name.endswith("date") else pd.to_numeric(df[name]).to_numpy(np.float64)
            for name in _NEXT_ORDER_INPUTS
        }
        return pd.Series(~_next_order_rules(v)[i], index=df.index)

    return check


def arrow_schema(metadata: dict[str, str] | None = None) -> pa.Schema:
    """The scores table's Arrow schema, columns in the fixed order."""
    return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in COLUMNS], metadata=metadata)


def _pandera_schema() -> pdr.DataFrameSchema:
    pdr = pandera()
    checks: dict[str, list] = {name: [pdr.Check.in_range(lo, hi)] for name, (lo, hi) in RANGES.items()}
    for name, allowed in VOCABULARIES.items():
        checks[name] = [pdr.Check.isin(allowed)]
    columns = {
        c.name: pdr.Column(
            nullable=c.nullable,
            checks=checks.get(c.name, []),
            unique=c.name == "customer_id",
        )
        for c in COLUMNS
    }
    frame_checks = [
        pdr.Check(
            lambda df: pd.Series(
                np.isclose(df["value_at_risk"], df["churn_probability"] * df["value_if_retained"], rtol=1e-9),
                index=df.index,
            ),
            error="value_at_risk = churn_probability x value_if_retained",
        ),
        # The floor on the stay probability is a score param, so the check brackets the value instead of
        # recomputing it: staying can only add revenue, and by at most the factor 1 / (1 - p).
        pdr.Check(
            lambda df: pd.Series(
                (df["value_if_retained"] >= df["predicted_clv"] * (1 - 1e-9))
                & (df["value_if_retained"] * (1 - df["churn_probability"]) <= df["predicted_clv"] * (1 + 1e-9)),
                index=df.index,
            ),
            error="predicted_clv <= value_if_retained <= predicted_clv / (1 - churn_probability)",
        ),
        pdr.Check(
            lambda df: ~df["control_group"] | (df["recommended_action"] == HOLD_OUT),
            error=f"control_group customers have recommended_action {HOLD_OUT!r}",
        ),
        pdr.Check(
            lambda df: ~df["contact"]
            | (~df["recommended_action"].isin(NOT_CONTACTED) & (df["expected_profit"] > 0)),
            error=CONTACT_RULE,
        ),
        pdr.Check(
            lambda df: df["reason_1"].notna() | df["reason_2"].isna(),
            error="reasons fill from reason_1 on",
        ),
        *(pdr.Check(_frame_rule(i), error=rule) for i, (_, rule) in enumerate(NEXT_ORDER_RULES)),
    ]
    return pdr.DataFrameSchema(columns, checks=frame_checks, strict=True, ordered=True)


def validate_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Check a scores table against the schema (columns, order, ranges, rules); raises ``ValueError`` listing
    every broken rule with its number of rows and a few failing values (never customer ids)."""
    try:
        return _pandera_schema().validate(frame, lazy=True)
    except pandera().errors.SchemaErrors as exc:
        cases = exc.failure_cases
        lines = []
        # A rule over several columns fails once per row, whatever the number of columns it reports.
        whole = cases["schema_context"].eq("DataFrameSchema") & cases["index"].notna()
        for check, group in cases[whole].groupby("check", sort=True):
            lines.append(f"{check} ({group['index'].nunique()} rows)")
        for (column, check), group in cases[~whole].groupby(["column", "check"], dropna=False, sort=True):
            examples = "" if column == "customer_id" else f", e.g. {group['failure_case'].head(3).tolist()}"
            lines.append(f"{column}: {check} ({len(group)} rows{examples})")
        raise ValueError(f"scores table breaks schema v{SCHEMA_VERSION}: " + "; ".join(lines)) from exc


def value_problems(table: pa.Table) -> list[str]:
    """What a scores table of the right columns and types breaks of the value rules (:data:`RANGES`,
    :data:`VOCABULARIES`, no empty cell in a column that may not be empty, control-group rows held out, the
    next-order rules :data:`NEXT_ORDER_RULES`), as ``"column: N rows ..."`` lines; counts only, never a value.
    Vectorised (Arrow compute, numpy)."""
    rows = table.num_rows
    problems = []
    for col in COLUMNS:
        empty = table.column(col.name).null_count
        if empty and not col.nullable:
            problems.append(f"{col.name}: {empty:,} rows empty")
    for name, (low, high) in RANGES.items():
        values = table.column(name)
        ok = pc.and_(pc.greater_equal(values, low), pc.less_equal(values, high))
        if pa.types.is_floating(values.type):
            ok = pc.and_(ok, pc.is_finite(values))
        bad = rows - values.null_count - int(pc.sum(ok).as_py() or 0)
        if bad:
            what = "NaN, infinite or " if pa.types.is_floating(values.type) else ""
            problems.append(f"{name}: {bad:,} rows {what}outside [{low:g}, {high:g}]")
    for name, allowed in VOCABULARIES.items():
        values = table.column(name)
        known = int(pc.sum(pc.is_in(values, value_set=pa.array(allowed, pa.string()))).as_py() or 0)
        bad = rows - values.null_count - known
        if bad:
            problems.append(f"{name}: {bad:,} rows not one of {', '.join(allowed)}")
    acted_on = pc.and_(table.column("control_group"), pc.not_equal(table.column("recommended_action"), HOLD_OUT))
    bad = int(pc.sum(pc.fill_null(acted_on, False)).as_py() or 0)
    if bad:
        problems.append(f"recommended_action: {bad:,} control_group rows not {HOLD_OUT!r} (never act on them)")
    values = {}
    for name in _NEXT_ORDER_INPUTS:
        column = table.column(name)
        if pa.types.is_date32(column.type):
            column = pc.cast(column, pa.int32())
        values[name] = column.to_numpy().astype(np.float64)  # nulls become NaN
    contacted = pc.fill_null(table.column("contact"), False)
    wrong = pc.and_(
        contacted,
        pc.or_(
            pc.is_in(table.column("recommended_action"), value_set=pa.array(NOT_CONTACTED, pa.string())),
            pc.less_equal(table.column("expected_profit"), 0.0),
        ),
    )
    bad = int(pc.sum(pc.fill_null(wrong, False)).as_py() or 0)
    if bad:
        problems.append(f"contact: {bad:,} rows break {CONTACT_RULE}")
    for (name, rule), broken in zip(NEXT_ORDER_RULES, _next_order_rules(values), strict=True):
        bad = int(broken.sum())
        if bad:
            problems.append(f"{name}: {bad:,} rows break {rule}")
    return problems


def columns_markdown() -> str:
    """The column table of ``docs/scores_schema.md``: name, type, unit, meaning."""
    lines = ["| # | column | type | unit | meaning |", "|---|---|---|---|---|"]
    for i, c in enumerate(COLUMNS, start=1):
        kind = str(c.arrow_type) + (", may be empty" if c.nullable else "")
        lines.append(f"| {i} | `{c.name}` | {kind} | {c.unit} | {c.meaning} |")
    return "\n".join(lines)
