"""ChurnClassifier: one artefact (preprocessing + booster + calibrator), deterministic, calibrated, guarded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier
from sklearn.linear_model import LogisticRegression

from churn_pipeline.models import metrics
from churn_pipeline.models.churn import ChurnClassifier, _Platt, _sigmoid, customer_half


@pytest.fixture(scope="module")
def test_rows(churn_frames) -> pd.DataFrame:
    return churn_frames[2]


@pytest.fixture(scope="module")
def reweighted_model(churn_frames, feature_args, fast) -> ChurnClassifier:
    """A booster whose raw probabilities are distorted on purpose (class re-weighting)."""
    train, valid, _ = churn_frames
    return ChurnClassifier(**feature_args, **fast, imbalance="is_unbalance").fit(
        train, train["churned"], valid, valid["churned"]
    )


def test_outputs(churn_model, test_rows, fast):
    proba = churn_model.predict_proba(test_rows)
    assert proba.shape == (len(test_rows), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert ((proba > 0) & (proba < 1)).all()
    pred = churn_model.predict(test_rows)
    np.testing.assert_array_equal(pred, (proba[:, 1] >= 0.5).astype(int))
    assert is_classifier(churn_model)
    assert 0 < churn_model.best_iteration_ < fast["n_estimators"]  # early stopping stopped it


def test_same_data_and_params_give_identical_predictions(churn_model, churn_frames, test_rows):
    train, valid, _ = churn_frames
    again = clone(churn_model).fit(train, train["churned"], valid, valid["churned"])
    np.testing.assert_array_equal(again.predict_proba(test_rows), churn_model.predict_proba(test_rows))
    assert again.calibration_report_ == churn_model.calibration_report_
    pd.testing.assert_frame_equal(again.feature_importance(), churn_model.feature_importance())


def test_calibration_choice_is_recorded(churn_model):
    report = churn_model.calibration_report_
    assert report["selection"] == "auto" and report["method"] in ("isotonic", "sigmoid")
    other = "sigmoid" if report["method"] == "isotonic" else "isotonic"
    assert report[f"brier_{report['method']}"] <= report[f"brier_{other}"]
    for key in ("brier_uncalibrated", "ece_isotonic", "ece_sigmoid", "ece_uncalibrated"):
        assert 0 <= report[key] < 1
    assert report["n_rows_half_0"] + report["n_rows_half_1"] == report["n_rows"] == churn_model.n_valid_rows_


def test_calibration_improves_brier_on_the_test_cutoff(reweighted_model, test_rows):
    """Re-weighted classes shift the booster's probabilities; calibration on the validation cutoffs must
    repair them on the later, untouched test cutoff."""
    y = test_rows["churned"].astype(int)
    raw, calibrated = reweighted_model.predict_uncalibrated(test_rows), reweighted_model.predict_proba(test_rows)[:, 1]
    # On the default shop (with issue 15's past campaigns) the re-weighting costs 0.0048 of Brier (0.1885 raw ->
    # 0.1838 calibrated; 0.005+ on the shop without campaigns): calibration must win back most of such a shift.
    assert metrics.brier(y, calibrated) < metrics.brier(y, raw) - 0.004
    assert metrics.expected_calibration_error(y, calibrated) < metrics.expected_calibration_error(y, raw) / 2
    # ranking is untouched by a monotone calibrator (isotonic may merge ties: at most a tiny change)
    assert metrics.roc_auc(y, calibrated) == pytest.approx(metrics.roc_auc(y, raw), abs=0.002)


def test_calibration_does_not_hurt_an_already_calibrated_booster(churn_model, test_rows):
    """With the default (no re-weighting) the log-loss booster is close to calibrated already: the chosen
    calibrator must then be close to the identity and leave the test Brier score within 0.001."""
    y = test_rows["churned"].astype(int)
    raw, calibrated = churn_model.predict_uncalibrated(test_rows), churn_model.predict_proba(test_rows)[:, 1]
    assert abs(metrics.brier(y, calibrated) - metrics.brier(y, raw)) < 0.001
    if churn_model.calibration_report_["method"] == "sigmoid":
        assert churn_model.calibration_report_["sigmoid_slope"] == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_fixed_calibration_method(churn_model, churn_frames, method):
    train, valid, test = churn_frames
    model = clone(churn_model).set_params(calibration=method).fit(train, train["churned"], valid, valid["churned"])
    assert model.calibration_report_["method"] == method and model.calibration_report_["selection"] == "fixed"
    # same booster as the auto model: only the calibrator differs
    np.testing.assert_array_equal(model.predict_margin(test), churn_model.predict_margin(test))


def test_unseen_and_missing_categories_score_predictably(churn_model, test_rows):
    rows = test_rows.head(500)
    unseen_a = churn_model.predict_proba(rows.assign(country="XX"))
    unseen_b = churn_model.predict_proba(rows.assign(country="Atlantis"))
    np.testing.assert_array_equal(unseen_a, unseen_b)  # every unseen level is "__other__"
    missing = churn_model.predict_proba(rows.assign(country=pd.Series(pd.NA, index=rows.index, dtype="str")))
    assert np.isfinite(unseen_a).all() and np.isfinite(missing).all()


def test_missing_feature_columns_are_named(churn_model, test_rows):
    with pytest.raises(ValueError, match=r"missing: \['sessions_30d', 'country'\]"):
        churn_model.predict_proba(test_rows.drop(columns=["country", "sessions_30d"]))


def test_renamed_column_is_rejected(churn_model, test_rows):
    renamed = test_rows.rename(columns={"recency_days": "recency_day"})
    with pytest.raises(ValueError, match=r"missing: \['recency_days'\].*'recency_day'"):
        churn_model.predict_proba(renamed)


def test_reordered_columns_give_identical_predictions(churn_model, test_rows):
    reordered = test_rows[list(test_rows.columns[::-1])]
    np.testing.assert_array_equal(churn_model.predict_proba(reordered), churn_model.predict_proba(test_rows))


def test_the_bare_booster_would_accept_reordered_columns_silently(churn_model, test_rows):
    """The trap the preprocessor guards against: LightGBM scores a matrix by position, no questions asked."""
    matrix = churn_model.preprocessor_.transform(test_rows)
    booster = churn_model.model_.booster_
    swapped = matrix[:, ::-1].copy()
    wrong = booster.predict(swapped, num_iteration=churn_model.best_iteration_)
    right = booster.predict(matrix, num_iteration=churn_model.best_iteration_)
    assert not np.allclose(wrong, right)


def test_categorical_columns_are_declared_to_lightgbm(churn_model):
    """Category codes passed as plain numbers would be split on by order ("FR" < "NL"); the booster must
    know them as categorical: LightGBM then lists their category values instead of a numeric range."""
    infos = churn_model.model_.booster_.dump_model()["feature_infos"]
    for column in ("country", "acquisition_channel"):
        assert infos[column]["values"], column
    assert infos["recency_days"]["values"] == []
    assert churn_model.preprocessor_.categorical_indices_ == [
        churn_model.features_.index("country"),
        churn_model.features_.index("acquisition_channel"),
    ]


def test_feature_importance(churn_model, manifest):
    imp = churn_model.feature_importance()
    assert list(imp.columns) == ["feature", "gain", "split"]
    assert sorted(imp["feature"]) == sorted(manifest["features"])
    assert imp["gain"].is_monotonic_decreasing
    top = set(imp["feature"].head(10))
    assert top & {"recency_days", "days_since_last_session", "sessions_90d", "sessions_180d"}


def test_scale_pos_weight_defaults_to_class_ratio(churn_frames, feature_args):
    train, valid, _ = churn_frames
    model = ChurnClassifier(**feature_args, n_estimators=5, n_jobs=2, imbalance="scale_pos_weight")
    model.fit(train, train["churned"], valid, valid["churned"])
    n_pos = int(train["churned"].sum())
    assert model.booster_params_["scale_pos_weight"] == pytest.approx((len(train) - n_pos) / n_pos)


def test_bad_inputs(churn_frames, feature_args):
    train, valid, _ = churn_frames
    model = ChurnClassifier(**feature_args, n_estimators=5)
    with pytest.raises(ValueError, match="null label"):
        model.fit(train, train["churned"].astype("boolean").where(train.index % 7 != 0), valid, valid["churned"])
    with pytest.raises(ValueError, match="'customer_id'"):
        model.fit(train, train["churned"], valid.drop(columns="customer_id"), valid["churned"])
    with pytest.raises(ValueError, match="imbalance must be one of"):
        clone(model).set_params(imbalance="smote").fit(train, train["churned"], valid, valid["churned"])
    with pytest.raises(ValueError, match="calibration must be one of"):
        clone(model).set_params(calibration="beta").fit(train, train["churned"], valid, valid["churned"])


def test_platt_scaling_is_the_unpenalised_logistic_regression():
    rng = np.random.default_rng(3)
    margin = rng.normal(0.5, 1.2, 5000)
    y = (rng.random(5000) < _sigmoid(0.8 * margin - 0.3)).astype(np.int8)
    # sklearn's solver run to full precision (its default tolerance stops ~1e-4 short of the optimum).
    exact = LogisticRegression(C=np.inf, tol=1e-14, max_iter=10_000).fit(margin.reshape(-1, 1), y)
    platt = _Platt().fit(margin, y)
    assert platt.a_ == pytest.approx(exact.coef_[0, 0], abs=1e-8)
    assert platt.b_ == pytest.approx(exact.intercept_[0], abs=1e-8)


def test_customer_half_is_a_fixed_hash():
    ids = pd.Series(["C000001", "C000002", "C000003", "C000001"])
    halves = customer_half(ids)
    assert set(halves) <= {0, 1} and halves[0] == halves[3]
    np.testing.assert_array_equal(customer_half(ids.astype(object)), halves)
    big = customer_half(pd.Series([f"C{i:06d}" for i in range(10_000)]))
    assert 0.45 < big.mean() < 0.55


def _prior_rows(n: int, seed: int, level_shift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose churn label is drawn from a known prior probability, plus a feature that is pure noise.
    ``level_shift`` (log-odds) moves the labels' level away from the prior's, as a season would."""
    rng = np.random.default_rng(seed)
    prior = rng.uniform(0.05, 0.95, n)
    rows = pd.DataFrame(
        {"customer_id": [f"c{seed}_{i}" for i in range(n)], "prior": prior, "noise": rng.normal(size=n)}
    )
    p = 1 / (1 + np.exp(-(np.log(prior / (1 - prior)) + level_shift)))
    return rows, rng.random(n) < p


