"""The uplift stage's pure steps: the contacts it learns from, the held-out campaigns it is judged on, and the
judgement (issue 15; the stage is ``pipelines/uplift.py``).

Grain: one row per followed-up campaign contact (customer, contact), treatment or control, with its outcomes
from the contact on (``models.measure.contact_outcomes``: ``retained`` 0/1 within the churn horizon,
``net_revenue`` in the shop's currency within the CLV horizon) and its features at cutoff = the contact's day at
midnight (naive UTC), so they see only data before the contact.

Time bounds: per action, the held-out campaign is its latest by first contact (``contact_ts``); the model judged
on it is fitted on the earlier campaigns of every action. The Qini coefficients and AUUC are normalised
(``models.uplift``): 0 is random targeting, 1 the best ranking of the held-out outcomes. Nothing here reads or
writes files, or talks to MLflow.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from churn_pipeline.errors import DataContractError
from churn_pipeline.models.uplift import UpliftModel, qini_curve, targeting_report

__all__ = [
    "CHURN_RISK_FEATURE",
    "OUTCOME_COLUMNS",
    "beats_random",
    "comparison_line",
    "evaluate_held_out",
    "feature_churn_risk",
    "fit_on_contacts",
    "followed_up_contacts",
    "group_counts",
    "held_out_plan",
    "held_out_rows",
    "join_contact_features",
    "promotion_decision",
    "qini_figure",
]

# Outcome -> its column in the contact rows.
OUTCOME_COLUMNS = {"retention": "retained", "revenue": "net_revenue"}
# The churn-risk ranking when no churn model loads: the BG/NBD prior feature.
CHURN_RISK_FEATURE = "bgnbd_churn_probability"


# ------------------------------------------------------------------------------------------------ contacts
def followed_up_contacts(outcomes: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The followed-up contacts of ``outcomes`` (``models.measure.contact_outcomes``: both outcome windows inside
    the data), ``customer_id`` as text, each with its feature ``cutoff`` (the contact's day at midnight,
    ``datetime64[us]``); and the counts ``contacts`` and ``followed_up``."""
    counts = {"contacts": len(outcomes), "followed_up": int(outcomes["followed_up"].sum())}
    followed = outcomes[outcomes["followed_up"]].reset_index(drop=True)
    followed["customer_id"] = followed["customer_id"].astype(str)
    followed["cutoff"] = followed["contact_ts"].dt.floor("D").astype("datetime64[us]")
    return followed, counts


