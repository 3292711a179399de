"""User-facing errors: the CLI prints their message as one paragraph and exits non-zero, no traceback."""

from __future__ import annotations

from pathlib import Path


class ChurnError(Exception):
    """An expected failure with a message that says what is wrong and how to fix it."""

    exit_code = 1


class DataContractError(ChurnError):
    """Input data that cannot be used: a missing required table or column, an empty file, bad encoding."""

    exit_code = 3


def repeated_customers(where: str, repeated: int, rows: int) -> DataContractError:
    """The customers table repeats customer ids: each customer's attributes must be one row."""
    return DataContractError(
        f"{where}: column customer_id repeats in {repeated:,} of {rows:,} rows; a customer's attributes must be "
        f"one row. Run `churn validate` on the raw data (it keeps one copy of exact duplicates and quarantines "
        f"conflicting ones) and point `--data` at its output."
    )


def validated_sibling(data: str | Path) -> Path:
    """Where to suggest validating ``data`` into: the sibling ``<name>_validated`` (apart from the raw data)."""
    data = Path(data)
    if data.name in ("", ".."):  # "." or ".." name no directory to put a sibling beside
        data = data.resolve()
    return data.with_name(f"{data.name}_validated") if data.name else Path("validated")


def validate_first(data: str | Path, raw: bool = False) -> str:
    """The fix for a stage pointed at a directory that is not validated data: run ``churn validate`` into a
    directory of its own. Never ``--out`` equal to ``--data``: validate replaces its output directory whole, so
    that would delete the raw tables (``churn validate`` refuses it). ``raw``: ``data`` exists and may hold the
    raw tables themselves, so name a sibling directory for the output."""
    data = Path(data)
    if raw:
        out = validated_sibling(data)
        return (
            f"validate it into a separate directory and point --data there: `churn validate --data {data} --out "
            f"{out}`, then --data {out} (never --out {data}: validate replaces its output directory whole)."
        )
    return (
        f"run `churn validate --data RAW_DIR --out {data}` first, with RAW_DIR the directory of the raw tables, "
        f"apart from {data} (validate replaces its output directory whole)."
    )


class ParamsError(ChurnError):
    """A params.yaml section that is missing or holds a wrong value."""

    exit_code = 4


class UsageError(ChurnError):
    """A wrong command-line argument or environment: a malformed date, an output path that is a directory, a
    registered model whose files are gone. Same exit code as ParamsError: the data is fine, the run is not."""

    exit_code = 4
