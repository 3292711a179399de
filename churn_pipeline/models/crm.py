"""Turning scores into a file a CRM can import safely: formula-safe text, pseudonymous ids, fixed decimals.

Grain: one row per scored customer; every function here is vectorised (Arrow compute / numpy) and pure.

- **Formula injection** (OWASP "CSV Injection"): a spreadsheet treats a cell starting with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return as a formula, so a crafted customer id or text could run on an analyst's
  machine. :func:`neutralise_formulas` prefixes such text cells with a single quote (``'=1+1``), which the
  spreadsheet shows as text; only text columns are touched, so numbers (e.g. ``-3.5``) stay numbers, and dates
  (``2026-01-31``) and empty cells stay as they are.
- **Pseudonymous ids**: :func:`pseudonymise` replaces each id by ``p`` + 16 hex digits of a keyed 64-bit
  SipHash-2-4 of the id (key derived from a secret that never lives in the repository). The same id and key give
  the same pseudonym on every run, so the CRM can still match customers; without the key the id cannot be
  recovered or tested. (64 bits: the chance of any collision among a million ids is about 3e-8.)
- **Fixed decimals**: :func:`fixed_decimals` rounds to a fixed number of places and makes the value a decimal,
  so a CSV shows ``0.250000`` rather than ``0.25`` or ``2.5e-01``: the same number always has the same text.
  A NaN, an infinity or a number too large for the decimal raises ``ValueError``; it is never written as
  another number. An empty cell (null) stays empty; a column that is not numbers (text, dates) is refused with
  ``TypeError``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["FORMULA_PREFIXES", "fixed_decimals", "keyed_hash", "neutralise_formulas", "pseudonymise"]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START = "^[=+\\-@\t\r]"
# Digits of the export's decimals (decimal128(18, places)): up to 10 ** (18 - places), exclusive.
DECIMAL_DIGITS = 18


def neutralise_formulas(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, int]:
    """Text cells starting with a formula character get a leading ``'``; returns the new array and how many cells
    changed. Nulls stay null; an array that is not text (numbers, dates, booleans) is returned as it is, with 0:
    it is written as numbers or dates, which a spreadsheet never runs."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return values, 0
    risky = pc.fill_null(pc.match_substring_regex(values, _FORMULA_START), False)
    changed = int(pc.sum(risky).as_py() or 0)
    if changed == 0:
        return values, 0
    quoted = pc.binary_join_element_wise(pa.scalar("'"), values, "")
    return pc.if_else(risky, quoted, values), changed


def _hash_key(secret: str) -> str:
    """A 16-character key for pandas' SipHash from any secret (SHA-256, mapped to printable ASCII)."""
    digest = hashlib.sha256(secret.encode("utf-8")).digest()[:16]
    return "".join(chr(33 + b % 94) for b in digest)


def keyed_hash(values: Sequence[str] | np.ndarray | pd.Series, secret: str) -> np.ndarray:
    """A keyed 64-bit SipHash-2-4 of each value's UTF-8 text (uint64): stable across runs, machines and row order,
    unpredictable without ``secret``."""
    text = np.asarray(pd.Series(values, dtype=object).astype(str), dtype=object)
    return pd.util.hash_array(text, encoding="utf8", hash_key=_hash_key(secret), categorize=False)


def pseudonymise(ids: Sequence[str] | np.ndarray | pd.Series, secret: str) -> np.ndarray:
    """``p`` + 16 lowercase hex digits per id (object array of str)."""
    if not secret:
        raise ValueError("the pseudonymisation key is empty")
    # Hex digits from the big-endian bytes with a lookup table: no per-id Python formatting.
    nibbles = keyed_hash(ids, secret).astype(">u8").view(np.uint8).reshape(-1, 8)
    nibbles = np.stack([nibbles >> 4, nibbles & 15], axis=2).reshape(-1, 16)
    digits = np.frombuffer(b"0123456789abcdef", dtype="S1")[nibbles]
    return np.char.add("p", digits.view("S16").ravel().astype(str)).astype(object)


def fixed_decimals(values: pa.Array | pa.ChunkedArray, places: int) -> pa.Array:
    """Numbers rounded half to even to ``places`` decimals, as an Arrow decimal (printed with exactly that many).

    Raises ``ValueError`` (with the count, never a value) when a number is NaN, infinite or too large for the
    decimal (``abs >= 10 ** (18 - places)``): a cast that cannot hold a value must never write another one
    (an unchecked cast printed 1.5e17 and NaN as ``0.00``). Nulls stay null (an empty cell in the CSV). Raises
    ``TypeError`` for an array that is not numbers (text, dates: write those as they are)."""
    kind = values.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        raise TypeError(f"fixed decimals are for numbers, not {kind}")
    numbers = pc.cast(values, pa.float64())
    limit = 10.0 ** (DECIMAL_DIGITS - places)
    fits = pc.and_(pc.is_finite(numbers), pc.less(pc.abs(numbers), limit))
    bad = len(numbers) - numbers.null_count - int(pc.sum(fits).as_py() or 0)
    if bad:
        raise ValueError(
            f"{bad:,} of {len(numbers):,} values are NaN, infinite or beyond +-{limit:g}, which a decimal with "
            f"{places} places cannot hold"
        )
    rounded = pc.round(numbers, ndigits=places, round_mode="half_to_even")
    try:
        return pc.cast(rounded, pa.decimal128(DECIMAL_DIGITS, places), safe=True)
    except pa.ArrowInvalid as exc:  # rounding pushed a value just below the limit onto it
        raise ValueError(f"a value cannot be written with {places} decimal places: {exc}") from None
