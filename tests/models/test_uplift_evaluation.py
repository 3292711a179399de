"""The uplift stage's pure steps on small hand-made contact frames: the followed-up contacts and their features,
the held-out campaigns, the judgement against random targeting and the promotion decision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.errors import DataContractError
from churn_pipeline.models.uplift_evaluation import (
    beats_random,
    comparison_line,
    evaluate_held_out,
    feature_churn_risk,
    fit_on_contacts,
    followed_up_contacts,
    group_counts,
    held_out_plan,
    held_out_rows,
    join_contact_features,
    promotion_decision,
    qini_figure,
)


def contacts() -> pd.DataFrame:
    """Action a: campaigns a1 (Jan) and a2 (Mar, latest); action b: one campaign."""
    return pd.DataFrame(
        {
            "customer_id": ["1", "2", "3", "4", "5", "6"],
            "action": ["a", "a", "a", "a", "b", "b"],
            "campaign_id": ["a2", "a2", "a1", "a1", "b1", "b1"],
            "contact_ts": pd.to_datetime(
                [
                    "2025-03-02 10:00",
                    "2025-03-01 09:00",
                    "2025-01-05 00:00",
                    "2025-01-05 00:00",
                    "2025-02-01 00:00",
                    "2025-02-01 00:00",
                ]
            ),
            "group": ["treatment", "control", "treatment", "control", "treatment", "treatment"],
        }
    )


def test_each_actions_latest_campaign_by_first_contact_is_held_out_and_one_campaign_is_not_enough():
    plan = held_out_plan(contacts())
    assert plan == {
        "a": {"held_out": "a2", "train": ["a1"], "held_out_date": "2025-03-01"},
        "b": {"held_out": None, "train": ["b1"], "held_out_date": None},
    }
    assert held_out_rows(contacts(), plan).tolist() == [True, True, False, False, False, False]


def test_group_counts_are_treated_and_control_contacts_per_action():
    assert group_counts(contacts()) == {"a": {"treated": 2, "control": 2}, "b": {"treated": 2, "control": 0}}


def test_followed_up_contacts_get_their_contact_day_as_cutoff_and_are_counted():
    outcomes = contacts().assign(followed_up=[True, True, False, True, True, True], customer_id=[1, 2, 3, 4, 5, 6])
    followed, counts = followed_up_contacts(outcomes)
    assert counts == {"contacts": 6, "followed_up": 5}
    assert followed["customer_id"].tolist() == ["1", "2", "4", "5", "6"]
    assert followed["cutoff"].dtype == "datetime64[us]"
    assert followed["cutoff"].iloc[0] == pd.Timestamp("2025-03-02")


def test_contacts_without_features_at_their_cutoff_are_left_out_and_a_name_clash_is_refused():
    followed, _ = followed_up_contacts(contacts().assign(followed_up=True))
    features = followed[["customer_id", "cutoff"]].iloc[:4].assign(recency_days=[1.0, 2.0, 3.0, 4.0])
    joined = join_contact_features(followed, features)
    assert joined["customer_id"].tolist() == ["1", "2", "3", "4"] and "recency_days" in joined
    with pytest.raises(DataContractError, match=r"contacts columns \['group'\] clash with feature names"):
        join_contact_features(followed, features.assign(group=1))


def test_without_a_churn_model_the_bgnbd_prior_ranks_churn_risk_with_missing_values_at_its_median():
    frame = pd.DataFrame({"bgnbd_churn_probability": [0.2, np.nan, 0.6]})
    np.testing.assert_allclose(feature_churn_risk(frame), [0.2, 0.4, 0.6])
    np.testing.assert_allclose(feature_churn_risk(frame.iloc[[1]]), [0.0])


class Model:
    """A stand-in uplift model: action ``a`` modelled, uplift = the customer number."""

    def __init__(self):
        self.actions_, self.skipped_actions_ = ["a"], {}

    def fit(self, *args):
        self.args = args
        return self

    def predict_uplift(self, frame):
        x = frame["customer_id"].astype(float).to_numpy()
        return pd.DataFrame({"uplift_retention__a": x, "uplift_revenue__a": -x})


def test_fitting_on_contacts_passes_outcomes_actions_treatment_and_cost():
    frame = contacts().assign(retained=[1, 0, 1, 0, 1, 1], net_revenue=[5, 0, 3, 0, 1, 2], cost=1.0)
    model = fit_on_contacts(Model(), frame)
    _, retained, revenue, action, treated, cost = model.args
    assert retained.dtype == bool and revenue.dtype == float and action.tolist() == frame["action"].tolist()
    assert treated.tolist() == [True, False, True, False, True, True] and cost.tolist() == [1.0] * 6
    assert fit_on_contacts(Model(), frame.drop(columns="cost")).args[-1] is None


def test_the_held_out_report_says_why_an_action_was_not_evaluated():
    test = contacts().iloc[:2].assign(retained=[1, 0], net_revenue=[5.0, 0.0])
    plan = held_out_plan(contacts())
    report, predictions = evaluate_held_out(None, test, np.zeros(2), plan, shuffles=0, seed=0)
    assert predictions is None
    assert report["a"]["evaluated"] is False and report["a"]["why"] == "earlier campaigns: no held-out model"
    assert report["a"]["treated"] == 1 and report["a"]["control"] == 1
    assert report["b"] == {"evaluated": False, "why": "one campaign only: nothing earlier to train on"}
    assert comparison_line("b", report["b"]) == "b: not evaluated (one campaign only: nothing earlier to train on)"

    report, predictions = evaluate_held_out(Model(), test, np.array([0.3, 0.1]), plan, shuffles=5, seed=1)
    assert report["a"]["evaluated"] is True and set(report["a"]["retention"]) == {"uplift", "random", "churn_risk"}
    assert list(predictions.columns) == ["uplift_retention__a", "uplift_revenue__a"]
    assert comparison_line("a", report["a"]).startswith("a: held-out campaign a2 (1 treated, 1 control): retention")
    png = qini_figure(test, predictions, np.array([0.3, 0.1]), report)
    assert png is not None and png.startswith(b"\x89PNG")
    assert qini_figure(test, predictions, np.zeros(2), {"b": report["b"]}) is None


def entry(retention: float, revenue: float, bar: float = 0.1) -> dict:
    return {
        "evaluated": True,
        "retention": {"uplift": {"qini": retention}, "random": {"qini_shuffled_q95": bar}},
        "revenue": {"uplift": {"qini": revenue}, "random": {"qini_shuffled_q95": bar}},
    }


def test_an_action_beats_random_when_either_held_out_qini_is_above_the_95th_percentile_of_shuffles():
    report = {
        "a": entry(0.2, -0.1),
        "b": entry(0.05, 0.1),
        "c": entry(0.01, 0.0, bar=np.nan),  # no shuffles: above 0 is enough
        "d": {"evaluated": False, "why": "x"},
    }
    assert beats_random(report) == {"a": True, "b": False, "c": True}


@pytest.mark.parametrize(
    ("beats", "manual", "promote", "says"),
    [
        ({}, False, False, "no action could be evaluated on a held-out campaign: registered as challenger only"),
        ({"a": False}, False, False, "beats random targeting for no action (not above the 95th percentile"),
        ({"a": True, "b": False, "c": True}, False, True, "beats random targeting for a, c"),
        ({"a": True}, True, False, "for a, but uplift.promote is manual: registered as challenger only"),
    ],
)
def test_the_model_is_promoted_only_when_some_action_beats_random_and_promotion_is_not_manual(
    beats, manual, promote, says
):
    promoted, decision = promotion_decision(beats, manual, "uplift.promote is manual")
    assert promoted is promote and says in decision
