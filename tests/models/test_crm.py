"""CRM file helpers: formula-injection neutralisation, pseudonymous ids, fixed decimals."""

import datetime

import pyarrow as pa
import pytest

from churn_pipeline.models.crm import FORMULA_PREFIXES, fixed_decimals, neutralise_formulas, pseudonymise


@pytest.mark.parametrize("first", FORMULA_PREFIXES)
def test_a_text_cell_starting_with_a_formula_character_gets_a_leading_quote(first):
    cell = f'{first}HYPERLINK("http://evil")'
    out, changed = neutralise_formulas(pa.array([cell]))
    assert out.to_pylist() == ["'" + cell] and changed == 1


def test_the_owasp_list_is_exactly_the_six_characters():
    assert set(FORMULA_PREFIXES) == {"=", "+", "-", "@", "\t", "\r"}


@pytest.mark.parametrize("cell", ["a=b", "no order for 120 days", "0042", "'=already quoted", " =1", "", "€-5"])
def test_safe_text_cells_stay_as_they_are(cell):
    out, changed = neutralise_formulas(pa.array([cell]))
    assert out.to_pylist() == [cell] and changed == 0


def test_missing_cells_stay_missing():
    out, changed = neutralise_formulas(pa.array([None, "=1"]))
    assert out.to_pylist() == [None, "'=1"] and changed == 1


def test_pseudonyms_are_stable_for_a_key_and_change_with_it():
    ids = ["0000001", "0000002", "C-17", "müller@shop.de"]
    first = pseudonymise(ids, "test-key")
    # Pinned: the CRM matches customers across exports by these.
    assert first.tolist() == ["pdde673f7d7ccb229", "p6930ad158b573dfe", "p5b8f923510e599ea", "pbe58a6b5d175a617"]
    assert pseudonymise(ids[::-1], "test-key").tolist() == first.tolist()[::-1]
    assert set(pseudonymise(ids, "other-key")).isdisjoint(first)


def test_pseudonyms_are_p_plus_16_hex_digits_and_never_start_a_formula():
    out = pseudonymise([f"-{i}" for i in range(1000)], "k")
    assert all(len(p) == 17 and p[0] == "p" and int(p[1:], 16) >= 0 for p in out)
    assert len(set(out)) == 1000


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError, match="key"):
        pseudonymise(["a"], "")


def test_fixed_decimals_always_print_the_same_number_of_places():
    out = fixed_decimals(pa.array([0.25, 1.0, 0.1234565, 2.5e-07]), 6)
    assert [str(v) for v in out.to_pylist()] == ["0.250000", "1.000000", "0.123456", "0.000000"]
    assert [str(v) for v in fixed_decimals(pa.array([12.345, 7.0]), 2).to_pylist()] == ["12.34", "7.00"]


@pytest.mark.parametrize("value", [1.5e17, float("nan"), float("inf"), float("-inf"), -1e16, 1e16])
def test_fixed_decimals_refuse_a_value_the_decimal_cannot_hold_instead_of_writing_zero(value):
    # The unchecked cast printed each of these as 0.00.
    with pytest.raises(ValueError, match=r"1 of 3 values are NaN, infinite or beyond \+-1e\+16"):
        fixed_decimals(pa.array([1.0, value, None]), 2)


def test_fixed_decimals_keep_nulls_and_the_largest_values_that_fit():
    out = fixed_decimals(pa.array([None, 9_999_999_999_999.99, -123.456]), 2)
    assert [None if v is None else str(v) for v in out.to_pylist()] == [None, "9999999999999.99", "-123.46"]
    with pytest.raises(ValueError, match="beyond"):
        fixed_decimals(pa.array([1e12]), 6)  # six places leave twelve digits


def test_dates_numbers_and_booleans_are_never_neutralised():
    # A date (2026-01-31) or a negative number is written as such, never as text a spreadsheet could run.
    for values in (
        pa.array([datetime.date(2026, 1, 31), None], pa.date32()),
        pa.array([-3.5, None], pa.float64()),
        pa.array([True, None]),
    ):
        out, changed = neutralise_formulas(values)
        assert out.equals(values) and changed == 0


def test_fixed_decimals_of_a_nullable_double_keep_the_empty_cells_empty():
    # days_to_next_order: empty when no order is expected within 180 days.
    out = fixed_decimals(pa.chunked_array([[12.25, None], [None, 180.0]]), 1)
    assert [None if v is None else str(v) for v in out.to_pylist()] == ["12.2", None, None, "180.0"]
    assert out.null_count == 2


def test_fixed_decimals_refuse_a_column_that_is_not_numbers():
    with pytest.raises(TypeError, match="date32"):
        fixed_decimals(pa.array([datetime.date(2026, 1, 31)], pa.date32()), 2)
    with pytest.raises(TypeError, match="string"):
        fixed_decimals(pa.array(["1.5"]), 2)
