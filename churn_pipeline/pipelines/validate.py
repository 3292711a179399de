"""Stage ``validate``: check a data directory against the contract, quarantine bad rows, keep the rest.

Reads ``<data>/<table>.parquet`` or ``<data>/<table>.csv`` for every contract table present and writes one
directory, atomically (the old one stays until the new one is complete):

- ``<out>/<table>.parquet``: the clean rows, typed (ids as text, timestamps naive UTC ``timestamp[us]``);
- ``<out>/quarantine/<table>.parquet``: rejected rows as text with ``_row`` (0-based data row of the source
  file) and ``_reason`` (every rule the row broke, joined by "; "), only for tables with rejected rows;
- ``<out>/report.json``: contract version, the time bounds used, per table rows in/clean/quarantined and
  columns, and every problem (table, column, rule, rows, examples, severity, and a ``detail`` sentence with the
  counts and the fix where the rule name alone does not say enough).

Tables are validated in the order the cross-table rules need: customers, orders (signup rule), returns (against
the clean orders), contacts (against the clean customers and orders: contacts of customers neither knows are
quarantined; unknown actions, contacts before the customer's first order and a table without control rows are
warnings), then events, streamed in batches.

With ``--metrics``, also a small JSON of row counts per table for ``dvc metrics``.

Refused before anything is read (ParamsError): ``out`` equal to ``data``, inside it or around it (symlinks and
relative paths resolved). The output directory is replaced whole, so ``out == data`` or a parent of ``data``
would delete the raw tables, and an ``out`` inside ``data`` writes into the raw data (validate never does).

Fatal (DataContractError, nothing written): the data directory is missing or holds no contract table;
``orders`` is missing or empty; a table lacks a required column (a rename is hinted only for a difference of
case or surrounding spaces; a CSV whose first row names no contract column is said to lack its header row);
a required column holds no value in any row (blank or a null spelling); a CSV is not UTF-8; a table exists
both as CSV and Parquet; no orders row survives validation. An optional column without any value is dropped
with a warning (every stage then treats it as absent). Everything else is reported and quarantined row by row.

Privacy: messages and problem examples name files, columns, rules and row numbers, never an id value
(``customer_id``, ``order_id``) or anything that looks like an e-mail address, and never the cells of a
header-less file's first row; column listings are capped. The quarantine keeps the rejected rows as they were.
The rules themselves live in :mod:`features.validation`; this module only reads, writes and reports.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.table import Table

from churn_pipeline.errors import DataContractError, ParamsError, validated_sibling
from churn_pipeline.features import validation as v
from churn_pipeline.features.contract import CONTRACT_VERSION, TABLE_ORDER, TABLES
from churn_pipeline.features.schemas import arrow_schema
from churn_pipeline.pipelines.console import console, progress_bar, step
from churn_pipeline.pipelines.io import (
    TABLE_SUFFIXES,
    atomic_path,
    csv_error,
    find_table,
    read_csv_as_text,
    read_table_file,
    write_json,
)
from churn_pipeline.pipelines.params import load_section

# Events are validated and written batch by batch: 2M rows keep a batch's raw + typed copies near 1 GB.
EVENT_BATCH_ROWS = 2_000_000


@dataclass(frozen=True)
class ValidateParams:
    """params.yaml ``validate``: plausible time range of the data (naive = UTC) and the signup grace period.

    ``max_timestamp`` None means the time of the run (UTC); ``min_timestamp`` None means no lower bound.
    """

    max_timestamp: str | None = None
    min_timestamp: str | None = "1990-01-01"
    signup_grace_days: float = 1.0


@dataclass
class _Source:
    """A contract table found in the data directory, before its rows are validated."""

    name: str
    path: Path
    columns: list[str]
    rows: int | None
    raw: pd.DataFrame | None = None  # loaded for in-memory tables; events stay on disk
    result: v.TableResult | None = None
    problems: list[v.Problem] = field(default_factory=list)
    rows_in: int = 0
    rows_clean: int = 0
    rows_quarantined: int = 0


# --------------------------------------------------------------------------------------------------------
# Params
# --------------------------------------------------------------------------------------------------------


# ISO 8601 only: pandas also reads 01/06/2025, as January, silently.
_ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\S.*)?")


def _instant(value: str | None, key: str) -> pd.Timestamp | None:
    if value is None:
        return None
    text = str(value).strip()
    try:
        if text and text.lower() != "nat" and not _ISO_INSTANT.fullmatch(text):
            raise ValueError("not ISO 8601")
        ts = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise ParamsError(
            f"params validate.{key} = {value!r} is not an ISO 8601 timestamp (use e.g. 2024-12-31 or "
            f"2024-12-31T23:59:59; 01/06/2025 is refused, since the order of day and month would be a guess)."
        ) from exc
    if pd.isna(ts):
        return None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("us")


def bounds_from_params(params: ValidateParams, now: pd.Timestamp | None = None) -> v.Bounds:
    """The validation time bounds (naive UTC); ``max_timestamp`` defaults to ``now`` (the run's UTC time)."""
    low = _instant(params.min_timestamp, "min_timestamp")
    high = _instant(params.max_timestamp, "max_timestamp")
    if high is None:
        high = (now if now is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)).floor("s").as_unit("us")
    if low is not None and low >= high:
        raise ParamsError(f"params validate.min_timestamp ({low}) must be before max_timestamp ({high}).")
    if not params.signup_grace_days >= 0:
        raise ParamsError(f"params validate.signup_grace_days must be >= 0, got {params.signup_grace_days}.")
    return v.Bounds(low, high, pd.Timedelta(days=params.signup_grace_days))