@pytest.fixture(scope="module")
def offset_model() -> ChurnClassifier:
    (train, yt), (valid, yv) = _prior_rows(4000, 1), _prior_rows(2000, 2)
    model = ChurnClassifier(
        features=["prior", "noise"], offset="prior", calibration="sigmoid", n_estimators=50, n_jobs=1
    )
    return model.fit(train, yt, valid, yv)


def test_offset_starts_the_booster_from_the_prior_probability(offset_model):
    # The labels follow the prior exactly, so the booster has nothing to add and its output stays on the prior.
    test, _ = _prior_rows(1000, 3)
    raw = offset_model.predict_uncalibrated(test)
    assert np.abs(raw - test["prior"]).max() < 0.05
    # Without the offset, the same trees alone would be far from it: the prior is added back at predict time.
    trees_only = offset_model.model_.booster_.predict(offset_model.preprocessor_.transform(test), raw_score=True)
    assert np.abs(1 / (1 + np.exp(-trees_only)) - test["prior"]).max() > 0.3


def test_missing_prior_gets_the_median_training_log_odds(offset_model):
    test, _ = _prior_rows(3, 4)
    test.loc[0, "prior"] = np.nan
    p = offset_model.predict_uncalibrated(test)
    assert np.isfinite(p).all()
    assert p[0] == pytest.approx(1 / (1 + np.exp(-offset_model.offset_fill_)), abs=0.05)


