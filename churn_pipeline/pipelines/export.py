"""Stage `export`: the scores as a CRM-ready file (CSV or Parquet) with a manifest beside it.

Reads params section ``export``. Input: a scores file from ``churn score`` (schema v1.2, docs/scores_schema.md).
Output ``--out`` and ``<out>.manifest.json``:

- columns in the schema's fixed order (v1.2 appends its six columns after ``schema_version``: the first 22 cells
  of every row are byte for byte those of a v1.1 export but for the version itself), optionally renamed to the
  CRM's own property names (``export.column_names``); customer ids optionally pseudonymised
  (``export.pseudonymise_ids``, key from the environment variable named by ``export.pseudonym_key_env``, never
  from a file in the repository);
- CSV: UTF-8, a header row, ``,`` between cells, text cells in double quotes, ISO-8601 dates, dot decimals with
  a fixed number of places (probabilities 6, money 2, expected orders 3, days 1), ``true``/``false``, empty =
  missing (``days_to_next_order`` and ``expected_next_order_date`` when no order is expected within 180 days);
- every text cell made safe from spreadsheet formula injection (models.crm), in CSV and Parquet alike;
- the same scores and params give a byte-identical file (no timestamps anywhere, also not in the manifest);
- at most ``export.max_rows_per_file`` rows per file (default 1,000,000, below HubSpot's 1,048,576 rows per
  import file). More rows are split into parts beside ``--out``: ``scores.csv`` -> ``scores.part-0001.csv``,
  ``scores.part-0002.csv``, ... (each with the header; Parquet likewise), listed in the manifest under ``parts``
  (file, rows, bytes, sha256 each; the top-level ``file`` and ``sha256`` are then null, ``rows`` and ``bytes``
  the totals). An export that fits is one file, exactly as without the limit (no ``parts`` key);
- every file is staged in ``.<out name>.tmp`` beside ``--out`` (a killed run's leftovers there are removed by the
  next run); once all are staged, the old manifest is deleted, the files are renamed into place, files of a
  previous run the new set does not replace (``--out`` itself or parts beyond the new count) are deleted, and
  the manifest is written last: a manifest whose ``sha256`` (per part when split) matches the files means the
  export is complete (the CRM job should check it before importing);
- refused, before anything is written or deleted: an ``--out`` (or manifest path) that is a directory
  (UsageError, exit 4), and a scores file whose values break the rules of models.scores_schema (probabilities
  NaN or outside [0, 1], money NaN, infinite, negative or above ``MAX_MONEY``, unknown tiers, control-group rows
  not held out, order probabilities that decrease with the horizon, a days_to_next_order or
  expected_next_order_date out of step with them, ...: DataContractError, exit 3, naming each column and its
  number of bad rows, never a value).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from churn_pipeline.errors import DataContractError, ParamsError
from churn_pipeline.models.crm import fixed_decimals, neutralise_formulas, pseudonymise
from churn_pipeline.models.scores_schema import (
    COLUMNS,
    METADATA_KEY,
    SCHEMA_VERSION,
    TEXT_COLUMNS,
    arrow_schema,
    summary_from_metadata,
    summary_path,
    value_problems,
)
from churn_pipeline.pipelines.console import step
from churn_pipeline.pipelines.io import atomic_files, check_file_target, export_manifest_path, write_json
from churn_pipeline.pipelines.params import load_section
from churn_pipeline.pipelines.registry import file_fingerprint

__all__ = [
    "DECIMALS",
    "FORMATS",
    "ExportParams",
    "crm_table",
    "existing_parts",
    "part_paths",
    "read_scores",
    "run",
]

FORMATS = ("csv", "parquet")
# Decimal places of the numeric columns in the export.
DECIMALS = {
    "churn_probability": 6,
    "predicted_clv": 2,
    "expected_orders": 3,
    "value_if_retained": 2,
    "value_at_risk": 2,
    # New in scores v1.2 (empty cells stay empty).
    "order_probability_30d": 6,
    "order_probability_90d": 6,
    "order_probability_180d": 6,
    "days_to_next_order": 1,
    "lifetime_value": 2,
    # New in scores v1.3.
    "expected_uplift": 6,
    "expected_profit": 2,
}


@dataclass(frozen=True)
class ExportParams:
    """params.yaml ``export``."""

    column_names: dict[str, str] = field(default_factory=dict)
    pseudonymise_ids: bool = False
    pseudonym_key_env: str = "CHURN_PSEUDONYM_KEY"
    # Rows per file at most (HubSpot imports at most 1,048,576 rows per file); more are split into parts.
    max_rows_per_file: int = 1_000_000

    def __post_init__(self) -> None:
        known = [c.name for c in COLUMNS]
        unknown = sorted(set(self.column_names) - set(known))
        if unknown:
            raise ValueError(f"column_names maps unknown column(s) {unknown}; the scores columns are {known}")
        final = [str(self.column_names.get(c, c)) for c in known]
        if any(not name.strip() for name in final):
            raise ValueError("column_names maps a column to an empty name")
        duplicates = sorted({n for n in final if final.count(n) > 1})
        if duplicates:
            raise ValueError(f"column_names gives several columns the same name: {duplicates}")
        if not self.pseudonym_key_env:
            raise ValueError("pseudonym_key_env must name an environment variable")
        rows = self.max_rows_per_file
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise ValueError(
                f"max_rows_per_file must be a positive whole number of rows per file (default 1000000, below "
                f"HubSpot's 1,048,576), got {rows!r}"
            )


def part_paths(out: Path, parts: int) -> list[Path]:
    """The files of an export split into ``parts``: ``scores.csv`` -> ``scores.part-0001.csv``, ... (at least four
    digits, so the names sort in order)."""
    out = Path(out)
    width = max(4, len(str(parts)))
    return [out.with_name(f"{out.stem}.part-{i:0{width}d}{out.suffix}") for i in range(1, parts + 1)]


def existing_parts(out: Path) -> list[Path]:
    """Part files of an earlier split export to ``out`` (names as :func:`part_paths`), in name order."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    pattern = re.compile(rf"{re.escape(out.stem)}\.part-\d{{4,}}{re.escape(out.suffix)}")
    return sorted(p for p in out.parent.iterdir() if pattern.fullmatch(p.name) and p.is_file())


