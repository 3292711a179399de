"""What each retention campaign achieved: treated against control contacts, in retention and in money.

Pure functions: frames in, new frames out. Nothing here reads or writes files or params, no input is modified.
The contact-to-order matching runs as DuckDB range joins (the frames are registered, not copied into Python
objects), so it scales to millions of orders; everything after it works on one row per contact or per campaign
with vectorised pandas.

- :func:`campaign_ids`: each contact's campaign, ``<contact date>-<action>`` where ``campaign_id`` is null.
- :func:`contact_outcomes`: per contact, what the customer did after it (retained, net revenue, orders), whether
  that is fully observed yet (``followed_up``) and whether an earlier contact of the same customer overlaps it.
- :func:`measure_effects`: per (action, campaign) and per action over its campaigns, treatment against control:
  retention difference, net revenue difference, profit per contacted customer, each with a confidence interval,
  and a verdict.
- :func:`measurement_summary`: the counts and messages about what was left out and why (nothing is dropped
  silently).

Time: timestamps are UTC, naive or zone-aware (converted to UTC), as in docs/data_contract.md. A window
``[t, t + d days)`` includes its start and excludes its end. Money: the shop's currency.

Statistics (``measure_effects``). Contacts are assumed randomised into treatment and control within a campaign.

- Retention difference: rate(treatment) - rate(control), with the normal-approximation (Wald, unpooled) interval
  ``d ± z sqrt(p_t (1 - p_t) / n_t + p_c (1 - p_c) / n_c)``, ``z`` the ``(1 + confidence) / 2`` normal quantile.
  Shown in percentage points. Coverage checked by simulation (tests/models/test_measure.py).
- Net revenue difference: mean(treatment) - mean(control), Welch's normal approximation
  ``d ± z sqrt(s_t^2 / n_t + s_c^2 / n_c)`` (sample variances). Revenue is heavy-tailed (many zeros, a few big
  spenders); at the group sizes this stage asks for (``min_group_size``, 200 by default) the mean is close
  enough to normal that the interval keeps its coverage (checked by simulation on zero-inflated log-normal
  revenue); a bootstrap would cost a resampling loop per campaign for little gain at these sizes.
- Profit per contacted customer: ``margin x revenue difference - mean cost per treated customer``; its interval
  is the revenue interval scaled by the margin and shifted by the cost (the cost is taken as known). Unknown
  costs (null) are left out of the mean; when no cost of a campaign is known it is taken as 0 (noted).
- Per action ("all"): the campaigns' differences averaged with weights ``n_k / sum n`` (treated plus control
  contacts of each campaign), variances ``sum w_k^2 var_k``: a stratified estimate of the average effect over the
  measured contacts that a pooled difference would bias when campaigns hold different treated shares and base
  rates. The rates shown are weighted the same way, so the difference is the difference of the rates shown. Only
  campaigns with at least 2 treated and 2 control contacts take part (the rest are noted).
- Verdict: "no control group" (no control contact), "too small to tell" (either group below ``min_group_size``,
  or the profit interval covers 0), "pays" (the whole profit interval above 0), "does not pay" (below 0).

Bad input is counted and reported, never dropped silently: contacts not yet followed up are excluded and counted;
a customer contacted again within the revenue window of an earlier contact (overlapping campaigns) is measured
with the first contact only and the later ones are set aside and counted (the first contact's window may then
include the later campaign's effect: a limitation, counted so it can be judged); treated contacts without any
control are listed with the verdict "no control group"; actions the rule table does not know are measured and
listed as a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import duckdb
import numpy as np
import pandas as pd

__all__ = [
    "ALL_CAMPAIGNS",
    "EFFECT_COLUMNS",
    "GROUPS",
    "OUTCOME_COLUMNS",
    "VERDICTS",
    "campaign_ids",
    "contact_outcomes",
    "measure_effects",
    "measurement_summary",
]

GROUPS = ("treatment", "control")
# campaign_id of the per-action rows of measure_effects (their ``level`` is "action").
ALL_CAMPAIGNS = "all"
VERDICTS = ("pays", "does not pay", "too small to tell", "no control group")
# Columns contact_outcomes adds to the contacts.
OUTCOME_COLUMNS = ("retained", "orders_in_window", "net_revenue", "followed_up", "earlier_contact")
# Columns of measure_effects, in order.
EFFECT_COLUMNS = (
    "level",
    "action",
    "campaign_id",
    "campaigns",
    "first_contact",
    "last_contact",
    "contacts",
    "n_treatment",
    "n_control",
    "not_followed_up",
    "set_aside_overlap",
    "retention_treatment",
    "retention_control",
    "retention_diff_pp",
    "retention_diff_pp_low",
    "retention_diff_pp_high",
    "revenue_treatment",
    "revenue_control",
    "revenue_diff",
    "revenue_diff_low",
    "revenue_diff_high",
    "mean_cost",
    "profit_per_customer",
    "profit_low",
    "profit_high",
    "verdict",
    "known_action",
    "note",
)


# ------------------------------------------------------------------------------------------- outcomes
def _utc_naive(values: pd.Series | pd.Timestamp) -> Any:
    """Timestamps as naive UTC in microseconds (a zone-aware value is converted, a naive one taken as UTC)."""
    if isinstance(values, pd.Series):
        ts = pd.to_datetime(values)
        if ts.dt.tz is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        return ts.astype("datetime64[us]")
    ts = pd.Timestamp(values)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def campaign_ids(contacts: pd.DataFrame) -> pd.Series:
    """Each contact's campaign (aligned with ``contacts``' index): ``campaign_id`` where given, else
    ``<contact date>-<action>`` (UTC day, e.g. ``2025-03-03-winback_email_coupon``): a shop that does not name its
    campaigns has one per action and day."""
    day = _utc_naive(contacts["contact_ts"]).dt.strftime("%Y-%m-%d")
    fallback = day + "-" + contacts["action"].astype(str)
    if "campaign_id" not in contacts:
        return fallback.astype(object).rename("campaign_id")
    given = contacts["campaign_id"]
    return given.astype(object).where(given.notna(), fallback).astype(object).rename("campaign_id")


def contact_outcomes(
    contacts: pd.DataFrame,
    orders: pd.DataFrame,
    returns: pd.DataFrame | None,
    data_end: pd.Timestamp,
    retention_days: int,
    revenue_days: int,
) -> pd.DataFrame:
    """What each contacted (or held-out) customer did after the contact.

    ``contacts``: the contract's contacts table (``customer_id``, ``contact_ts``, ``action``, ``group``; optional
    ``campaign_id``, ``channel``, ``cost``); ``orders`` (``customer_id``, ``order_ts``, ``amount``) and ``returns``
    (``customer_id``, ``return_ts``, ``amount``; None = no returns table) as in the contract; ``data_end``: the
    first instant the data says nothing about (``features.cutoffs.data_end``: the day after the last order);
    ``retention_days`` / ``revenue_days``: the windows (params labels.churn_horizon_days / clv_horizon_days).

    Returns one row per contact, in the order of ``contacts`` (index reset): its columns (``campaign_id`` filled
    by :func:`campaign_ids`, ``contact_ts`` as naive UTC) and

    - ``retained`` (bool): an order in ``[contact_ts, contact_ts + retention_days)`` (an order exactly at the
      contact counts, one at the window's end does not);
    - ``orders_in_window`` (int): orders in ``[contact_ts, contact_ts + revenue_days)``;
    - ``net_revenue`` (float): their amounts minus the refunds with ``return_ts`` in that window (whatever order
      they refund), shop currency; may be negative;
    - ``followed_up`` (bool): ``contact_ts + max(retention_days, revenue_days) <= data_end``, both outcomes fully
      observed (the rest are not yet measurable);
    - ``earlier_contact`` (bool): the same customer has another contact in ``[contact_ts - revenue_days,
      contact_ts]`` that comes first (by time, then by row): this contact overlaps an earlier one's window.

    The matching runs as DuckDB range joins on the registered frames (equality on customer_id, range on time).
    """
    if retention_days < 1 or revenue_days < 1:
        raise ValueError(f"retention_days and revenue_days must be >= 1, got {retention_days}, {revenue_days}")
    for name, frame, columns in (
        ("contacts", contacts, ("customer_id", "contact_ts", "action", "group")),
        ("orders", orders, ("customer_id", "order_ts", "amount")),
        ("returns", returns, ("customer_id", "return_ts", "amount")),
    ):
        missing = [] if frame is None else [c for c in columns if c not in frame]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing}")
    out = contacts.reset_index(drop=True)
    ts = _utc_naive(out["contact_ts"])
    end = _utc_naive(data_end)
    n = len(out)
    windows = pd.DataFrame(
        {
            "_row": np.arange(n, dtype=np.int64),
            "customer_id": out["customer_id"].astype(str).to_numpy(dtype=object),
            "t0": ts,
            "t_ret": ts + pd.Timedelta(days=int(retention_days)),
            "t_rev": ts + pd.Timedelta(days=int(revenue_days)),
            "t_max": ts + pd.Timedelta(days=int(max(retention_days, revenue_days))),
        }
    )
    con = duckdb.connect()
    try:
        con.register("contact_windows", windows)
        con.register("orders_in", orders)
        refunds = "SELECT NULL::BIGINT AS _row, NULL::DOUBLE AS refunds WHERE false"
        if returns is not None:
            con.register("returns_in", returns)
            refunds = """
                SELECT w._row, sum(r.amount)::DOUBLE AS refunds
                FROM contact_windows w JOIN returns_in r
                  ON CAST(r.customer_id AS VARCHAR) = w.customer_id AND r.return_ts >= w.t0 AND r.return_ts < w.t_rev
                GROUP BY w._row"""
        result = con.sql(
            f"""
            WITH o AS (
                SELECT w._row,
                       count(*) FILTER (WHERE o.order_ts < w.t_ret) AS orders_ret,
                       count(*) FILTER (WHERE o.order_ts < w.t_rev) AS orders_rev,
                       coalesce(sum(o.amount) FILTER (WHERE o.order_ts < w.t_rev), 0)::DOUBLE AS revenue
                FROM contact_windows w JOIN orders_in o
                  ON CAST(o.customer_id AS VARCHAR) = w.customer_id AND o.order_ts >= w.t0 AND o.order_ts < w.t_max
                GROUP BY w._row
            ), r AS ({refunds})
            SELECT w._row,
                   coalesce(o.orders_ret, 0) > 0 AS retained,
                   coalesce(o.orders_rev, 0)::BIGINT AS orders_in_window,
                   coalesce(o.revenue, 0) - coalesce(r.refunds, 0) AS net_revenue
            FROM contact_windows w LEFT JOIN o USING (_row) LEFT JOIN r USING (_row)
            ORDER BY w._row
            """
        ).df()
    finally:
        con.close()
    out["campaign_id"] = campaign_ids(out).to_numpy()
    out["contact_ts"] = ts
    out["retained"] = result["retained"].to_numpy(dtype=bool)
    out["orders_in_window"] = result["orders_in_window"].to_numpy(dtype=np.int64)
    out["net_revenue"] = result["net_revenue"].to_numpy(dtype=np.float64)
    out["followed_up"] = (windows["t_max"] <= end).to_numpy()
    # The previous contact of the same customer (by time, then row): within revenue_days before, it overlaps.
    order = windows.sort_values(["customer_id", "t0", "_row"], kind="stable")
    previous = order.groupby("customer_id", sort=False)["t0"].shift()
    earlier = previous.notna() & (order["t0"] - previous < pd.Timedelta(days=int(revenue_days)))
    out["earlier_contact"] = earlier.reindex(windows.index).to_numpy(dtype=bool)
    return out


# -------------------------------------------------------------------------------------------- effects
def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _check_outcomes(outcomes: pd.DataFrame) -> None:
    needed = ("action", "group", "contact_ts", "retained", "net_revenue", "followed_up", "earlier_contact")
    missing = [c for c in needed if c not in outcomes]
    if missing:
        raise ValueError(f"outcomes lack column(s) {missing}: pass the output of contact_outcomes")
    bad = ~outcomes["group"].isin(GROUPS)
    if bad.any():
        values = sorted(outcomes.loc[bad, "group"].astype(str).unique())[:5]
        raise ValueError(
            f"{int(bad.sum()):,} contact(s) have a group other than {list(GROUPS)} (e.g. {values}): run `churn "
            f"validate`, which quarantines them"
        )


def _contact_frame(outcomes: pd.DataFrame) -> pd.DataFrame:
    """The columns the measurement needs, one row per contact (a new frame)."""
    treated = outcomes["group"].eq("treatment").to_numpy()
    set_aside = outcomes["earlier_contact"].to_numpy(dtype=bool)
    followed = outcomes["followed_up"].to_numpy(dtype=bool)
    cost = (
        pd.to_numeric(outcomes["cost"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if "cost" in outcomes
        else np.full(len(outcomes), np.nan)
    )
    return pd.DataFrame(
        {
            "action": outcomes["action"].astype(str).to_numpy(dtype=object),
            "campaign_id": campaign_ids(outcomes).to_numpy(dtype=object),
            "contact_ts": _utc_naive(outcomes["contact_ts"]).to_numpy(),
            "treated": treated,
            "measured": ~set_aside & followed,
            "set_aside": set_aside,
            "pending": ~set_aside & ~followed,
            "retained": outcomes["retained"].to_numpy(dtype=np.float64),
            "revenue": outcomes["net_revenue"].to_numpy(dtype=np.float64),
            "cost": np.where(treated, cost, np.nan),
        }
    )


def _campaign_stats(work: pd.DataFrame) -> pd.DataFrame:
    """Per (action, campaign): group sizes, rates, means, variances and the counts of excluded contacts."""
    keys = ["action", "campaign_id"]
    every = work.groupby(keys, sort=True).agg(
        first_contact=("contact_ts", "min"),
        last_contact=("contact_ts", "max"),
        contacts=("treated", "size"),
        treated_contacts=("treated", "sum"),
        not_followed_up=("pending", "sum"),
        set_aside_overlap=("set_aside", "sum"),
    )
    every["control_contacts"] = every["contacts"] - every["treated_contacts"]
    measured = work[work["measured"]]
    out = every.copy()
    for flag, suffix in ((True, "t"), (False, "c")):
        stats = (
            measured[measured["treated"] == flag]
            .groupby(keys, sort=True)
            .agg(
                n=("retained", "size"),
                rate=("retained", "mean"),
                mean=("revenue", "mean"),
                var=("revenue", "var"),
                cost=("cost", "mean"),
            )
        )
        for column in ("n", "rate", "mean", "var", "cost"):
            out[f"{column}_{suffix}"] = stats[column].reindex(out.index).astype(np.float64)
    out["n_t"] = out["n_t"].fillna(0).astype(np.int64)
    out["n_c"] = out["n_c"].fillna(0).astype(np.int64)
    out["cost_known"] = out["cost_t"].notna() | (out["n_t"] == 0)  # no measured treated contact: no cost to know
    out["cost_t"] = out["cost_t"].fillna(0.0)
    return out.reset_index()


def _differences(frame: pd.DataFrame) -> pd.DataFrame:
    """Per campaign: the retention and revenue differences and their variances (module docstring)."""
    out = frame.copy()
    n_t = out["n_t"].where(out["n_t"] > 0).astype(np.float64)
    n_c = out["n_c"].where(out["n_c"] > 0).astype(np.float64)
    out["d_rate"] = out["rate_t"] - out["rate_c"]
    out["v_rate"] = out["rate_t"] * (1 - out["rate_t"]) / n_t + out["rate_c"] * (1 - out["rate_c"]) / n_c
    out["d_mean"] = out["mean_t"] - out["mean_c"]
    out["v_mean"] = out["var_t"] / n_t + out["var_c"] / n_c
    out["has_control"] = out["control_contacts"] > 0
    out["has_treated"] = out["treated_contacts"] > 0
    out["campaigns"] = 1
    return out


def _per_action(camp: pd.DataFrame) -> pd.DataFrame:
    """Per action: the stratified (campaign-size weighted) average of its usable campaigns (module docstring)."""
    usable = camp[(camp["n_t"] >= 2) & (camp["n_c"] >= 2)].copy()
    size = (usable["n_t"] + usable["n_c"]).astype(np.float64)
    w = size / size.groupby(usable["action"]).transform("sum")
    weighted = pd.DataFrame(
        {
            "action": usable["action"],
            "rate_t": w * usable["rate_t"],
            "rate_c": w * usable["rate_c"],
            "mean_t": w * usable["mean_t"],
            "mean_c": w * usable["mean_c"],
            "d_rate": w * usable["d_rate"],
            "v_rate": w**2 * usable["v_rate"],
            "d_mean": w * usable["d_mean"],
            "v_mean": w**2 * usable["v_mean"],
            "cost_t": w * usable["cost_t"],
            "n_t": usable["n_t"],
            "n_c": usable["n_c"],
            "campaigns": 1,
        }
    )
    sums = weighted.groupby("action", sort=True).sum()
    every = camp.groupby("action", sort=True).agg(
        first_contact=("first_contact", "min"),
        last_contact=("last_contact", "max"),
        contacts=("contacts", "sum"),
        not_followed_up=("not_followed_up", "sum"),
        set_aside_overlap=("set_aside_overlap", "sum"),
        has_control=("has_control", "any"),
        has_treated=("has_treated", "any"),
        cost_known=("cost_known", "all"),
        all_campaigns=("campaign_id", "size"),
        all_treated=("n_t", "sum"),
    )
    out = every.join(sums, how="left")
    for column in ("n_t", "n_c", "campaigns"):
        out[column] = out[column].fillna(0).astype(np.int64)
    out["left_out"] = out["all_campaigns"] - out["campaigns"]
    out["left_out_treated"] = out["all_treated"] - out["n_t"]
    out["campaign_id"] = ALL_CAMPAIGNS
    return out.reset_index()


def _finish(frame: pd.DataFrame, level: str, margin: float, min_group_size: int, z: float) -> pd.DataFrame:
    """The output columns of one level (campaign or action rows), verdicts included."""
    se_rate, se_mean = np.sqrt(frame["v_rate"]), np.sqrt(frame["v_mean"])
    profit = margin * frame["d_mean"] - frame["cost_t"]
    low = margin * (frame["d_mean"] - z * se_mean) - frame["cost_t"]
    high = margin * (frame["d_mean"] + z * se_mean) - frame["cost_t"]
    small = (frame["n_t"] < min_group_size) | (frame["n_c"] < min_group_size)
    verdict = np.select(
        [frame["has_treated"] & ~frame["has_control"], small, low > 0, high < 0],
        ["no control group", "too small to tell", "pays", "does not pay"],
        default="too small to tell",
    )
    return pd.DataFrame(
        {
            "level": level,
            "action": frame["action"],
            "campaign_id": frame["campaign_id"],
            "campaigns": frame["campaigns"].astype(np.int64),
            "first_contact": frame["first_contact"],
            "last_contact": frame["last_contact"],
            "contacts": frame["contacts"].astype(np.int64),
            "n_treatment": frame["n_t"].astype(np.int64),
            "n_control": frame["n_c"].astype(np.int64),
            "not_followed_up": frame["not_followed_up"].astype(np.int64),
            "set_aside_overlap": frame["set_aside_overlap"].astype(np.int64),
            "retention_treatment": frame["rate_t"],
            "retention_control": frame["rate_c"],
            "retention_diff_pp": 100 * frame["d_rate"],
            "retention_diff_pp_low": 100 * (frame["d_rate"] - z * se_rate),
            "retention_diff_pp_high": 100 * (frame["d_rate"] + z * se_rate),
            "revenue_treatment": frame["mean_t"],
            "revenue_control": frame["mean_c"],
            "revenue_diff": frame["d_mean"],
            "revenue_diff_low": frame["d_mean"] - z * se_mean,
            "revenue_diff_high": frame["d_mean"] + z * se_mean,
            "mean_cost": frame["cost_t"],
            "profit_per_customer": profit,
            "profit_low": low,
            "profit_high": high,
            "verdict": verdict,
        }
    )


def _notes(frame: pd.DataFrame, raw: pd.DataFrame, level: str) -> pd.Series:
    """One note per row: why a number is missing or what was left out (a handful of rows: campaigns/actions)."""
    parts: list[pd.Series] = []

    def note(mask: pd.Series, text: pd.Series | str) -> None:
        parts.append(pd.Series(np.where(mask, text, ""), index=frame.index, dtype=object))

    note(~frame["known_action"], "action not in the rule table (score.actions)")
    note(frame["n_treatment"] == 0, "no treated contact measured")
    note((frame["n_control"] == 0) & raw["has_control"].to_numpy(dtype=bool), "no control contact measured")
    note(~raw["cost_known"].to_numpy(dtype=bool), "cost unknown: taken as 0")
    if level == "action":
        left = raw["left_out"].to_numpy()
        text = (
            raw["left_out"].astype(str)
            + " campaign(s) without 2+ treated and 2+ control contacts left out ("
            + raw["left_out_treated"].astype(str)
            + " treated)"
        )
        note(pd.Series(left > 0, index=frame.index), pd.Series(text.to_numpy(), index=frame.index))
    note(
        frame["set_aside_overlap"] > 0,
        frame["set_aside_overlap"].astype(str) + " overlapping later contact(s) set aside",
    )
    note(frame["not_followed_up"] > 0, frame["not_followed_up"].astype(str) + " not yet followed up")
    joined = pd.Series("", index=frame.index, dtype=object)
    for part in parts:
        joined = joined + np.where((joined != "") & (part != ""), "; ", "") + part
    return joined


def measure_effects(
    outcomes: pd.DataFrame,
    margin: float,
    min_group_size: int,
    confidence: float = 0.95,
    known_actions: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Treatment against control per (action, campaign) and per action over its campaigns (module docstring).

    ``outcomes``: :func:`contact_outcomes` output. Only followed-up contacts that overlap no earlier contact are
    measured; the others are counted per row (``not_followed_up``, ``set_aside_overlap``). ``margin``: gross margin
    per unit of revenue (params evaluate.value_margin); ``min_group_size``: smaller treated or control groups get
    "too small to tell"; ``confidence``: of every interval; ``known_actions``: the rule table's action names
    (None = every action is known); other actions are measured and noted.

    Returns one row per campaign (``level`` "campaign") and per action (``level`` "action", ``campaign_id``
    "all"), columns :data:`EFFECT_COLUMNS`, the action's campaigns by first contact, then its "all" row.
    Rates are shares (0..1), differences of rates percentage points, money per contact in the shop's currency.
    """
    if margin < 0 or not np.isfinite(margin):
        raise ValueError(f"margin must be a finite share >= 0, got {margin}")
    if min_group_size < 2:
        raise ValueError(f"min_group_size must be >= 2 (a variance needs two contacts), got {min_group_size}")
    z = _z(confidence)
    _check_outcomes(outcomes)
    if outcomes.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EFFECT_COLUMNS})
    camp = _differences(_campaign_stats(_contact_frame(outcomes)))
    action = _per_action(camp)
    known = None if known_actions is None else set(known_actions)
    pieces = []
    for level, raw in (("campaign", camp), ("action", action)):
        done = _finish(raw, level, margin, min_group_size, z)
        done["known_action"] = True if known is None else done["action"].isin(known)
        done["note"] = _notes(done, raw.reset_index(drop=True), level).to_numpy()
        pieces.append(done)
    out = pd.concat(pieces, ignore_index=True)
    out["_all"] = out["level"].eq("action")
    out = out.sort_values(["action", "_all", "first_contact", "campaign_id"], kind="stable")
    return out.drop(columns="_all").reset_index(drop=True)[list(EFFECT_COLUMNS)]


