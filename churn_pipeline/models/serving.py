"""The MLflow pyfunc model for both trained models ("models from code": MLflow loads this file).

One class serves both models; ``model_config["kind"]`` says which:

- ``churn``: returns ``churn_probability``, the *calibrated* P(no order in the churn horizon). (MLflow's
  LightGBM flavour would return 0/1 labels through pyfunc; this wrapper never does.)
- ``clv``: returns ``predicted_clv`` (net revenue over the CLV horizon, shop currency) and
  ``expected_orders``.
- ``next_order``: returns ``order_probability_<e>d`` for every edge ``e`` of the model's grid (P(an order within
  ``e`` days of the cutoff), non-decreasing in ``e``) and ``days_to_next_order`` (the median days to the next
  order, NaN when the customer is not expected to order within the grid: :mod:`models.survival`).
- ``uplift``: returns ``uplift_retention__<action>`` (treatment minus control P(an order within the churn
  horizon), a share: 0.05 = 5 percentage points) and ``uplift_revenue__<action>`` (net revenue over the CLV
  horizon, shop currency) for every action the model covers (:mod:`models.uplift`; ``estimator.actions_``,
  ``estimator.cost_``).

A feature table lacking a column the model was trained on is rejected with an error naming how many are
missing and the first few of them (never a value: feature tables carry customer ids); extra columns (keys,
labels) are ignored and columns are matched by name, never by position. MLflow checks the input against the
logged signature before this class sees it, and by default its error quotes the input table itself (customer
ids and any personal column, thousands of characters): loading this model sets ``MLFLOW_DISABLE_SCHEMA_DETAILS``
(unless already set), so MLflow says only that the input does not fit the schema; call
``unwrap_python_model().predict`` (or :func:`missing_columns_message`) to see which columns are missing.

``estimator`` is the deployed model (fitted with the newest labels); ``holdout_estimator`` its held-out twin,
fitted before the test cutoff, on which the gate and ``churn evaluate`` judge the version.

``drift_reference`` (a dict, or None for models logged without one) holds the bins of the model's most
important features and of its scores on its training rows (:mod:`models.drift`); ``churn score`` compares the
scored customers against it.

Security: the fitted estimator is a joblib (pickle) artefact. Loading it runs code from the artefact, so
load models only from your own tracking store / registry, never from an untrusted path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import joblib
import mlflow
import pandas as pd

MAX_LISTED = 10


def missing_columns_message(model_input: pd.DataFrame, features: Sequence[str]) -> str | None:
    """``3 of 114 feature columns missing: a, b, c`` (at most :data:`MAX_LISTED` names; never a value), or None
    when every feature column is there."""
    have = {str(c) for c in model_input.columns}
    missing = [f for f in features if f not in have]
    if not missing:
        return None
    more = len(missing) - MAX_LISTED
    shown = ", ".join(missing[:MAX_LISTED]) + (f" and {more:,} more" if more > 0 else "")
    return (
        f"{len(missing):,} of {len(features):,} feature column(s) the model was trained on are missing from the "
        f"input ({len(model_input.columns):,} columns, {len(model_input):,} rows): {shown}. Build the input with "
        f"`churn features` and the params the model was trained with."
    )


class ServingModel(mlflow.pyfunc.PythonModel):
    """Calibrated churn probabilities or CLV predictions for a feature table (one row per customer)."""

    def load_context(self, context) -> None:
        # MLflow's schema error would print the input rows (ids, e-mail addresses): from the moment a model is
        # loaded, ask it for its short message instead (unless the user chose otherwise).
        os.environ.setdefault("MLFLOW_DISABLE_SCHEMA_DETAILS", "true")
        self.kind = context.model_config["kind"]
        self.estimator = joblib.load(context.artifacts["estimator"])
        # The held-out twin (fitted before the test cutoff) judges the version in the gate and `evaluate`;
        # None for versions logged before twins existed.
        holdout = context.artifacts.get("holdout_estimator")
        self.holdout_estimator = joblib.load(holdout) if holdout else None
        reference = context.artifacts.get("drift_reference")
        self.drift_reference = json.loads(Path(reference).read_text(encoding="utf-8")) if reference else None

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            raise TypeError(f"expected a pandas DataFrame with named columns, got {type(model_input).__name__}")
        message = missing_columns_message(model_input, self.estimator.features_)
        if message is not None:
            raise ValueError(message)
        if self.kind == "churn":
            return pd.DataFrame({"churn_probability": self.estimator.predict_proba(model_input)[:, 1]})
        if self.kind == "next_order":
            from churn_pipeline.models.survival import (
                next_order_frame,  # the model's own code, shipped beside this file
            )

            return next_order_frame(self.estimator, model_input)
        if self.kind == "uplift":
            return self.estimator.predict_uplift(model_input).reset_index(drop=True)
        return pd.DataFrame(
            {
                "predicted_clv": self.estimator.predict(model_input),
                "expected_orders": self.estimator.predict_orders(model_input),
            }
        )


mlflow.models.set_model(ServingModel())