def test_offset_must_be_a_numeric_feature():
    (train, yt), (valid, yv) = _prior_rows(300, 1), _prior_rows(300, 2)
    with pytest.raises(ValueError, match="offset 'prior' must be one of the numeric features"):
        ChurnClassifier(features=["noise"], offset="prior", n_estimators=5).fit(train, yt, valid, yv)
    with pytest.raises(ValueError, match="early_stopping_metric"):
        ChurnClassifier(features=["noise"], offset=None, early_stopping_metric="gini", n_estimators=5).fit(
            train, yt, valid, yv
        )


def test_early_stopping_on_auc_is_recorded_by_lightgbm():
    (train, yt), (valid, yv) = _prior_rows(2000, 5), _prior_rows(1000, 6)
    model = ChurnClassifier(
        features=["prior", "noise"], offset=None, early_stopping_metric="auc", n_estimators=30, n_jobs=1
    )
    model.fit(train, yt, valid, yv)
    assert "auc" in model.model_.best_score_["valid_0"]


def _fit_shifted(train_shift: float, valid_shift: float, **params) -> ChurnClassifier:
    """A booster from the prior on training rows whose level sits ``train_shift`` log-odds off the prior,
    validated on rows ``valid_shift`` off it; early stopping on log loss, which sees the level."""
    (train, yt), (valid, yv) = _prior_rows(4000, 11, train_shift), _prior_rows(2000, 12, valid_shift)
    model = ChurnClassifier(
        features=["prior", "noise"],
        offset="prior",
        early_stopping_metric="logloss",
        learning_rate=0.3,
        n_estimators=60,
        n_jobs=1,
    )
    return model.set_params(**params).fit(train, yt, valid, yv)


