"""Time-aware train / validation / test split of a (customer x cutoff) panel by cutoff.

The same customer appears at several cutoffs, so rows are never split at random: whole cutoffs go to one
split, and every training cutoff is earlier than every validation cutoff, which is earlier than the test
cutoff.

The rule (cutoffs are 00:00 UTC instants; the label at ``c`` covers ``[c, c + h days)``):

- **test** = the latest cutoff given. Pass only cutoffs whose label is complete (``c + h <= end of data``),
  so the test cutoff is the latest fully labelled one.
- **validation** = the ``n_validation`` latest cutoffs before the test cutoff (that survive the purge).
- **train** = every earlier cutoff (that survives the purge).
- **purge** (default): a cutoff ``c`` may sit in an earlier split only if its label horizon ends at or
  before the first cutoff ``b`` of the next split: ``c + h <= b``. Then no label used to train (or to
  stop early and calibrate) covers time that a later split's labels or features cover, so validation and
  test never share future information with training. Cutoffs failing it are dropped (listed in
  ``TimeSplit.purged``), not moved. With monthly cutoffs and a 90-day horizon this drops the 2-3 cutoffs
  just before validation and just before test.

A split that would be empty (or a validation split with fewer than ``n_validation`` cutoffs) raises
``ValueError`` saying how many cutoffs were needed and what the horizon allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

__all__ = ["TimeSplit", "split_frame", "time_split"]


@dataclass(frozen=True)
class TimeSplit:
    """Cutoffs per split, each sorted ascending (tuples of ``pd.Timestamp``, so the split is immutable).

    ``test`` holds exactly one cutoff. ``purged`` lists the cutoffs dropped by the purge rule (in no split).
    """

    train: tuple[pd.Timestamp, ...]
    validation: tuple[pd.Timestamp, ...]
    test: tuple[pd.Timestamp, ...]
    purged: tuple[pd.Timestamp, ...] = ()

    @property
    def test_cutoff(self) -> pd.Timestamp:
        """The single test cutoff."""
        return self.test[0]


def _fmt(cutoffs: Iterable[pd.Timestamp]) -> str:
    return ", ".join(str(c.date()) if c == c.normalize() else str(c) for c in cutoffs) or "none"


def time_split(
    cutoffs: Iterable[pd.Timestamp | str], label_horizon_days: int, n_validation: int, purge: bool = True
) -> TimeSplit:
    """Split labelled cutoffs into train < validation < test (see the module docstring for the rule).

    ``cutoffs``: cutoffs whose label (horizon ``label_horizon_days`` days) is complete; duplicates are
    ignored, order does not matter. ``n_validation`` >= 1 cutoffs go to validation. ``purge`` drops cutoffs
    whose label horizon ``[c, c + h)`` runs past the first cutoff of the next split.
    """
    if label_horizon_days <= 0:
        raise ValueError(f"label_horizon_days must be a positive number of days, got {label_horizon_days}")
    if n_validation < 1:
        raise ValueError(f"n_validation must be >= 1 (validation drives early stopping), got {n_validation}")
    cs = sorted({pd.Timestamp(c) for c in cutoffs})
    if not cs:
        raise ValueError("time_split needs at least one cutoff")
    h = pd.Timedelta(days=label_horizon_days)
    test = cs[-1]

    def clears(c: pd.Timestamp, boundary: pd.Timestamp) -> bool:
        return (c + h <= boundary) if purge else (c < boundary)

    rule = f"c + {label_horizon_days} days <= next split's first cutoff" if purge else "c before the next split"
    before_test = [c for c in cs[:-1] if clears(c, test)]
    if len(before_test) < n_validation + 1:
        raise ValueError(
            f"cannot split {len(cs)} cutoffs ({_fmt(cs)}) into train, {n_validation} validation and 1 test "
            f"cutoff: only {len(before_test)} cutoff(s) before the test cutoff {_fmt([test])} satisfy {rule}, "
            f"and at least {n_validation + 1} are needed. Use more (or earlier) cutoffs, a shorter horizon, "
            f"fewer validation cutoffs{', or purge=False' if purge else ''}."
        )
    validation = before_test[-n_validation:]
    train = [c for c in cs if c < validation[0] and clears(c, validation[0])]
    if not train:
        raise ValueError(
            f"the training split would be empty: no cutoff before the first validation cutoff "
            f"{_fmt(validation[:1])} satisfies {rule} (cutoffs: {_fmt(cs)}). Use more (or earlier) cutoffs, "
            f"a shorter horizon, fewer validation cutoffs{', or purge=False' if purge else ''}."
        )
    used = {*train, *validation, test}
    return TimeSplit(
        train=tuple(train),
        validation=tuple(validation),
        test=(test,),
        purged=tuple(c for c in cs if c not in used),
    )


def split_frame(
    panel: pd.DataFrame, split: TimeSplit, cutoff_column: str = "cutoff"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The panel's rows for (train, validation, test), selected by ``cutoff_column``; purged cutoffs and
    cutoffs in no split are left out. Row order within each part is the panel's. Raises ``ValueError``
    when a part has no rows (a split cutoff missing from the panel)."""
    if cutoff_column not in panel.columns:
        raise ValueError(f"the panel has no {cutoff_column!r} column")
    cut = pd.to_datetime(panel[cutoff_column])
    parts = []
    for name, cs in (("train", split.train), ("validation", split.validation), ("test", split.test)):
        part = panel.loc[cut.isin(pd.DatetimeIndex(cs)).to_numpy()]
        if part.empty:
            raise ValueError(f"the panel has no rows at the {name} cutoff(s) {_fmt(cs)}")
        parts.append(part)
    return parts[0], parts[1], parts[2]
