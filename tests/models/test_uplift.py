"""The uplift model (models/uplift.py): Qini/AUUC arithmetic against hand calculations, the estimator contract,
and a hand-made campaign with a known heterogeneous effect that the T- and X-learners must rank."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from churn_pipeline.models.metrics import spearman
from churn_pipeline.models.uplift import UpliftModel, auuc, qini_coefficient, qini_curve, random_targeting, uplift_curve

FEATURES = ["x0", "x1", "x2", "x3", "country", "bgnbd_churn_probability", "bgnbd_clv"]
FAST = {"n_estimators": 150}


# ------------------------------------------------------------------------------------------- Qini arithmetic
# Four contacts: treated responder, control non-responder, treated non-responder, control responder.
TREATED = np.array([1, 0, 1, 0])
OUTCOME = np.array([1.0, 0.0, 0.0, 1.0])


def test_the_qini_curve_is_the_treated_outcome_minus_the_control_outcome_scaled_to_the_treated_count():
    # Best first (contacts 0, 1, 2, 3): Q(1) = 1 (no control yet: 0 subtracted), Q(2) = 1 - 0, Q(3) = 1 - 0 x 2/1,
    # Q(4) = 1 - 1 x 2/2 = 0.
    x, q = qini_curve([0.9, 0.8, 0.7, 0.6], TREATED, OUTCOME)
    np.testing.assert_array_equal(x, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(q, [0, 1, 1, 1, 0])
    # Reversed (3, 2, 1, 0): Q(1) = 0 - 1 x 0/1 = 0, Q(2) = 0 - 1 x 1/1 = -1, Q(3) = 0 - 1 x 1/2, Q(4) = 0.
    x, q = qini_curve([0.6, 0.7, 0.8, 0.9], TREATED, OUTCOME)
    np.testing.assert_allclose(q, [0, 0, -1, -0.5, 0])


def test_the_qini_coefficient_is_the_area_over_the_random_line_relative_to_the_oracles():
    # Random line: (0,0)-(4,0), area 0. Oracle y(2t-1) = [1, 0, 0, -1] -> steps k = 1, 3, 4 with Q 1, 1, 0:
    # area 0.5 + 2 + 0.5 = 3. Best-first ranking: area 0.5 + 1 + 1 + 0.5 = 3 -> 1. Reversed: area
    # 0 - 0.5 - 0.75 - 0.25 = -1.5 -> -0.5.
    assert qini_coefficient([0.9, 0.8, 0.7, 0.6], TREATED, OUTCOME) == pytest.approx(1.0)
    assert qini_coefficient([0.6, 0.7, 0.8, 0.9], TREATED, OUTCOME) == pytest.approx(-0.5)


def test_the_uplift_curve_and_auuc_by_hand():
    # Reversed: U(k) = (mean treated - mean control) x k: (0 - 1) 1, (0 - 1) 2, (0 - 1/2) 3, (1/2 - 1/2) 4.
    _, u = uplift_curve([0.6, 0.7, 0.8, 0.9], TREATED, OUTCOME)
    np.testing.assert_allclose(u, [0, -1, -2, -1.5, 0])
    # Area -0.5 - 1.5 - 1.75 - 0.75 = -4.5; the oracle (sklift's four groups: treated responder, control
    # non-responder, treated non-responder, control responder) is the best-first order here, area +4.5.
    assert auuc([0.6, 0.7, 0.8, 0.9], TREATED, OUTCOME) == pytest.approx(-1.0)
    assert auuc([0.9, 0.8, 0.7, 0.6], TREATED, OUTCOME) == pytest.approx(1.0)


def test_tied_scores_are_one_step_whatever_their_order():
    # Contacts 1 and 2 tied: one step from k = 1 to k = 3, the same curve in either row order.
    x, q = qini_curve([0.9, 0.5, 0.5, 0.1], TREATED, OUTCOME)
    np.testing.assert_array_equal(x, [0, 1, 3, 4])
    np.testing.assert_allclose(q, [0, 1, 1, 0])
    x2, q2 = qini_curve([0.9, 0.5, 0.5, 0.1][::-1], TREATED[::-1], OUTCOME[::-1])
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_allclose(q2, q)
    # A constant score is random targeting: exactly the random line, coefficient 0.
    assert qini_coefficient(np.zeros(4), TREATED, OUTCOME) == pytest.approx(0.0)


def test_revenue_outcomes_use_the_same_curve_with_the_revenue_oracle():
    revenue = np.array([50.0, 10.0, 0.0, 30.0])
    # Best first: Q = [0, 50, 50 - 10 x 1/1, 50 - 10 x 2/1, 50 - 40 x 2/2] = [0, 50, 40, 30, 10].
    _, q = qini_curve([4, 3, 2, 1], TREATED, revenue)
    np.testing.assert_allclose(q, [0, 50, 40, 30, 10])
    # Oracle y(2t-1) = [50, -10, 0, -30]: order 0, 2, 1, 3 -> Q = [0, 50, 50, 50 - 10 x 2/1, 10] = [0, 50, 50, 30,
    # 10]: area 25 + 50 + 40 + 20 = 135; random line area 4 x 10 / 2 = 20; model area 25 + 45 + 35 + 20 = 125
    # -> (125 - 20) / (135 - 20).
    assert qini_coefficient([4, 3, 2, 1], TREATED, revenue) == pytest.approx(105 / 115)


def test_random_targeting_averages_about_zero_and_its_95th_percentile_is_positive():
    rng = np.random.default_rng(0)
    t = rng.random(4000) < 0.8
    y = rng.random(4000) < np.where(t, 0.35, 0.3)
    found = random_targeting(t, y, shuffles=100, seed=1)
    assert abs(found["qini_mean"]) < 0.05 and abs(found["auuc_mean"]) < 0.05
    assert found["qini_q95"] > 0 and found["auuc_q95"] > 0
    assert random_targeting(t, y, shuffles=100, seed=1) == found  # seeded


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one length"):
        qini_curve([1, 2], [0, 1, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        qini_coefficient([np.nan, 1, 2, 3], TREATED, OUTCOME)
    with pytest.raises(ValueError, match="binary"):
        qini_coefficient([1, 2, 3, 4], [0, 2, 1, 0], OUTCOME)
    assert np.isnan(qini_coefficient([1, 2, 3, 4], TREATED, np.zeros(4)))  # no outcome at all: no oracle


# ----------------------------------------------------------------------------------------- hand-made campaigns
def campaigns(n: int, seed: int) -> dict:
    """Two actions, 80 % treated. Retention: control log-odds ``-0.2 + 0.8 x1``, treatment adds ``tanh(2 x0)``
    (helps customers with x0 > 0, hurts those below); revenue of the retained: treated spend more when x2 > 0.
    ``true`` is the true retention uplift (probability points) of each contact."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    X = pd.DataFrame(x, columns=["x0", "x1", "x2", "x3"])
    X["country"] = rng.choice(["DE", "FR", "NL"], n)
    X["customer_id"] = [f"c{seed}-{i}" for i in range(n)]
    base = -0.2 + 0.8 * x[:, 1]
    X["bgnbd_churn_probability"] = 1 / (1 + np.exp(base + rng.normal(0, 0.5, n)))
    X["bgnbd_clv"] = np.exp(3 + 0.5 * x[:, 1])
    p0, p1 = 1 / (1 + np.exp(-base)), 1 / (1 + np.exp(-(base + np.tanh(2 * x[:, 0]))))
    treated = rng.random(n) < 0.8
    retained = rng.random(n) < np.where(treated, p1, p0)
    spend = np.exp(3 + 0.5 * x[:, 1]) * np.where(treated, 1 + np.maximum(x[:, 2], 0), 1)
    revenue = np.where(retained, rng.gamma(2.0, spend / 2), 0.0)
    revenue[rng.random(n) < 0.02] *= -0.1  # a few net refunds
    action = rng.choice(["winback_email_coupon", "loyalty_points_boost"], n)
    cost = np.where(action == "winback_email_coupon", 5.0, np.nan)
    cost[~treated] = 0.0
    return {"X": X, "retained": retained, "revenue": revenue, "action": action, "treated": treated, "cost": cost,
            "true": p1 - p0}  # fmt: skip