def test_the_prior_level_is_kept_when_the_learnt_level_does_not_carry_forward():
    """Training cutoffs churn less than the prior says, the validation cutoff more (Online Retail II's
    seasons): the booster's learnt level loses to the prior's on the validation rows, so the prior level is
    kept, and no level is fitted on the validation rows, whose season need not return at the test cutoff."""
    model = _fit_shifted(-1.0, +0.5)
    report = model.calibration_report_
    assert report["method"] == "prior" and report["selection"] == "auto"
    assert report["brier_prior"] < report["brier_uncalibrated"]
    test, y = _prior_rows(3000, 13)  # a later cutoff at the prior's own level
    p = model.predict_proba(test)[:, 1]
    assert abs(p.mean() - y.mean()) < 0.03
    assert metrics.brier(y, p) < metrics.brier(y, model.predict_uncalibrated(test))
    # a Platt calibrator fitted on the validation rows would have carried their level (+0.5) over
    platt = _fit_shifted(-1.0, +0.5, calibration="sigmoid").predict_proba(test)[:, 1]
    assert platt.mean() > p.mean() + 0.04 and metrics.brier(y, platt) > metrics.brier(y, p)


def test_the_booster_level_is_kept_when_it_carries_forward():
    """Every cutoff churns less than the prior says: the booster learns that level and the validation rows
    confirm it, so the usual calibration (isotonic or Platt on the validation rows) follows."""
    model = _fit_shifted(-1.0, -1.0)
    report = model.calibration_report_
    assert report["method"] in ("isotonic", "sigmoid")
    assert report["brier_uncalibrated"] < report["brier_prior"] - 0.01
    test, y = _prior_rows(3000, 13, -1.0)
    p = model.predict_proba(test)[:, 1]
    assert abs(p.mean() - y.mean()) < 0.03
    assert metrics.brier(y, p) < metrics.brier(y, _sigmoid(model.predict_margin(test) + report["prior_shift"]))


def test_the_prior_level_removes_the_trees_mean_training_correction():
    model = _fit_shifted(-1.0, -1.0, calibration="prior")
    assert model.calibration_report_["method"] == "prior" and model.calibration_report_["selection"] == "fixed"
    train, _ = _prior_rows(4000, 11, -1.0)
    matrix = model.preprocessor_.transform(train)
    correction = model.model_.booster_.predict(matrix, raw_score=True, num_iteration=model.best_iteration_)
    assert correction.mean() < -0.5  # the trees learnt the lower level ...
    assert model.calibration_report_["prior_shift"] == pytest.approx(-correction.mean())  # ... and it is removed
    test, _ = _prior_rows(500, 13)
    np.testing.assert_allclose(
        model.predict_proba(test)[:, 1], _sigmoid(model.predict_margin(test) - correction.mean()), rtol=1e-12
    )


def test_without_an_offset_there_is_no_prior_level():
    (train, yt), (valid, yv) = _prior_rows(300, 1), _prior_rows(300, 2)
    model = ChurnClassifier(features=["prior", "noise"], offset=None, n_estimators=5).fit(train, yt, valid, yv)
    assert "brier_prior" not in model.calibration_report_
    with pytest.raises(ValueError, match="calibration 'prior' keeps the level of the offset prior"):
        ChurnClassifier(features=["prior", "noise"], offset=None, calibration="prior", n_estimators=5).fit(
            train, yt, valid, yv
        )
