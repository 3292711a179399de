"""FeaturePreprocessor: columns by name in the fitted order, fitted categorical levels, float32 output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from churn_pipeline.models.preprocess import OTHER, FeaturePreprocessor


@pytest.fixture
def train() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e", "f"],
            "orders_30d": np.array([0, 1, 2, 0, 5, 1], dtype=np.int32),
            "country": pd.Series(["DE", "FR", "DE", None, "FR", "LU"], dtype="str"),
            "recency_days": [1.5, np.nan, 3.0, 4.0, 10.0, 2.0],
            "churned": [True, False, True, False, True, False],
        }
    )


FEATURES = ["orders_30d", "country", "recency_days"]


def fitted(train: pd.DataFrame, **kw) -> FeaturePreprocessor:
    return FeaturePreprocessor(features=FEATURES, categorical=["country"], **kw).fit(train)


def test_fit_fixes_order_levels_and_indices(train):
    pre = fitted(train, min_category_count=2)
    assert pre.features_ == FEATURES
    assert pre.categorical_ == ["country"] and pre.categorical_indices_ == [1]
    # sorted levels seen >= 2 times; LU (once) is folded; "__other__" always last
    assert pre.categories_ == {"country": ["DE", "FR", OTHER]}
    assert pre.n_features_in_ == 3
    assert list(pre.get_feature_names_out()) == FEATURES


def test_transform_output_is_float32_in_fitted_order(train):
    out = fitted(train, min_category_count=2).transform(train)
    assert out.dtype == np.float32 and out.shape == (6, 3)
    np.testing.assert_array_equal(out[:, 0], [0, 1, 2, 0, 5, 1])
    # DE=0, FR=1, missing stays NaN, folded LU -> __other__ = 2
    np.testing.assert_array_equal(out[:, 1], [0, 1, 0, np.nan, 1, 2])
    np.testing.assert_array_equal(out[:, 2], np.array([1.5, np.nan, 3, 4, 10, 2], dtype=np.float32))


def test_reordered_columns_and_extra_columns_give_the_same_matrix(train):
    pre = fitted(train)
    shuffled = train[["churned", "recency_days", "country", "customer_id", "orders_30d"]].assign(extra=1.0)
    np.testing.assert_array_equal(pre.transform(shuffled), pre.transform(train))


def test_unseen_category_maps_to_other_and_missing_to_nan(train):
    pre = fitted(train, min_category_count=1)
    assert pre.categories_["country"] == ["DE", "FR", "LU", OTHER]
    new = train.head(3).assign(country=pd.Series(["PT", None, "FR"], dtype="str"))
    np.testing.assert_array_equal(pre.transform(new)[:, 1], [3, np.nan, 1])
    # the same with object and categorical dtypes
    for dtype in (object, "category"):
        np.testing.assert_array_equal(pre.transform(new.astype({"country": dtype}))[:, 1], [3, np.nan, 1])


def test_missing_feature_columns_are_all_named(train):
    pre = fitted(train)
    with pytest.raises(ValueError, match=r"2 required feature column\(s\) missing: \['orders_30d', 'recency_days'\]"):
        pre.transform(train.drop(columns=["orders_30d", "recency_days"]))


def test_renamed_column_is_rejected_by_name(train):
    pre = fitted(train)
    renamed = train.rename(columns={"recency_days": "recency"})
    with pytest.raises(ValueError, match=r"missing: \['recency_days'\].*not expected: \[.*'recency'"):
        pre.transform(renamed)


def test_nullable_numerics_become_nan(train):
    pre = fitted(train)
    nullable = train.assign(orders_30d=pd.array([0, None, 2, 0, 5, 1], dtype="Int32"))
    out = pre.transform(nullable)
    assert np.isnan(out[1, 0]) and out[2, 0] == 2


def test_type_changes_and_bad_configuration_raise(train):
    pre = fitted(train)
    with pytest.raises(ValueError, match="'orders_30d' was numeric at training"):
        pre.transform(train.assign(orders_30d=train["orders_30d"].astype(str)))
    with pytest.raises(ValueError, match="not among the features"):
        FeaturePreprocessor(features=["orders_30d"], categorical=["country"]).fit(train)
    with pytest.raises(ValueError, match="duplicate feature names"):
        FeaturePreprocessor(features=["orders_30d", "orders_30d"]).fit(train)
    with pytest.raises(ValueError, match="missing"):
        FeaturePreprocessor(features=["nope"]).fit(train)
    with pytest.raises(TypeError, match="DataFrame"):
        pre.transform(train[FEATURES].to_numpy())


def test_scikit_learn_contract(train):
    pre = FeaturePreprocessor(features=FEATURES, min_category_count=3)
    assert clone(pre).get_params() == pre.get_params()
    with pytest.raises(NotFittedError):
        pre.transform(train)
    # categorical=None: text columns among the features are the categorical ones
    pre.fit(train)
    assert pre.categorical_ == ["country"] and pre.categories_["country"] == [OTHER]
    assert pre.to_frame(train).columns.tolist() == FEATURES


def test_on_the_real_panel(panel, manifest):
    pre = FeaturePreprocessor(features=manifest["features"], categorical=manifest["categorical"]).fit(panel)
    assert pre.categorical_ == ["country", "acquisition_channel"]
    assert pre.categories_["acquisition_channel"] == [
        "affiliate",
        "organic",
        "paid_search",
        "paid_social",
        "referral",
        OTHER,
    ]
    sample = panel.sample(2000, random_state=0)
    reversed_columns = sample[sample.columns[::-1]]
    np.testing.assert_array_equal(pre.transform(reversed_columns), pre.transform(sample))


def _wide(levels: int, rows_per_level: int, seed: int = 0) -> pd.DataFrame:
    """``country`` with ``levels`` distinct values seen ``rows_per_level`` times each (a customer id in disguise)."""
    rng = np.random.default_rng(seed)
    country = np.repeat([f"c{i:04d}" for i in range(levels)], rows_per_level)
    return pd.DataFrame({"country": rng.permutation(country), "x": rng.normal(size=len(country))})


def test_a_categorical_with_too_many_levels_keeps_the_most_frequent_and_warns():
    frame = _wide(316, 25)
    frame = pd.concat([frame, pd.DataFrame({"country": ["c0007"] * 40, "x": 0.0})], ignore_index=True)
    folded = r"'country' has 316 levels .* kept the 50 most frequent, folded the other 266"
    with pytest.warns(UserWarning, match=folded):
        pre = FeaturePreprocessor(["country", "x"], ["country"], max_category_levels=50).fit(frame)
    assert len(pre.categories_["country"]) == 51 and pre.categories_["country"][-1] == OTHER
    assert "c0007" in pre.categories_["country"]  # the most frequent level is kept
    assert pre.features_ == ["country", "x"] and len(pre.warnings_) == 1
    # Ties are broken by name, so the kept set does not depend on row order.
    with pytest.warns(UserWarning, match="316 levels"):
        again = FeaturePreprocessor(["country", "x"], ["country"]).fit(frame.sample(frac=1.0, random_state=1))
    assert again.categories_ == pre.categories_
    codes = pre.transform(frame)[:, 0]
    assert np.nanmax(codes) == 50 and (codes == 50).sum() == 266 * 25  # folded rows share the "__other__" code


def test_a_categorical_that_is_an_identifier_is_dropped_from_the_features_with_a_warning():
    frame = _wide(400, 1)
    with pytest.warns(UserWarning, match=r"'country' has 400 distinct values in 400 training rows .* dropped"):
        pre = FeaturePreprocessor(["country", "x"], ["country"]).fit(frame)
    assert pre.features_ == ["x"] and pre.categorical_ == [] and pre.dropped_ == ["country"]
    assert pre.transform(frame).shape == (400, 1)


def test_few_levels_are_unchanged_and_warn_nothing(train, recwarn):
    pre = fitted(train, min_category_count=2, max_category_levels=50)
    assert pre.categories_ == {"country": ["DE", "FR", OTHER]} and pre.warnings_ == [] and pre.dropped_ == []
    assert not [w for w in recwarn if "categorical feature" in str(w.message)]
    with pytest.raises(ValueError, match="max_category_levels"):
        fitted(train, max_category_levels=0)


def test_the_default_shops_categoricals_keep_all_their_levels():
    from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop

    customers = generate_shop(SyntheticShopConfig())["customers"].to_pandas()  # the shipped 20,000 customers
    for column in ("country", "acquisition_channel"):
        frame = pd.concat([customers[[column]]] * 12, ignore_index=True)  # the same customers at 12 cutoffs
        pre = FeaturePreprocessor([column], [column]).fit(frame)
        counts = frame[column].dropna().astype(str).value_counts()
        assert pre.warnings_ == [] and pre.dropped_ == [] and pre.features_ == [column]
        assert pre.categories_[column] == [*sorted(counts.index[counts >= 20]), OTHER]
