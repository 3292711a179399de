"""Baselines: BG/NBD and Gamma-Gamma recover the parameters they were simulated with, their predictions match
a Monte-Carlo future, and the recency rule and RFM cells give hand-checkable rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.optimize import check_grad

from churn_pipeline.btyd import BGNBD, GammaGamma
from churn_pipeline.models.baselines import BASELINES, RecencyRule, RFMScorer, fit_predict_baselines

TRUE_BG = {"r": 0.6, "alpha": 40.0, "a": 0.8, "b": 2.5}  # rate in days: mean 0.015 orders/day
TRUE_GG = {"p": 6.0, "q": 4.0, "v": 150.0}  # mean order value p v / (q - 1) = 300


def simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, horizon: float, seed: int):
    """Customers from BG/NBD, first order at time 0, observed for T ~ U(30, 720) days, then ``horizon`` more.

    Returns x (repeat orders in (0, T]), t_x, T and the number of orders in (T, T + horizon]. Vectorised
    over customers; the loop runs over successive orders."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    big_t = rng.uniform(30.0, 720.0, n)
    x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n)
    t = np.zeros(n)
    active = np.ones(n, dtype=bool)  # drop-out follows repeat orders only (the first one is at time 0)
    while active.any():
        t = t + rng.exponential(1.0 / lam)
        inside = active & (t <= big_t)
        later = active & (t > big_t) & (t <= big_t + horizon)
        x[inside] += 1
        t_x[inside] = t[inside]
        future[later] += 1
        active &= (t <= big_t + horizon) & (rng.random(n) >= p)
    return x, t_x, big_t, future


@pytest.fixture(scope="module")
def bg_data():
    return simulate_bgnbd(30_000, **TRUE_BG, horizon=182.0, seed=7)


@pytest.fixture(scope="module")
def bg_fit(bg_data):
    x, t_x, big_t, _ = bg_data
    return BGNBD().fit(x, t_x, big_t)


def with_params(params: dict) -> BGNBD:
    model = BGNBD()
    model.params_ = dict(params)
    return model


# ---------------------------------------------------------------------------------------------- BG/NBD
def test_bgnbd_recovers_the_parameters_it_was_simulated_with_within_15_percent(bg_fit):
    assert bg_fit.converged_
    for name, true in TRUE_BG.items():
        assert bg_fit.params_[name] == pytest.approx(true, rel=0.15), name


def test_bgnbd_analytic_gradient_matches_finite_differences(bg_data):
    x, t_x, big_t, _ = bg_data
    x, t_x, big_t = x[:3000], np.where(x[:3000] > 0, t_x[:3000], 0.0), big_t[:3000]
    ux, inv = np.unique(x, return_inverse=True)
    w = np.ones_like(x)

    def f(theta):
        return BGNBD._neg_loglik(theta, ux, inv, t_x, big_t, w)[0]

    def g(theta):
        return BGNBD._neg_loglik(theta, ux, inv, t_x, big_t, w)[1]

    for theta in (np.log([0.6, 40.0, 0.8, 2.5]), np.log([2.0, 5.0, 3.0, 0.7])):
        assert check_grad(f, g, theta) < 1e-5


def test_bgnbd_probability_of_no_order_matches_the_simulated_future(bg_data):
    x, t_x, big_t, future = bg_data
    model = with_params(TRUE_BG)
    p_none = model.p_no_order(182.0, x, t_x, big_t)
    assert p_none.mean() == pytest.approx((future == 0).mean(), abs=0.01)
    for group in (x == 0, (x >= 1) & (x <= 3), x > 3):  # conditional, not only on average
        assert p_none[group].mean() == pytest.approx((future[group] == 0).mean(), abs=0.02)


def test_bgnbd_expected_orders_match_the_simulated_future(bg_data):
    x, t_x, big_t, future = bg_data
    expected = with_params(TRUE_BG).expected_orders(182.0, x, t_x, big_t)
    assert expected.mean() == pytest.approx(future.mean(), rel=0.05)
    busy = x > 3
    assert expected[busy].mean() == pytest.approx(future[busy].mean(), rel=0.08)


