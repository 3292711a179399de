"""The pyfunc serving model (models/serving.py): a missing feature column is named, capped, and no input value
(customer ids, e-mail addresses) ever appears in the error, neither ours nor MLflow's schema check (issue 18)."""

from __future__ import annotations

import importlib

import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from churn_pipeline.pipelines.registry import MODELS_PACKAGE, SERVING_CODE

FEATURES = [f"feature_{i}" for i in range(40)]


class ConstantChurn:
    """A stand-in estimator: the features it needs and a constant probability."""

    features_ = FEATURES

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.tile([0.7, 0.3], (len(X), 1))


def customer_rows(n: int = 200, drop: int = 25) -> pd.DataFrame:
    frame = pd.DataFrame({c: np.ones(n) for c in FEATURES[: len(FEATURES) - drop]})
    frame.insert(0, "customer_id", [f"C{i:05d}" for i in range(n)])
    frame["email"] = [f"user{i}@example.com" for i in range(n)]
    return frame


def assert_private(message: str) -> None:
    assert "C00000" not in message and "@example.com" not in message and len(message) < 1000


def test_the_wrapper_names_missing_columns_capped_without_values():
    serving = importlib.import_module("churn_pipeline.models.serving")
    model = serving.ServingModel()
    model.kind, model.estimator = "churn", ConstantChurn()
    with pytest.raises(ValueError) as info:
        model.predict(None, customer_rows())
    message = str(info.value)
    assert message.startswith("25 of 40 feature column(s) the model was trained on are missing")
    assert "feature_15, feature_16" in message and "and 15 more" in message and "feature_39" not in message
    assert_private(message)
    assert model.predict(None, customer_rows(drop=0))["churn_probability"].tolist() == [0.3] * 200


def test_mlflows_schema_error_does_not_print_the_input_rows(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_DISABLE_SCHEMA_DETAILS", raising=False)
    joblib.dump(ConstantChurn(), tmp_path / "estimator.joblib")
    mlflow.pyfunc.save_model(
        tmp_path / "model",
        python_model=str(SERVING_CODE),
        artifacts={"estimator": str(tmp_path / "estimator.joblib")},
        code_paths=[str(MODELS_PACKAGE)],
        model_config={"kind": "churn"},
        signature=ModelSignature(inputs=Schema([ColSpec("double", c) for c in FEATURES])),
    )
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    with pytest.raises(mlflow.exceptions.MlflowException) as info:
        loaded.predict(customer_rows())
    assert_private(str(info.value))
    assert loaded.predict(customer_rows(drop=0))["churn_probability"].tolist() == [0.3] * 200
