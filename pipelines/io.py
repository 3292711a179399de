"""File I/O for the stages: locating contract tables, reading them, writing outputs atomically.

Every writer here writes to a temporary sibling first and renames it into place, so a crash or a
failed validation never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import DataContractError

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


def read_csv_as_text(path: Path) -> pd.DataFrame:
    """Read a CSV with every column as text, so ids like ``00042`` keep their zeros and parsing is ours.

    Raises DataContractError naming the file and byte offset when the file is not UTF-8.
    """
    try:
        return pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8", encoding_errors="strict"
        )
    except UnicodeDecodeError as exc:
        raise DataContractError(
            f"{path} is not valid UTF-8 (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r}). "
            f"Re-encode it, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed.csv`, and run again."
        ) from exc
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except pd.errors.ParserError as exc:
        raise DataContractError(f"{path} is not a well-formed CSV: {exc}. Fix the file and run again.") from exc


def read_table_file(path: Path) -> pd.DataFrame:
    """Read one contract table file as it is (CSV as text, Parquet with its own types)."""
    if path.suffix == ".csv":
        return read_csv_as_text(path)
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataContractError(f"{path} is not a readable Parquet file ({exc}). Re-export it and run again.") from exc


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``, on error delete it.

    Works for files and directories. A directory target is swapped in with two renames, so readers see
    either the old or the new complete directory.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staged = tmp / target.name
    try:
        yield staged
        if not staged.exists():
            raise RuntimeError(f"nothing was written to the staging path for {target}")
        if staged.is_dir() and target.exists():
            old = tmp / (target.name + ".old")
            os.replace(target, old)
            os.replace(staged, target)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(staged, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(df: pd.DataFrame | pa.Table, path: Path) -> None:
    """Write a DataFrame or Arrow table to Parquet atomically (zstd, no pandas index)."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_json(obj: Any, path: Path) -> None:
    """Write JSON atomically, keys sorted and indented so diffs stay readable."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
