"""Contract table validation: parse raw values into canonical types, apply the rules, split clean/quarantine.

Pure functions: no I/O, no params. :mod:`pipelines.validate` reads the files and writes the results.

Grain and row numbers
---------------------
Every function works on one table (or one batch of a large table) at the grain the contract defines (one
row per order, refund, customer, event or contact). Rows are identified by ``_row``, their 0-based position among the
source file's data rows (a CSV's header is not counted, so CSV line = ``_row + 2``); a batch passes
``first_row`` so the numbers stay global across batches.

Parsing
-------
- ids: pandas ``str``, surrounding spaces stripped, leading zeros kept. Empty cells and null spellings
  (``nan``, ``NULL``, ``None``, ``NA``, ...) are missing. An integer-typed id column (Parquet) is converted
  to text with a warning: zeros it lost cannot be recovered.
- timestamps: ``pd.to_datetime(..., utc=True, format="ISO8601")``; values that are not ISO 8601 but look like
  dates are parsed with ``format="mixed"`` (month first) and reported as a warning. Naive values are read as
  UTC, aware ones converted to UTC; a column mixing zones is accepted and reported with counts per zone.
  Stored as naive UTC ``datetime64[us]``.
- floats/ints/bools: parsed from text; an int must be whole; bools accept true/false, yes/no, 1/0, t/f, y/n.
- ``contacts.group`` is lower-cased (after the strip every text gets): ``" Treatment"`` is ``treatment``.
- A value present but not parseable quarantines its row: ``unparseable <column>: <value>``.

Rules (each failing row is quarantined with the rule as reason; a row collects all its reasons)
------------------------------------------------------------------------------------------------
- the pandera schema of :mod:`features.schemas` (missing ids/timestamps, amounts, event value ranges,
  timestamps within [min_timestamp, max_timestamp]);
- exact duplicate rows (orders, returns, customers, contacts): the first copy stays, later copies are
  quarantined;
- conflicting duplicate keys (``orders.order_id``, ``customers.customer_id`` with differing rows): every copy
  is quarantined, since nothing says which one is right;
- orders placed more than ``signup_grace`` before their customer's ``signup_ts``;
- returns whose ``order_id`` is not among the clean orders, whose ``return_ts`` precedes the order's
  ``order_ts``, or whose ``customer_id`` differs from the order's;
- contacts whose ``customer_id`` is in neither the clean customers nor the clean orders (a contact of a customer
  the shop's data does not know cannot be measured); ``group`` not treatment or control; ``cost`` < 0.

Severity: ``error`` problems quarantine rows; ``warning`` problems keep every row (extra columns dropped,
integer ids, guessed timestamp formats, mixed time zones, orders of customers absent from ``customers``;
contacts with an action outside :data:`features.contract.KNOWN_ACTIONS`, contacts dated before their customer's
first clean order or of a customer without one (a shop may contact sign-ups), a contacts table with treatment
rows but not a single control row). A problem may carry a ``detail``: one sentence with the counts and the fix,
shown under the problem table and kept in the report.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.compute as pc

from churn_pipeline.features.contract import KNOWN_ACTIONS, TABLES, ColumnSpec, TableSpec
from churn_pipeline.features.schemas import EVENT_VALUE_RULE, MISSING_SUFFIX, STRING_DTYPE, table_schema
from churn_pipeline.pandera_shim import pandera

Severity = Literal["error", "warning"]

MAX_EXAMPLES = 5
# Long cell values (free text, broken exports) would make reasons unreadable.
MAX_VALUE_CHARS = 80
NULL_TOKENS = frozenset({"nan", "null", "none", "na", "n/a", "#n/a", "<na>", "nat"})
BOOL_TOKENS: dict[str, bool] = {
    **dict.fromkeys(("true", "t", "yes", "y", "1", "1.0"), True),
    **dict.fromkeys(("false", "f", "no", "n", "0", "0.0"), False),
}
# Tables where a row repeated verbatim is an export glitch. Events may legitimately repeat (two page views in
# the same microsecond), so they are kept. A contact repeated verbatim would count the customer twice.
EXACT_DUPLICATE_TABLES = ("orders", "returns", "customers", "contacts")

NAIVE_ZONE = "naive (read as UTC)"
UTC_ZONE = "UTC (Z/+00:00)"
MIXED_ZONES_RULE = "mixed time zones (all converted to UTC)"
INTEGER_ID_RULE = "integer-typed id: leading zeros cannot be recovered (export ids as text)"
GUESSED_FORMAT_RULE = "timestamps not in ISO 8601: format guessed (month first)"
EXTRA_COLUMNS_RULE = "extra columns dropped (not in the contract)"
EXACT_DUPLICATE_RULE = "exact duplicate row"
UNKNOWN_CUSTOMER_RULE = "customer_id not in customers (kept)"
RETURN_UNKNOWN_ORDER_RULE = "order_id not among the clean orders (unknown or quarantined)"
RETURN_BEFORE_ORDER_RULE = "return_ts before its order's order_ts"
RETURN_OTHER_CUSTOMER_RULE = "customer_id differs from its order's customer_id"
EMPTY_OPTIONAL_RULE = "column empty in every row: dropped, as if absent (fill it in the export to use it)"
CONTACT_UNKNOWN_CUSTOMER_RULE = "customer_id in neither the clean customers nor clean orders (unknown or quarantined)"
CONTACT_UNKNOWN_ACTION_RULE = "action the pipeline does not know (kept, measured as it is)"
CONTACT_BEFORE_FIRST_ORDER_RULE = "contact_ts before the customer's first order, or no order at all (kept)"
CONTACT_NO_CONTROL_RULE = "treatment rows but no control rows: the actions' effect cannot be measured"
# Unknown action names listed in a problem's detail at most.
MAX_LISTED_ACTIONS = 10
# Column names shown in a message at most, each cut to this many characters: a header-less or broken file's
# "column names" are data.
MAX_LISTED_COLUMNS = 10
MAX_NAME_CHARS = 40
# Values of these columns are never shown in a problem's examples (report, console): ids say who a customer is.
# Values that look like an e-mail address are hidden in every column (a shifted CSV puts them anywhere).
_EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
HIDDEN_VALUE = "<hidden: id or personal data>"

# An offset only counts when it follows a time of day; "2024-01-05" must not read as offset "-05".
_ZONE_PATTERN = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)$"
# Only text that looks like a date is handed to the guessing parser: dateutil reads "5" as "the 5th of this
# month", which would turn a misplaced number into a plausible timestamp.
_DATE_LIKE_PATTERN = r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"
# Fractional seconds past the sixth digit (nanoseconds): group 1 keeps the time up to the microsecond.
_SUB_MICROSECOND_PATTERN = r"(\d{2}:\d{2}:\d{2}[.,]\d{6})\d+"


@dataclass(frozen=True)
class Problem:
    """One rule broken in one column of one table: how many rows, a few examples (``row N: value``)."""

    table: str
    column: str
    rule: str
    rows: int
    examples: tuple[str, ...] = ()
    severity: Severity = "error"
    # One sentence with the counts and the fix, for the problems a rule name cannot explain alone ("" = none).
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "table": self.table,
            "column": self.column,
            "rule": self.rule,
            "rows": self.rows,
            "examples": list(self.examples),
            "severity": self.severity,
        }
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class Bounds:
    """Time boundaries of plausible data, all naive UTC.

    ``min_timestamp``/``max_timestamp`` bound every timestamp column (inclusive, None = unbounded);
    ``signup_grace`` is how long an order may precede its customer's ``signup_ts``.
    """

    min_timestamp: pd.Timestamp | None = None
    max_timestamp: pd.Timestamp | None = None
    signup_grace: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(days=1))


@dataclass
class TableResult:
    """A validated table (or batch).

    ``clean``: typed rows that passed every rule, contract columns present in contract order, index 0..n-1.
    ``quarantine``: the rejected rows' raw columns as text plus ``_row`` and ``_reason`` (reasons joined by
    ``"; "``). ``problems``: one entry per (column, rule), errors and warnings. ``zone_counts``: rows per time
    zone per timestamp column, kept so batches can be combined (see :func:`combine_problems`).
    """

    table: str
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    problems: list[Problem]
    rows_in: int
    columns: tuple[str, ...]
    dropped_columns: tuple[str, ...] = ()
    zone_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # Rows with a value (parsed or not) per contract column present: 0 means the column is empty throughout.
    present: dict[str, int] = field(default_factory=dict)

    @property
    def rows_clean(self) -> int:
        return len(self.clean)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine)


@dataclass
class _Parsed:
    values: pd.Series
    bad: pd.Series
    problems: list[Problem] = field(default_factory=list)
    zones: dict[str, int] | None = None


# --------------------------------------------------------------------------------------------------------
# Columns and failures
# --------------------------------------------------------------------------------------------------------


def missing_columns(table: str | TableSpec, columns: Iterable[str]) -> list[str]:
    """Required contract columns of ``table`` absent from ``columns`` (contract order)."""
    spec = TABLES[table] if isinstance(table, str) else table
    have = set(columns)
    return [c for c in spec.required_columns if c not in have]


def _normalised(name: object) -> str:
    return str(name).strip().lower()


def column_hints(missing: Iterable[str], columns: Iterable[str]) -> dict[str, str]:
    """For each missing column, the existing column that is the same name but for case and surrounding spaces
    (``' Customer_ID '`` for ``customer_id``). Never a fuzzy match: ``order_id`` is not ``order_ts``."""
    by_name: dict[str, str] = {}
    for c in columns:
        by_name.setdefault(_normalised(c), str(c))
    return {name: by_name[name] for name in missing if name in by_name}


def looks_like_data(table: str | TableSpec, columns: Sequence[object]) -> bool:
    """True when no column name of a file is a contract column of ``table`` (case and spaces ignored): the
    first row is most likely data, i.e. the file has no header row."""
    spec = TABLES[table] if isinstance(table, str) else table
    names = set(spec.column_names)
    return bool(len(columns)) and not any(_normalised(c) in names for c in columns)


def column_listing(columns: Sequence[object], limit: int = MAX_LISTED_COLUMNS) -> str:
    """At most ``limit`` column names, each cut to :data:`MAX_NAME_CHARS`, and how many more there are."""
    shown = [repr(str(c)[:MAX_NAME_CHARS]) for c in list(columns)[:limit]]
    more = len(columns) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "") if shown else "no columns"


def shown_value(table: str, column: str, value: str) -> str:
    """``value`` as a problem example may show it: nothing for id columns (the example is the row number only),
    :data:`HIDDEN_VALUE` for anything that looks like an e-mail address."""
    spec = TABLES.get(table)
    if spec is not None and column in spec.column_names and spec.column(column).kind == "id":
        return ""
    return HIDDEN_VALUE if _EMAIL_PATTERN.search(value) else value


def extra_columns_problem(table: str, extras: Sequence[str], rows: int) -> Problem:
    """The warning for columns outside the contract (they are dropped, every row is kept)."""
    named = ", ".join(extras) if len(extras) <= MAX_LISTED_COLUMNS else column_listing(extras)
    examples = tuple(str(c)[:MAX_NAME_CHARS] for c in extras[:MAX_EXAMPLES])
    return Problem(table, named, EXTRA_COLUMNS_RULE, rows, examples, "warning")


def empty_columns(table: str | TableSpec, present: dict[str, int]) -> tuple[list[str], list[str]]:
    """Contract columns without a single value (``present`` from :class:`TableResult`, summed over batches):
    (required ones, optional ones), contract order. A table without rows has no empty columns."""
    spec = TABLES[table] if isinstance(table, str) else table
    empty = [c for c in spec.columns if c.name in present and present[c.name] == 0]
    return [c.name for c in empty if c.required], [c.name for c in empty if not c.required]


def empty_required_message(where: str, table: str, columns: Sequence[str], rows: int) -> str:
    """The fatal error for required columns that hold no value in any row."""
    return (
        f"{where} (table {table}): required column(s) {', '.join(columns)} empty in all {rows:,} rows (every "
        f"value blank or a null spelling such as NULL/NaN): the table cannot be used without them. Fix the export "
        f"so that it fills them (check the column mapping, the delimiter and the header row) and run again."
    )


def empty_optional_problem(table: str, column: str, rows: int) -> Problem:
    """The warning for an optional column without a value: it is dropped, so features treat it as absent."""
    return Problem(table, column, EMPTY_OPTIONAL_RULE, rows, (), "warning")


def _failures(rows: pd.Index | np.ndarray, column: str, rule: str, values: pd.Series | str = "") -> pd.DataFrame:
    """Failure records: one per (row, rule); ``value`` is the offending value as text (may be empty)."""
    rows = np.asarray(rows, dtype="int64")
    if isinstance(values, pd.Series):
        text = _as_text(values).fillna("<missing>").str.slice(0, MAX_VALUE_CHARS).to_numpy()
    else:
        text = np.full(len(rows), values, dtype=object)
    return pd.DataFrame(
        {
            "_row": rows,
            "column": pd.Series(column, index=range(len(rows)), dtype=STRING_DTYPE),
            "rule": pd.Series(rule, index=range(len(rows)), dtype=STRING_DTYPE),
            "value": pd.Series(text, dtype=STRING_DTYPE),
        }
    )


def _no_failures() -> pd.DataFrame:
    return _failures(np.empty(0, dtype="int64"), "", "")


def _concat_failures(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else _no_failures()


def _example(row: object, value: str) -> str:
    return f"row {row}: {value}" if value else f"row {row}"


def _examples(
    rows: pd.Index | np.ndarray, values: pd.Series | None = None, table: str = "", column: str = ""
) -> tuple[str, ...]:
    """The first few ``row N: value`` examples; values as :func:`shown_value` lets them be shown."""
    rows = np.asarray(rows)[:MAX_EXAMPLES]
    if values is None:
        return tuple(f"row {r}" for r in rows)
    text = _as_text(values.iloc[:MAX_EXAMPLES]).fillna("<missing>").str.slice(0, MAX_VALUE_CHARS)
    return tuple(_example(r, shown_value(table, column, v)) for r, v in zip(rows, text, strict=True))


# --------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------


def _decategorize(s: pd.Series) -> pd.Series:
    """A categorical (Parquet dictionary) column as plain values; int categories with gaps become floats."""
    if not isinstance(s.dtype, pd.CategoricalDtype):
        return s
    codes = s.cat.codes.to_numpy()
    values = pd.Series(s.cat.categories.take(np.maximum(codes, 0)), index=s.index)
    return values.where(codes >= 0)


def _as_text(s: pd.Series) -> pd.Series:
    """Any column as pandas ``str`` (missing stays missing), values untouched otherwise."""
    s = _decategorize(s)
    return s if s.dtype == STRING_DTYPE else s.astype(STRING_DTYPE)


def _clean_text(s: pd.Series, null_tokens: bool) -> pd.Series:
    """Text with surrounding spaces stripped; empty cells (and null spellings, if asked) become missing."""
    t = _as_text(s).str.strip()
    missing = t == ""
    if null_tokens:
        missing |= t.str.lower().isin(NULL_TOKENS)
    return t.mask(missing)


def _none(s: pd.Series) -> pd.Series:
    return pd.Series(False, index=s.index)


def _is_number(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def _parse_id(table: str, col: ColumnSpec, s: pd.Series) -> _Parsed:
    s = _decategorize(s)
    if not _is_number(s):
        return _Parsed(_clean_text(s, null_tokens=True), _none(s))
    present = s.notna()
    problem = Problem(
        table,
        col.name,
        INTEGER_ID_RULE,
        int(present.sum()),
        _examples(s.index[present]),
        "warning",
    )
    if pd.api.types.is_integer_dtype(s.dtype):
        return _Parsed(s.astype(STRING_DTYPE), _none(s), [problem])
    # Float ids come from integer columns with gaps; only whole numbers can be ids.
    f = s.astype("float64")
    whole = np.isfinite(f) & (f == np.floor(f)) & (f.abs() < 2.0**63)
    values = f.where(whole).astype("Int64").astype(STRING_DTYPE)
    return _Parsed(values, present & ~whole, [problem])


def _zone_counts(text: pd.Series) -> dict[str, int]:
    """Rows per written time zone: naive, UTC, or a normalised ``+HH:MM`` offset."""
    raw = text.str.extract(_ZONE_PATTERN, expand=False)
    compact = raw.str.replace(":", "", regex=False)
    compact = compact.where(compact.str.len() != 3, compact + "00")
    label = compact.str.slice(0, 3) + ":" + compact.str.slice(3, 5)
    utc = raw.str.upper().isin(["Z", "UTC"]) | compact.isin(["+0000", "-0000"])
    label = label.mask(utc, UTC_ZONE).fillna(NAIVE_ZONE)
    return {str(k): int(v) for k, v in label.value_counts().items()}


def _parse_timestamp(table: str, col: ColumnSpec, s: pd.Series) -> _Parsed:
    s = _decategorize(s)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        tz = getattr(s.dtype, "tz", None)
        if tz is None:
            values, zone = s, NAIVE_ZONE
        else:
            values = s.dt.tz_convert("UTC").dt.tz_localize(None)
            zone = UTC_ZONE if str(tz) in ("UTC", "UTC+00:00") else str(tz)
        return _Parsed(values.astype("datetime64[us]"), _none(s), zones={zone: int(s.notna().sum())})
    if _is_number(s) or pd.api.types.is_bool_dtype(s.dtype):
        # Epoch numbers have no unit we could trust (s, ms, us?); refuse rather than guess.
        return _Parsed(pd.Series(pd.NaT, index=s.index, dtype="datetime64[us]"), s.notna())
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("date", "datetime", "datetime64"):
        parsed = pd.to_datetime(s, utc=True, errors="coerce")
        values = parsed.dt.tz_localize(None).astype("datetime64[us]")
        return _Parsed(values, s.notna() & values.isna())

    text = _clean_text(s, null_tokens=True)
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    digits = text
    if parsed.dt.unit == "ns":
        # Nanosecond digits make pandas parse at ns, whose range (1677..2262) turns a 9999-12-31 into NaT (or
        # an OutOfBoundsDatetime when guessed values are put in): cut the digits past the microsecond, as the
        # stored datetime64[us] would, and parse again, so such dates are quarantined as out of bounds.
        digits = text.str.replace(_SUB_MICROSECOND_PATTERN, r"\1", regex=True)
        parsed = pd.to_datetime(digits, utc=True, format="ISO8601", errors="coerce")
    if parsed.dt.unit == "ns":  # still (nothing else makes it so): microseconds before guessed values go in
        parsed = parsed.astype("datetime64[us, UTC]")
    problems = []
    guess = text.notna() & parsed.isna() & text.str.contains(_DATE_LIKE_PATTERN, regex=True)
    if guess.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas warns that it parses element by element; we report it
            guessed = pd.to_datetime(digits[guess], utc=True, format="mixed", errors="coerce")
        if guessed.dt.unit == "ns":
            guessed = guessed.astype("datetime64[us, UTC]")
        parsed = parsed.copy()
        parsed[guess] = guessed
        ok = guess & parsed.notna()
        if ok.any():
            problems.append(
                Problem(
                    table,
                    col.name,
                    GUESSED_FORMAT_RULE,
                    int(ok.sum()),
                    _examples(s.index[ok], text[ok], table, col.name),
                    "warning",
                )
            )
    bad = text.notna() & parsed.isna()
    values = parsed.dt.tz_localize(None).astype("datetime64[us]")
    return _Parsed(values, bad, problems, zones=_zone_counts(text[parsed.notna()]))


def _parse_float(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    s = _decategorize(s)
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(np.nan, index=s.index), s.notna()
    if _is_number(s):
        return s.astype("float64"), _none(s)
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in (
        "decimal",
        "floating",
        "integer",
        "mixed-integer-float",
    ):
        values = pd.to_numeric(s, errors="coerce").astype("float64")
        return values, s.notna() & values.isna()
    text = _clean_text(s, null_tokens=True)
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    return values, text.notna() & values.isna()


def _parse_number(col: ColumnSpec, s: pd.Series) -> _Parsed:
    values, bad = _parse_float(s)
    if col.kind == "float":
        return _Parsed(values, bad)
    whole = np.isfinite(values) & (values == np.floor(values)) & (values.abs() < 2.0**63)
    return _Parsed(values.where(whole).astype("Int64"), bad | (values.notna() & ~whole))


def _parse_bool(s: pd.Series) -> _Parsed:
    s = _decategorize(s)
    if pd.api.types.is_bool_dtype(s.dtype):
        return _Parsed(s.astype("boolean"), _none(s))
    if _is_number(s):
        values = s.map({1: True, 0: False}).astype("boolean")
        return _Parsed(values, s.notna() & values.isna())
    text = _clean_text(s, null_tokens=True).str.lower()
    values = text.map(BOOL_TOKENS).astype("boolean")
    return _Parsed(values, text.notna() & values.isna())


def _parse_column(table: str, col: ColumnSpec, s: pd.Series) -> _Parsed:
    if col.kind == "id":
        return _parse_id(table, col, s)
    if col.kind == "timestamp":
        return _parse_timestamp(table, col, s)
    if col.kind in ("float", "int"):
        return _parse_number(col, s)
    if col.kind == "bool":
        return _parse_bool(s)
    return _Parsed(_clean_text(s, null_tokens=False), _none(s))


@dataclass
class ParsedTable:
    """A raw table parsed to canonical types: ``typed`` (index = ``_row``), parse failures and warnings."""

    table: str
    typed: pd.DataFrame
    failures: pd.DataFrame
    problems: list[Problem]
    dropped_columns: tuple[str, ...]
    zone_counts: dict[str, dict[str, int]]
    present: dict[str, int] = field(default_factory=dict)


def parse_table(table: str, raw: pd.DataFrame, first_row: int = 0) -> ParsedTable:
    """Parse a raw table (CSV text or Parquet types) into the contract's canonical types.

    ``raw`` must hold every required column (see :func:`missing_columns`); extra columns are dropped with a
    warning, absent optional columns stay absent. Row ``i`` of ``raw`` is ``_row = first_row + i``.
    """
    spec = TABLES[table]
    missing = missing_columns(spec, raw.columns)
    if missing:
        raise ValueError(f"table {table!r} lacks required column(s) {missing}")
    raw = raw.set_axis(pd.RangeIndex(first_row, first_row + len(raw)), axis=0)
    extras = [str(c) for c in raw.columns if c not in spec.column_names]
    problems = [extra_columns_problem(table, extras, len(raw))] if extras else []
    columns, failures, zones = {}, [], {}
    present = {}
    for name in [c for c in spec.column_names if c in raw.columns]:
        col = spec.column(name)
        parsed = _parse_column(table, col, raw[name])
        columns[name] = parsed.values
        # A value is present when it parsed or is there but unparseable: null spellings and blanks are not.
        present[name] = int((parsed.values.notna() | parsed.bad).sum())
        problems += parsed.problems
        if parsed.zones is not None:
            zones[name] = parsed.zones
        if parsed.bad.any():
            failures.append(_failures(raw.index[parsed.bad], name, f"unparseable {name}", raw[name][parsed.bad]))
    if table == "contacts" and "group" in columns:
        columns["group"] = columns["group"].str.lower()  # " Treatment" is treatment; the schema checks the rest
    typed = pd.DataFrame(columns, index=raw.index)
    return ParsedTable(table, typed, _concat_failures(failures), problems, tuple(extras), zones, present)


# --------------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------------


def schema_failures(table: str, typed: pd.DataFrame, bounds: Bounds) -> pd.DataFrame:
    """Rows of ``typed`` breaking the pandera schema of ``table``, as failure records (``lazy=True``)."""
    schema = table_schema(table, min_timestamp=bounds.min_timestamp, max_timestamp=bounds.max_timestamp)
    try:
        schema.validate(typed, lazy=True)
    except pandera().errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return _no_failures()
    schema_level = cases["index"].isna()
    if schema_level.any():
        # Dtype or column errors after parsing mean the parser is wrong, not the data.
        detail = cases.loc[schema_level, ["column", "check", "failure_case"]].to_dict("records")
        raise TypeError(f"internal error: parsed {table} breaks schema-level checks: {detail}")
    # A frame-level check reports every column of a failing row; the offending one is `value`.
    frame_level = cases["schema_context"] == "DataFrameSchema"
    cases = cases[~frame_level | (cases["column"] == "value")]
    rows = cases["index"].astype("int64")
    rule = cases["check"].astype(STRING_DTYPE)
    column = cases["column"].astype(STRING_DTYPE)
    value = _as_text(cases["failure_case"].astype(object)).fillna("").str.slice(0, MAX_VALUE_CHARS)
    not_null = rule == "not_nullable"
    rule = rule.mask(not_null, column + MISSING_SUFFIX)
    value = value.mask(not_null, "")
    event_value = rule == EVENT_VALUE_RULE
    if event_value.any():
        types = typed["event_type"].reindex(rows[event_value].to_numpy()).fillna("<missing>").to_numpy()
        value = value.copy()
        value[event_value] = (
            "event_type " + pd.Series(types, index=value.index[event_value]) + ", value " + (value[event_value])
        )
    return pd.DataFrame(
        {
            "_row": rows.to_numpy(),
            "column": column.to_numpy(),
            "rule": rule.to_numpy(),
            "value": value.to_numpy(),
        }
    ).astype({"column": STRING_DTYPE, "rule": STRING_DTYPE, "value": STRING_DTYPE})


def _drop_missing_echo(schema: pd.DataFrame, parse: pd.DataFrame) -> pd.DataFrame:
    """Drop "X is missing" for values already reported as unparseable: the parse reason says more."""
    if not len(schema) or not len(parse):
        return schema
    keys = parse[["_row", "column"]].drop_duplicates().assign(_unparsed=True)
    merged = schema.merge(keys, on=["_row", "column"], how="left")
    echo = merged["_unparsed"].fillna(False).astype(bool) & (merged["rule"] == merged["column"] + MISSING_SUFFIX)
    return schema[~echo.to_numpy()].reset_index(drop=True)


def duplicate_failures(table: str, typed: pd.DataFrame, parsed_ok: pd.Series | np.ndarray) -> pd.DataFrame:
    """Exact duplicate rows (later copies) and conflicting duplicate keys (all copies).

    Exact duplicates are looked for among ``parsed_ok`` rows only: two different unparseable dates both parse
    to NaT and would look identical. Key conflicts count every row whose key is present, whatever else is
    wrong with it, because any copy may be the true one.
    """
    spec = TABLES[table]
    parsed_ok = np.asarray(parsed_ok, dtype=bool)
    parts = []
    exact = pd.Series(False, index=typed.index)
    if table in EXACT_DUPLICATE_TABLES and parsed_ok.any():
        sub = typed[parsed_ok]
        later = sub.duplicated(keep="first")
        if later.any():
            digest = pd.util.hash_pandas_object(sub, index=False).to_numpy()
            first = pd.Series(sub.index, index=sub.index).groupby(digest).transform("min")
            parts.append(
                _failures(sub.index[later], "", EXACT_DUPLICATE_RULE, "same as row " + first[later].astype(str))
            )
            exact = later.reindex(typed.index, fill_value=False)
    if spec.key is not None and table in ("orders", "customers") and len(typed):
        key = typed.loc[~exact, spec.key]
        conflict = key.notna() & key.duplicated(keep=False)
        if conflict.any():
            copies = key[conflict].map(key[conflict].value_counts()).astype(str)
            parts.append(
                _failures(
                    key.index[conflict],
                    spec.key,
                    f"duplicate {spec.key} with differing rows (all copies)",
                    key[conflict] + " in " + copies + " rows",
                )
            )
    return _concat_failures(parts)


def _positions(keys: pd.Series, reference: pd.Series) -> np.ndarray:
    """Position of each key in ``reference`` (unique values), -1 where absent or missing.

    A hash lookup in Arrow: pandas' ``isin``/``map`` on string columns loop in Python over millions of ids.
    """
    found = pc.index_in(_arrow_text(keys), value_set=_arrow_text(reference))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")


def _arrow_text(s: pd.Series) -> pyarrow.Array:
    """A ``str`` column as an Arrow string array (zero-copy for pandas' Arrow-backed strings)."""
    array = pyarrow.array(s)
    if isinstance(array, pyarrow.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pyarrow.large_string())


def _take(values: pd.Series, positions: np.ndarray, index: pd.Index) -> pd.Series:
    """``values`` at ``positions`` (from :func:`_positions`), missing where the position is -1."""
    taken = values.iloc[np.maximum(positions, 0)].set_axis(index)
    return taken.where(positions >= 0)


def signup_failures(orders: pd.DataFrame, customers: pd.DataFrame, grace: pd.Timedelta) -> pd.DataFrame:
    """Orders placed more than ``grace`` before their customer's ``signup_ts`` (customers: clean, unique)."""
    if not len(customers):
        return _no_failures()
    at = _positions(orders["customer_id"], customers["customer_id"])
    signed = _take(customers["signup_ts"], at, orders.index)
    early = orders["order_ts"] < signed - grace
    if not early.any():
        return _no_failures()
    days = grace / pd.Timedelta(days=1)
    value = orders["order_ts"][early].astype(str) + " < signup_ts " + signed[early].astype(str)
    return _failures(
        orders.index[early], "order_ts", f"order more than {days:g} day(s) before customer signup_ts", value
    )


def return_failures(returns: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """Returns of orders not among the clean ``orders``, before their order, or booked on another customer."""
    at = _positions(returns["order_id"], orders["order_id"])
    unknown = pd.Series((at < 0), index=returns.index) & returns["order_id"].notna()
    order_ts = _take(orders["order_ts"], at, returns.index)
    early = returns["return_ts"] < order_ts
    owner = _take(orders["customer_id"], at, returns.index)
    other = owner.notna() & returns["customer_id"].notna() & (owner != returns["customer_id"])
    return _concat_failures(
        [
            _failures(returns.index[unknown], "order_id", RETURN_UNKNOWN_ORDER_RULE, returns["order_id"][unknown]),
            _failures(
                returns.index[early],
                "return_ts",
                RETURN_BEFORE_ORDER_RULE,
                returns["return_ts"][early].astype(str) + " < order_ts " + order_ts[early].astype(str),
            ),
            _failures(
                returns.index[other],
                "customer_id",
                RETURN_OTHER_CUSTOMER_RULE,
                returns["customer_id"][other] + " vs order's " + owner[other],
            ),
        ]
    )


def unknown_customers_problem(orders: pd.DataFrame, customers: pd.DataFrame) -> Problem | None:
    """Warning: clean orders whose customer is absent from the clean customers table (rows kept). ``orders`` is
    indexed by ``_row``, so the examples name source rows."""
    unknown = pd.Series(_positions(orders["customer_id"], customers["customer_id"]) < 0, index=orders.index)
    if not unknown.any():
        return None
    return Problem(
        "orders",
        "customer_id",
        UNKNOWN_CUSTOMER_RULE,
        int(unknown.sum()),
        _examples(orders.index[unknown.to_numpy()]),
        "warning",
    )


def _known(keys: pd.Series, references: Sequence[pd.Series]) -> pd.Series:
    """True where a key is among the values of any of ``references`` (an Arrow hash lookup; missing keys: False)."""
    values = pyarrow.chunked_array([_arrow_text(r) for r in references], type=pyarrow.large_string())
    found = pc.is_in(_arrow_text(keys), value_set=pc.unique(values.combine_chunks()), skip_nulls=True)
    return pd.Series(found.fill_null(False).to_numpy(zero_copy_only=False), index=keys.index) & keys.notna()


def contact_customer_failures(
    contacts: pd.DataFrame, orders: pd.DataFrame, customers: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Contacts of customers in neither the clean ``customers`` nor the clean ``orders``: nothing the shop's data
    says about them can be measured, so the rows are quarantined (a missing customer_id is a schema failure)."""
    references = [orders["customer_id"]] + ([customers["customer_id"]] if customers is not None else [])
    unknown = contacts["customer_id"].notna() & ~_known(contacts["customer_id"], references)
    return _failures(contacts.index[unknown.to_numpy()], "customer_id", CONTACT_UNKNOWN_CUSTOMER_RULE)


def contact_unknown_customer_detail(rows: int, with_customers: bool) -> str:
    """The sentence (counts and fix) under the quarantine of contacts for unknown customers."""
    tables = "the orders and customers tables do" if with_customers else "the orders table does"
    rows_of = "order and customer row" if with_customers else "order row"
    return (
        f"contacts for customers {tables} not know: {rows:,} rows quarantined to quarantine/contacts.parquet; "
        f"export the contacts from the same shop (a customer whose every {rows_of} was quarantined counts as "
        f"unknown too)."
    )


def unknown_actions_problem(contacts: pd.DataFrame) -> Problem | None:
    """Warning: clean contacts whose ``action`` is not in :data:`KNOWN_ACTIONS`. They are kept: a shop may run
    campaigns the rule table does not recommend, and they are measured under their own name."""
    if "action" not in contacts.columns or not len(contacts):
        return None
    unknown = ~contacts["action"].isin(KNOWN_ACTIONS).to_numpy(dtype=bool)
    if not unknown.any():
        return None
    # A handful of action names, not rows: the counts come from one value_counts.
    counts = contacts["action"][unknown].value_counts(sort=False)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    named = [f"{shown_value('contacts', 'action', str(a))[:MAX_VALUE_CHARS]} ({n:,})" for a, n in ranked]
    more = len(named) - MAX_LISTED_ACTIONS
    listing = ", ".join(named[:MAX_LISTED_ACTIONS]) + (f" and {more:,} more" if more > 0 else "")
    n = int(unknown.sum())
    detail = (
        f"{n:,} contacts of {len(contacts):,} rows have actions the pipeline does not know: {listing}; they are "
        f"kept and measured as they are."
    )
    return Problem("contacts", "action", CONTACT_UNKNOWN_ACTION_RULE, n, tuple(named[:MAX_EXAMPLES]), "warning", detail)


def contacts_before_first_order_problem(contacts: pd.DataFrame, orders: pd.DataFrame) -> Problem | None:
    """Warning: clean contacts dated before their customer's first clean order, or of a customer without any
    (known from ``customers`` only). Kept, since a shop may contact sign-ups; examples are row numbers only.
    ``contacts`` is indexed by ``_row``."""
    if not len(contacts):
        return None
    first = orders.groupby("customer_id", sort=False)["order_ts"].min()
    at = _positions(contacts["customer_id"], pd.Series(first.index, dtype=STRING_DTYPE))
    first_ts = _take(pd.Series(first.to_numpy()), at, contacts.index)
    no_order = at < 0
    early = no_order | (contacts["contact_ts"] < first_ts).to_numpy(dtype=bool, na_value=False)
    if not early.any():
        return None
    n, without = int(early.sum()), int(no_order.sum())
    none = f" ({without:,} of them for customers without any order)" if without else ""
    detail = (
        f"{n:,} of {len(contacts):,} contacts are dated before their customer's first order{none}; they are kept, "
        f"since a shop may contact sign-ups."
    )
    return Problem(
        "contacts",
        "contact_ts",
        CONTACT_BEFORE_FIRST_ORDER_RULE,
        n,
        _examples(contacts.index[early]),
        "warning",
        detail,
    )


def no_control_problem(contacts: pd.DataFrame) -> Problem | None:
    """Warning: clean contacts with treatment rows and not a single control row (all rows kept)."""
    if "group" not in contacts.columns:
        return None
    treated = int((contacts["group"] == "treatment").sum())
    if not treated or (contacts["group"] == "control").any():
        return None
    detail = (
        f"contacts has {treated:,} treatment rows and no control rows: measuring what an action does needs a "
        f"control group (customers held out at random, who would have got the action: `churn score` marks them "
        f"control_group, `churn contacts` records them as control). The rows are kept."
    )
    return Problem("contacts", "group", CONTACT_NO_CONTROL_RULE, treated, (), "warning", detail)


# --------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------


def _reasons(failures: pd.DataFrame) -> pd.DataFrame:
    """One row per failing ``_row`` (ascending) with all its reasons joined by "; ", in rule order."""
    text = failures["rule"].where(failures["value"] == "", failures["rule"] + ": " + failures["value"])
    long = pd.DataFrame({"_row": failures["_row"].to_numpy(), "_reason": text.to_numpy()}).drop_duplicates()
    long = long.sort_values("_row", kind="stable")
    table = pyarrow.table(
        {
            "_row": pyarrow.array(long["_row"].to_numpy(), pyarrow.int64()),
            "_reason": pyarrow.array(long["_reason"].to_numpy(dtype=object), pyarrow.string()),
        }
    )
    # Arrow's hash aggregation collects each row's reasons in input order without a Python loop.
    grouped = table.group_by("_row", use_threads=False).aggregate([("_reason", "list")])
    joined = pc.binary_join(grouped["_reason_list"], "; ").to_numpy(zero_copy_only=False)
    return pd.DataFrame(
        {"_row": grouped["_row"].to_numpy(), "_reason": pd.Series(joined, dtype=STRING_DTYPE)}
    ).sort_values("_row", ignore_index=True)


def _problems(table: str, failures: pd.DataFrame) -> list[Problem]:
    """Failure records summarised per (column, rule): distinct rows and the first few examples."""
    if not len(failures):
        return []
    firsts = failures.drop_duplicates(["column", "rule", "_row"])
    counts = firsts.groupby(["column", "rule"], sort=False).size()
    shown = firsts.groupby(["column", "rule"], sort=False).head(MAX_EXAMPLES)
    # At most five examples per rule: ids and e-mail-like values are hidden (shown_value).
    shown = shown.assign(
        example=[
            _example(r, shown_value(table, str(c), str(v)))
            for r, c, v in zip(shown["_row"], shown["column"], shown["value"], strict=True)
        ]
    )
    examples = shown.groupby(["column", "rule"], sort=False)["example"].agg(tuple)
    # One Problem per rule: a handful of groups, not rows.
    return [
        Problem(table, str(column), str(rule), int(n), tuple(examples[(column, rule)]), "error")
        for (column, rule), n in counts.items()
    ]


def _quarantine(raw: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """The failing rows of ``raw`` as text, in source order, with ``_row`` and ``_reason``."""
    if not len(failures):
        empty = {str(c): pd.Series(dtype=STRING_DTYPE) for c in raw.columns}
        return pd.DataFrame({**empty, "_row": pd.Series(dtype="int64"), "_reason": pd.Series(dtype=STRING_DTYPE)})
    reasons = _reasons(failures)
    rows = raw.loc[reasons["_row"].to_numpy()]
    text = pd.DataFrame({str(c): _as_text(rows[c]) for c in rows.columns}, index=rows.index)
    return text.assign(_row=reasons["_row"].to_numpy(), _reason=reasons["_reason"].to_numpy()).reset_index(drop=True)


def validate_table(
    table: str,
    raw: pd.DataFrame,
    bounds: Bounds,
    *,
    first_row: int = 0,
    customers: pd.DataFrame | None = None,
    orders: pd.DataFrame | None = None,
) -> TableResult:
    """Validate one raw table (or a batch of it): parse, schema rules, duplicate rules, cross-table rules.

    ``customers`` (clean customers) enables the signup rule for orders; ``orders`` (clean orders) enables the
    return rules and, with ``customers`` if given, the contacts' known-customer and first-order rules. Returns the
    clean typed rows, the quarantined raw rows with reasons, and the problems.
    """
    parsed = parse_table(table, raw, first_row)
    raw = raw.set_axis(parsed.typed.index, axis=0)
    typed = parsed.typed
    problems = list(parsed.problems)
    parts = [parsed.failures, _drop_missing_echo(schema_failures(table, typed, bounds), parsed.failures)]
    parts.append(duplicate_failures(table, typed, ~typed.index.isin(parsed.failures["_row"])))
    if table == "orders" and customers is not None:
        parts.append(signup_failures(typed, customers, bounds.signup_grace))
    if table == "returns" and orders is not None:
        parts.append(return_failures(typed, orders))
    if table == "contacts" and orders is not None:
        parts.append(contact_customer_failures(typed, orders, customers))
    failures = _concat_failures(parts)
    bad = typed.index.isin(failures["_row"])
    kept = typed[~bad]  # indexed by _row: warnings name source rows
    clean = kept.reset_index(drop=True)
    warnings_ = []
    if table == "orders" and customers is not None:
        warnings_.append(unknown_customers_problem(kept, customers))
    if table == "contacts":
        warnings_ += [unknown_actions_problem(kept), no_control_problem(kept)]
        if orders is not None:
            warnings_.append(contacts_before_first_order_problem(kept, orders))
    problems += [w for w in warnings_ if w is not None]
    errors = _problems(table, failures)
    if table == "contacts":
        errors = [
            dataclasses.replace(p, detail=contact_unknown_customer_detail(p.rows, customers is not None))
            if p.rule == CONTACT_UNKNOWN_CUSTOMER_RULE
            else p
            for p in errors
        ]
    quarantine = _quarantine(raw, failures)
    result = TableResult(
        table=table,
        clean=clean,
        quarantine=quarantine,
        problems=errors + problems,
        rows_in=len(raw),
        columns=tuple(typed.columns),
        dropped_columns=parsed.dropped_columns,
        zone_counts=parsed.zone_counts,
        present=parsed.present,
    )
    result.problems += zone_problems(table, result.zone_counts)
    return result


def zone_problems(table: str, zone_counts: dict[str, dict[str, int]]) -> list[Problem]:
    """A warning per timestamp column written in more than one time zone, with the rows per zone."""
    out = []
    for column, counts in zone_counts.items():
        counts = {z: n for z, n in counts.items() if n}
        if len(counts) > 1:
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])
            minority = sum(n for _, n in ranked[1:])
            examples = tuple(f"{zone}: {n} rows" for zone, n in ranked[:MAX_EXAMPLES])
            out.append(Problem(table, column, MIXED_ZONES_RULE, minority, examples, "warning"))
    return out


def merge_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Problems of several batches of one table combined per (table, column, rule, severity).

    Row counts add up (batches hold distinct rows); examples keep the first few in batch order.
    """
    merged: dict[tuple[str, str, str, str], Problem] = {}
    for p in problems:
        key = (p.table, p.column, p.rule, p.severity)
        if key not in merged:
            merged[key] = p
            continue
        old = merged[key]
        examples = tuple(dict.fromkeys(old.examples + p.examples))[:MAX_EXAMPLES]
        merged[key] = dataclasses.replace(old, rows=old.rows + p.rows, examples=examples)
    return list(merged.values())


def combine_problems(table: str, results: Sequence[TableResult]) -> list[Problem]:
    """The problems of a table validated in batches, with time zones judged over all batches together."""
    zones: dict[str, dict[str, int]] = {}
    for r in results:
        for column, counts in r.zone_counts.items():
            into = zones.setdefault(column, {})
            for zone, n in counts.items():
                into[zone] = into.get(zone, 0) + n
    problems = merge_problems(p for r in results for p in r.problems if p.rule != MIXED_ZONES_RULE)
    return problems + zone_problems(table, zones)
