"""The train stage's pure part: label checks of a time split, the baselines' bar, drift references, summaries.

Grain: one row per (customer, cutoff) of the training panel; labels per row as the features stage writes them
(``churned`` over the churn horizon, ``future_revenue`` in the shop's currency over the CLV horizon, the next-order
labels in days after the cutoff). Nothing here reads files or params: the train stage reads the rows (a cutoff at
a time) and passes them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from churn_pipeline.errors import DataContractError
from churn_pipeline.models import metrics as mx
from churn_pipeline.models.churn import ChurnClassifier
from churn_pipeline.models.drift import reference_for
from churn_pipeline.models.evaluation import churn_metrics, clv_metrics, reliability_curve
from churn_pipeline.models.factory import NEXT_ORDER_LABELS
from churn_pipeline.models.scoring import ORDER_PROBABILITY_DAYS
from churn_pipeline.models.split import TimeSplit
from churn_pipeline.models.survival import (
    NextOrderModel,
    bgnbd_survival,
    next_order_frame,
    next_order_metrics,
    survival_metrics,
)

__all__ = [
    "CHURN_BASELINES",
    "CLV_BASELINES",
    "FOLLOWUP",
    "LABEL_COLUMNS",
    "SPLIT_LABELS",
    "bar_line",
    "baseline_metrics",
    "check_classes",
    "describe_splits",
    "drift_reference",
    "fit_summary",
    "held_out_line",
    "held_out_metrics",
    "run_tags",
    "span",
    "summary_entry",
    "test_metrics",
    "training_figures",
    "tree_summary",
]

# The baselines a first version must not lose to, when the panel carries them: (name, feature, sign), the score being
# sign * feature (higher = more likely to churn / more valuable).
CHURN_BASELINES = (("bgnbd", "bgnbd_churn_probability", 1.0), ("recency_rule", "recency_days", 1.0))
CLV_BASELINES = (("bgnbd", "bgnbd_clv", 1.0),)
# The next-order model's label: how many days after the cutoff the data follow a row up (grid edges).
FOLLOWUP = "next_order_followup_days"
# The label columns each model reads from the panel, and the one whose known value makes a row labelled.
LABEL_COLUMNS = {"churn": ("churned",), "clv": ("future_revenue", "future_orders"), "next_order": NEXT_ORDER_LABELS}
SPLIT_LABELS = {"churn": "churned", "clv": "future_revenue", "next_order": FOLLOWUP}


def check_classes(label: str, horizon: int, split: TimeSplit, parts: tuple) -> None:
    """DataContractError when a split's labels cannot train or judge a model: churn labels of one class (no
    churners, or no stayers), next-order labels with no order or only orders within the grid, or CLV labels with
    no revenue at all. ``parts``: the (train, validation, test) rows of ``split``; ``horizon``: the label's, days."""
    names = ("train", "validation", "test")
    cutoffs = (split.train, split.validation, split.test)
    if label == "churned":
        counts = [(int(p[label].astype(bool).sum()), len(p)) for p in parts]
        bad = [i for i, (pos, n) in enumerate(counts) if pos in (0, n)]
        shown = "; ".join(
            f"{names[i]} cutoffs {span(cutoffs[i])}: {n:,} rows, {pos:,} churners, {n - pos:,} stayers"
            for i, (pos, n) in enumerate(counts)
        )
        what = "churners and stayers"
    elif label == FOLLOWUP:
        counts = [(int(p["next_order_days"].notna().sum()), len(p)) for p in parts]
        bad = [i for i, (pos, n) in enumerate(counts) if pos in (0, n)]
        shown = "; ".join(
            f"{names[i]} cutoffs {span(cutoffs[i])}: {n:,} rows, {pos:,} with an order in {horizon} days"
            for i, (pos, n) in enumerate(counts)
        )
        what = "customers who order and customers who do not within the grid"
    else:
        counts = [(int((p[label].astype(float) > 0).sum()), len(p)) for p in parts]
        bad = [i for i, (pos, _) in enumerate(counts) if pos == 0]
        shown = "; ".join(
            f"{names[i]} cutoffs {span(cutoffs[i])}: {n:,} rows, {pos:,} with revenue"
            for i, (pos, n) in enumerate(counts)
        )
        what = "customers who buy in the horizon"
    if not bad:
        return
    key = {"churned": "churn_horizon_days", FOLLOWUP: "next_order_days"}.get(label, "clv_horizon_days")
    raise DataContractError(
        f"the training panel's {label} labels ({horizon}-day horizon) have one class on the "
        f"{' and '.join(names[i] for i in bad)} cutoff(s), so no model can be trained or tested there ({shown}). "
        f"A model needs {what} on every split: give the features stage more history (more orders, or "
        f"features.cutoffs.count), or another horizon (labels.{key}), or check the orders (a shop where nobody "
        f"or everybody comes back within {horizon} days)."
    )


