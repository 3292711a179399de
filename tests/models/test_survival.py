"""The next-order model: person-period expansion, survival arithmetic, metrics and a behavioural fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.models.survival import (
    INTERVAL_FEATURE,
    NextOrderModel,
    bgnbd_survival,
    brier_by_edge,
    concordance_index,
    integrated_brier_score,
    label_arrays,
    median_days,
    person_periods,
    restricted_mean_days,
    survival_metrics,
)

GRID = np.array([14, 30, 60, 90, 120, 180])


def labels(next_order, followup):
    return pd.DataFrame({"next_order_days": next_order, "next_order_followup_days": followup}, dtype="float64")


def test_label_arrays_give_the_event_interval_and_the_observed_intervals():
    event, observed = label_arrays(labels([30, np.nan, np.nan, 14, np.nan], [180, 180, 60, 14, 0]), GRID)
    assert event.tolist() == [1, -1, -1, 0, -1]
    assert observed.tolist() == [6, 6, 3, 1, 0]


def test_an_event_off_the_grid_is_refused():
    with pytest.raises(ValueError, match="not edges of the grid"):
        label_arrays(labels([45], [180]), GRID)


def test_an_event_beyond_the_follow_up_is_refused():
    with pytest.raises(ValueError, match="beyond"):
        label_arrays(labels([90], [60]), GRID)


def test_person_periods_stop_at_the_event_or_the_follow_up():
    # Row 0 orders in interval 1 (14-30 d); row 1 never, followed up over 3 intervals; row 2 not followed up.
    rows, interval, target = person_periods(np.array([1, -1, -1]), np.array([6, 3, 0]))
    assert rows.tolist() == [0, 0, 1, 1, 1]
    assert interval.tolist() == [0, 1, 0, 1, 2]
    assert target.tolist() == [0, 1, 0, 0, 0]


def test_the_median_of_a_constant_hazard_is_log_2_over_the_rate():
    rate = np.array([0.01, 0.05])
    survival = np.exp(-rate[:, None] * GRID[None, :])
    assert median_days(survival, GRID) == pytest.approx(np.log(2) / rate, rel=1e-9)


def test_no_median_when_half_the_customers_would_not_order_within_the_grid():
    assert np.isnan(median_days(np.full((1, GRID.size), 0.6), GRID)[0])


def test_the_restricted_mean_is_the_area_under_the_curve():
    assert restricted_mean_days(np.ones((1, GRID.size)), GRID)[0] == pytest.approx(180.0)
    rate = 0.02
    exact = (1 - np.exp(-rate * 180)) / rate
    got = restricted_mean_days(np.exp(-rate * GRID[None, :]), GRID)[0]
    assert got == pytest.approx(exact, rel=1e-9)


def brute_concordance(y, survival, grid):
    event, observed = label_arrays(y, grid)
    score = restricted_mean_days(survival, grid)
    num = den = 0.0
    for i in range(len(score)):
        if event[i] < 0:
            continue
        for j in range(len(score)):
            if event[j] > event[i] or (event[j] < 0 and observed[j] > event[i]):
                den += 1
                num += 1.0 if score[i] < score[j] else 0.5 if score[i] == score[j] else 0.0
    return num / den


def test_the_concordance_index_matches_the_pairwise_definition():
    rng = np.random.default_rng(3)
    n = 300
    edge = rng.choice(np.r_[GRID, np.nan], size=n)
    followup = rng.choice([60, 120, 180], size=n).astype(float)
    edge = np.where(edge <= followup, edge, np.nan)
    y = labels(edge, followup)
    survival = np.cumprod(rng.uniform(0.6, 1.0, size=(n, GRID.size)), axis=1)
    survival[:20] = survival[20:40]  # ties
    assert concordance_index(y, survival, GRID) == pytest.approx(brute_concordance(y, survival, GRID), abs=1e-12)


def test_the_brier_score_by_edge_counts_only_known_statuses():
    # Row 0 orders by 14 d; row 1 never, but followed up only to 30 d.
    y = labels([14, np.nan], [180, 30])
    survival = np.full((2, GRID.size), 0.5)
    by_edge = brier_by_edge(y, survival, GRID)
    assert by_edge[0] == pytest.approx(0.25)  # both known: (0 - .5)^2 and (1 - .5)^2
    assert by_edge[2] == pytest.approx(0.25)  # only row 0 known at 60 d
    assert integrated_brier_score(y, survival, GRID) == pytest.approx(0.25)


def shop(n, seed):
    """Customers whose order rate doubles with x: exponential times, cut to the grid, followed up 180 days."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    noise = rng.normal(size=n)
    t = rng.exponential(1.0 / (0.002 + 0.03 * x))
    idx = np.searchsorted(GRID, t, side="right")
    edge = np.where(idx < GRID.size, GRID[np.minimum(idx, GRID.size - 1)], np.nan).astype(float)
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "x": x, "noise": noise})
    return frame, labels(edge, np.full(n, 180.0)), x


