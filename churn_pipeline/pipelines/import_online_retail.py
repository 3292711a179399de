"""Stage ``churn import online-retail``: the UCI Online Retail II file → a data directory in contract v1.

Reads the published file (Parquet or CSV), converts it with
:func:`features.online_retail.online_retail_to_contract` (every rule is documented there) and writes
``<out>/orders.parquet``, ``<out>/returns.parquet`` and ``<out>/customers.parquet`` as one directory swapped
in atomically: ``out`` is replaced as a whole, and a failure leaves the previous ``out`` (or nothing) behind.
Prints how many input lines were kept and dropped, per reason.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.table import Table

from churn_pipeline.errors import DataContractError
from churn_pipeline.features.online_retail import REQUIRED_COLUMNS, ImportReport, online_retail_to_contract
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.io import atomic_path, read_table_file

SOURCE_SUFFIXES = (".parquet", ".csv")
OUTPUT_TABLES = ("orders", "returns", "customers")
_FIX = (
    "Pass --source pointing at online_retail_ii.parquet (or a .csv export) or the directory holding it; "
    "the data set is published at https://doi.org/10.24432/C5CG6D."
)


def resolve_source(source: Path) -> Path:
    """The file to read: ``source`` itself, or the single Parquet (else CSV) file in directory ``source``."""
    source = Path(source)
    if source.is_dir():
        for suffix in SOURCE_SUFFIXES:
            found = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() == suffix)
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                names = ", ".join(p.name for p in found)
                raise DataContractError(
                    f"{source} holds several {suffix} files ({names}): pass the one to import with --source."
                )
        raise DataContractError(f"{source} holds no .parquet or .csv file. {_FIX}")
    if not source.is_file():
        raise DataContractError(f"{source} does not exist. {_FIX}")
    if source.suffix.lower() not in SOURCE_SUFFIXES:
        raise DataContractError(
            f"{source} is not a .parquet or .csv file. Export the sheets to one CSV (or Parquet) with the "
            f"published columns and pass that file. {_FIX}"
        )
    return source


def read_source(path: Path) -> pd.DataFrame:
    """The raw Online Retail II lines from ``path``, checked for the columns the import needs."""
    raw = read_table_file(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataContractError(
            f"{path} lacks column(s) {missing} (it has {list(raw.columns)}). The import needs the columns as "
            f"published: {list(REQUIRED_COLUMNS)}. Rename them or re-export the file."
        )
    if raw.empty:
        raise DataContractError(f"{path} holds no rows. {_FIX}")
    return raw


def report_table(report: ImportReport) -> Table:
    """Kept and dropped input lines per reason (reasons with no line left out), with their net value."""
    table = Table(title="Online Retail II import: input lines", title_justify="left")
    table.add_column("outcome")
    table.add_column("reason")
    table.add_column("lines", justify="right")
    table.add_column("net value, GBP", justify="right")
    for c in report.lines:
        if c.rows:
            style = "green" if c.outcome == "kept" else "yellow"
            table.add_row(f"[{style}]{c.outcome}[/{style}]", c.label, f"{c.rows:,}", f"{c.value:,.2f}")
    table.add_section()
    table.add_row("total", f"{report.kept_rows:,} kept + {report.dropped_rows:,} dropped", f"{report.input_rows:,}", "")
    return table


def run(source: Path, out: Path) -> None:
    """Import ``source`` (file or directory) into contract directory ``out``."""
    out = Path(out)
    with step("import online-retail") as result:
        path = resolve_source(Path(source))
        raw = read_source(path)
        tables, report = online_retail_to_contract(raw)
        with atomic_path(out) as staged:
            staged.mkdir(parents=True)
            for name in OUTPUT_TABLES:
                pq.write_table(
                    pa.Table.from_pandas(tables[name], preserve_index=False),
                    staged / f"{name}.parquet",
                    compression="zstd",
                )
        console.print(report_table(report))
        console.print(
            f"{report.duplicate_lines_kept:,} exact duplicate lines kept; "
            f"{report.returns_above_order_amount:,} returns exceed their order's amount; "
            f"{report.customers_without_order:,} customers with no kept order left out of customers."
        )
        result.rows = report.input_rows
        result.detail = (
            f"{report.orders:,} orders, {report.returns:,} returns, {report.customers:,} customers "
            f"({report.kept_rows:,} lines kept, {report.dropped_rows:,} dropped) → {out}"
        )