def span(cs: tuple) -> str:
    """Cutoffs as ``first..last`` days (``-`` when there are none)."""
    return f"{pd.Timestamp(cs[0]).date()}..{pd.Timestamp(cs[-1]).date()}" if cs else "-"


def describe_splits(split: TimeSplit, deployed: TimeSplit) -> str:
    """The held-out and the deployed split in one line (the stage's step summary)."""
    return (
        f"held out: train {span(split.train)}, validation {span(split.validation)}, test "
        f"{split.test_cutoff.date()}; deployed: train {span(deployed.train)}, validation {span(deployed.validation)}"
    )


def tree_summary(model: Any) -> str:
    """How many trees early stopping kept: one number, or one per booster of a CLV model."""
    if isinstance(model, ChurnClassifier | NextOrderModel):
        return f"{model.best_iteration_} trees"
    return ", ".join(f"{name} {n} trees" for name, n in model.best_iterations_.items())


def baseline_metrics(kind: str, test: pd.DataFrame, grid: tuple[int, ...] = ()) -> dict[str, dict[str, float]]:
    """The bar's metrics of each baseline the panel carries (``CHURN_BASELINES``/``CLV_BASELINES``) on the test
    rows; a baseline's missing values take its median (a rule has to score every customer). The next-order model's
    baseline is BG/NBD's survival curve fitted on the test rows (``models.survival.bgnbd_survival``)."""
    out: dict[str, dict[str, float]] = {}
    if kind == "next_order":
        m = survival_metrics(test[list(NEXT_ORDER_LABELS)], bgnbd_survival(test, grid), grid)
        return {"bgnbd": {"concordance": m["concordance"], "integrated_brier": m["integrated_brier"]}}
    for name, column, sign in CHURN_BASELINES if kind == "churn" else CLV_BASELINES:
        if column not in test.columns or not pd.api.types.is_numeric_dtype(test[column]):
            continue
        score = pd.to_numeric(test[column], errors="coerce").astype(float)
        if score.notna().sum() == 0:
            continue
        score = sign * score.fillna(score.median()).to_numpy()
        if kind == "churn":
            out[name] = {"roc_auc": mx.roc_auc(test["churned"].astype(bool).to_numpy(), score)}
        else:
            y = test["future_revenue"].astype(float).to_numpy()
            out[name] = {"normalized_gini": mx.normalized_gini(y, score), "spearman": mx.spearman(y, score)}
    return out


def bar_line(baselines: dict[str, dict[str, float]]) -> str:
    """The baselines' bar metrics (:func:`baseline_metrics`) in one line."""
    if not baselines:
        return "no baseline in the panel"
    return "baselines: " + ", ".join(
        f"{name} " + " ".join(f"{m} {v:.3f}" for m, v in values.items()) for name, values in baselines.items()
    )