def test_bgnbd_customer_without_repeat_order_is_alive_for_sure():
    # Drop-out happens only right after an order, so nobody can have left after a single first order.
    model = with_params(TRUE_BG)
    assert model.p_alive([0, 0], [0.0, 0.0], [10.0, 700.0]) == pytest.approx([1.0, 1.0])
    assert model.p_alive([3], [10.0], [700.0])[0] < 0.5


def test_bgnbd_more_recent_last_order_means_lower_churn_probability():
    model = with_params(TRUE_BG)
    t_x = np.array([50.0, 150.0, 250.0, 350.0])  # last order 350, 250, 150, 50 days before T
    p_none = model.p_no_order(90.0, np.full(4, 5), t_x, np.full(4, 400.0))
    assert np.all(np.diff(p_none) < 0)


def test_bgnbd_expected_orders_stay_exact_for_very_busy_customers():
    # x = 400 pushes hyp2f1 far from its comfortable range; compare with the integral over the posterior
    # drop-out probability p ~ Beta(a, b + x) of an alive customer: E = E_p[(1 - (1 + p s)^-(r+x)) / p].
    params = {"r": 0.6, "alpha": 40.0, "a": 2.5, "b": 3.0}
    x, t_x, big_t, h = 400.0, 690.0, 700.0, 182.0
    model = with_params(params)
    got = model.expected_orders(h, [x], [t_x], [big_t])[0]
    s, k = h / (params["alpha"] + big_t), params["r"] + x
    a, b = params["a"], params["b"] + x

    def integrand(p):
        from scipy.stats import beta

        return (1.0 - (1.0 + p * s) ** -k) / p * beta.pdf(p, a, b)

    given_alive = integrate.quad(integrand, 0.0, 1.0, limit=200, points=[a / (a + b)])[0]
    assert got == pytest.approx(given_alive * model.p_alive([x], [t_x], [big_t])[0], rel=1e-4)


def test_bgnbd_rejects_fractional_or_negative_frequency():
    with pytest.raises(ValueError, match="whole numbers"):
        BGNBD().fit([1.5, 2.0], [1.0, 2.0], [3.0, 4.0])


# ----------------------------------------------------------------------------------------- Gamma-Gamma
def simulate_gamma_gamma(n: int, p: float, q: float, v: float, seed: int):
    rng = np.random.default_rng(seed)
    nu = rng.gamma(q, 1.0 / v, n)
    orders = rng.integers(1, 8, n).astype(float)
    # The mean of n Gamma(p, nu) order values is Gamma(n p, n nu).
    return orders, rng.gamma(p * orders, 1.0 / (nu * orders))


def test_gamma_gamma_recovers_the_parameters_it_was_simulated_with_within_10_percent():
    orders, mean_value = simulate_gamma_gamma(30_000, **TRUE_GG, seed=3)
    model = GammaGamma().fit(orders, mean_value)
    for name, true in TRUE_GG.items():
        assert model.params_[name] == pytest.approx(true, rel=0.10), name
    assert model.population_mean_ == pytest.approx(300.0, rel=0.05)


def test_gamma_gamma_trusts_a_customers_own_mean_more_the_more_orders_they_made():
    model = GammaGamma()
    model.params_ = dict(TRUE_GG)  # population mean 300
    one, many = model.expected_order_value([1, 50], [1000.0, 1000.0])
    assert 300.0 < one < many < 1000.0
    # Hand check: p (v + n m) / (p n + q - 1) = 6 * (150 + 1000) / (6 + 3) for n = 1.
    assert one == pytest.approx(6 * 1150 / 9)


def test_gamma_gamma_refuses_non_positive_spend():
    with pytest.raises(ValueError, match="> 0"):
        GammaGamma().fit([2, 3], [10.0, 0.0])


