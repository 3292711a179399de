"""The one estimator factory: every model is built from its params section the same way, train and backtest alike."""

from dataclasses import asdict

import pytest

from churn_pipeline.models.churn import ChurnClassifier
from churn_pipeline.models.clv import CLVRegressor
from churn_pipeline.models.factory import build_estimator, fit_estimator
from churn_pipeline.models.survival import NextOrderModel
from churn_pipeline.pipelines.params import TrainParams
from churn_pipeline.pipelines.uplift import UpliftParams

MANIFEST = {
    "features": ["recency_days", "country"],
    "categorical": ["country"],
    "next_order_days": [14, 30, 90],
    "churn_horizon_days": 60,
}


def test_the_train_params_build_each_model_with_its_section_and_the_shared_settings():
    params = TrainParams(seed=7, max_category_levels=9)
    for kind, cls in (("churn", ChurnClassifier), ("clv", CLVRegressor), ("next_order", NextOrderModel)):
        model = params.estimator(kind, MANIFEST)
        assert type(model) is cls
        got = model.get_params()
        assert {k: got[k] for k in asdict(getattr(params, kind))} == asdict(getattr(params, kind))
        assert (got["seed"], got["max_category_levels"], got["features"]) == (7, 9, MANIFEST["features"])
    next_order = params.estimator("next_order", MANIFEST)
    assert next_order.grid_days == (14, 30, 90) and next_order.offset_horizon_days == 60


def test_the_uplift_params_leave_their_stage_only_keys_out():
    model = UpliftParams(learning_rate=0.03).estimator(
        MANIFEST, type("Config", (), {"churn_horizon_days": 60, "clv_horizon_days": 120})
    )
    assert model.learning_rate == 0.03 and (model.retention_days, model.revenue_days) == (60, 120)
    assert "shuffles" not in model.get_params()


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        build_estimator("rfm", MANIFEST, {})
    with pytest.raises(ValueError, match="kind must be churn, clv or next_order"):
        fit_estimator("uplift", None, None, None)