def drift_reference(kind: str, model: Any, sample: pd.DataFrame, cutoffs: Sequence[pd.Timestamp]) -> dict[str, Any]:
    """Bins of a fitted ``kind`` model's top features and of its scores (``models.drift.reference_for``) on
    ``sample``, rows of its own training ``cutoffs``: the reference of the PSI check at scoring time. The scores are
    the ones a scored table carries (churn probability; predicted CLV and expected orders; the next-order model's
    order probabilities at ``ORDER_PROBABILITY_DAYS``)."""
    if kind == "churn":
        scores = {"churn_probability": model.predict_proba(sample)[:, 1]}
        importance = model.feature_importance()
    elif kind == "next_order":
        frame = next_order_frame(model, sample)
        # The probabilities the scores carry (a scored table has only those to compare).
        scores = {c: frame[c].to_numpy() for c in (f"order_probability_{d}d" for d in ORDER_PROBABILITY_DAYS)}
        importance = model.feature_importance()
    else:
        scores = {"predicted_clv": model.predict(sample), "expected_orders": model.predict_orders(sample)}
        importance = model.feature_importance("revenue")
    reference = reference_for(
        model.preprocessor_.transform(sample),
        model.features_,
        model.preprocessor_.categorical_,
        dict(zip(importance["feature"], importance["gain"], strict=True)),
        scores,
    )
    return {"kind": kind, "cutoffs": [str(pd.Timestamp(c).date()) for c in cutoffs], **reference}


def held_out_metrics(kind: str, model: Any, test: pd.DataFrame) -> dict[str, float]:
    """The metrics of a fitted ``kind`` model on labelled test rows that the gate compares (challenger against
    champion on the same rows): churn ``models.evaluation.churn_metrics``; CLV ``clv_metrics`` with the orders'
    MAE; next order ``models.survival.next_order_metrics``."""
    if kind == "churn":
        return churn_metrics(test["churned"].astype(bool).to_numpy(), model.predict_proba(test)[:, 1])
    if kind == "next_order":
        return next_order_metrics(model, test)
    y = test["future_revenue"].astype(float).to_numpy()
    orders = test["future_orders"].astype(float).to_numpy()
    return clv_metrics(y, model.predict(test), orders, model.predict_orders(test))


def test_metrics(kind: str, model: Any, test: pd.DataFrame) -> dict[str, float]:
    """The test metrics train.json reports for a held-out ``kind`` model (the gate's evidence):
    :func:`held_out_metrics`, for churn also the uncalibrated Brier score, for churn and next order the trees
    kept (``best_iteration``)."""
    out = held_out_metrics(kind, model, test)
    if kind == "churn":
        out["brier_uncalibrated"] = mx.brier(test["churned"].astype(bool).to_numpy(), model.predict_uncalibrated(test))
    if kind != "clv":
        out["best_iteration"] = float(model.best_iteration_)
    return out


def held_out_line(kind: str, metrics: dict[str, float], rows: int, baselines: dict[str, dict[str, float]]) -> str:
    """The console line after a held-out fit: its headline test metric(s) on ``rows`` test rows, and the bar."""
    if kind == "churn":
        shown = f"test AUC {metrics['roc_auc']:.3f}"
    elif kind == "clv":
        shown = f"test Gini {metrics['normalized_gini']:.3f}"
    else:
        shown = f"test concordance {metrics['concordance']:.3f}, integrated Brier {metrics['integrated_brier']:.4f}"
    return f"{kind} (held out): {shown} on {rows:,} rows ({bar_line(baselines)})"


def fit_summary(kind: str, result: dict[str, Any]) -> str:
    """The train stage's step line of one model: splits, training rows of both fits, headline test metrics."""
    m, r = result["metrics"], result["rows"]
    if kind == "churn":
        shown = f"test AUC {m['roc_auc']:.3f}, Brier {m['brier']:.4f} ({r['test']:,} rows)"
    elif kind == "clv":
        shown = f"test Gini {m['normalized_gini']:.3f}, MAE {m['mae']:.2f}"
    else:
        shown = f"test concordance {m['concordance']:.3f}, integrated Brier {m['integrated_brier']:.4f}"
    return (
        f"{describe_splits(result['split'], result['deployed'])}; trained on {r['held_out_train']:,} then "
        f"{r['deployed_train']:,} rows; {shown}"
    )