@pytest.fixture(scope="module")
def fitted():
    X, y, _ = shop(6000, 0)
    Xv, yv, _ = shop(2000, 1)
    return NextOrderModel(features=["x", "noise"], offset=None, n_estimators=200, min_child_samples=50, seed=0).fit(
        X, y, Xv, yv
    )


def test_a_fitted_model_ranks_customers_by_how_soon_they_order(fitted):
    X, y, _ = shop(3000, 2)
    survival = fitted.predict_survival(X)
    assert concordance_index(y, survival, GRID) > 0.65
    assert np.all(np.diff(survival, axis=1) <= 1e-12)


def test_a_higher_order_rate_means_a_higher_order_probability(fitted):
    probe = pd.DataFrame({"x": [0.1, 0.9], "noise": [0.0, 0.0]})
    p30 = fitted.predict_order_probability(probe, 30)
    assert p30[1] > p30[0]
    med = fitted.predict_median_days(probe)
    assert np.isnan(med[0]) or med[1] < med[0]


def test_predicted_order_rates_match_the_observed_ones_on_new_customers(fitted):
    X, y, _ = shop(4000, 4)
    m = survival_metrics(y, fitted.predict_survival(X), GRID)
    for days in (30, 90, 180):
        assert m[f"mean_order_probability_{days}d"] == pytest.approx(m[f"order_rate_{days}d"], abs=0.03)


def test_the_interval_is_a_feature_of_the_booster_not_of_the_input(fitted):
    assert fitted.features_ == ["x", "noise"]
    assert INTERVAL_FEATURE in fitted.feature_importance()["feature"].tolist()


def test_the_training_cap_thins_the_person_periods():
    X, y, _ = shop(3000, 5)
    model = NextOrderModel(features=["x"], offset=None, max_train_rows=2000, n_estimators=20).fit(X, y, X, y)
    assert model.n_person_periods_ <= 2000


def test_bgnbd_survival_is_a_non_increasing_curve_per_customer():
    rng = np.random.default_rng(0)
    tenure = rng.uniform(30, 700, 500)
    frame = pd.DataFrame(
        {"frequency": rng.poisson(3, 500), "tenure_days": tenure, "recency_days": tenure * rng.uniform(0, 1, 500)}
    )
    s = bgnbd_survival(frame, GRID)
    assert s.shape == (500, GRID.size)
    assert np.all(np.diff(s, axis=1) <= 1e-12) and np.all((s >= 0) & (s <= 1))


def prior_shop(n, seed):
    """Customers whose prior features say it all: alive with a, and an alive customer's order rate given by s."""
    rng = np.random.default_rng(seed)
    alive = rng.uniform(0.3, 1.0, n)
    rate = rng.uniform(0.002, 0.03, n)
    silent_90 = np.exp(-rate * 90)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "bgnbd_p_alive": alive,
            "bgnbd_churn_probability": (1 - alive) + alive * silent_90,
        }
    )
    t = np.where(rng.uniform(size=n) < alive, rng.exponential(1.0 / rate), np.inf)
    idx = np.searchsorted(GRID, t, side="right")
    edge = np.where(idx < GRID.size, GRID[np.minimum(idx, GRID.size - 1)], np.nan).astype(float)
    return frame, labels(edge, np.full(n, 180.0))


def test_the_prior_curve_reproduces_its_own_churn_probability_at_the_churn_horizon():
    from churn_pipeline.models.survival import prior_survival

    s = prior_survival(np.array([0.5, 1.0]), np.array([0.8, 0.3]), 90, GRID)
    np.testing.assert_allclose(s[:, GRID.tolist().index(90)], [0.8, 0.3])
    assert np.all(np.diff(s, axis=1) <= 0) and np.all(s[:, -1] >= [0.5, 0.0])


def test_on_a_few_hundred_rows_the_offset_model_keeps_the_prior_ranking():
    # A couple of hundred training rows cannot teach trees much; starting from the prior, the model ranks as the
    # prior does (and is no worse calibrated).
    X, y = prior_shop(300, 0)
    Xv, yv = prior_shop(300, 1)
    test, ytest = prior_shop(5000, 2)
    features = ["bgnbd_p_alive", "bgnbd_churn_probability"]
    with_prior = NextOrderModel(features=features, offset_horizon_days=90, n_estimators=50, seed=0).fit(X, y, Xv, yv)
    from churn_pipeline.models.survival import prior_survival

    prior = prior_survival(test["bgnbd_p_alive"], test["bgnbd_churn_probability"], 90, GRID)
    c_prior = concordance_index(ytest, prior, GRID)
    c_model = concordance_index(ytest, with_prior.predict_survival(test), GRID)
    assert c_model >= c_prior - 0.01
    assert integrated_brier_score(ytest, with_prior.predict_survival(test), GRID) <= (
        integrated_brier_score(ytest, prior, GRID) + 0.005
    )