def join_contact_features(followed: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """The contacts that have features at their cutoff (an inner join on customer_id and cutoff, one feature row
    per key), in the contacts' order; DataContractError when a contacts column shares a feature's name."""
    clash = sorted(set(features.columns) & set(followed.columns) - {"customer_id", "cutoff"})
    if clash:
        raise DataContractError(f"contacts columns {clash} clash with feature names: rename them in the contacts table")
    return followed.merge(features, on=["customer_id", "cutoff"], how="inner", validate="many_to_one")


def group_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per action: treated and control contacts."""
    treated = frame["group"].eq("treatment")
    table = pd.crosstab(frame["action"], treated)
    return {
        str(a): {"treated": int(table.loc[a].get(True, 0)), "control": int(table.loc[a].get(False, 0))}
        for a in table.index
    }


# ---------------------------------------------------------------------------------------- held-out split
def held_out_plan(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per action: its latest campaign by first contact (``held_out``, None for an action with one campaign), the
    earlier ones (``train``) and the held-out campaign's first contact date."""
    first = (
        frame.groupby(["action", "campaign_id"], sort=False)["contact_ts"]
        .min()
        .reset_index()
        .sort_values(["action", "contact_ts", "campaign_id"], kind="stable")
    )
    plan: dict[str, dict[str, Any]] = {}
    for action, g in first.groupby("action", sort=True):
        campaigns = g["campaign_id"].astype(str).tolist()
        if len(campaigns) < 2:
            plan[str(action)] = {"held_out": None, "train": campaigns, "held_out_date": None}
        else:
            plan[str(action)] = {
                "held_out": campaigns[-1],
                "train": campaigns[:-1],
                "held_out_date": str(pd.Timestamp(g["contact_ts"].iloc[-1]).date()),
            }
    return plan


def held_out_rows(frame: pd.DataFrame, plan: dict[str, dict[str, Any]]) -> np.ndarray:
    """True for the contacts of each action's held-out campaign."""
    pairs = {(a, p["held_out"]) for a, p in plan.items() if p["held_out"] is not None}
    keys = pd.Series(list(zip(frame["action"].astype(str), frame["campaign_id"].astype(str), strict=True)))
    return keys.isin(pairs).to_numpy()


def fit_on_contacts(model: UpliftModel, frame: pd.DataFrame) -> UpliftModel:
    """``model`` fitted on the contacts of ``frame`` (outcomes, action, group and cost columns)."""
    cost = frame["cost"] if "cost" in frame.columns else None
    return model.fit(
        frame,
        frame["retained"].astype(bool),
        frame["net_revenue"].astype(float),
        frame["action"].astype(str),
        frame["group"].eq("treatment"),
        cost,
    )


# ------------------------------------------------------------------------------------------ churn risk
def feature_churn_risk(frame: pd.DataFrame) -> np.ndarray:
    """P(churn) per contact from the ``bgnbd_churn_probability`` feature, missing values at its median (0 when
    all are missing): the churn-risk ranking when no churn model loads."""
    score = pd.to_numeric(frame[CHURN_RISK_FEATURE], errors="coerce").astype(float)
    return score.fillna(score.median() if score.notna().any() else 0.0).to_numpy()


# ------------------------------------------------------------------------------------------ evaluation
def evaluate_held_out(
    model: UpliftModel | None,
    test: pd.DataFrame,
    risk: np.ndarray,
    plan: dict[str, dict[str, Any]],
    shuffles: int,
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Per action with a held-out campaign: its rows, and per outcome (retention, revenue) the targeting report of
    the uplift model, random targeting and churn risk (``models.uplift.targeting_report``); and the held-out
    predictions (None without a model). An action the held-out model does not cover is reported with why."""
    predictions = model.predict_uplift(test) if model is not None and len(test) else None
    out: dict[str, Any] = {}
    for action, p in plan.items():
        if p["held_out"] is None:
            out[action] = {"evaluated": False, "why": "one campaign only: nothing earlier to train on"}
            continue
        rows = (test["action"].astype(str) == action).to_numpy()
        treated = test["group"].eq("treatment").to_numpy()[rows]
        entry: dict[str, Any] = {
            "held_out_campaign": p["held_out"],
            "held_out_date": p["held_out_date"],
            "train_campaigns": p["train"],
            "treated": int(treated.sum()),
            "control": int((~treated).sum()),
        }
        if model is None or action not in model.actions_:
            why = "no held-out model" if model is None else model.skipped_actions_.get(action, "not in the model")
            out[action] = {"evaluated": False, "why": f"earlier campaigns: {why}", **entry}
            continue
        if treated.all() or not treated.any():
            out[action] = {"evaluated": False, "why": "held-out campaign lacks a treatment or control group", **entry}
            continue
        entry["evaluated"] = True
        for outcome, column in OUTCOME_COLUMNS.items():
            scores = {
                "uplift": predictions[f"uplift_{outcome}__{action}"].to_numpy()[rows],
                "churn_risk": risk[rows],
            }
            y = test[column].to_numpy(dtype=np.float64)[rows]
            entry[outcome] = targeting_report(scores, treated, y, shuffles=shuffles, seed=seed)
        out[action] = entry
    return out, predictions


def beats_random(report: dict[str, Any]) -> dict[str, bool]:
    """Per evaluated action: the uplift model's held-out Qini on retention or on net revenue (the outcome the
    expected profit targets by) is above random targeting's 95th percentile of shuffled rankings (above 0 without
    shuffles)."""
    found = {}
    for action, entry in report.items():
        if not entry.get("evaluated"):
            continue
        wins = []
        for outcome in ("retention", "revenue"):
            r = entry[outcome]
            bar = r["random"]["qini_shuffled_q95"]
            wins.append(bool(r["uplift"]["qini"] > (bar if np.isfinite(bar) else 0.0)))
        found[action] = any(wins)
    return found


def promotion_decision(beats: dict[str, bool], manual: bool, why_manual: str) -> tuple[bool, str]:
    """Whether the deployed model becomes ``champion`` (some action's held-out Qini beats random targeting, see
    :func:`beats_random`, and promotion is not manual) and the sentence saying why."""
    promote = any(beats.values()) and not manual
    if not beats:
        decision = "no action could be evaluated on a held-out campaign: registered as challenger only"
    elif not any(beats.values()):
        decision = (
            "the held-out Qini (retention or revenue) beats random targeting for no action (not above the 95th "
            "percentile of shuffled rankings): registered as challenger only"
        )
    else:
        won = ", ".join(a for a, b in beats.items() if b)
        decision = f"the held-out Qini (retention or revenue) beats random targeting for {won}"
        if manual:
            decision += f", but {why_manual}: registered as challenger only"
    return promote, decision


def comparison_line(action: str, entry: dict[str, Any]) -> str:
    """One line per action for the console: the held-out Qini of the uplift model, random targeting and churn
    risk on retention and net revenue, or why the action was not evaluated."""
    if not entry.get("evaluated"):
        return f"{action}: not evaluated ({entry['why']})"
    r, v = entry["retention"], entry["revenue"]
    return (
        f"{action}: held-out campaign {entry['held_out_campaign']} ({entry['treated']:,} treated, "
        f"{entry['control']:,} control): retention Qini uplift {r['uplift']['qini']:+.3f}, random 0 (95 % of "
        f"shuffles below {r['random']['qini_shuffled_q95']:+.3f}), churn risk {r['churn_risk']['qini']:+.3f}; "
        f"revenue Qini uplift {v['uplift']['qini']:+.3f}, churn risk {v['churn_risk']['qini']:+.3f}"
    )


def qini_figure(test: pd.DataFrame, predictions: pd.DataFrame, risk: np.ndarray, report: dict) -> bytes | None:
    """Qini curves on the held-out campaigns as PNG bytes (100 dpi), one column per evaluated action, retention
    above revenue; None when no action was evaluated. The x axis is the share of the campaign targeted, the y axis
    extra retained customers or extra net revenue (shop currency)."""
    actions = [a for a, e in report.items() if e.get("evaluated")]
    if not actions:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(actions), figsize=(4.5 * len(actions), 8), squeeze=False)
    for j, action in enumerate(actions):
        rows = (test["action"].astype(str) == action).to_numpy()
        treated = test["group"].eq("treatment").to_numpy()[rows]
        for i, (outcome, column) in enumerate(OUTCOME_COLUMNS.items()):
            ax = axes[i][j]
            y = test[column].to_numpy(dtype=np.float64)[rows]
            for key, label in (("uplift", "uplift model"), ("churn_risk", "churn risk")):
                score = predictions[f"uplift_{outcome}__{action}"].to_numpy()[rows] if key == "uplift" else risk[rows]
                x, q = qini_curve(score, treated, y)
                ax.plot(x / x[-1], q, label=f"{label} (Qini {report[action][outcome][key]['qini']:+.3f})")
            ax.plot([0, 1], [0, q[-1]], "--", color="grey", label="random (0)")
            unit = "extra retained customers" if outcome == "retention" else "extra net revenue"
            ax.set(title=f"{action}: {outcome}", xlabel="share of the campaign targeted", ylabel=unit)
            ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