# ------------------------------------------------------------------------------- recency rule and RFM
def test_recency_rule_returns_each_buckets_observed_rates():
    # Two deciles' worth of structure: recency 1..10 days, the four most recent stay, the rest churn.
    history = pd.DataFrame(
        {
            "recency_days": np.arange(1.0, 11.0),
            "churned": [False] * 4 + [True] * 6,
            "future_revenue": [100.0, 80.0, 60.0, 40.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        }
    )
    rule = RecencyRule(n_bins=5).fit(history)  # quintile edges 2.8, 4.6, 6.4, 8.2
    np.testing.assert_allclose(rule.edges_, [2.8, 4.6, 6.4, 8.2])
    got = rule.predict(pd.DataFrame({"recency_days": [1.0, 3.0, 5.0, 30.0]}, index=[10, 11, 12, 13]))
    assert list(got.index) == [10, 11, 12, 13]
    np.testing.assert_allclose(got["churn_probability"], [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(got["predicted_clv"], [90.0, 50.0, 0.0, 0.0])


def test_recency_rule_pools_buckets_that_would_break_monotonicity():
    history = pd.DataFrame(
        {
            "recency_days": [1.0, 1.0, 2.0, 2.0, 3.0, 3.0],
            "churned": [False, True, True, True, False, True],  # rates 0.5, 1.0, 0.5 by recency
            "future_revenue": [10.0, 10.0, 0.0, 0.0, 0.0, 0.0],
        }
    )
    rule = RecencyRule(n_bins=3).fit(history)
    got = rule.predict(pd.DataFrame({"recency_days": [1.0, 2.0, 3.0]}))
    # The 2-day and 3-day buckets are pooled to their mean: never likelier gone for ordering more recently.
    np.testing.assert_allclose(got["churn_probability"], [0.5, 0.75, 0.75])


def test_rfm_scores_are_quintiles_of_history_with_recency_reversed():
    history = pd.DataFrame(
        {
            "recency_days": np.arange(1.0, 11.0),
            "frequency": np.arange(10),
            "monetary_value": np.arange(10.0, 110.0, 10.0),
            "churned": [False] * 10,
            "future_revenue": np.zeros(10),
        }
    )
    scorer = RFMScorer(min_cell_rows=1).fit(history)
    s = scorer.scores(history)
    assert s["r_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert s["f_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert s["m_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_rfm_gives_tied_values_one_score_from_their_mid_rank():
    history = pd.DataFrame(
        {
            "recency_days": np.arange(1.0, 11.0),
            "frequency": [0] * 6 + [1, 1, 2, 5],
            "monetary_value": 10.0,
            "churned": [False] * 10,
            "future_revenue": np.zeros(10),
        }
    )
    s = RFMScorer(min_cell_rows=1).fit(history).scores(history)
    # Mid-ranks: six zeros 0.3 -> 2, two ones 0.7 -> 4, the 2 at 0.85 and the 5 at 0.95 -> 5.
    assert s["f_score"].tolist() == [2] * 6 + [4, 4, 5, 5]
    assert set(s["m_score"]) == {3}  # no variation: everyone in the middle


def test_rfm_falls_back_to_coarser_cells_when_a_cell_is_too_small():
    # 220 history rows in four groups (min_cell_rows 50). Scores by mid-rank: recency 1 day -> R4, 300 days
    # -> R2; frequency 9 -> F4, 0 -> F2; spend 500 -> M5, 5 -> M2.
    #   A: 60 rows (R4, F4, M5), 6 churn.   B: 40 rows (R4, F4, M2), 20 churn.
    #   C: 20 rows (R4, F2, M2), 10 churn.  D: 100 rows (R2, F2, M2), 90 churn.
    rec = np.r_[np.full(120, 1.0), np.full(100, 300.0)]
    freq = np.r_[np.full(100, 9), np.full(120, 0)]
    mon = np.r_[np.full(60, 500.0), np.full(160, 5.0)]
    churned = np.r_[np.arange(60) < 6, np.arange(40) < 20, np.arange(20) < 10, np.arange(100) < 90]
    history = pd.DataFrame(
        {"recency_days": rec, "frequency": freq, "monetary_value": mon, "churned": churned, "future_revenue": 0.0}
    )
    scorer = RFMScorer(min_cell_rows=50).fit(history)
    target = pd.DataFrame(
        {"recency_days": [1.0, 1.0, 1.0, 300.0], "frequency": [9, 9, 0, 9], "monetary_value": [500.0, 5.0, 5.0, 5.0]}
    )
    assert scorer.scores(target).to_numpy().tolist() == [[4, 4, 5], [4, 4, 2], [4, 2, 2], [2, 4, 2]]
    got = scorer.predict(target)["churn_probability"].to_numpy()
    assert got[0] == pytest.approx(6 / 60)  # A: its own cell
    assert got[1] == pytest.approx(26 / 100)  # B's cell is too small: the (R4, F4) cell, A + B
    assert got[2] == pytest.approx(36 / 120)  # C's cell and (R4, F2) are too small: R4, A + B + C
    assert got[3] == pytest.approx(90 / 100)  # (R2, F4) never seen: R2, i.e. D


def test_rfm_uses_the_history_mean_for_a_recency_score_never_seen():
    history = pd.DataFrame(
        {"recency_days": 5.0, "frequency": 0, "monetary_value": 1.0, "churned": [True, False], "future_revenue": 4.0}
    )
    target = pd.DataFrame({"recency_days": [900.0], "frequency": 0, "monetary_value": 1.0})
    got = RFMScorer(min_cell_rows=1).fit(history).predict(target)
    assert got.iloc[0].tolist() == [0.5, 4.0]


# ------------------------------------------------------------------------------------------ entry point
@pytest.fixture(scope="module")
def small_panel():
    """Two cutoffs of BG/NBD customers as panel rows: history (labelled) and target."""
    rows = []
    for k, seed in enumerate((11, 12)):
        x, t_x, big_t, future = simulate_bgnbd(4_000, **TRUE_BG, horizon=182.0, seed=seed)
        orders = x + 1
        rows.append(
            pd.DataFrame(
                {
                    "customer_id": [f"c{k}_{i}" for i in range(x.size)],
                    "cutoff": pd.Timestamp("2024-01-01") + pd.Timedelta(days=200 * k),
                    "frequency": x.astype(np.int32),
                    "orders_total": orders.astype(np.int32),
                    "recency_days": big_t - t_x,
                    "tenure_days": big_t,
                    "monetary_value": np.random.default_rng(seed).gamma(5.0, 40.0, x.size),
                    "churned": pd.array(future == 0, dtype="boolean"),
                    "future_revenue": future * 200.0,
                }
            )
        )
    return rows[0], rows[1]


def test_fit_predict_baselines_gives_every_baseline_for_every_target_row_without_touching_the_target(small_panel):
    history, target = small_panel
    target = target.set_index(pd.RangeIndex(100, 100 + len(target)))
    before = target.copy()
    out = fit_predict_baselines(history, target, churn_horizon_days=182, clv_horizon_days=182)
    pd.testing.assert_frame_equal(target, before)
    assert tuple(out) == BASELINES
    truth = target["churned"].astype(bool).to_numpy()
    for name, frame in out.items():
        assert frame.index.equals(target.index), name
        assert list(frame.columns) == ["churn_probability", "predicted_clv"]
        assert (frame.dtypes == np.float64).all() and not frame.isna().to_numpy().any(), name
        assert frame["churn_probability"].between(0, 1).all(), name
        assert (frame["predicted_clv"] >= 0).all(), name
        # Every baseline ranks churners above stayers better than chance on BG/NBD customers.
        from churn_pipeline.models.metrics import roc_auc

        assert roc_auc(truth, frame["churn_probability"]) > 0.6, name


def test_fit_predict_baselines_ignores_history_rows_with_a_null_label(small_panel):
    history, target = small_panel
    blurred = history.copy()
    blurred["future_revenue"] = blurred["future_revenue"].where(np.arange(len(history)) % 2 == 0)
    out = fit_predict_baselines(blurred, target, 182, 182)
    assert not out["rfm"].isna().to_numpy().any()


def test_fit_predict_baselines_needs_labelled_history(small_panel):
    history, target = small_panel
    with pytest.raises(ValueError, match="no rows with a churned label"):
        fit_predict_baselines(history.assign(churned=pd.NA), target, 182, 182)
