"""The quality gate between a newly trained model (the challenger) and the one in use (the champion).

Both are scored on the same rows: the challenger's test cutoff. The challenger is promoted when it is at
least as good as the champion on every gated metric, within the tolerances (a tolerance is how much worse
it may be, in the metric's own units).

The first model of a name has no champion to beat, so it must clear a minimum-quality bar instead
(:func:`clears_baseline_bar`): on its test cutoff it must rank customers no worse than the best baseline the
panel carries, within the gate's tolerance (churn: the point-in-time BG/NBD churn probability and the recency
rule, by ROC AUC; CLV: the BG/NBD + Gamma-Gamma value, by normalised Gini). A first version that does not is
registered but not promoted: a model worse than a counting rule (say trained on 25 churners) must not score
customers.

Two models trained on different label horizons (or feature sets) predict different things: they are never
compared, the champion stays (:func:`same_target`).

:func:`champion_decision` applies these to one model kind (:func:`gated_metrics`, :data:`BAR_TOLERANCES`);
:func:`registry_verdict` is the train stage's verdict on a registered version (unloadable champion, manual
promotion). No MLflow here: ``pipelines.registry.gate_champion`` loads the champion and moves the aliases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from churn_pipeline.models.training import held_out_metrics


class GateParams(Protocol):
    """The gate's tolerances: how much worse than the champion a challenger may be on the same test rows, in
    each metric's own units (pipelines.params.GateParams, params ``train.gate``, satisfies it)."""

    churn_roc_auc_tolerance: float
    churn_brier_tolerance: float
    clv_gini_tolerance: float
    clv_spearman_tolerance: float
    next_order_concordance_tolerance: float
    next_order_brier_tolerance: float


@dataclass(frozen=True)
class GatedMetric:
    """A metric the gate compares: ``higher_is_better`` says its direction, ``tolerance`` how much worse
    the challenger may be (absolute, in the metric's units)."""

    name: str
    higher_is_better: bool
    tolerance: float

    def __post_init__(self) -> None:
        if self.tolerance < 0:
            raise ValueError(f"tolerance of {self.name} must be >= 0, got {self.tolerance}")


@dataclass(frozen=True)
class Decision:
    """The gate's verdict, with one line of evidence per metric (logged to MLflow and printed)."""

    promote: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        verdict = "promoted to champion" if self.promote else "kept as challenger (champion unchanged)"
        return f"{verdict}: " + "; ".join(self.reasons)


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    gated: tuple[GatedMetric, ...],
) -> Decision:
    """Promote ``challenger`` over ``champion`` when no gated metric is worse by more than its tolerance.

    ``champion`` None means there is no champion yet: the challenger is promoted. A gated metric missing
    from either side is a programming error and raises KeyError.
    """
    if champion is None:
        return Decision(True, ("first version of this model: no champion to compare with",))
    promote = True
    reasons = []
    for g in gated:
        new, old = float(challenger[g.name]), float(champion[g.name])
        worse_by = (old - new) if g.higher_is_better else (new - old)
        ok = worse_by <= g.tolerance
        promote &= ok
        direction = "higher" if g.higher_is_better else "lower"
        verdict = "ok" if ok else f"worse by {worse_by:.4g} > tolerance {g.tolerance:g}"
        reasons.append(f"{g.name} ({direction} is better) challenger {new:.4f} vs champion {old:.4f}: {verdict}")
    return Decision(promote, tuple(reasons))


