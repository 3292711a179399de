"""The backtest's pure part (models.backtest): fold cutoffs, baselines blind to the future, refits, summaries."""

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.errors import DataContractError
from churn_pipeline.models import backtest
from churn_pipeline.pipelines.params import EvaluateParams

CUTOFFS = pd.date_range("2024-01-01", "2024-12-01", freq="MS")
BASELINE_NAMES = ("recency_rule", "rfm", "bgnbd")


@pytest.fixture
def panel() -> pd.DataFrame:
    """Ten customers at twelve monthly cutoffs, every label known (the masking must hide the late ones)."""
    rng = np.random.default_rng(0)
    rows = len(CUTOFFS) * 10
    return pd.DataFrame(
        {
            "customer_id": np.tile([f"c{i}" for i in range(10)], len(CUTOFFS)),
            "cutoff": np.repeat(CUTOFFS, 10),
            "churned": rng.random(rows) < 0.5,
            "future_revenue": rng.gamma(1.0, 50.0, rows),
            "future_orders": rng.integers(0, 4, rows).astype(float),
        }
    )


def test_baselines_see_only_labels_known_by_the_target_cutoff(panel, monkeypatch):
    seen = {}

    def fake(history, target, churn_horizon_days, clv_horizon_days):
        seen["history"], seen["target"] = history, target
        zeros = pd.DataFrame({"churn_probability": 0.5, "predicted_clv": 1.0}, index=target.index)
        return {name: zeros for name in BASELINE_NAMES}

    monkeypatch.setattr(backtest, "fit_predict_baselines", fake)
    cutoff = CUTOFFS[-1]
    backtest.baseline_predictions(panel, cutoff, 90, 180)
    history, target = seen["history"], seen["target"]
    assert (target["cutoff"] == cutoff).all() and (history["cutoff"] < cutoff).all()
    churn_known = history["churned"].notna()
    assert (history.loc[churn_known, "cutoff"] + pd.Timedelta(days=90) <= cutoff).all()
    assert churn_known.any() and not churn_known.all()
    clv_known = history["future_revenue"].notna()
    assert (history.loc[clv_known, "cutoff"] + pd.Timedelta(days=180) <= cutoff).all()
    assert (history["future_orders"].notna() == clv_known).all()
    assert panel["churned"].notna().all()  # the input was not changed


def test_fold_cutoffs_pair_each_churn_cutoff_with_its_own_earlier_clv_cutoff():
    months = list(pd.date_range("2025-01-01", "2025-10-01", freq="MS"))
    folds = backtest.fold_cutoffs(months, months[:7], 3)  # CLV labels end three months earlier
    assert [(c.month, v.month) for c, v in folds] == [(10, 7), (9, 6), (8, 5)]
    with pytest.raises(DataContractError, match="backtest_cutoffs"):
        backtest.fold_cutoffs(months, months, 11)


class _Recorder:
    """An estimator that records the rows it is fitted on."""

    def fit(self, X_train, y_train, X_valid, y_valid, *orders):
        self.train, self.valid = X_train, X_valid
        return self


def test_a_refit_sees_only_cutoffs_up_to_its_own_split_as_the_train_stage_splits(panel):
    cutoff = CUTOFFS[-3]
    model = backtest.refit("churn", _Recorder(), panel, cutoff, 30, 1, True)
    assert model.valid["cutoff"].max() < cutoff
    assert model.train["cutoff"].max() + pd.Timedelta(days=30) <= model.valid["cutoff"].min()
    with pytest.raises(DataContractError, match=r"backtest refit of the future_revenue model.*backtest_cutoffs"):
        backtest.refit("clv", _Recorder(), panel, CUTOFFS[3], 180, 1, True)


def test_backtest_summary_gives_mean_and_sample_spread_per_ranking():
    frame = pd.DataFrame(
        {"fold": [1, 2, 1, 2], "ranking": ["model", "model", "rfm", "rfm"], "roc_auc": [0.8, 0.7, 0.6, 0.6]}
    )
    for column in (*backtest.BACKTEST_CHURN, *backtest.BACKTEST_CLV, *backtest.BACKTEST_PROFIT):
        if column not in frame:
            frame[column] = np.nan
    summary = backtest.backtest_summary(frame)
    assert summary.loc["model", ("mean", "roc_auc")] == pytest.approx(0.75)
    assert summary.loc["model", ("std", "roc_auc")] == pytest.approx(np.std([0.8, 0.7], ddof=1))
    assert summary.loc["rfm", ("std", "roc_auc")] == 0.0


def test_fold_settings_are_the_evaluate_params_of_the_same_names():
    params = EvaluateParams(top_shares=(0.1, 0.5), calibration_bins=5, retained_value="expected")
    settings = backtest.FoldSettings.of(params)
    assert settings.top_shares == (0.1, 0.5) and settings.calibration_bins == 5
    assert settings.retained_value == "expected" and settings.campaign == params.campaign


def test_json_ready_rounds_floats_and_turns_non_finite_numbers_into_null():
    doc = backtest.json_ready({"a": np.float64(0.1234567891), "b": {"c": float("nan"), "d": np.int64(3)}, "e": [1.0]})
    assert doc == {"a": 0.123457, "b": {"c": None, "d": 3}, "e": [1.0]}