def training_figures(churned: Any, churn_probability: Any, importances: dict[str, pd.DataFrame]) -> dict[str, bytes]:
    """The train run's charts as PNG bytes by file name: the churn model's reliability on its test rows
    (observed churn rate against mean predicted probability in the ten bins of the test ECE) and, per model kind
    in ``importances`` (``feature_importance()`` frames), its top 20 features by total gain."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def png(fig: Any) -> bytes:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        return buffer.getvalue()

    figures = {}
    reliability = reliability_curve(churned, churn_probability, 10)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(reliability["mean_predicted"], reliability["observed_rate"], "o-", label="churn model")
    ax.set(xlabel="predicted churn probability", ylabel="observed churn rate", title="Reliability (test cutoff)")
    ax.legend()
    figures["churn_reliability.png"] = png(fig)
    for kind, importance in importances.items():
        imp = importance.sort_values("gain", ascending=False).head(20)
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.barh(imp["feature"][::-1], imp["gain"][::-1])
        ax.set(xlabel="total gain", title=f"{kind}: top 20 features")
        figures[f"{kind}_importance.png"] = png(fig)
    return figures


def summary_entry(
    result: dict[str, Any], version: str, decision: Any, champion: str | None, manual: bool, target: dict[str, Any]
) -> dict[str, Any]:
    """One model's entry of train.json: its registered ``version``, the gate's ``decision`` (``models.gate``) and
    the champion's version after it, the promote mode, the target (``label_horizon_days``), the baselines' bar
    metrics, the test cutoff, the deployed validation cutoffs and the test metrics (floats rounded to 6 places)."""
    return {
        "version": version,
        "promoted": decision.promote,
        "gate": list(decision.reasons),
        "champion": champion,
        "promote_mode": "manual" if manual else "auto",
        "label_horizon_days": target["label_horizon_days"],
        "baselines": {
            name: {m: round(float(v), 6) for m, v in values.items()}
            for name, values in result.get("baselines", {}).items()
        },
        "test_cutoff": str(result["split"].test_cutoff.date()),
        "deployed_validation": span(result["deployed"].validation),
        **{k: round(float(v), 6) for k, v in result["metrics"].items()},
    }


def run_tags(
    commit: str, changed: list[str], manual: bool, experiment: dict[str, str], fingerprint: str, results: dict
) -> dict[str, str]:
    """The train run's MLflow tags: the code's ``commit`` (``git rev-parse HEAD``; MLflow's own tag is the bare
    SHA, ``git_commit`` carries ``-dirty`` when tracked source files ``changed``), the promote mode, the DVC
    experiment (``dvc_exp_*``), the panel's ``fingerprint``, and each model's test cutoff and deployed validation
    cutoffs (``results``: kind -> the train stage's fit result)."""
    churn, clv, next_order = results["churn"], results["clv"], results["next_order"]
    return {
        "mlflow.source.git.commit": commit,
        "git_commit": commit + ("-dirty" if changed and commit != "unknown" else ""),
        "git_dirty_files": ", ".join(changed)[:4900],
        "promote_mode": "manual" if manual else "auto",
        **{f"dvc_exp_{k}": v for k, v in experiment.items()},
        "data_fingerprint": fingerprint,
        "churn_test_cutoff": str(churn["split"].test_cutoff.date()),
        "clv_test_cutoff": str(clv["split"].test_cutoff.date()),
        "churn_deployed_validation": span(churn["deployed"].validation),
        "clv_deployed_validation": span(clv["deployed"].validation),
        "next_order_test_cutoff": str(next_order["split"].test_cutoff.date()),
        "next_order_deployed_validation": span(next_order["deployed"].validation),
    }