def auc_standard_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Hanley & McNeil's (1982) standard error of a ROC AUC (or concordance) ``auc`` measured on ``n_positive``
    and ``n_negative`` rows: how far it moves by chance on a test set of that size (0.019 at AUC 0.72 on 733
    rows, 0.005 on 10,000)."""
    if n_positive < 1 or n_negative < 1 or not math.isfinite(auc):
        return float("nan")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    var = (auc * (1 - auc) + (n_positive - 1) * (q1 - auc**2) + (n_negative - 1) * (q2 - auc**2)) / (
        n_positive * n_negative
    )
    return math.sqrt(max(var, 0.0))


def clears_baseline_bar(
    challenger: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    tolerances: Mapping[str, float],
    noise: Mapping[str, float] | None = None,
) -> Decision:
    """The minimum-quality bar of a first version: on each metric of ``tolerances`` (higher is better), the
    ``challenger`` must be no worse than the best of ``baselines`` (name -> metrics on the same test rows) by more
    than its tolerance, the gate's own for a challenger against a champion.

    The bar stops a broken model (a 25-churner panel gave test AUC 0.158 against the baselines' 0.7), not one that
    ties the counting model it starts from: on a small orders-only shop the boosters add a few trees to the
    BG/NBD offset and land within a few thousandths of it, either side. No usable baseline (none in the panel,
    or every value NaN) passes, saying so.

    ``noise`` (metric -> its standard error on the test rows, e.g. :func:`auc_standard_error`) widens a metric's
    tolerance to one standard error where that is larger: on a small shop's few hundred test rows a model that
    ties the baseline lands a couple of hundredths either side of it by chance, which is no evidence that it
    is worse (measured: a 1,500-customer orders-only shop, 733 test rows, AUC 0.710 against BG/NBD's 0.716,
    standard error 0.019)."""
    promote = True
    reasons = ["first version of this model: no champion to compare with, so it must not lose to the baselines"]
    for name, tolerance in tolerances.items():
        scored = [(float(m[name]), b) for b, m in baselines.items() if name in m and math.isfinite(float(m[name]))]
        new = float(challenger[name])
        if not scored:
            reasons.append(f"{name}: no baseline in the panel to compare with")
            continue
        best, which = max(scored)
        se = float((noise or {}).get(name, float("nan")))
        allowed = max(tolerance, se) if math.isfinite(se) else tolerance
        ok = math.isfinite(new) and new >= best - allowed
        promote &= ok
        what = f"{allowed:.4f} (one standard error on these rows)" if allowed > tolerance else f"{tolerance:g}"
        verdict = "ok" if ok else f"worse than it by more than {what}"
        if ok and allowed > tolerance and new < best - tolerance:
            verdict = f"ok, within one standard error on these rows ({allowed:.4f})"
        reasons.append(f"{name} challenger {new:.4f} vs best baseline {which} {best:.4f}: {verdict}")
    return Decision(promote, tuple(reasons))


def same_target(
    challenger: Mapping[str, object], champion: Mapping[str, object], champion_version: str | None, kind: str
) -> Decision | None:
    """``None`` when the two versions predict the same thing (same value of every key both carry, e.g.
    ``label_horizon_days``), else a refusal naming the difference: the champion stays. A key the champion does
    not carry (a version logged before it was recorded) is not compared."""
    differ = [
        f"{key} {champion[key]} (champion) vs {value} (challenger)"
        for key, value in challenger.items()
        if champion.get(key) is not None and str(champion[key]) != str(value)
    ]
    if not differ:
        return None
    return Decision(
        False,
        (
            f"champion v{champion_version} was trained for another target ({'; '.join(differ)}): the two predict "
            f"different things and are not compared; the champion stays. If the change is meant for production, "
            f"promote by hand: `churn promote {kind} VERSION`",
        ),
    )


def bar_noise(kind: str, metrics: dict[str, float], test: pd.DataFrame) -> dict[str, float] | None:
    """The ``noise`` of :func:`clears_baseline_bar` for a ``kind`` model's test ``metrics``: one standard error of
    the bar's ranking metric on the test rows (churn's ROC AUC over churners and stayers, the next-order
    concordance over customers who ordered within the grid and who did not); None for CLV (its bar is the
    tolerance alone)."""
    if kind == "churn":
        n_churners = int(test["churned"].astype(bool).sum())
        return {"roc_auc": auc_standard_error(metrics["roc_auc"], n_churners, len(test) - n_churners)}
    if kind == "next_order":
        ordered = int(test["next_order_days"].notna().sum())
        return {"concordance": auc_standard_error(metrics["concordance"], ordered, len(test) - ordered)}
    return None


# The ranking metric of the minimum-quality bar per model and the gate tolerance it allows (a rule's Brier or
# MAE would mean nothing).
BAR_TOLERANCES = {
    "churn": {"roc_auc": "churn_roc_auc_tolerance"},
    "clv": {"normalized_gini": "clv_gini_tolerance"},
    "next_order": {"concordance": "next_order_concordance_tolerance"},
}


def gated_metrics(kind: str, gate: GateParams) -> tuple[GatedMetric, ...]:
    """The metrics a ``kind`` challenger is compared on against its champion, with ``gate``'s tolerances."""
    if kind == "churn":
        return (
            GatedMetric("roc_auc", True, gate.churn_roc_auc_tolerance),
            GatedMetric("brier", False, gate.churn_brier_tolerance),
        )
    if kind == "next_order":
        return (
            GatedMetric("concordance", True, gate.next_order_concordance_tolerance),
            GatedMetric("integrated_brier", False, gate.next_order_brier_tolerance),
        )
    return (
        GatedMetric("normalized_gini", True, gate.clv_gini_tolerance),
        GatedMetric("spearman", True, gate.clv_spearman_tolerance),
    )


