"""CLVRegressor: Tweedie vs two-part revenue, Poisson orders, one artefact, deterministic, guarded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from churn_pipeline.models import metrics
from churn_pipeline.models.clv import CLVRegressor, compare_clv_objectives


@pytest.fixture(scope="module")
def test_rows(clv_frames) -> pd.DataFrame:
    return clv_frames[2]


@pytest.fixture(scope="module")
def two_part_model(fit_clv) -> CLVRegressor:
    return fit_clv(objective="two_part", offset=None)  # the offset needs the Tweedie objective


def test_outputs_and_early_stopping(clv_model, test_rows, fast):
    revenue, orders = clv_model.predict(test_rows), clv_model.predict_orders(test_rows)
    assert revenue.shape == orders.shape == (len(test_rows),)
    assert (revenue >= 0).all() and (orders >= 0).all()
    assert set(clv_model.boosters_) == {"revenue", "orders"}
    assert all(0 < it < fast["n_estimators"] for it in clv_model.best_iterations_.values())


def test_two_part_is_probability_times_spend(two_part_model, clv_model, test_rows):
    assert set(two_part_model.boosters_) == {"purchase", "spend", "orders"}
    X = two_part_model.preprocessor_.transform(test_rows)
    p_buy, spend = two_part_model._predict("purchase", X), two_part_model._predict("spend", X)
    assert ((p_buy > 0) & (p_buy < 1)).all() and (spend > 0).all()
    np.testing.assert_allclose(two_part_model.predict(test_rows), p_buy * spend)
    # the orders model does not depend on the revenue objective
    np.testing.assert_array_equal(two_part_model.predict_orders(test_rows), clv_model.predict_orders(test_rows))


def test_same_data_and_params_give_identical_predictions(clv_model, two_part_model, clv_frames, test_rows):
    train, valid, _ = clv_frames
    for model in (clv_model, two_part_model):
        again = clone(model).fit(
            train,
            train["future_revenue"],
            valid,
            valid["future_revenue"],
            train["future_orders"],
            valid["future_orders"],
        )
        np.testing.assert_array_equal(again.predict(test_rows), model.predict(test_rows))
        np.testing.assert_array_equal(again.predict_orders(test_rows), model.predict_orders(test_rows))


@pytest.mark.parametrize("model_name", ["clv_model", "two_part_model"])
def test_beats_the_naive_forecast_on_the_test_cutoff(model_name, request, test_rows):
    """Both variants must beat "the next 180 days will bring what the last 180 days brought"."""
    model = request.getfixturevalue(model_name)
    y, pred, naive = test_rows["future_revenue"], model.predict(test_rows), test_rows["revenue_180d"]
    assert metrics.rmse(y, pred) < 0.9 * metrics.rmse(y, naive)
    assert metrics.normalized_gini(y, pred) > metrics.normalized_gini(y, naive) + 0.05
    assert abs(metrics.bias(y, pred, relative=True)) < 0.2
    orders = test_rows["future_orders"]
    assert abs(metrics.bias(orders, model.predict_orders(test_rows), relative=True)) < 0.2


def test_compare_clv_objectives_table(clv_frames, manifest, fast):
    train, valid, test = clv_frames
    table = compare_clv_objectives(train, valid, test, manifest["features"], manifest["categorical"], **fast)
    assert list(table.index) == ["tweedie", "two_part"]
    assert {"mae", "rmse", "normalized_gini", "spearman", "bias", "total_bias", "orders_mae"} <= set(table.columns)
    assert (table["n_test_rows"] == len(test)).all()
    assert (table["normalized_gini"] > 0.5).all() and (table["spearman"] > 0.3).all()


def test_columns_are_checked_by_name(clv_model, test_rows):
    reordered = test_rows[list(test_rows.columns[::-1])]
    np.testing.assert_array_equal(clv_model.predict(reordered), clv_model.predict(test_rows))
    with pytest.raises(ValueError, match=r"missing: \['revenue_180d'\]"):
        clv_model.predict(test_rows.drop(columns="revenue_180d"))
    with pytest.raises(ValueError, match=r"missing: \['orders_90d'\]"):
        clv_model.predict_orders(test_rows.rename(columns={"orders_90d": "orders_90"}))


def test_feature_importance_parts(clv_model, two_part_model, manifest):
    for model in (clv_model, two_part_model):
        for part in ("revenue", "orders"):
            imp = model.feature_importance(part)
            assert list(imp.columns) == ["feature", "gain", "split"] and len(imp) == len(manifest["features"])
            assert imp["gain"].is_monotonic_decreasing
    total = two_part_model.feature_importance("revenue").set_index("feature")["gain"]
    parts = sum(two_part_model.feature_importance(p).set_index("feature")["gain"] for p in ("purchase", "spend"))
    pd.testing.assert_series_equal(total.sort_index(), parts.sort_index(), check_names=False)
    with pytest.raises(ValueError, match="no booster 'spend'"):
        clv_model.feature_importance("spend")


def test_bad_inputs(clv_frames, feature_args):
    train, valid, _ = clv_frames
    args = (train, train["future_revenue"], valid, valid["future_revenue"], train["future_orders"])
    model = CLVRegressor(**feature_args, n_estimators=5)
    with pytest.raises(ValueError, match="null value"):
        model.fit(*args, valid["future_orders"].astype("Int64").where(valid.index % 5 != 0))
    with pytest.raises(ValueError, match="non-negative whole numbers"):
        model.fit(*args, valid["future_orders"] - 1)
    with pytest.raises(ValueError, match="objective must be one of"):
        clone(model).set_params(objective="gamma").fit(*args, valid["future_orders"])
    with pytest.raises(ValueError, match=r"tweedie_variance_power must lie in \(1, 2\)"):
        clone(model).set_params(tweedie_variance_power=2.5).fit(*args, valid["future_orders"])


def _prior_rows(n: int, seed: int) -> pd.DataFrame:
    """Rows whose future revenue has a known prior mean (50 per order, Poisson orders), plus a noise feature."""
    rng = np.random.default_rng(seed)
    prior = rng.gamma(2.0, 60.0, n)
    orders = rng.poisson(prior / 50.0)
    return pd.DataFrame({"prior": prior, "noise": rng.normal(size=n), "revenue": orders * 50.0, "orders": orders})


def _fit(rows_train: pd.DataFrame, rows_valid: pd.DataFrame, **params) -> CLVRegressor:
    model = CLVRegressor(features=["prior", "noise"], n_estimators=60, n_jobs=1, **{"offset": None, **params})
    return model.fit(
        rows_train,
        rows_train["revenue"],
        rows_valid,
        rows_valid["revenue"],
        rows_train["orders"],
        rows_valid["orders"],
    )


def test_offset_starts_the_revenue_booster_from_the_prior():
    model = _fit(_prior_rows(4000, 1), _prior_rows(2000, 2), offset="prior")
    test = _prior_rows(1000, 3)
    pred = model.predict(test)
    # The prior is the true mean: the booster adds next to nothing to it.
    assert np.median(np.abs(pred / test["prior"] - 1)) < 0.1
    assert np.sum(pred) == pytest.approx(np.sum(test["revenue"]), rel=0.1)


def test_early_stopping_on_gini_picks_the_trees_of_the_revenue_booster():
    model = _fit(_prior_rows(2000, 4), _prior_rows(1000, 5), offset="prior", early_stopping_metric="gini")
    assert set(model.boosters_["revenue"].best_score_["valid_0"]) == {"gini"}
    assert 1 <= model.best_iterations_["revenue"] <= 60


def test_offset_needs_the_tweedie_objective_and_a_known_metric():
    rows = _prior_rows(300, 6)
    with pytest.raises(ValueError, match="offset needs objective 'tweedie'"):
        _fit(rows, rows, offset="prior", objective="two_part")
    with pytest.raises(ValueError, match="early_stopping_metric"):
        _fit(rows, rows, early_stopping_metric="auc")


def test_the_gini_eval_function_equals_the_metric_and_computes_its_denominator_once(monkeypatch):
    from churn_pipeline.models import metrics
    from churn_pipeline.models.clv import _GiniEval

    rng = np.random.default_rng(1)
    labels = np.where(rng.random(2000) < 0.5, 0.0, rng.gamma(1.0, 100.0, 2000)).astype(np.float32)
    calls = []
    truth = metrics.truth_gini
    monkeypatch.setattr(metrics, "truth_gini", lambda y: calls.append(1) or truth(y))
    evaluate = _GiniEval()
    for _ in range(4):  # LightGBM passes the same label array every round
        pred = rng.random(2000)
        assert evaluate(labels, pred) == ("gini", metrics.normalized_gini(labels, pred), True)
    assert len(calls) == 1
    evaluate(labels.copy(), rng.random(2000))  # another array: computed again
    assert len(calls) == 2