@pytest.fixture(scope="module")
def train():
    return campaigns(12_000, 0)


@pytest.fixture(scope="module")
def test():
    return campaigns(6_000, 1)


def _fit(data, **params) -> UpliftModel:
    model = UpliftModel(features=FEATURES, categorical=["country"], **{**FAST, **params})
    return model.fit(data["X"], data["retained"], data["revenue"], data["action"], data["treated"], data["cost"])


@pytest.fixture(scope="module")
def t_learner(train):
    return _fit(train, learner="t")


@pytest.mark.parametrize("learner", ["t", "x"])
def test_the_learners_rank_the_true_heterogeneous_effect_and_beat_random_targeting(train, test, t_learner, learner):
    model = t_learner if learner == "t" else _fit(train, learner="x")
    uplift = model.predict_uplift(test["X"])
    for action in model.actions_:
        rows = test["action"] == action
        score = uplift[f"uplift_retention__{action}"].to_numpy()[rows]
        assert spearman(test["true"][rows], score) > 0.5
        q = qini_coefficient(score, test["treated"][rows], test["retained"][rows])
        assert q > random_targeting(test["treated"][rows], test["retained"][rows], shuffles=50)["qini_q95"]
        # Revenue: the treated spend more, so the predicted revenue uplift is positive on average.
        assert uplift[f"uplift_revenue__{action}"].to_numpy()[rows].mean() > 0


