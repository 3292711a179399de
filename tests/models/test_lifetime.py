"""Multi-period lifetime value: the closed form against hand-checkable sums, monotonicity, input checks."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from churn_pipeline.errors import ParamsError
from churn_pipeline.models.lifetime import (
    LifetimeValueParams,
    discounted_lifetime_value,
    lifetime_assumptions,
    period_count,
)
from churn_pipeline.pipelines.params import build_dataclass


def _value(clv, q, *, period_days=180.0, margin=0.3, rate=0.1, months=36):
    return discounted_lifetime_value(
        clv, q, period_days=period_days, margin=margin, annual_discount_rate=rate, horizon_months=months
    )


def test_periods_are_the_horizon_in_clv_horizons_rounded_and_at_least_one():
    assert period_count(36, 180) == 6  # 1095.75 / 180 = 6.09
    assert period_count(12, 180) == 2  # 365.25 / 180 = 2.03
    assert period_count(1, 180) == 1  # 0.17 -> at least one period
    assert period_count(3, 30.4375 * 2) == 2  # 1.5 rounds up, not to even
    assert period_count(36, 90) == 12


def test_full_retention_and_no_discounting_give_margin_times_clv_times_periods():
    out = _value([100.0, 0.0, 7.5], 1.0, rate=0.0)
    np.testing.assert_allclose(out, [0.3 * 100.0 * 6, 0.0, 0.3 * 7.5 * 6], rtol=1e-12)


def test_no_retention_leaves_only_the_first_period_discounted_to_its_middle():
    # q = 0: the customer does not come back after the first 180 days; its cash arrives at day 90.
    out = _value([100.0], 0.0)
    assert out[0] == pytest.approx(0.3 * 100.0 * 1.1 ** (-90 / 365.25), rel=1e-12)
    assert _value([100.0], 0.0, rate=0.0)[0] == pytest.approx(30.0, rel=1e-12)


def test_a_discounted_case_by_hand():
    # 12 months of 180 days = 2 periods; CLV 100, q 0.5, margin 0.3, 10 % a year:
    # 0.3 * (100 * 1.1^-(0.5 * 180 / 365.25) + 50 * 1.1^-(1.5 * 180 / 365.25))
    # = 0.3 * (100 * 0.976789 + 50 * 0.931970) = 0.3 * 144.2774 = 43.2832
    by_hand = 0.3 * (100 * 1.1 ** (-0.5 * 180 / 365.25) + 50 * 1.1 ** (-1.5 * 180 / 365.25))
    out = _value([100.0], [0.5], months=12)
    assert out[0] == pytest.approx(by_hand, rel=1e-12)
    assert out[0] == pytest.approx(43.2832, abs=1e-4)


@pytest.mark.parametrize("q", [0.0, 0.3, 0.9, 0.999999, 1.0 - 1e-13, 1.0])
@pytest.mark.parametrize("rate", [0.0, 1e-12, 0.1])
def test_the_closed_form_equals_the_sum_of_the_periods(q, rate):
    periods = period_count(36, 180)
    terms = [100.0 * q**k * (1 + rate) ** (-(k + 0.5) * 180 / 365.25) for k in range(periods)]
    assert _value([100.0], [q], rate=rate)[0] == pytest.approx(0.3 * sum(terms), rel=1e-9)


def test_more_retention_gives_more_value_and_a_higher_rate_less():
    q = np.linspace(0.0, 1.0, 101)
    value = _value(np.full(q.size, 80.0), q)
    assert (np.diff(value) > 0).all()
    rates = [0.0, 0.05, 0.1, 0.3]
    by_rate = [_value([80.0], [0.7], rate=r)[0] for r in rates]
    assert (np.diff(by_rate) < 0).all()
    assert _value([80.0], [0.7], months=48)[0] > _value([80.0], [0.7], months=36)[0]  # a longer horizon adds


def test_value_is_proportional_to_clv_and_margin_and_vectorised():
    rng = np.random.default_rng(3)
    clv, q = rng.gamma(2.0, 50.0, 1000), rng.uniform(0, 1, 1000)
    out = _value(clv, q)
    assert out.shape == (1000,) and out.dtype == np.float64
    np.testing.assert_allclose(_value(2 * clv, q, margin=0.15), out, rtol=1e-12)
    np.testing.assert_allclose(out[:5], [_value([c], [p])[0] for c, p in zip(clv[:5], q[:5], strict=True)])


def test_a_missing_input_gives_nan_for_that_customer_only():
    out = _value([100.0, np.nan, 100.0], [0.5, 0.5, np.nan])
    assert np.isfinite(out[0]) and np.isnan(out[1:]).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"q": [1.2]}, "retention_probability must lie in"),
        ({"q": [-0.1]}, "retention_probability must lie in"),
        ({"clv": [np.inf]}, "predicted_clv must be finite"),
        ({"margin": 0.0}, "margin"),
        ({"margin": 1.5}, "margin"),
        ({"rate": -0.01}, "annual_discount_rate"),
        ({"rate": np.nan}, "annual_discount_rate must be finite"),
        ({"months": 0.5}, "horizon_months"),
        ({"period_days": 0.0}, "period_days"),
    ],
)
def test_inputs_out_of_range_are_refused_naming_them(kwargs, message):
    clv, q = kwargs.pop("clv", [100.0]), kwargs.pop("q", [0.5])
    with pytest.raises(ValueError, match=message):
        _value(clv, q, **kwargs)


def test_params_defaults_and_validation():
    params = LifetimeValueParams()
    assert (params.margin, params.annual_discount_rate, params.horizon_months) == (0.3, 0.1, 36)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.margin = 0.5  # type: ignore[misc]
    for bad, message in (
        ({"margin": 0.0}, "margin"),
        ({"annual_discount_rate": -0.1}, "annual_discount_rate"),
        ({"horizon_months": 0}, "horizon_months"),
        ({"horizon_months": 12.5}, "whole number"),
    ):
        with pytest.raises(ValueError, match=message):
            LifetimeValueParams(**bad)


def test_params_load_from_yaml_as_score_lifetime_value_with_errors_naming_the_key():
    where = "params.yaml:score.lifetime_value"
    assert build_dataclass(LifetimeValueParams, {"margin": 1, "horizon_months": 24}, where) == LifetimeValueParams(
        margin=1.0, horizon_months=24
    )
    with pytest.raises(ParamsError, match=r"unknown key\(s\) \['discount_rate'\]"):
        build_dataclass(LifetimeValueParams, {"discount_rate": 0.1}, where)
    with pytest.raises(ParamsError, match="margin must be a share"):
        build_dataclass(LifetimeValueParams, {"margin": 2}, where)


def test_the_assumptions_are_plain_sentences_with_the_params():
    text = lifetime_assumptions(LifetimeValueParams(), 180)
    assert all(s.endswith(".") and "\n" not in s for s in text)
    joined = " ".join(text)
    assert "36 months" in joined and "6 period(s) of 180 days" in joined and "1,080 days" in joined
    assert "30 % of net revenue" in joined and "10 % a year" in joined and "Gupta & Lehmann 2003" in joined
    other = " ".join(lifetime_assumptions(LifetimeValueParams(margin=0.25, horizon_months=12), 90))
    assert "12 months" in other and "4 period(s) of 90 days" in other and "25 % of net revenue" in other


def test_the_docs_state_the_assumptions_of_the_default_params():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "scores_schema.md").read_text(encoding="utf-8")
    for sentence in lifetime_assumptions(LifetimeValueParams(), 180):
        assert f"  - {sentence}\n" in doc, sentence
