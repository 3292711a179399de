"""The MLflow pyfunc model for both trained models ("models from code": MLflow loads this file).

One class serves both models; ``model_config["kind"]`` says which:

- ``churn``: returns ``churn_probability``, the *calibrated* P(no order in the churn horizon). (MLflow's
  LightGBM flavour would return 0/1 labels through pyfunc; this wrapper never does.)
- ``clv``: returns ``predicted_clv`` (net revenue over the CLV horizon, shop currency) and
  ``expected_orders``.

A feature table lacking a column the model was trained on is rejected with an error naming every missing
column; extra columns (keys, labels) are ignored and columns are matched by name, never by position.

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
from pathlib import Path

import joblib
import mlflow
import pandas as pd

from models.preprocess import check_columns


class ServingModel(mlflow.pyfunc.PythonModel):
    """Calibrated churn probabilities or CLV predictions for a feature table (one row per customer)."""

    def load_context(self, context) -> None:
        self.kind = context.model_config["kind"]
        self.estimator = joblib.load(context.artifacts["estimator"])
        # The held-out twin (fitted before the test cutoff) judges the version in the gate and `evaluate`;
        # None for versions logged before twins existed.
        holdout = context.artifacts.get("holdout_estimator")
        self.holdout_estimator = joblib.load(holdout) if holdout else None
        reference = context.artifacts.get("drift_reference")
        self.drift_reference = json.loads(Path(reference).read_text(encoding="utf-8")) if reference else None

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        check_columns(model_input, self.estimator.features_)
        if self.kind == "churn":
            return pd.DataFrame({"churn_probability": self.estimator.predict_proba(model_input)[:, 1]})
        return pd.DataFrame(
            {
                "predicted_clv": self.estimator.predict(model_input),
                "expected_orders": self.estimator.predict_orders(model_input),
            }
        )


mlflow.models.set_model(ServingModel())
