"""The train stage's pure part (models.training): label checks of a split, the test metrics, train.json entries."""

import pandas as pd
import pytest

from churn_pipeline.errors import DataContractError
from churn_pipeline.models import training
from churn_pipeline.models.gate import Decision
from churn_pipeline.models.split import time_split

CUTOFFS = list(pd.date_range("2024-01-01", "2024-12-01", freq="MS"))


def _part(churned: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({"churned": churned, "future_revenue": [10.0 * c for c in churned]})


def test_a_split_whose_churn_labels_have_one_class_stops_naming_the_cutoffs_and_counts():
    split = time_split(CUTOFFS, 30, 1)
    ok = _part([True, False, True])
    training.check_classes("churned", 30, split, (ok, ok, ok))
    with pytest.raises(DataContractError, match=r"one class on the validation cutoff\(s\).*3 rows, 3 churners, 0"):
        training.check_classes("churned", 30, split, (ok, _part([True, True, True]), ok))
    with pytest.raises(DataContractError, match=r"labels\.clv_horizon_days"):
        training.check_classes("future_revenue", 30, split, (ok, ok, _part([False, False])))


def test_a_train_json_entry_rounds_the_metrics_and_names_the_cutoffs():
    split = time_split(CUTOFFS, 30, 1)
    result = {
        "split": split,
        "deployed": split,
        "metrics": {"roc_auc": 0.123456789},
        "baselines": {"bgnbd": {"roc_auc": 0.5000004}},
    }
    entry = training.summary_entry(result, "3", Decision(True, ("ok",)), "3", False, {"label_horizon_days": 30})
    assert entry["roc_auc"] == 0.123457 and entry["baselines"] == {"bgnbd": {"roc_auc": 0.5}}
    assert entry["test_cutoff"] == "2024-12-01" and entry["promote_mode"] == "auto" and entry["gate"] == ["ok"]
    assert entry["deployed_validation"] == training.span(split.validation) == "2024-11-01..2024-11-01"
