"""Reason codes: contributions that add up to the score, the top three pushing towards churn, plain sentences.

Model-level tests use the session's churn model fitted on the 20,000-customer synthetic shop (conftest).
"""

import copy

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.models.reasons import (
    FAMILIES,
    behaviour_contributions,
    contributions,
    feature_families,
    path_contributions,
    reason_codes,
    reason_sentences,
    shap_contributions,
    template_for,
    top_reasons,
)


@pytest.fixture(scope="module")
def rows(churn_frames) -> pd.DataFrame:
    return churn_frames[2].head(400).reset_index(drop=True)


# ------------------------------------------------------------------ contributions
@pytest.mark.parametrize("compute", [path_contributions, shap_contributions])
def test_contributions_add_up_to_the_raw_score(churn_model, rows, compute):
    X = churn_model.preprocessor_.transform(rows)
    contrib, expected = compute(churn_model.model_.booster_, X, churn_model.best_iteration_)
    assert contrib.shape == (len(rows), len(churn_model.features_))
    np.testing.assert_allclose(contrib.sum(axis=1) + expected, churn_model.predict_margin(rows), atol=1e-4)


def test_path_and_shap_share_the_expected_value_and_mostly_the_top_reason(churn_model, rows):
    X = churn_model.preprocessor_.transform(rows)
    booster, it = churn_model.model_.booster_, churn_model.best_iteration_
    path, path_ev = path_contributions(booster, X, it)
    shap, shap_ev = shap_contributions(booster, X, it)
    assert path_ev == pytest.approx(shap_ev)
    top_path, top_shap = top_reasons(path), top_reasons(shap)
    shap_first_in_path_top3 = (top_path == top_shap[:, [0]]).any(axis=1)
    assert shap_first_in_path_top3.mean() > 0.8  # 0.88 here; 0.96 on scoring tables without calendar reasons


def test_auto_uses_shap_for_small_tables_and_path_for_large_ones(churn_model, rows):
    X = churn_model.preprocessor_.transform(rows)
    booster, it = churn_model.model_.booster_, churn_model.best_iteration_
    small = contributions(churn_model, rows, "auto", shap_max_rows=len(rows))
    large = contributions(churn_model, rows, "auto", shap_max_rows=len(rows) - 1)
    np.testing.assert_allclose(small, shap_contributions(booster, X, it)[0])
    np.testing.assert_allclose(large, path_contributions(booster, X, it)[0])


def test_an_offset_prior_is_credited_to_its_feature_and_the_sum_still_holds(churn_model, rows):
    # The same booster, read as if it had started from the BG/NBD prior: the prior's log-odds join the score.
    with_offset = copy.copy(churn_model)
    with_offset.offset, with_offset.offset_fill_ = "bgnbd_churn_probability", 0.4
    X = churn_model.preprocessor_.transform(rows)
    _, expected = path_contributions(churn_model.model_.booster_, X, churn_model.best_iteration_)
    plain = contributions(churn_model, rows, "path")
    prior = contributions(with_offset, rows, "path")
    np.testing.assert_allclose(prior.sum(axis=1) + expected + 0.4, with_offset.predict_margin(rows), atol=1e-4)
    changed = np.flatnonzero((prior != plain).any(axis=0))
    assert [churn_model.features_[j] for j in changed] == ["bgnbd_churn_probability"]


def _with_prior(churn_model):
    """The session's booster read as if it had started from the BG/NBD prior (as the default train params do)."""
    with_offset = copy.copy(churn_model)
    with_offset.offset, with_offset.offset_fill_ = "bgnbd_churn_probability", 0.4
    return with_offset


def test_no_reason_is_the_prior_or_any_bgnbd_feature(churn_model, rows):
    model = _with_prior(churn_model)
    features = model.features_
    assert "bgnbd_churn_probability" in features and "bgnbd_p_alive" in features
    raw = contributions(model, rows, "path")
    assert (top_reasons(raw)[:, 0] == features.index("bgnbd_churn_probability")).any()  # the prior would lead
    folded = behaviour_contributions(raw, features)
    names = reason_codes(top_reasons(folded), features)
    used = {n for slot in names for n in slot if n is not None}
    assert used and not {n for n in used if n.startswith("bgnbd_")}
    np.testing.assert_allclose(folded.sum(axis=1), raw.sum(axis=1), rtol=1e-5, atol=1e-4)