def test_predictions_have_one_retention_and_one_revenue_column_per_action_in_the_input_order(t_learner, test):
    X = test["X"].iloc[:50]
    out = t_learner.predict_uplift(X)
    assert t_learner.actions_ == ["loyalty_points_boost", "winback_email_coupon"]
    assert (
        list(out.columns)
        == [
            "uplift_retention__loyalty_points_boost",
            "uplift_revenue__loyalty_points_boost",
            "uplift_retention__winback_email_coupon",
            "uplift_revenue__winback_email_coupon",
        ]
        == t_learner.output_columns_
    )
    assert out.index.equals(X.index)
    assert out.filter(like="uplift_retention").abs().max().max() < 1.0
    # Columns by name, not position: a shuffled table gives the same uplift.
    shuffled = X[X.columns[::-1]]
    pd.testing.assert_frame_equal(t_learner.predict_uplift(shuffled), out)
    np.testing.assert_allclose(t_learner.predict(X).to_numpy(), out.to_numpy())


def test_fitted_attributes(t_learner):
    assert t_learner.features_ == FEATURES
    assert t_learner.retention_days_ == 90 and t_learner.revenue_days_ == 180
    assert t_learner.cost_["winback_email_coupon"] == pytest.approx(5.0)  # treated contacts only
    assert np.isnan(t_learner.cost_["loyalty_points_boost"])  # no cost known for a treated contact
    sizes = t_learner.group_sizes_["winback_email_coupon"]
    assert sizes["treated"] > 3 * sizes["control"] > 0 and t_learner.skipped_actions_ == {}


def test_the_estimator_contract_clone_params_and_inputs_left_alone(train):
    model = UpliftModel(features=FEATURES, learner="x", min_group_size=10, **FAST)
    assert clone(model).get_params() == model.get_params()
    assert "models_" not in clone(model).__dict__
    data = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in campaigns(3000, 5).items()}
    before = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in data.items()}
    model.fit(data["X"], data["retained"], data["revenue"], data["action"], data["treated"], data["cost"])
    pd.testing.assert_frame_equal(data["X"], before["X"])
    for key in ("retained", "revenue", "action", "treated", "cost"):
        np.testing.assert_array_equal(data[key], before[key])
    assert model.get_params()["learner"] == "x"  # fitting changes no parameter


def test_the_same_data_and_seed_give_identical_uplift(train, test, t_learner):
    again = _fit(train, learner="t")
    pd.testing.assert_frame_equal(again.predict_uplift(test["X"]), t_learner.predict_uplift(test["X"]))


def test_actions_with_a_small_group_are_left_out_and_named(train):
    data = campaigns(3000, 7)
    data["action"] = np.where(np.arange(3000) < 2900, "winback_email_coupon", "personal_outreach")
    model = _fit(data, min_group_size=50)
    assert model.actions_ == ["winback_email_coupon"]
    assert (
        "personal_outreach" in model.skipped_actions_
        and "min_group_size 50" in model.skipped_actions_["personal_outreach"]
    )
    assert list(model.predict_uplift(data["X"].head(3)).columns) == [
        "uplift_retention__winback_email_coupon",
        "uplift_revenue__winback_email_coupon",
    ]
    with pytest.raises(ValueError, match="no action has at least min_group_size"):
        _fit(data, min_group_size=5000)


def test_a_missing_feature_column_is_named_and_bad_params_are_refused(t_learner, train):
    with pytest.raises(ValueError, match="x2"):
        t_learner.predict_uplift(train["X"].drop(columns=["x2"]).head(5))
    with pytest.raises(ValueError, match="learner"):
        _fit(train, learner="s")
    with pytest.raises(ValueError, match="offset"):
        _fit(train, retention_offset="not_a_feature")
    with pytest.raises(ValueError, match="control_pool"):
        _fit(train, control_pool="everyone")
    with pytest.raises(ValueError, match="null"):
        bad = dict(train)
        bad["revenue"] = np.where(np.arange(len(train["revenue"])) == 3, np.nan, train["revenue"])
        _fit(bad)


def test_l2_revenue_and_no_retention_offset_work_too(train, test):
    model = _fit(train, learner="t", revenue_objective="l2", retention_offset=None, revenue_offset="bgnbd_clv")
    uplift = model.predict_uplift(test["X"])
    rows = test["action"] == "winback_email_coupon"
    assert spearman(test["true"][rows], uplift["uplift_retention__winback_email_coupon"].to_numpy()[rows]) > 0.5


def test_pooled_controls_share_one_control_model_across_actions(train, test):
    model = _fit(train, control_pool="all", revenue_offset="bgnbd_clv")
    a, b = model.actions_
    assert model.models_[a]["retention_c"] is model.models_[b]["retention_c"]
    # The X-learner's weight: the action's treated contacts against every control contact.
    controls = sum(g["control"] for g in model.group_sizes_.values())
    n_t = model.group_sizes_[a]["treated"]
    assert model.treated_share_[a] == pytest.approx(n_t / (n_t + controls))
    rows = test["action"] == a
    score = model.predict_uplift(test["X"])[f"uplift_retention__{a}"].to_numpy()[rows]
    assert spearman(test["true"][rows], score) > 0.5
