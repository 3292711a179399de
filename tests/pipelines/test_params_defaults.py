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
