"""File I/O for the stages: locating contract tables, reading them, writing outputs atomically.

Every writer here writes to a temporary sibling first and renames it into place, so a crash or a
failed validation never leaves a half-written output behind. The sibling has one fixed name per target
(``.scores.csv.tmp``), so what a killed run left there is removed by the next run; a file output never
replaces an existing directory (UsageError, nothing deleted).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn_pipeline.errors import (
    DataContractError,
    UsageError,
    repeated_customers,
    validate_first,
)
from churn_pipeline.features.contract import TABLES
from churn_pipeline.pipelines.console import console

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no lock on the staging directory
    fcntl = None  # type: ignore[assignment]

TABLE_SUFFIXES = (".parquet", ".csv")


def find_table(directory: Path, name: str) -> Path | None:
    """The file holding table ``name`` in ``directory`` (``name.parquet`` or ``name.csv``), or None.

    Raises DataContractError when both exist, because silently picking one would hide a mistake.
    """
    found = [directory / f"{name}{suffix}" for suffix in TABLE_SUFFIXES if (directory / f"{name}{suffix}").is_file()]
    if len(found) > 1:
        raise DataContractError(
            f"{directory} holds both {found[0].name} and {found[1].name}: keep one file per table "
            f"(remove or rename the other)."
        )
    return found[0] if found else None


def csv_error(path: Path, exc: Exception, fix: str | None = None) -> DataContractError:
    """The error for a CSV that is not UTF-8 (naming the byte offset and the bad byte) or not well formed (the
    parser's complaint); ``fix`` (a sentence) replaces the default advice."""
    if isinstance(exc, UnicodeDecodeError):
        advice = fix or f"Re-encode it, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed.csv`, and run again."
        return DataContractError(
            f"{path} is not valid UTF-8 (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r}). {advice}"
        )
    return DataContractError(f"{path} is not a well-formed CSV: {exc}. {fix or 'Fix the file and run again.'}")


def read_csv_as_text(
    path: Path, columns: Collection[str] | None = None, fix: str | None = None, **read_csv: Any
) -> Any:
    """Read a CSV with every column as text, so ids like ``00042`` keep their zeros and parsing is ours: the one CSV
    reader of the stages. ``columns``: read only those present (None: all). An empty file is an empty frame.
    ``read_csv``: further ``pd.read_csv`` arguments (``nrows``, ``usecols``; with ``chunksize`` the result is the
    chunk iterator, whose decoding errors the caller turns into :func:`csv_error`).

    Raises DataContractError naming the file and byte offset when the file is not UTF-8, or the parser's complaint
    when it is not a well-formed CSV; ``fix`` (a sentence) replaces the default advice in both.
    """
    if columns is not None:
        read_csv["usecols"] = lambda c: c in columns
    try:
        return pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8", encoding_errors="strict",
            **read_csv,
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise csv_error(path, exc, fix) from exc


def read_table_file(path: Path) -> pd.DataFrame:
    """Read one contract table file as it is (CSV as text, Parquet with its own types)."""
    if path.suffix == ".csv":
        return read_csv_as_text(path)
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataContractError(f"{path} is not a readable Parquet file ({exc}). Re-export it and run again.") from exc


def staging_dir(target: Path) -> Path:
    """The one staging directory of ``target``: ``scores.csv`` -> ``.scores.csv.tmp`` beside it. The name is fixed,
    so whatever a killed run left there is removed by the next run that writes ``target``."""
    target = Path(target)
    return target.with_name(f".{target.name}.tmp")


def check_file_target(target: Path, what: str = "--out", example: str = "FILE", staged: bool = False) -> None:
    """UsageError when ``target`` (an output that is a file) is an existing directory: writing the file would
    have to delete the directory and everything in it, so it is neither written nor deleted. ``what`` names the
    argument, ``example`` a file name to suggest inside the directory; ``staged``: found only once the file was
    staged (other outputs of the run may already be written)."""
    target = Path(target)
    if target.is_dir():
        outcome = (
            f"{target} was not written and the directory was left as it is."
            if staged
            else "Nothing was written, nothing was deleted."
        )
        raise UsageError(
            f"{what} {target} is a directory, but this output is a file (writing it would delete the directory "
            f"and everything in it): pass a file path, e.g. {target / example}, or move the directory away. "
            f"{outcome}"
        )


def _clear(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _remove_old_random_staging(target: Path) -> None:
    """Staging directories of earlier versions (``.scores.csv.<8 random characters>.tmp``, tempfile.mkdtemp
    names) that a killed run left behind: no run ever reused them."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp")
    with contextlib.suppress(OSError):
        for sibling in target.parent.iterdir():
            if pattern.fullmatch(sibling.name) and sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """The empty staging directory of ``target`` (:func:`staging_dir`), locked for this run and removed at the end.

    A leftover of a killed run (a partial file) is cleared first. The directory is locked (``flock``, released by
    the kernel when the process dies), so a second run writing the same target at the same time stops with a
    UsageError instead of deleting the first run's staged files."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_old_random_staging(target)
    tmp = staging_dir(target)
    for _ in range(5):
        if tmp.is_symlink() or (tmp.exists() and not tmp.is_dir()):
            tmp.unlink()
        tmp.mkdir(exist_ok=True)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(
                f"another run is writing {target} right now (its staging directory {tmp.name} is locked): wait "
                f"for it to finish, or write to another path. Nothing was written."
            ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)  # the run that held it removed the directory meanwhile: lock the new one
    else:  # pragma: no cover - five races in a row
        raise RuntimeError(f"could not lock the staging directory {tmp}")
    try:
        _clear(tmp)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: Path, *, directory: bool | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``, on error delete it.

    Works for files and directories. A directory target is swapped in with two renames, so readers see
    either the old or the new complete directory. A file is never renamed onto an existing directory (that
    would delete the directory and its contents): UsageError, before anything is written when the caller says
    ``directory=False``, else once the file is staged. The staging path lives in :func:`staging_dir`, whose
    fixed name lets the next run remove what a killed run left there.
    """
    target = Path(target)
    if directory is False:
        check_file_target(target)
    with _staging(target) as tmp:
        staged = tmp / target.name
        yield staged
        if not staged.exists():
            raise RuntimeError(f"nothing was written to the staging path for {target}")
        if staged.is_dir():
            if target.exists():
                old = tmp / (target.name + ".old")
                os.replace(target, old)
            os.replace(staged, target)
        else:
            check_file_target(target, staged=True)
            os.replace(staged, target)


@contextlib.contextmanager
def atomic_files(
    targets: Sequence[Path], retire: Sequence[Path] = (), remove: Sequence[Path] = (), staging: Path | None = None
) -> Iterator[list[Path]]:
    """Stage several files that belong together (the parts of one export) and rename them into place together.

    Yields one staging path per target, all in the staging directory of ``staging`` (a path beside them,
    default the first target: name the logical output so that any number of parts shares one). Refuses up front,
    before anything is written, a target that is an existing directory (UsageError). When every file is staged:
    ``retire`` is deleted first (e.g. a manifest vouching for the previous files, so no reader pairs it with
    new ones), then every staged file is renamed onto its target, then the files in ``remove`` (e.g. parts of a
    previous run that the new set does not replace) are deleted; directories there are never touched. On error
    nothing is renamed or deleted. All targets must be in one directory.
    """
    targets = [Path(t) for t in targets]
    staging = Path(staging) if staging is not None else (targets[0] if targets else None)
    parents = {t.parent for t in targets} | {staging.parent if staging else None}
    if not targets or len(parents) != 1 or len({t.name for t in targets}) != len(targets):
        raise ValueError(f"atomic_files needs distinct files in one directory, got {targets}")
    for target in targets:
        check_file_target(target)
    with _staging(staging) as tmp:
        staged = [tmp / t.name for t in targets]
        yield staged
        missing = [t.name for s, t in zip(staged, targets, strict=True) if not s.is_file()]
        if missing:
            raise RuntimeError(f"nothing was written to the staging path for {missing}")
        for path in retire:
            if not Path(path).is_dir():
                Path(path).unlink(missing_ok=True)
        for s, t in zip(staged, targets, strict=True):
            os.replace(s, t)
        for path in remove:
            if Path(path) not in targets and not Path(path).is_dir():
                Path(path).unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame | pa.Table, path: Path) -> None:
    """Write a DataFrame or Arrow table to Parquet atomically (zstd, no pandas index)."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(path, directory=False) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_json(obj: Any, path: Path) -> None:
    """Write JSON atomically, keys sorted and indented so diffs stay readable."""
    with atomic_path(path, directory=False) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_day(value: str, what: str, error: type[Exception] = UsageError) -> pd.Timestamp:
    """A calendar day written ``YYYY-MM-DD`` (nothing else: ``01/06/2025`` could be January or June) as a naive
    timestamp at 00:00; ``error`` (UsageError, or ParamsError for params) names ``what`` (the option or key)."""
    text = str(value).strip()
    form = "a date in the form YYYY-MM-DD (year-month-day, e.g. 2025-06-01)"
    if not _ISO_DAY.fullmatch(text):
        raise error(
            f"{what} {value!r} is not {form}; other spellings such as 01/06/2025 are refused, since the order of "
            f"day and month would be a guess."
        )
    try:
        return pd.Timestamp(date.fromisoformat(text))
    except ValueError as exc:  # the right form, but no such day: 2025-13-45, 2025-02-30, 0000-01-01
        raise error(f"{what} {value!r} is not {form}: there is no such day ({exc}).") from exc


@dataclass(frozen=True)
class TableCheck:
    """What :func:`check_tables` found in a validated table: its rows and its optional columns without a value."""

    path: Path
    rows: int
    empty_optional: tuple[str, ...] = ()


def _null_counts(pf: pq.ParquetFile, columns: list[str]) -> dict[str, int]:
    """Nulls per column from the row groups' statistics (no data read); a column without them is counted."""
    counts = {}
    meta = pf.metadata
    for name in columns:
        index = pf.schema_arrow.get_field_index(name)
        stats = [meta.row_group(g).column(index).statistics for g in range(meta.num_row_groups)]
        if all(st is not None and st.has_null_count for st in stats):
            counts[name] = sum(st.null_count for st in stats)
        else:
            counts[name] = pf.read(columns=[name]).column(0).null_count
    return counts


def check_tables(data: Path) -> dict[str, TableCheck]:
    """Every contract table of a validated directory against the contract, from the Parquet footers (fast, no
    data scanned): DataContractError naming the file, the columns, the rows and the fix when a table lacks a
    required column or a required column holds no value in any row (``churn validate`` refuses both). Optional
    columns without a value are returned (``connect`` treats them as absent, as validate does)."""
    found, errors = {}, []
    for name, spec in TABLES.items():
        path = data / f"{name}.parquet"
        if not path.is_file():
            continue
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataContractError(
                f"{data} cannot be read ({path.name}: {str(exc).splitlines()[0]}). Re-run `churn validate` into a "
                f"fresh directory."
            ) from exc
        names = set(pf.schema_arrow.names)
        rows = pf.metadata.num_rows
        missing = [c for c in spec.required_columns if c not in names]
        if missing:
            errors.append(f"{path} (table {name}, {rows:,} rows) lacks required column(s) {', '.join(missing)}.")
            continue
        present = [c for c in spec.column_names if c in names]
        nulls = _null_counts(pf, present) if rows else {}
        empty = [c for c in present if rows and nulls[c] == rows]
        required = [c for c in empty if spec.column(c).required]
        if required:
            errors.append(
                f"{path} (table {name}): required column(s) {', '.join(required)} empty (null) in all {rows:,} rows."
            )
        found[name] = TableCheck(path, rows, tuple(c for c in empty if c not in required))
    if errors:
        raise DataContractError(
            " ".join(errors) + f" This is not what `churn validate` writes: {validate_first(data)} Validate refuses "
            f"such data with the fix; nothing was written."
        )
    return found


def connect(data: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per contract table found in ``data`` (Parquet only), after
    :func:`check_tables`; an optional column without any value is left out of its view, with a warning."""
    data = Path(data)
    if not data.is_dir():
        raise DataContractError(f"data directory {data} does not exist: {validate_first(data)}")
    if not (data / "orders.parquet").is_file():
        raise DataContractError(
            f"{data} has no orders.parquet. `churn features` reads validated data; if it holds the raw tables, "
            f"{validate_first(data, raw=True)}"
        )
    checks = check_tables(data)
    con = duckdb.connect()
    con.execute(f"SET threads = {max(1, os.cpu_count() or 1)}")
    con.execute("SET preserve_insertion_order = false")
    # DuckDB spills beyond this to a scratch directory, leaving room for the numpy roll-up beside it.
    # The scans stream their rows out, so DuckDB needs little: its largest state is the customer index and the
    # orders' window. A cap keeps it from taking memory the numpy roll-up and the output need.
    con.execute(f"SET memory_limit = '{os.environ.get('CHURN_DUCKDB_MEMORY', '700MB')}'")
    con.execute(f"SET temp_directory = '{Path(tempfile.gettempdir()) / 'churn_duckdb_spill'}'")
    for table, ts in TIMESTAMPS.items():
        path = data / f"{table}.parquet"
        if not path.is_file():
            continue
        empty = checks[table].empty_optional
        quoted = ", ".join('"' + c + '"' for c in empty)
        exclude = f" EXCLUDE ({quoted})" if empty else ""
        for column in empty:
            if (str(path), column) not in _warned_empty:  # once per process: score connects more than once
                _warned_empty.add((str(path), column))
                console.print(
                    f"[yellow]{path}: optional column {column} is empty in all {checks[table].rows:,} rows: treated "
                    f"as absent (re-run `churn validate`, which drops such columns)[/yellow]",
                    soft_wrap=True,
                )
        con.execute(f"CREATE VIEW {table} AS SELECT *{exclude} FROM read_parquet('{path.as_posix()}')")
        kinds = dict(con.sql(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())
        if kinds.get(ts) != "TIMESTAMP":
            raise DataContractError(
                f"{path}: column {ts} is {kinds.get(ts, 'missing')}, expected naive-UTC TIMESTAMP. "
                f"Run `churn validate` on the raw data and point `--data` at its output."
            )
    if (data / "customers.parquet").is_file():
        rows, repeated = con.sql(
            "SELECT count(*), count(customer_id) - count(DISTINCT customer_id) FROM customers"
        ).fetchall()[0]
        if repeated:
            raise repeated_customers(str(data / "customers.parquet"), repeated, rows)
    return con


def data_span(con: duckdb.DuckDBPyConnection) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last order timestamps; the end of the data is the day after the last."""
    first, last, n = con.sql("SELECT min(order_ts), max(order_ts), count(*) FROM orders").fetchall()[0]
    if n == 0:
        raise DataContractError("orders.parquet has no rows: nothing to build features from.")
    return pd.Timestamp(first), pd.Timestamp(last)


def manifest_path(table: Path) -> Path:
    """The feature manifest written next to a feature table: ``panel.parquet`` -> ``panel.features.json``."""
    return table.with_name(table.stem + ".features.json")


def export_manifest_path(out: Path) -> Path:
    """The manifest ``churn export`` writes beside its CRM file: ``scores.csv`` -> ``scores.csv.manifest.json``."""
    return Path(out).with_name(Path(out).name + ".manifest.json")


def read_export_manifest(path: Path) -> dict[str, Any] | None:
    """The export manifest at ``path`` (:func:`export_manifest_path`), None when there is none; DataContractError
    when it is not a JSON object."""
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise DataContractError(
            f"{path} is not a readable export manifest ({exc}). Run `churn export` again, or remove the damaged "
            f"manifest if the export beside it uses the scores' own column names and ids."
        ) from exc
    if not isinstance(manifest, dict):
        raise DataContractError(f"{path} is not an export manifest (not a JSON object). Run `churn export` again.")
    return manifest


def read_manifest(table: Path) -> dict:
    """The manifest of a feature table written by this stage (a Parquet file, or a directory when Spark wrote
    it); DataContractError when either is missing."""
    path = manifest_path(table)
    if not table.exists() or not path.is_file():
        raise DataContractError(f"{table} or its manifest {path.name} is missing: run `churn features`.")
    return json.loads(path.read_text())


TIMESTAMPS = {"orders": "order_ts", "returns": "return_ts", "customers": "signup_ts", "events": "event_ts"}


_warned_empty: set[tuple[str, str]] = set()
