"""User-facing errors: the CLI prints their message as one paragraph and exits non-zero, no traceback."""

from __future__ import annotations


class ChurnError(Exception):
    """An expected failure with a message that says what is wrong and how to fix it."""

    exit_code = 1


class DataContractError(ChurnError):
    """Input data that cannot be used: a missing required table or column, an empty file, bad encoding."""

    exit_code = 3


class ParamsError(ChurnError):
    """A params.yaml section that is missing or holds a wrong value."""

    exit_code = 4