def read_scores(path: Path) -> pa.Table:
    """A scores file of the current schema (models.scores_schema), or DataContractError saying what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise DataContractError(f"scores file {path} does not exist: run `churn score --out {path}` first.")
    try:
        table = _read_spark_scores(path) if path.is_dir() else pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataContractError(f"{path} is not a readable Parquet file ({exc}); run `churn score` again.") from exc
    expected = arrow_schema()
    if table.schema.remove_metadata() != expected:
        have = {f.name: f.type for f in table.schema}
        problems = [f"missing {f.name}" for f in expected if f.name not in have]
        retyped = [f for f in expected if have.get(f.name, f.type) != f.type]
        problems += [f"{f.name} is {have[f.name]}, not {f.type}" for f in retyped]
        problems += [f"unexpected {n}" for n in have if n not in expected.names]
        if not problems:
            problems = [f"columns out of order: {list(have)}"]
        raise DataContractError(
            f"{path} ({table.num_rows:,} rows) is not a scores file of schema v{SCHEMA_VERSION}: "
            f"{'; '.join(problems[:8])}. Export only files written by `churn score`."
        )
    ids = table.column("customer_id")
    repeated = table.num_rows - pc.count_distinct(ids).as_py()
    if repeated:
        raise DataContractError(
            f"{path}: column customer_id repeats {repeated:,} of {table.num_rows:,} rows; a scores file has one row "
            f"per customer. Export only files written by `churn score`."
        )
    problems = value_problems(table)
    if problems:
        raise DataContractError(
            f"{path} ({table.num_rows:,} rows) holds values a scores file of `churn score` never has: "
            f"{'; '.join(problems)}. The file is damaged or was changed after scoring: run `churn score` again "
            f"and export its output. Nothing was exported."
        )
    return table


def _read_spark_scores(path: Path) -> pa.Table:
    """A scores directory written by ``churn score --engine spark`` (Parquet partitioned by ``as_of_date``)
    as the single-file table: the schema's column order, rows by customer_id, the run summary (from
    ``<stem>.summary.json``) in the schema metadata."""
    import pyarrow.dataset as ds

    partitioning = ds.partitioning(pa.schema([("as_of_date", pa.date32())]), flavor="hive")
    table = ds.dataset(path, format="parquet", partitioning=partitioning).to_table()
    expected = arrow_schema()
    if sorted(table.column_names) == sorted(expected.names):
        # Spark marks every column nullable; the schema's non-null columns are checked by the cast.
        table = table.select(expected.names).cast(expected)
    table = table.sort_by("customer_id")
    summary = Path(summary_path(path))
    if not summary.is_file():
        raise DataContractError(f"{path} has no run summary {summary.name} beside it: run `churn score` again.")
    return table.replace_schema_metadata({METADATA_KEY: summary.read_bytes().strip()})


def crm_table(table: pa.Table, params: ExportParams, fmt: str, key: str | None) -> tuple[pa.Table, int]:
    """The export's columns: pseudonymised ids, formula-safe text, fixed decimals, CRM names. Returns the table
    and the number of text cells that were neutralised."""
    columns, names, neutralised = [], [], 0
    for col in COLUMNS:
        values = table.column(col.name)
        if col.name == "customer_id" and params.pseudonymise_ids:
            values = pa.array(pseudonymise(values.to_numpy(zero_copy_only=False), key or ""), pa.string())
        if col.name in TEXT_COLUMNS:
            values, changed = neutralise_formulas(values)
            neutralised += changed
        elif col.name in DECIMALS:
            places = DECIMALS[col.name]
            if fmt == "csv":
                try:
                    values = fixed_decimals(values, places)
                except ValueError as exc:  # read_scores refuses such values first
                    raise DataContractError(f"column {col.name}: {exc}. Run `churn score` again.") from exc
            else:
                values = pc.round(values, ndigits=places, round_mode="half_to_even")
        columns.append(values)
        names.append(params.column_names.get(col.name, col.name))
    return pa.Table.from_arrays(columns, names=names), neutralised


def run(scores: Path, fmt: str, out: Path, params_path: Path) -> None:
    """Export ``scores`` as ``fmt`` to ``out`` with its manifest (module docstring)."""
    if fmt not in FORMATS:
        raise ParamsError(f"--format must be one of {FORMATS}, got {fmt!r}.")
    params = load_section(ExportParams, "export", params_path)
    key = None
    if params.pseudonymise_ids:
        key = os.environ.get(params.pseudonym_key_env)
        if not key:
            raise ParamsError(
                f"export.pseudonymise_ids is true but the environment variable {params.pseudonym_key_env} is not "
                f"set: export the secret key there (keep it out of the repository), or set pseudonymise_ids: false."
            )
    out = Path(out)
    # Before any work: a directory there would otherwise be found only after reading and converting the scores.
    check_file_target(out, "--out", f"scores.{fmt}")
    check_file_target(export_manifest_path(out), "the manifest path (--out + .manifest.json)", "manifest.json")
    with step(f"export ({fmt})") as s:
        table = read_scores(scores)
        summary = summary_from_metadata(table.schema.metadata)
        crm, neutralised = crm_table(table, params, fmt, key)
        files = _write_files(crm, fmt, out, params.max_rows_per_file)
        size = sum(f["bytes"] for f in files)
        single = files[0] if len(files) == 1 else {"file": None, "sha256": None}
        manifest: dict[str, Any] = {
            "file": single["file"],
            "format": fmt,
            "encoding": "utf-8" if fmt == "csv" else None,
            "rows": crm.num_rows,
            "bytes": size,
            "sha256": single["sha256"],
            "schema_version": SCHEMA_VERSION,
            "as_of_date": summary.get("as_of_date"),
            "model_version": summary.get("model_version"),
            "models": summary.get("models"),
            "columns": crm.column_names,
            "column_mapping": dict(sorted(params.column_names.items())),
            "decimals": {params.column_names.get(k, k): v for k, v in DECIMALS.items()},
            "pseudonymised_ids": params.pseudonymise_ids,
            "formula_cells_neutralised": neutralised,
            "control_group_rows": summary.get("control_group", {}).get("rows"),
            "customers_left_out_no_order_before_as_of": summary.get("customers_left_out_no_order_before_as_of"),
            "tiers": summary.get("tiers"),
            "source": Path(scores).name,
        }
        if len(files) > 1:
            manifest["parts"] = files
        write_json(manifest, export_manifest_path(out))
        s.rows = crm.num_rows
        where = f"sha256 {files[0]['sha256'][:12]}..." if len(files) == 1 else f"{len(files)} parts"
        written = out if len(files) == 1 else f"{files[0]['file']} .. {files[-1]['file']}"
        s.detail = f"{size / 1e6:.1f} MB, {where}, {neutralised} text cells neutralised -> {written}"


def _write_files(crm: pa.Table, fmt: str, out: Path, max_rows: int) -> list[dict[str, Any]]:
    """Write ``crm`` to ``out``, or to parts of at most ``max_rows`` rows each (module docstring), all staged and
    then renamed together; returns file name, rows, bytes and sha256 of each file."""
    count = max(1, math.ceil(crm.num_rows / max_rows))
    targets = [out] if count == 1 else part_paths(out, count)
    stale = [p for p in [*existing_parts(out), out] if p not in targets]
    files = []
    with atomic_files(targets, retire=[export_manifest_path(out)], remove=stale, staging=out) as staged:
        for i, (tmp, target) in enumerate(zip(staged, targets, strict=True)):
            chunk = crm.slice(i * max_rows, max_rows) if count > 1 else crm
            if fmt == "csv":
                pacsv.write_csv(chunk, tmp, pacsv.WriteOptions(include_header=True, delimiter=","))
            else:
                pq.write_table(chunk, tmp, compression="zstd")
            files.append(
                {
                    "file": target.name,
                    "rows": chunk.num_rows,
                    "bytes": tmp.stat().st_size,
                    "sha256": file_fingerprint(tmp),
                }
            )
    return files
