"""The one factory of the package's LightGBM estimators, and the one way each is fitted on a time split.

Grain: the estimators score one row per (customer, cutoff) of the feature panel (the uplift model: one row per
campaign contact). Each is built from the feature manifest the features stage wrote (``features``,
``categorical``; the next-order model also reads its grid ``next_order_days`` and the churn horizon
``churn_horizon_days``, days) and from one params.yaml section's hyper-parameters, given as that section's
frozen dataclass (``train.churn``, ``train.clv``, ``train.next_order``, ``uplift``) or a mapping with the
estimator's argument names. Nothing here reads files or params.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

import pandas as pd

from churn_pipeline.models.churn import ChurnClassifier
from churn_pipeline.models.clv import CLVRegressor
from churn_pipeline.models.survival import LABEL_COLUMNS as NEXT_ORDER_LABELS
from churn_pipeline.models.survival import NextOrderModel
from churn_pipeline.models.uplift import UpliftModel

__all__ = ["ESTIMATORS", "NEXT_ORDER_LABELS", "build_estimator", "fit_estimator"]

# The estimator class of each model kind (the registered model names; ``uplift``: models.uplift).
ESTIMATORS: dict[str, type] = {
    "churn": ChurnClassifier,
    "clv": CLVRegressor,
    "next_order": NextOrderModel,
    "uplift": UpliftModel,
}


def _settings(settings: Any, exclude: Collection[str]) -> dict[str, Any]:
    values = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings)
    return {key: value for key, value in values.items() if key not in exclude}


def build_estimator(
    kind: str, manifest: Mapping[str, Any], settings: Any, *, exclude: Collection[str] = (), **fixed: Any
) -> Any:
    """An unfitted ``kind`` estimator (``ESTIMATORS``) on ``manifest``'s features and categorical features, with
    the hyper-parameters of ``settings`` (a dataclass or mapping; keys in ``exclude`` are left out: a section's
    stage-only keys) and the further arguments ``fixed`` (e.g. ``seed``, ``max_category_levels``,
    ``retention_days``). A next-order model also takes its grid (days after the cutoff) and the churn horizon
    (days) of its prior from the manifest."""
    if kind not in ESTIMATORS:
        raise ValueError(f"kind must be one of {sorted(ESTIMATORS)}, got {kind!r}")
    if kind == "next_order":
        fixed = {
            "grid_days": tuple(manifest["next_order_days"]),
            "offset_horizon_days": int(manifest["churn_horizon_days"]),
            **fixed,
        }
    return ESTIMATORS[kind](
        features=manifest["features"], categorical=manifest["categorical"], **fixed, **_settings(settings, exclude)
    )


def fit_estimator(kind: str, model: Any, train: pd.DataFrame, valid: pd.DataFrame) -> Any:
    """``model`` (a churn, CLV or next-order estimator) fitted on the labelled panel rows ``train`` with early
    stopping (and calibration) on ``valid``, the labels read from their columns: ``churned`` (as bool),
    ``future_revenue`` and ``future_orders`` (CLV horizon), ``next_order_days`` and ``next_order_followup_days``.
    Returns the fitted model."""
    if kind == "churn":
        return model.fit(train, train["churned"].astype(bool), valid, valid["churned"].astype(bool))
    if kind == "clv":
        return model.fit(
            train,
            train["future_revenue"],
            valid,
            valid["future_revenue"],
            train["future_orders"],
            valid["future_orders"],
        )
    if kind == "next_order":
        labels = list(NEXT_ORDER_LABELS)
        return model.fit(train, train[labels], valid, valid[labels])
    raise ValueError(f"kind must be churn, clv or next_order, got {kind!r}")
