"""User-facing errors: the CLI prints their message as one paragraph and exits non-zero, no traceback."""

from __future__ import annotations


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


class ParamsError(ChurnError):
    """A params.yaml section that is missing or holds a wrong value."""

    exit_code = 4