# --------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------


def _with_range_index(df: pd.DataFrame) -> pd.DataFrame:
    # Parquet written from an indexed DataFrame restores that index; its values are data, not row numbers.
    return df if isinstance(df.index, pd.RangeIndex) else df.reset_index()


def _parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataContractError(f"{path} is not a readable Parquet file ({exc}). Re-export it and run again.") from exc


def _open_source(name: str, path: Path) -> _Source:
    """Columns and row count of a table; in-memory tables are read whole, events only peeked at."""
    if name != "events":
        raw = _with_range_index(read_table_file(path))
        return _Source(name, path, [str(c) for c in raw.columns], len(raw), raw)
    if path.suffix == ".parquet":
        pf = _parquet_file(path)
        return _Source(name, path, list(pf.schema_arrow.names), pf.metadata.num_rows)
    head = read_csv_as_text(path, nrows=1)
    # Row count of a CSV is unknown without reading it; "has at least one row" is all the checks need.
    return _Source(name, path, [str(c) for c in head.columns], len(head) or 0)


def _decoded(batch: pa.RecordBatch) -> pa.RecordBatch:
    # Dictionary columns would become pandas categoricals whose categories (every customer id of the file)
    # pandas re-validates per batch; decoding in Arrow is a cheap take.
    arrays = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _event_batches(source: _Source, columns: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
    """The events table in batches of raw rows (contract columns only, to bound memory)."""
    if source.path.suffix == ".parquet":
        pf = _parquet_file(source.path)
        try:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
                yield _decoded(batch).to_pandas()
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataContractError(f"{source.path} could not be read to the end ({exc}). Re-export it.") from exc
        return
    chunks = read_csv_as_text(source.path, usecols=columns, chunksize=batch_rows)
    try:
        yield from chunks
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise csv_error(source.path, exc) from exc


def _find_sources(data: Path) -> tuple[dict[str, _Source], list[v.Problem]]:
    if not data.is_dir():
        raise DataContractError(
            f"data directory {data} does not exist (or is not a directory). Point --data (or params "
            f"data.path) at a directory holding at least orders.csv or orders.parquet; `churn contract` "
            f"lists the tables."
        )
    found = {name: path for name in TABLE_ORDER if (path := find_table(data, name)) is not None}
    if not found:
        raise DataContractError(
            f"{data} holds no contract table (expected orders.csv or orders.parquet, optionally customers, "
            f"returns, events, contacts). `churn contract` lists the tables and columns."
        )
    if "orders" not in found:
        raise DataContractError(
            f"{data} has no orders table ({', '.join(p.name for p in found.values())} found): orders is "
            f"required. Add orders.csv or orders.parquet; `churn contract` lists its columns."
        )
    known = {f"{name}{suffix}" for name in TABLES for suffix in TABLE_SUFFIXES}
    stray = sorted(p.name for p in data.iterdir() if p.suffix in TABLE_SUFFIXES and p.name not in known)
    notes = []
    if stray:
        notes.append(
            v.Problem("(data)", "", "files ignored: not contract tables", len(stray), tuple(stray[:5]), "warning")
        )
    return {name: _open_source(name, path) for name, path in found.items()}, notes


def _contract_errors(sources: dict[str, _Source], notes: list[v.Problem]) -> list[str]:
    """Every fatal problem of the files' shape at once; empty optional tables are dropped with a warning."""
    errors = []
    for name in list(sources):
        src = sources[name]
        missing = v.missing_columns(name, src.columns)
        # A CSV whose first row names no contract column most likely has no header row: that row is data.
        headerless = bool(missing) and src.path.suffix == ".csv" and v.looks_like_data(name, src.columns)
        if not src.rows and not headerless:
            if TABLES[name].required:
                errors.append(f"{src.path} is empty: {name} needs at least one row (a header and data rows for a CSV).")
            else:
                notes.append(v.Problem(name, "", "empty file: table treated as absent", 0, (src.path.name,), "warning"))
                del sources[name]
            continue
        if headerless:
            # Never echo the cells: they are a customer's data (ids, e-mail addresses, names).
            errors.append(
                f"{src.path} (table {name}) has no header row: none of the {len(src.columns):,} cells of its first "
                f"row is a column name of {name}, so that row looks like data (not shown). Fix: add a header row "
                f"naming the columns ({', '.join(TABLES[name].required_columns)} are required), or rename the "
                f"columns if they are named otherwise. `churn contract` lists every column."
            )
        elif missing:
            hints = v.column_hints(missing, src.columns)
            renames = "; ".join(f"rename {hints[m]!r} to {m!r}" for m in missing if m in hints)
            fix = f"Fix: {renames}, or add the column." if renames else "Fix: add the column(s) to the file."
            errors.append(
                f"{src.path} (table {name}) lacks required column(s) {', '.join(missing)}; it has "
                f"{len(src.columns):,} column(s): {v.column_listing(src.columns)}. {fix} `churn contract` lists "
                f"every column."
            )
    return errors


# --------------------------------------------------------------------------------------------------------
# Writing and reporting
# --------------------------------------------------------------------------------------------------------


def _quarantine_schema(columns: list[str]) -> pa.Schema:
    return pa.schema([(c, pa.string()) for c in columns] + [("_row", pa.int64()), ("_reason", pa.string())])


def _arrow(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


def _write_in_memory(src: _Source, staged: Path) -> None:
    result = src.result
    pq.write_table(
        _arrow(result.clean, arrow_schema(src.name, result.columns)),
        staged / f"{src.name}.parquet",
        compression="zstd",
    )
    if result.rows_quarantined:
        (staged / "quarantine").mkdir(exist_ok=True)
        schema = _quarantine_schema([c for c in result.quarantine.columns if c not in ("_row", "_reason")])
        pq.write_table(
            _arrow(result.quarantine, schema),
            staged / "quarantine" / f"{src.name}.parquet",
            compression="zstd",
        )


def _stream_events(src: _Source, staged: Path, bounds: v.Bounds, batch_rows: int) -> None:
    """Validate events batch by batch, appending clean and quarantined rows to Parquet writers."""
    columns = [c for c in TABLES["events"].column_names if c in src.columns]
    extras = [c for c in src.columns if c not in columns]
    clean_schema = arrow_schema("events", columns)
    quarantine_path = staged / "quarantine" / "events.parquet"
    summaries: list[v.TableResult] = []
    present = dict.fromkeys(columns, 0)
    offset = 0
    total_batches = -(-src.rows // batch_rows) if src.path.suffix == ".parquet" else None
    with contextlib.ExitStack() as stack, progress_bar("validating events", total_batches) as advance:
        writer = stack.enter_context(pq.ParquetWriter(staged / "events.parquet", clean_schema, compression="zstd"))
        quarantine_writer = None
        for raw in _event_batches(src, columns, batch_rows):
            result = v.validate_table("events", raw, bounds, first_row=offset)
            offset += len(raw)
            writer.write_table(_arrow(result.clean, clean_schema))
            if result.rows_quarantined:
                if quarantine_writer is None:
                    quarantine_path.parent.mkdir(exist_ok=True)
                    quarantine_writer = stack.enter_context(
                        pq.ParquetWriter(quarantine_path, _quarantine_schema(columns), compression="zstd")
                    )
                quarantine_writer.write_table(_arrow(result.quarantine, _quarantine_schema(columns)))
            src.rows_in += result.rows_in
            src.rows_quarantined += result.rows_quarantined
            for column, n in result.present.items():
                present[column] += n
            # Keep problems and zone counts only: the batch's rows are on disk now.
            result.clean, result.quarantine = result.clean.iloc[:0], result.quarantine.iloc[:0]
            summaries.append(result)
            advance()
    src.rows_clean = src.rows_in - src.rows_quarantined
    src.problems = v.combine_problems("events", summaries)
    if extras:
        src.problems.append(v.extra_columns_problem("events", extras, src.rows_in))
    # Raised inside the staging directory: nothing is written.
    required, optional = v.empty_columns("events", present) if src.rows_in else ([], [])
    if required:
        raise DataContractError(
            v.empty_required_message(str(src.path), "events", required, src.rows_in) + " Nothing was written."
        )
    if optional:
        # Known only once every batch is read (rare): the clean file is rewritten without them.
        _drop_parquet_columns(staged / "events.parquet", optional, batch_rows)
        src.problems += [v.empty_optional_problem("events", c, src.rows_in) for c in optional]
    src.columns = [c for c in columns if c not in optional]


def _drop_parquet_columns(path: Path, drop: list[str], batch_rows: int) -> None:
    """Rewrite a Parquet file without the columns ``drop``, batch by batch."""
    rewritten = path.with_name(path.name + ".rewrite")
    with pq.ParquetFile(path) as pf:
        keep = [c for c in pf.schema_arrow.names if c not in drop]
        schema = pa.schema([pf.schema_arrow.field(c) for c in keep])
        with pq.ParquetWriter(rewritten, schema, compression="zstd") as writer:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=keep):
                writer.write_batch(batch)
    rewritten.replace(path)


def _problem_table(problems: list[v.Problem]) -> Table:
    table = Table(title="validation problems", title_justify="left", show_lines=False)
    for name, style in (
        ("", ""),
        ("table", "bold"),
        ("column", ""),
        ("rule", ""),
        ("rows", ""),
        ("examples", "dim"),
    ):
        table.add_column(name, style=style or None, justify="right" if name == "rows" else "left", overflow="fold")
    # One line per problem (a handful), not per row.
    for p in problems:
        table.add_row(_mark(p), p.table, p.column or "—", p.rule, f"{p.rows:,}", "; ".join(p.examples))
    return table


def _mark(problem: v.Problem) -> str:
    return "[red]✗[/red]" if problem.severity == "error" else "[yellow]![/yellow]"


def _print_problems(problems: list[v.Problem]) -> None:
    """The problem table, then each problem's detail sentence (counts and fix) on a line of its own."""
    console.print(_problem_table(problems))
    for p in problems:
        if p.detail:
            console.print(f"{_mark(p)} {p.table}: {p.detail}", soft_wrap=True)


def _report(
    data: Path, sources: dict[str, _Source], bounds: v.Bounds, problems: list[v.Problem], max_is_now: bool
) -> dict:
    # "now" rather than the clock reading when max_timestamp defaults to the run time: the same data must
    # give a byte-identical output directory, or DVC would see a change on every run.
    high = "now (time of the run)" if max_is_now else str(bounds.max_timestamp)
    return {
        "contract_version": CONTRACT_VERSION,
        "data": str(data),
        "bounds": {
            "min_timestamp": None if bounds.min_timestamp is None else str(bounds.min_timestamp),
            "max_timestamp": None if bounds.max_timestamp is None else high,
            "signup_grace_days": bounds.signup_grace / pd.Timedelta(days=1),
        },
        "tables": {
            name: {
                "file": src.path.name,
                "rows_in": src.rows_in,
                "rows_clean": src.rows_clean,
                "rows_quarantined": src.rows_quarantined,
                "columns": list(src.columns),
            }
            for name, src in sources.items()
        },
        "tables_absent": [name for name in TABLE_ORDER if name not in sources],
        "problems": [p.to_dict() for p in problems],
    }


def _metrics(sources: dict[str, _Source], problems: list[v.Problem]) -> dict:
    counts = {
        name: {"rows_in": s.rows_in, "rows_clean": s.rows_clean, "rows_quarantined": s.rows_quarantined}
        for name, s in sources.items()
    }
    return {
        "tables": counts,
        "problems": {
            "errors": sum(p.severity == "error" for p in problems),
            "warnings": sum(p.severity == "warning" for p in problems),
        },
    }


# --------------------------------------------------------------------------------------------------------
# Stage
# --------------------------------------------------------------------------------------------------------


def _empty_columns(src: _Source, result: v.TableResult, present: dict[str, int], rows: int) -> list[str]:
    """Required columns without a value are fatal (the message, returned); optional ones are dropped from the
    clean rows with a warning, so that every stage treats them as absent."""
    required, optional = v.empty_columns(src.name, present) if rows else ([], [])
    for column in optional:
        src.problems.append(v.empty_optional_problem(src.name, column, rows))
    if optional and result.clean is not None:
        result.clean = result.clean.drop(columns=optional)
    result.columns = tuple(c for c in result.columns if c not in optional)
    return [v.empty_required_message(str(src.path), src.name, required, rows)] if required else []


IN_MEMORY_TABLES = ("customers", "orders", "returns", "contacts")


def _validate_in_memory(sources: dict[str, _Source], bounds: v.Bounds) -> list[str]:
    """customers, then orders (signup rule needs clean customers), then returns (needs clean orders), then contacts
    (needs clean customers and orders). Returns the fatal errors: required columns empty in every row."""
    customers = orders = None
    errors = []
    for name in IN_MEMORY_TABLES:
        src = sources.get(name)
        if src is None:
            continue
        result = v.validate_table(name, src.raw, bounds, customers=customers, orders=orders)
        src.raw = None  # the raw copy is no longer needed; the quarantine holds the rejected rows as text
        src.result, src.problems = result, v.combine_problems(name, [result])
        errors += _empty_columns(src, result, result.present, result.rows_in)
        src.rows_in, src.rows_clean, src.rows_quarantined = (
            result.rows_in,
            result.rows_clean,
            result.rows_quarantined,
        )
        src.columns = list(result.columns)
        if name == "customers":
            customers = result.clean
        elif name == "orders":
            orders = result.clean
    return errors


def check_out_apart(data: Path, out: Path) -> None:
    """ParamsError unless ``out`` and ``data`` are separate directories, neither inside the other (paths compared
    after resolving symlinks, ``..`` and relative parts, so ``./shop/.`` and a link to ``shop`` are ``shop``)."""
    raw, dest = Path(data).resolve(), Path(out).resolve()
    if dest == raw:
        why = "is the data directory itself: validate replaces its --out whole, which would delete the raw tables"
    elif raw.is_relative_to(dest):
        why = f"contains the data directory ({raw}): replacing it would delete the raw tables"
    elif dest.is_relative_to(raw):
        why = f"is inside the data directory ({raw}): validate never writes into the raw data"
    else:
        return
    raise ParamsError(
        f"--out {out} {why}. Give a separate output directory, e.g. `churn validate --data {data} --out "
        f"{validated_sibling(data)}`. Nothing was written."
    )


def run(
    data: Path,
    out: Path,
    metrics: Path | None = None,
    params_path: Path = Path("params.yaml"),
    *,
    batch_rows: int = EVENT_BATCH_ROWS,
    now: pd.Timestamp | None = None,
) -> dict:
    """Validate ``data`` into ``out`` (see the module docstring); returns the report written to report.json.

    ``now`` (naive UTC) stands in for the run time as default ``max_timestamp``; ``batch_rows``: events batch.
    """
    data, out = Path(data), Path(out)
    check_out_apart(data, out)
    params = load_section(ValidateParams, "validate", params_path)
    bounds = bounds_from_params(params, now)
    with step("validate") as summary:
        sources, notes = _find_sources(data)
        errors = _contract_errors(sources, notes)
        if errors:
            raise DataContractError(" ".join(errors) + " Nothing was written.")
        errors = _validate_in_memory(sources, bounds)
        if errors:
            raise DataContractError(" ".join(errors) + " Nothing was written.")
        problems = [p for name in TABLE_ORDER if name in sources for p in sources[name].problems]
        orders = sources["orders"]
        if orders.rows_clean == 0:
            _print_problems(problems + notes)
            broken = [f"{p.rule} ({p.rows:,} rows)" for p in orders.problems if p.severity == "error"]
            top = "; ".join(broken[:5])
            raise DataContractError(
                f"no usable orders rows left: all {orders.rows_in:,} rows of {orders.path} were quarantined "
                f"({top}). Fix the data (see the problems above) and run again. Nothing was written."
            )
        with atomic_path(out) as staged:
            staged.mkdir()
            for name in IN_MEMORY_TABLES:
                if name in sources:
                    _write_in_memory(sources[name], staged)
                    sources[name].result = None  # free the frames before the events stream in
            if "events" in sources:
                _stream_events(sources["events"], staged, bounds, batch_rows)
            problems = [p for name in TABLE_ORDER if name in sources for p in sources[name].problems] + notes
            report = _report(data, sources, bounds, problems, max_is_now=params.max_timestamp is None)
            (staged / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if metrics is not None:
            write_json(_metrics(sources, problems), Path(metrics))
        if problems:
            _print_problems(problems)
        else:
            console.print("[green]no problems found[/green]")
        quarantined = sum(s.rows_quarantined for s in sources.values())
        errors_n = sum(p.severity == "error" for p in problems)
        summary.rows = sum(s.rows_clean for s in sources.values())
        summary.detail = (
            f"{quarantined:,} rows quarantined ({errors_n} rules broken, "
            f"{len(problems) - errors_n} warnings), tables {', '.join(sources)} → {out}"
        )
    return report
