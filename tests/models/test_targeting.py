"""Expected uplift and profit of the intended action, and the contact list (models.targeting)."""

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.models.evaluation import Campaign, campaign_value_score
from churn_pipeline.models.targeting import (
    UpliftPredictions,
    contact_list,
    expected_profit_for,
    most_profitable,
    uplift_predictions,
)

CAMPAIGN = Campaign(contact_cost=1.0, incentive_cost=10.0, acceptance_rate=0.3, value_margin=0.3)


def _uplift() -> UpliftPredictions:
    # Customer 0: outreach pays 0.3 x 100 - 15 = 15, the coupon 0.3 x 20 - 11 = -5. Customer 1: the reverse.
    return UpliftPredictions(
        retention={"personal_outreach": np.array([0.20, 0.01]), "winback_email_coupon": np.array([0.02, 0.30])},
        revenue={"personal_outreach": np.array([100.0, 10.0]), "winback_email_coupon": np.array([20.0, 80.0])},
        cost={"personal_outreach": 15.0, "winback_email_coupon": 11.0},
    )


def test_the_most_profitable_action_is_the_argmax_of_margin_times_revenue_uplift_less_cost():
    action, profit = most_profitable(_uplift(), margin=0.3)
    assert action.tolist() == ["personal_outreach", "winback_email_coupon"]
    np.testing.assert_allclose(profit, [15.0, 13.0])


def test_covered_actions_take_the_uplift_models_numbers_and_the_rest_the_campaign_economics():
    p, v = np.array([0.8, 0.5, 0.9]), np.array([200.0, 50.0, 80.0])
    uplift = UpliftPredictions(
        retention={"personal_outreach": np.array([0.2, 0.1, 0.0])},
        revenue={"personal_outreach": np.array([100.0, 10.0, 0.0])},
        cost={"personal_outreach": 15.0},
    )
    got_uplift, got_profit = expected_profit_for(
        np.array(["personal_outreach", "loyalty_points_boost", "no_action"], dtype=object), p, v, CAMPAIGN, uplift
    )
    np.testing.assert_allclose(got_uplift, [0.2, np.nan, np.nan])
    # 0.8 (0.3 (0.3 x 200 - 10) - 1) - 0.2 x 11 = 11.0 - 2.2 ... as models.evaluation computes it.
    np.testing.assert_allclose(got_profit, [0.3 * 100 - 15, campaign_value_score(p, v, CAMPAIGN)[1], 0.0])


def test_without_an_uplift_model_every_action_has_the_campaign_economics_profit():
    p, v = np.array([0.9, 0.1]), np.array([100.0, 100.0])
    got_uplift, got_profit = expected_profit_for(np.array(["winback_email_coupon"] * 2, dtype=object), p, v, CAMPAIGN)
    assert np.isnan(got_uplift).all()
    np.testing.assert_allclose(got_profit, campaign_value_score(p, v, CAMPAIGN))
    assert got_profit[0] > 0 > got_profit[1]  # a likely churner worth 100 pays, a likely stayer does not


def test_the_contact_list_is_real_actions_with_positive_expected_profit():
    got = contact_list(
        np.array(["winback_email_coupon", "winback_email_coupon", "no_action", "hold_out"], dtype=object),
        np.array([0.01, 0.0, 5.0, 5.0]),
    )
    assert got.tolist() == [True, False, False, False]


class _FittedUplift:
    def __init__(self) -> None:
        self.actions_ = ("personal_outreach", "cross_sell_upsell")
        self.cost_ = {"personal_outreach": 15.0, "cross_sell_upsell": float("nan")}

    def predict_uplift(self, frame: pd.DataFrame) -> pd.DataFrame:
        n = len(frame)
        return pd.DataFrame(
            {
                "uplift_retention__personal_outreach": np.full(n, 0.1),
                "uplift_revenue__personal_outreach": np.full(n, 60.0),
                "uplift_retention__cross_sell_upsell": np.full(n, 0.0),
                "uplift_revenue__cross_sell_upsell": np.full(n, 30.0),
            }
        )


def test_an_action_whose_contacts_carried_no_cost_is_charged_the_campaigns_contact_and_incentive_cost():
    got = uplift_predictions(_FittedUplift(), pd.DataFrame({"x": [1, 2]}), CAMPAIGN)
    assert got.actions == ("personal_outreach", "cross_sell_upsell")
    assert got.cost == {"personal_outreach": 15.0, "cross_sell_upsell": pytest.approx(11.0)}
    np.testing.assert_allclose(got.profit("cross_sell_upsell", 0.3), [9.0 - 11.0] * 2)