def champion_decision(
    kind: str,
    champion: Any,
    champion_version: str | None,
    challenger: dict[str, float],
    test: pd.DataFrame,
    gate: GateParams,
    *,
    baselines: dict[str, dict[str, float]] | None = None,
    target: dict[str, Any] | None = None,
    champion_target: dict[str, Any] | None = None,
    bar_noise: dict[str, float] | None = None,
) -> Decision:
    """The gate's verdict between the challenger's held-out test metrics and the champion's held-out estimator
    (``None``: no champion yet) scored on the same test rows.

    No champion: the challenger must not lose to the best of ``baselines`` (name -> metrics on the test rows) by
    more than the gate's tolerance, or one standard error of the metric on the test rows (``bar_noise``) where
    that is larger (``models.gate.clears_baseline_bar``); ``None`` skips the bar. A champion
    trained for another target (``target`` vs ``champion_target``, e.g. ``label_horizon_days``) or needing
    features the current table lacks cannot be compared: it is kept, and the reason says why and how to switch
    by hand.
    """
    gated = gated_metrics(kind, gate)
    if champion is None:
        if baselines is None:
            return decide(challenger, None, gated)
        tolerances = {metric: getattr(gate, key) for metric, key in BAR_TOLERANCES[kind].items()}
        return clears_baseline_bar(challenger, baselines, tolerances, bar_noise)
    refused = same_target(target or {}, champion_target or {}, champion_version, kind)
    if refused is not None:
        return refused
    missing = sorted(set(champion.features_) - set(test.columns))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return Decision(
            False,
            (
                f"champion v{champion_version} uses {len(missing)} feature(s) the current feature table lacks "
                f"({shown}), so the two cannot be compared on the same rows and features; the champion stays. "
                f"If the feature set changed on purpose, promote by hand: `churn promote {kind} VERSION`",
            ),
        )
    decision = decide(challenger, held_out_metrics(kind, champion, test), gated)
    return Decision(decision.promote, (f"against champion v{champion_version}", *decision.reasons))


def registry_verdict(
    kind: str,
    version: str,
    champion: Any,
    champion_version: str | None,
    broken: str | None,
    champion_target: dict[str, Any],
    challenger: dict[str, float],
    test: pd.DataFrame,
    gate: GateParams,
    *,
    baselines: dict[str, dict[str, float]] | None = None,
    target: dict[str, Any] | None = None,
    manual: tuple[bool, str] = (False, ""),
    bar_noise: dict[str, float] | None = None,
) -> Decision:
    """The verdict on registered ``version`` of ``kind``: :func:`champion_decision`, except that a champion that
    cannot be loaded (``broken``: why) keeps its alias and the challenger is not promoted, a first version below
    the baseline bar says how to promote it by hand, and a promotion under ``manual`` (``(is_manual, why)``) is
    refused with the ``churn promote`` command. Every ``churn promote KIND VERSION`` hint names ``version``."""
    if broken is not None:
        decision = Decision(
            False,
            (
                f"champion v{champion_version} cannot be loaded ({broken}): its files are missing or unreadable, "
                f"so the challenger cannot be compared with it and is NOT promoted; the champion alias stays on "
                f"v{champion_version} (`churn score` will fail on it). Restore its artefacts, or promote this "
                f"version by hand: `churn promote {kind} {version}`",
            ),
        )
    else:
        decision = champion_decision(
            kind,
            champion,
            champion_version,
            challenger,
            test,
            gate,
            baselines=baselines,
            target=target,
            champion_target=champion_target,
            bar_noise=bar_noise,
        )
        if champion is None and not decision.promote:
            decision = Decision(
                False,
                (
                    *decision.reasons,
                    f"registered as challenger only, no champion: check the training data (enough churners "
                    f"and history?) or promote by hand: `churn promote {kind} {version}`",
                ),
            )
    # The refusals that name no version (they are decided before registration): this one.
    decision = Decision(
        decision.promote,
        tuple(r.replace(f"churn promote {kind} VERSION", f"churn promote {kind} {version}") for r in decision.reasons),
    )
    is_manual, why = manual
    if decision.promote and is_manual:
        current = f"v{champion_version}" if champion_version else "none"
        decision = Decision(
            False,
            (
                *decision.reasons,
                f"the gate would promote it, but {why}: registered as challenger only, champion stays "
                f"{current}; to promote: `churn promote {kind} {version}`",
            ),
        )
    return decision
