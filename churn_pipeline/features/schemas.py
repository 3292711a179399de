"""Pandera schemas for the validated (typed) contract tables, derived from :mod:`features.contract`.

A schema describes a table *after* parsing (see :mod:`features.validation`): ids and strings as pandas
``str``, timestamps as naive UTC ``datetime64[us]``, floats as ``float64``, ints as nullable ``Int64``, bools
as nullable ``boolean``. Columns, their types and nullability come from the contract; this module only adds
the row rules the contract states in words:

- ids, timestamps and every other non-nullable column are never missing;
- ``orders.amount``, ``orders.discount_amount``, ``orders.items`` >= 0; ``returns.amount`` > 0 (shop
  currency); every float is finite;
- an event's ``value`` lies in the closed range :data:`features.contract.EVENT_VALUE_RANGES` gives its
  ``event_type`` (types without a range, and missing values, pass);
- ``contacts.group`` is one of :data:`features.contract.CONTACT_GROUPS` (the parser has lower-cased and stripped
  it); ``contacts.cost`` >= 0 where given;
- every timestamp lies in the closed interval [``min_timestamp``, ``max_timestamp``] (naive UTC).

Each rule's ``error`` text is the rule name shown in the validation report and quarantine reasons.
No I/O here, and no work at import: pandera is imported, through :mod:`churn_pipeline.pandera_shim`, when the
first schema is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow

from churn_pipeline.features.contract import (
    CONTACT_GROUPS,
    EVENT_VALUE_RANGES,
    TABLES,
    ColumnKind,
    ColumnSpec,
    TableSpec,
)
from churn_pipeline.pandera_shim import pandera

if TYPE_CHECKING:
    import pandera.pandas as pa

# pandas 3's default string dtype (missing = NaN): what `pd.Series(["a"])` gives, so no conversion is needed.
STRING_DTYPE = pd.StringDtype(na_value=np.nan)

PANDAS_DTYPES: dict[ColumnKind, object] = {
    "id": STRING_DTYPE,
    "string": STRING_DTYPE,
    "timestamp": np.dtype("datetime64[us]"),
    "float": np.dtype("float64"),
    "int": pd.Int64Dtype(),
    "bool": pd.BooleanDtype(),
}

ARROW_TYPES: dict[ColumnKind, pyarrow.DataType] = {
    "id": pyarrow.string(),
    "string": pyarrow.string(),
    "timestamp": pyarrow.timestamp("us"),
    "float": pyarrow.float64(),
    "int": pyarrow.int64(),
    "bool": pyarrow.bool_(),
}

# Lower bounds the contract fixes per (table, column): (bound, strict).
_LOWER_BOUNDS: dict[tuple[str, str], tuple[float, bool]] = {
    ("orders", "amount"): (0.0, False),
    ("orders", "discount_amount"): (0.0, False),
    ("orders", "items"): (0.0, False),
    ("returns", "amount"): (0.0, True),
    ("contacts", "cost"): (0.0, False),
}
# Closed vocabularies per (table, column), checked after the parser's normalisation, with the rule's name.
_VOCABULARIES: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("contacts", "group"): (CONTACT_GROUPS, "group is " + " or ".join(CONTACT_GROUPS)),
}

EVENT_VALUE_RULE = "value within the range of its event_type"


def _spec(table: str | TableSpec) -> TableSpec:
    return table if isinstance(table, TableSpec) else TABLES[table]


# The rule name reported for a missing value in a non-nullable column: the column's name, then this.
MISSING_SUFFIX = " is missing"


def _column_checks(
    spec: TableSpec, col: ColumnSpec, min_timestamp: pd.Timestamp | None, max_timestamp: pd.Timestamp | None
) -> list[pa.Check]:
    pa = pandera()
    checks: list[pa.Check] = []
    bound = _LOWER_BOUNDS.get((spec.name, col.name))
    if bound is not None:
        value, strict = bound
        shown = int(value) if float(value).is_integer() else value
        if strict:
            checks.append(pa.Check.gt(value, error=f"{col.name} > {shown}"))
        else:
            checks.append(pa.Check.ge(value, error=f"{col.name} >= {shown}"))
    vocabulary = _VOCABULARIES.get((spec.name, col.name))
    if vocabulary is not None:
        allowed, rule = vocabulary
        checks.append(pa.Check.isin(list(allowed), error=rule))
    if col.kind == "float":
        checks.append(pa.Check(lambda s: np.isfinite(s), error=f"{col.name} is finite"))
    if col.kind == "timestamp":
        # Closed interval: a timestamp exactly on a bound is plausible.
        if min_timestamp is not None:
            checks.append(pa.Check.ge(min_timestamp, error=f"{col.name} >= min_timestamp ({min_timestamp})"))
        if max_timestamp is not None:
            checks.append(pa.Check.le(max_timestamp, error=f"{col.name} <= max_timestamp ({max_timestamp})"))
    return checks


def _event_value_in_range(df: pd.DataFrame) -> pd.Series | bool:
    """True per row unless ``value`` is outside its ``event_type``'s closed range."""
    if "value" not in df.columns or "event_type" not in df.columns:
        return True
    value = df["value"].to_numpy(dtype="float64", na_value=np.nan)
    ok = np.ones(len(df), dtype=bool)
    # One vectorised comparison per ranged type (a handful): mapping millions of strings is far slower.
    for event_type, (low, high) in EVENT_VALUE_RANGES.items():
        of_type = (df["event_type"] == event_type).to_numpy(dtype=bool, na_value=False)
        ok &= ~of_type | np.isnan(value) | ((value >= low) & (value <= high))
    return pd.Series(ok, index=df.index)


def table_schema(
    table: str | TableSpec,
    *,
    min_timestamp: pd.Timestamp | None = None,
    max_timestamp: pd.Timestamp | None = None,
) -> pa.DataFrameSchema:
    """The pandera schema of one validated contract table.

    Grain: one row per row of the contract table. Optional columns may be absent (``required=False``);
    extra columns are refused (``strict``), because the parser drops them first. ``min_timestamp`` and
    ``max_timestamp`` are naive UTC instants bounding every timestamp column (inclusive); None = no bound.
    """
    pa = pandera()
    spec = _spec(table)
    columns = {
        c.name: pa.Column(
            PANDAS_DTYPES[c.kind],
            checks=_column_checks(spec, c, min_timestamp, max_timestamp),
            nullable=c.nullable,
            required=c.required,
        )
        for c in spec.columns
    }
    checks = []
    if spec.name == "events":
        # Frame-level because the allowed range depends on another column (event_type).
        checks.append(pa.Check(_event_value_in_range, ignore_na=False, error=EVENT_VALUE_RULE))
    return pa.DataFrameSchema(columns, checks=checks, strict=True, name=spec.name, coerce=False)


def arrow_schema(table: str | TableSpec, columns: list[str] | tuple[str, ...] | None = None) -> pyarrow.Schema:
    """Arrow schema of a validated table's Parquet file: the present ``columns``, in contract order."""
    spec = _spec(table)
    wanted = set(spec.column_names if columns is None else columns)
    return pyarrow.schema([(c.name, ARROW_TYPES[c.kind]) for c in spec.columns if c.name in wanted])