def measurement_summary(
    outcomes: pd.DataFrame, effects: pd.DataFrame, known_actions: Sequence[str] | None = None
) -> dict[str, Any]:
    """What the measurement used and what it left out, with one message per kind of problem: contacts in all,
    measured, not yet followed up, overlapping (customers and later contacts set aside), campaigns with treated
    contacts but no control group (listed), and contact actions the rule table does not know (with counts)."""
    _check_outcomes(outcomes)
    work = _contact_frame(outcomes)
    customers = outcomes["customer_id"].astype(str) if "customer_id" in outcomes else pd.Series(dtype=object)
    overlapping = int(customers[work["set_aside"].to_numpy()].nunique()) if len(customers) else 0
    campaigns = effects[effects["level"].eq("campaign")] if len(effects) else effects
    no_control = campaigns[campaigns["verdict"].eq("no control group")] if len(campaigns) else campaigns
    unknown: dict[str, int] = {}
    if known_actions is not None:
        counts = work.loc[~work["action"].isin(set(known_actions)), "action"].value_counts()
        unknown = {str(k): int(v) for k, v in counts.sort_index().items()}
    doc: dict[str, Any] = {
        "contacts": len(work),
        "treatment": int(work["treated"].sum()),
        "control": int((~work["treated"]).sum()),
        "measured": int(work["measured"].sum()),
        "not_followed_up": int(work["pending"].sum()),
        "overlapping_customers": overlapping,
        "overlapping_contacts_set_aside": int(work["set_aside"].sum()),
        "campaigns": len(campaigns),
        "no_control_group": [
            {"action": str(a), "campaign_id": str(c), "treated_contacts": int(n)}
            for a, c, n in zip(
                no_control.get("action", []),
                no_control.get("campaign_id", []),
                no_control.get("contacts", []),
                strict=True,
            )
        ],
        "unknown_actions": unknown,
    }
    messages = []
    if doc["not_followed_up"]:
        messages.append(
            f"{doc['not_followed_up']:,} contact(s) not yet followed up over the whole window were excluded "
            f"(measurable once the data reach contact + window)."
        )
    if doc["overlapping_contacts_set_aside"]:
        messages.append(
            f"{overlapping:,} customer(s) were contacted again within the revenue window of an earlier contact "
            f"(overlapping campaigns): measured with their first contact only; "
            f"{doc['overlapping_contacts_set_aside']:,} later contact(s) set aside."
        )
    if doc["no_control_group"]:
        listed = ", ".join(
            f"{r['action']}/{r['campaign_id']} ({r['treated_contacts']:,} treated)"
            for r in doc["no_control_group"][:10]
        )
        more = len(doc["no_control_group"]) - 10
        messages.append(
            f"{len(doc['no_control_group'])} campaign(s) have treated contacts but no control group, so their "
            f"effect cannot be measured: {listed}{f' and {more} more' if more > 0 else ''}."
        )
    if unknown:
        listed = ", ".join(f"{k} ({v:,})" for k, v in unknown.items())
        messages.append(f"contact action(s) not in the rule table (score.actions), measured all the same: {listed}.")
    doc["messages"] = messages
    return doc
