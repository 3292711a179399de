"""The shipped params.yaml and the stages' dataclass defaults say the same thing.

A stage run without a params file (or a section left out) must behave as documented in params.yaml; a default
that silently differs from the shipped value is a trap for whoever runs a stage from Python.
"""

from pathlib import Path

import pytest

from churn_pipeline.models.tiers import RiskTiers
from churn_pipeline.pipelines.export import ExportParams
from churn_pipeline.pipelines.params import (
    EvaluateParams,
    FeaturesParams,
    LabelsParams,
    ScoreParams,
    TrainParams,
    load_section,
)
from churn_pipeline.pipelines.validate import ValidateParams

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


@pytest.mark.parametrize(
    ("cls", "section"),
    [
        (ValidateParams, "validate"),
        (FeaturesParams, "features"),
        (LabelsParams, "labels"),
        (TrainParams, "train"),
        (EvaluateParams, "evaluate"),
        (RiskTiers, "risk_tiers"),
        (ScoreParams, "score"),
        (ExportParams, "export"),
    ],
)
def test_shipped_params_equal_the_dataclass_defaults(cls, section):
    assert load_section(cls, section, PARAMS) == cls()


# Keys of a params section that configure the stage, not the estimator it builds.
STAGE_ONLY = {"uplift": {"experiment", "promote", "churn_model_alias", "shuffles"}}


@pytest.mark.parametrize(
    ("kind", "section"),
    [("churn", "train.churn"), ("clv", "train.clv"), ("next_order", "train.next_order"), ("uplift", "uplift")],
)
def test_estimator_defaults_equal_the_shipped_params(kind, section):
    from churn_pipeline.models.factory import ESTIMATORS
    from churn_pipeline.pipelines.params import read_params

    shipped = read_params(PARAMS)
    node = shipped
    for part in section.split("."):
        node = node[part]
    expected = dict(node)
    if section.startswith("train."):  # the train section's settings shared by its three models
        expected |= {key: shipped["train"][key] for key in ("seed", "max_category_levels")}
    defaults = ESTIMATORS[kind]().get_params()
    assert set(expected) - set(defaults) == STAGE_ONLY.get(kind, set())
    estimator_keys = sorted(set(expected) & set(defaults))
    assert {k: defaults[k] for k in estimator_keys} == {k: expected[k] for k in estimator_keys}
