"""Cutoff dates and the day arithmetic of point-in-time windows.

Conventions (every feature and label module follows them):

- A cutoff ``c`` is a calendar day, meaning the instant 00:00 UTC of that day.
- A feature at ``c`` sees only rows with timestamp ``< c``. A window of ``w`` days at ``c`` is ``[c - w days, c)``.
- A label at ``c`` with horizon ``h`` days sees only rows in ``[c, c + h days)``.
- The end of the data is the day after the last observed timestamp (``floor(max_ts) + 1 day``), so every
  observed row lies strictly before it. A label with horizon ``h`` at ``c`` is complete only when
  ``c + h <= data_end``.

Because cutoffs and window edges are whole days, a row's day number (days since 1970-01-01 of its UTC
timestamp) decides exactly which windows it falls in: ``ts < c`` iff ``day(ts) < day(c)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from churn_pipeline.errors import DataContractError

Frequency = Literal["monthly", "semimonthly", "weekly", "daily"]
FREQUENCIES = ("auto", "monthly", "semimonthly", "weekly", "daily")
# The grids ``frequency: auto`` tries, coarsest first (models.split.plan_schedule), and how many cutoffs of each
# cover the span of ``count`` months.
AUTO_GRIDS: tuple[tuple[Frequency, float], ...] = (("monthly", 1.0), ("semimonthly", 2.0), ("weekly", 52.0 / 12.0))
EPOCH = pd.Timestamp("1970-01-01")


@dataclass(frozen=True)
class CutoffSchedule:
    """How training cutoffs are chosen.

    ``frequency`` with ``count``: the ``count`` latest cutoffs on that grid (month starts, the 1st and 15th of
    each month, Mondays, or days) whose shortest label horizon is complete. ``auto`` (the default): the coarsest
    of monthly, semi-monthly and weekly on which the purged time split of the training cutoffs has train,
    validation and test cutoffs, with ``count`` read as a span in months (``models.split.plan_schedule``).
    ``dates``: explicit dates instead (each still must have a complete shortest horizon, or it is dropped with
    a message). ``scoring_date``: the scoring cutoff; None means the end of the data.
    """

    frequency: Frequency | Literal["auto"] = "auto"
    count: int = 24
    dates: tuple[str, ...] = ()
    scoring_date: str | None = None

    def __post_init__(self) -> None:
        if self.frequency not in FREQUENCIES:
            raise ValueError(f"frequency must be one of {', '.join(FREQUENCIES)}, got {self.frequency!r}")
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")


def to_day(ts: pd.Timestamp | str) -> int:
    """Day number (days since 1970-01-01) of a UTC instant, rounded down to its day."""
    return int((pd.Timestamp(ts).floor("D") - EPOCH) // pd.Timedelta(days=1))


def from_day(day: int) -> pd.Timestamp:
    """The instant 00:00 UTC of day number ``day`` (naive UTC)."""
    return EPOCH + pd.Timedelta(days=int(day))


def data_end(max_ts: pd.Timestamp) -> pd.Timestamp:
    """The day after the last observed timestamp: the first instant the data says nothing about."""
    return pd.Timestamp(max_ts).floor("D") + pd.Timedelta(days=1)


def grid_before(end: pd.Timestamp, frequency: Frequency, count: int) -> list[pd.Timestamp]:
    """The ``count`` latest grid dates ``<= end`` (month starts, the 1st and 15th, Mondays or days), oldest
    first."""
    end = pd.Timestamp(end).floor("D")
    if frequency == "monthly":
        last = end.replace(day=1)
        dates = pd.date_range(end=last, periods=count, freq="MS")
    elif frequency == "semimonthly":
        last = end.replace(day=15 if end.day >= 15 else 1)
        dates = pd.date_range(end=last, periods=count, freq="SMS")
    elif frequency == "weekly":
        last = end - pd.Timedelta(days=end.weekday())
        dates = pd.date_range(end=last, periods=count, freq="7D")
    else:
        dates = pd.date_range(end=end, periods=count, freq="D")
    return list(dates)


def training_cutoffs(
    schedule: CutoffSchedule, first_ts: pd.Timestamp, last_ts: pd.Timestamp, min_horizon_days: int
) -> tuple[list[pd.Timestamp], list[str]]:
    """Training cutoffs whose shortest label horizon lies inside the data, and messages about dropped ones.

    A cutoff must also be after the first observed day (before it nobody is a customer yet). ``frequency:
    auto`` is resolved by the caller (``models.split.plan_schedule``) and is an error here.
    """
    if schedule.frequency == "auto" and not schedule.dates:
        raise ValueError("frequency 'auto' is resolved by models.split.plan_schedule, not here")
    end = data_end(last_ts)
    latest = end - pd.Timedelta(days=min_horizon_days)
    first_day = pd.Timestamp(first_ts).floor("D")
    messages: list[str] = []
    if schedule.dates:
        wanted = sorted({pd.Timestamp(d).floor("D") for d in schedule.dates})
    else:
        wanted = grid_before(latest, schedule.frequency, schedule.count)
    kept = []
    for c in wanted:
        if c > latest:
            messages.append(
                f"cutoff {c.date()} dropped: its {min_horizon_days}-day label horizon ends after the "
                f"data ({end.date()})"
            )
        elif c <= first_day:
            messages.append(f"cutoff {c.date()} dropped: no data before it (data starts {first_day.date()})")
        else:
            kept.append(c)
    return kept, messages


def scoring_cutoff(
    schedule: CutoffSchedule,
    last_ts: pd.Timestamp,
    *,
    as_of: pd.Timestamp | None = None,
    first_ts: pd.Timestamp | None = None,
    source: object = None,
) -> pd.Timestamp:
    """The one cutoff a scoring table is built at (``churn features`` and ``churn score``, both engines): ``as_of``
    (``--as-of``, a parsed day) or ``schedule.scoring_date``, each floored to its day, or by default the end of the
    data. Given ``first_ts`` (the first order), a cutoff on or before its day is a DataContractError (nobody has
    an order before it), naming ``source`` (the data read) when given."""
    if as_of is not None:
        cutoff = pd.Timestamp(as_of).floor("D")
    elif schedule.scoring_date is not None:
        cutoff = pd.Timestamp(schedule.scoring_date).floor("D")
    else:
        cutoff = data_end(last_ts)
    if first_ts is not None and cutoff <= pd.Timestamp(first_ts).floor("D"):
        what = "--as-of" if as_of is not None else "as-of date"
        where = f" in {source}" if source is not None else ""
        raise DataContractError(
            f"{what} {cutoff.date()} is not after the first order ({pd.Timestamp(first_ts).date()}){where}: no "
            f"customer has an order before it. Use a later --as-of (the data runs to {pd.Timestamp(last_ts).date()})."
        )
    return cutoff


def slot_boundaries(cutoff_days: np.ndarray, offsets_days: np.ndarray) -> np.ndarray:
    """Sorted unique day numbers ``c + o`` for every cutoff ``c`` and offset ``o``: the edges of every window
    and horizon the table needs. Rows are bucketed into the slots between consecutive edges."""
    return np.unique((cutoff_days[:, None] + offsets_days[None, :]).ravel()).astype(np.int64)


def slot_of_day(days: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """Slot of each day: the number of boundaries ``<= day``.

    A row in slot ``s`` lies before boundary ``b_j`` iff ``s <= j``; so the sum of slots ``0..j`` is the total
    of everything strictly before ``b_j``.
    """
    return np.searchsorted(boundaries, days, side="right").astype(np.int32)