def test_first_reasons_push_the_riskiest_customers_towards_churn(churn_model, rows):
    model = _with_prior(churn_model)
    folded = behaviour_contributions(contributions(model, rows, "path"), model.features_)
    first = top_reasons(folded)[:, 0]
    riskiest = np.argsort(-model.predict_margin(rows))[: len(rows) // 5]
    assert (first[riskiest] >= 0).all()  # every one of them has a reason ...
    assert (folded[riskiest, first[riskiest]] > 0).all()  # ... that raises their risk
    # ... and for most of them it is the rhythm the prior came from.
    assert (first[riskiest] == model.features_.index("recency_days")).mean() > 0.5


def test_reason_codes_name_real_model_features(churn_model, rows):
    idx = top_reasons(contributions(churn_model, rows, "path"))
    names = reason_codes(idx, churn_model.features_)
    used = {n for slot in names for n in slot if n is not None}
    assert used and used <= set(churn_model.features_)


def test_every_feature_of_the_model_gets_a_readable_sentence(churn_model, rows):
    features = churn_model.features_
    # Every feature as the first reason of every row: nothing falls back to "<feature> = <value>" silently.
    for j, name in enumerate(features):
        codes = np.full((len(rows), 1), j, dtype=np.int32)
        sentences = reason_sentences(codes, rows, features)[0]
        assert all(isinstance(s, str) and s for s in sentences), name
        assert template_for(name)[0] is not None or name in ("country", "acquisition_channel"), name


# ------------------------------------------------------------------ behaviours, not model summaries
SUMMARIES = ["recency_days", "bgnbd_churn_probability", "monetary_value", "bgnbd_order_value", "bgnbd_p_alive", "x"]


def test_bgnbd_contributions_are_credited_to_the_behaviour_they_summarise():
    contrib = np.array([[0.5, 1.0, 0.1, 0.2, -0.25, 0.3]], dtype=np.float32)
    folded = behaviour_contributions(contrib, SUMMARIES)
    # recency 0.5 + prior 1.0 + P(alive) -0.25; monetary value 0.1 + Gamma-Gamma order value 0.2.
    np.testing.assert_allclose(folded, [[1.25, 0.0, 0.3, 0.0, 0.0, 0.3]], rtol=1e-6)
    assert folded.sum() == pytest.approx(contrib.sum())
    assert top_reasons(folded).tolist() == [[0, 2, 5]]


def test_a_prior_that_lowers_the_risk_lowers_the_recency_reason():
    contrib = np.array([[0.5, -0.75, 0.0, 0.0, 0.0, 0.1]], dtype=np.float32)
    folded = behaviour_contributions(contrib, SUMMARIES)
    assert folded[0, 0] == pytest.approx(-0.25) and top_reasons(folded).tolist() == [[5, -1, -1]]


def test_without_the_behaviour_a_summary_goes_to_recency_and_without_recency_it_is_dropped():
    contrib = np.array([[0.2, 0.4, 0.3]], dtype=np.float32)
    np.testing.assert_allclose(
        behaviour_contributions(contrib, ["recency_days", "bgnbd_order_value", "x"]), [[0.6, 0.0, 0.3]], rtol=1e-6
    )
    np.testing.assert_allclose(
        behaviour_contributions(contrib, ["orders_90d", "bgnbd_churn_probability", "x"]), [[0.2, 0.0, 0.3]], rtol=1e-6
    )


def test_crediting_behaviours_leaves_the_callers_contributions_untouched():
    contrib = np.array([[0.5, 1.0, 0.1, 0.2, -0.25, 0.3]], dtype=np.float32)
    before = contrib.copy()
    behaviour_contributions(contrib, SUMMARIES)
    np.testing.assert_array_equal(contrib, before)


# ------------------------------------------------------------------ top reasons
def test_top_reasons_are_the_largest_positive_contributions_largest_first():
    contrib = np.array([[0.1, 0.5, -0.2, 0.3], [-0.1, -0.2, 0.4, 0.0]], dtype=np.float32)
    assert top_reasons(contrib).tolist() == [[1, 3, 0], [2, -1, -1]]


def test_ignored_features_are_never_reasons():
    contrib = np.array([[0.9, 0.5, 0.3, 0.1]], dtype=np.float32)
    assert top_reasons(contrib, ignore=[0]).tolist() == [[1, 2, 3]]
    assert contrib[0, 0] == np.float32(0.9)  # the caller's array is untouched


def test_equal_contributions_are_ordered_by_feature_position():
    contrib = np.array([[0.2, 0.2, 0.2, 0.2]], dtype=np.float32)
    assert top_reasons(contrib).tolist() == [[0, 1, 2]]


# ------------------------------------------------------------------ sentences
FEATURES = ["recency_days", "orders_90d", "email_opens_trend_90d", "mystery_score", "country", "gap_mean_days"]
FRAME = pd.DataFrame(
    {
        "recency_days": [120.4, 300.0, 5.0],
        "gap_mean_days": [30.2, np.nan, 12.0],
        "orders_90d": [2, 0, 1],
        "email_opens_trend_90d": [-3.0, 0.0, 4.0],
        "mystery_score": [1.25, np.nan, 7.0],
        "country": ["DE", None, "FR"],
    }
)


def _sentence(feature: str, row: int) -> str:
    codes = np.full((len(FRAME), 1), FEATURES.index(feature), dtype=np.int32)
    return reason_sentences(codes, FRAME, FEATURES)[0][row]


def test_recency_reads_with_the_usual_gap_or_a_single_order():
    assert _sentence("recency_days", 0) == "no order for 120 days; usually orders every 30 days"
    assert _sentence("recency_days", 1) == "no order for 300 days; ordered only once"


def test_one_day_is_singular():
    frame = pd.DataFrame({"recency_days": [1.2], "gap_mean_days": [0.8]})
    codes = np.zeros((1, 1), dtype=np.int32)
    assert reason_sentences(codes, frame, ["recency_days"])[0][0] == "no order for 1 day; usually orders every day"


def test_windowed_counts_name_the_window_and_the_count():
    assert _sentence("orders_90d", 0) == "2 orders in the last 90 days"
    assert _sentence("orders_90d", 1) == "no order in the last 90 days"
    assert _sentence("orders_90d", 2) == "1 order in the last 90 days"


def test_a_falling_e_mail_trend_says_so():
    # Without the window's own count (email_opens_90d is not in FRAME) the change alone is told.
    assert _sentence("email_opens_trend_90d", 0) == (
        "opened 3 fewer e-mails in the last 90 days than in the 90 days before"
    )


def test_features_without_a_template_fall_back_to_name_and_value():
    assert _sentence("mystery_score", 0) == "mystery_score = 1.2"
    assert _sentence("mystery_score", 1) == "mystery score not recorded"


def test_text_features_put_the_level_into_the_sentence_in_words():
    assert _sentence("country", 0) == "based in Germany (DE), where customers leave more often than on average"
    assert _sentence("country", 1) == "country not recorded"
    assert _sentence("country", 2) == "based in France (FR), where customers leave more often than on average"


# ------------------------------------------------------------------ issue 18: plain sentences, no raw codes
WINDOWS = pd.DataFrame(
    {
        "orders_90d": [2, 0, 3, 1],
        "orders_trend_90d": [-4, -3, 0, 1],
        "sessions_30d": [4, 0, 2, 7],
        "sessions_trend_30d": [-3, 0, 1, np.nan],
        "email_opens_90d": [1, 0, 5, 2],
        "email_opens_trend_90d": [-3, 0, 2, -1],
        "country": ["AT", "XX", None, "United Kingdom"],
        "acquisition_channel": pd.Categorical(["paid_social", "referral", "tiktok_ads", None]),
    }
)


def _window_sentences(feature: str) -> list[str]:
    features = list(WINDOWS.columns)
    codes = np.full((len(WINDOWS), 1), features.index(feature), dtype=np.int32)
    return reason_sentences(codes, WINDOWS, features)[0].tolist()


def test_windowed_counts_compare_with_the_window_before_in_words():
    assert _window_sentences("orders_90d") == [
        "2 orders in the last 90 days, down from 6 in the 90 days before",
        "no order in the last 90 days, down from 3 in the 90 days before",
        "3 orders in the last 90 days, the same as in the 90 days before",
        "1 order in the last 90 days, up from 0 in the 90 days before",
    ]
    # The trend feature reads the same as the window's own: one behaviour, one sentence.
    assert _window_sentences("orders_trend_90d") == _window_sentences("orders_90d")
    assert _window_sentences("sessions_trend_30d")[0] == (
        "4 site visits in the last 30 days, down from 7 in the 30 days before"
    )
    assert _window_sentences("sessions_30d")[3] == "7 site visits in the last 30 days"  # no trend: no comparison
    assert _window_sentences("email_opens_trend_90d")[0] == (
        "opened 1 e-mail in the last 90 days, down from 4 in the 90 days before"
    )


def test_country_and_channel_codes_are_spelt_out():
    assert _window_sentences("country") == [
        "based in Austria (AT), where customers leave more often than on average",
        "based in XX, where customers leave more often than on average",  # a code the table lacks, as it is
        "country not recorded",
        "based in United Kingdom, where customers leave more often than on average",  # already a name
    ]
    assert _window_sentences("acquisition_channel") == [
        "came through paid social ads, a channel whose customers leave more often than on average",
        "came through a referral, a channel whose customers leave more often than on average",
        "came through tiktok ads, a channel whose customers leave more often than on average",
        "acquisition channel not recorded",
    ]


def test_no_sentence_of_the_model_shows_a_raw_code_or_a_bare_feature_name(churn_model, rows):
    features = churn_model.features_
    for j, name in enumerate(features):
        sentences = reason_sentences(np.full((len(rows), 1), j, dtype=np.int32), rows, features)[0]
        text = " ".join(sentences)
        assert "_" not in text, (name, text[:200])  # paid_social, feature names, ...
        assert " = " not in text, name


def test_behaviour_families_group_the_windows_of_one_behaviour():
    families = dict(
        zip(
            names := [
                "recency_days", "overdue_ratio", "orders_30d", "orders_trend_90d", "frequency", "revenue_90d",
                "aov_90d", "monetary_value", "sessions_30d", "days_since_last_session", "page_views_90d",
                "email_opens_90d", "emails_sent_30d", "days_since_last_email_open", "support_tickets_90d",
                "returns_90d", "return_rate", "bgnbd_order_value", "country", "mystery_score",
            ],
            feature_families(names),
            strict=True,
        )
    )  # fmt: skip
    assert families["recency_days"] == families["overdue_ratio"] == "recency"
    assert families["orders_30d"] == families["orders_trend_90d"] == families["frequency"] == "frequency"
    assert families["revenue_90d"] == families["aov_90d"] == families["monetary_value"] == "spend"
    assert families["bgnbd_order_value"] == "spend"
    assert families["sessions_30d"] == families["days_since_last_session"] == families["page_views_90d"]
    assert families["email_opens_90d"] == families["emails_sent_30d"] == families["days_since_last_email_open"]
    assert families["returns_90d"] == families["return_rate"] == "returns"
    assert families["support_tickets_90d"] == "support"
    assert families["country"] == "country" and families["mystery_score"] == "mystery_score"  # their own
    assert len({f for f, _ in FAMILIES}) >= 7


def test_at_most_one_reason_per_behaviour_the_strongest_of_it():
    names = ["recency_days", "orders_30d", "orders_90d", "orders_trend_90d", "sessions_30d", "email_opens_90d"]
    contrib = np.array(
        [[0.1, 0.5, 0.45, 0.4, 0.2, 0.3], [0.0, -0.1, 0.2, 0.3, -0.2, -0.1], [0.2, 0.2, 0.2, 0.0, 0.2, 0.0]],
        dtype=np.float32,
    )
    assert top_reasons(contrib).tolist()[0] == [1, 2, 3]  # three windows of the same behaviour
    by_family = top_reasons(contrib, families=feature_families(names)).tolist()
    assert by_family == [[1, 5, 4], [3, -1, -1], [0, 1, 4]]  # ties: the lower feature position first


def test_family_reasons_never_use_ignored_features():
    names = ["cutoff_month", "orders_30d", "orders_90d"]
    contrib = np.array([[0.9, 0.1, 0.2]], dtype=np.float32)
    assert top_reasons(contrib, ignore=[0], families=feature_families(names)).tolist() == [[2, -1, -1]]


def test_the_models_reasons_have_one_sentence_per_behaviour(churn_model, rows):
    features = churn_model.features_
    folded = behaviour_contributions(contributions(churn_model, rows, "path"), features)
    ignore = [features.index(f) for f in ("cutoff_month", "cutoff_day_of_year") if f in features]
    families = feature_families(features)
    idx = top_reasons(folded, ignore=ignore, families=families)
    for row in idx:
        used = [families[j] for j in row if j >= 0]
        assert len(used) == len(set(used))
    plain = top_reasons(folded, ignore=ignore)
    assert (idx[:, 0] == plain[:, 0]).all()  # the strongest reason is unchanged
    repeats = [len({families[j] for j in r if j >= 0}) < (r >= 0).sum() for r in plain]
    assert any(repeats)  # without families some customers got one behaviour twice


def test_slots_without_a_reason_stay_empty_and_each_slot_gets_its_own_sentence():
    codes = np.array([[0, 1, -1], [-1, -1, -1], [1, 0, 5]], dtype=np.int32)
    first, second, third = reason_sentences(codes, FRAME, FEATURES)
    assert first.tolist() == [
        "no order for 120 days; usually orders every 30 days",
        None,
        "1 order in the last 90 days",
    ]
    assert second.tolist() == [
        "2 orders in the last 90 days",
        None,
        "no order for 5 days; usually orders every 12 days",
    ]
    assert third.tolist() == [None, None, "usually orders only every 12 days"]
