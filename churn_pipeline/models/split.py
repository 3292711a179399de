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

Two more pieces build on the rule:

- :func:`plan_schedule` (``features.cutoffs.frequency: auto``) picks the cutoff grid and the validation count
  that let this split exist on the data at hand: the coarsest of monthly, semi-monthly and weekly with the
  most validation cutoffs (at most ``max_validation``), purged. When no grid allows a purged split (about a
  year of history with half-year horizons: a purged split needs two horizons of labelled cutoffs before the
  test cutoff's own horizon), it falls back to the same split without the purge and says so, because the
  test metrics then share label time with training.
- :func:`deployment_split` is the split of the model that is deployed: the same rule moved forward by one
  split, so the test cutoff's labels are used too. Its validation cutoffs are the latest labelled ones (the
  test cutoff among them: early stopping and calibration), its training cutoffs every earlier one that
  clears the purge. The held-out split's test metrics describe the recipe; the deployed model is the recipe
  refitted on the newest labels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from churn_pipeline.errors import DataContractError
from churn_pipeline.features.cutoffs import AUTO_GRIDS, CutoffSchedule, data_end, training_cutoffs

__all__ = [
    "SchedulePlan",
    "TimeSplit",
    "deployment_split",
    "labelled_splits",
    "plan_schedule",
    "split_frame",
    "time_split",
]


@dataclass(frozen=True)
class TimeSplit:
    """Cutoffs per split, each sorted ascending (tuples of ``pd.Timestamp``, so the split is immutable).

    ``test`` holds exactly one cutoff (none for a :func:`deployment_split`). ``purged`` lists the cutoffs
    dropped by the purge rule (in no split).
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


def deployment_split(
    cutoffs: Iterable[pd.Timestamp | str], label_horizon_days: int, n_validation: int, purge: bool = True
) -> TimeSplit:
    """The split of the deployed model: validation = the ``n_validation`` latest labelled cutoffs (the test
    cutoff of :func:`time_split` among them), train = every earlier cutoff that clears the purge rule against
    the first of them, test = none. Raises ``ValueError`` when the training part would be empty."""
    cs = sorted({pd.Timestamp(c) for c in cutoffs})
    if len(cs) < n_validation + 1:
        raise ValueError(f"deployment_split needs more than {n_validation} cutoffs, got {len(cs)}")
    h = pd.Timedelta(days=label_horizon_days)
    validation = cs[-n_validation:]
    train = [c for c in cs[:-n_validation] if c + h <= validation[0] or not purge]
    if not train:
        raise ValueError(
            f"the deployed model's training split would be empty: no cutoff before {_fmt(validation[:1])} "
            f"satisfies c + {label_horizon_days} days <= it (cutoffs: {_fmt(cs)})"
        )
    purged = tuple(c for c in cs[:-n_validation] if c not in train)
    return TimeSplit(train=tuple(train), validation=tuple(validation), test=(), purged=purged)


def labelled_splits(
    cutoffs: Iterable[pd.Timestamp | str],
    label_horizon_days: int,
    n_validation: int,
    purge: bool,
    *,
    what: str,
    remedy: str,
) -> tuple[TimeSplit, TimeSplit]:
    """The held-out :func:`time_split` and the deployed model's :func:`deployment_split` of the cutoffs whose
    label is complete (the one split of the train stage and of the evaluate stage's backtest refits; the
    deployment split exists whenever the held-out one does). When the cutoffs allow no split, a
    ``DataContractError`` reading ``"{what}: {why} {remedy}"``: ``what`` names the split, ``remedy`` says which
    params make room."""
    cs = list(cutoffs)
    try:
        return (
            time_split(cs, label_horizon_days, n_validation, purge),
            deployment_split(cs, label_horizon_days, n_validation, purge),
        )
    except ValueError as exc:
        raise DataContractError(f"{what}: {exc} {remedy}") from exc


@dataclass(frozen=True)
class SchedulePlan:
    """The cutoff grid and split settings chosen by :func:`plan_schedule`, with the reason in one line."""

    frequency: str
    cutoffs: tuple[pd.Timestamp, ...]
    n_validation: int
    purge: bool
    reason: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (for the feature manifest, read back by ``train``)."""
        return {
            "frequency": self.frequency,
            "n_validation": self.n_validation,
            "purge": self.purge,
            "reason": self.reason,
        }


def plan_schedule(
    first_ts: pd.Timestamp,
    last_ts: pd.Timestamp,
    horizons_days: Iterable[int],
    span_months: int,
    max_validation: int = 2,
) -> SchedulePlan:
    """Training cutoffs for ``features.cutoffs.frequency: auto``, and the validation count and purge they allow.

    Tries the grids of ``features.cutoffs.AUTO_GRIDS`` (monthly, semi-monthly, weekly), each over the latest
    ``span_months`` months of cutoffs whose shortest horizon is complete, with ``max_validation`` down to 1
    validation cutoffs; the first grid and count on which :func:`time_split` works for every horizon in
    ``horizons_days`` wins. Purged splits are tried on every grid first; only when none works, the unpurged
    split (the ``reason`` says why and what it costs). Raises ``ValueError`` naming the data span when even
    the unpurged split is impossible.
    """
    horizons = sorted({int(h) for h in horizons_days})
    end = data_end(last_ts)
    tried: list[str] = []
    for purge in (True, False):
        for frequency, per_month in AUTO_GRIDS:
            schedule = CutoffSchedule(frequency=frequency, count=max(1, math.ceil(span_months * per_month)))
            cutoffs, _ = training_cutoffs(schedule, first_ts, last_ts, horizons[0])
            failure = ""
            for n_validation in range(max_validation, 0, -1):
                try:
                    for h in horizons:
                        time_split([c for c in cutoffs if c + pd.Timedelta(days=h) <= end], h, n_validation, purge)
                except ValueError as exc:
                    failure = str(exc).split(":")[0] if "training split" in str(exc) else "too few cutoffs"
                    continue
                chosen = (
                    f"{frequency} cutoffs ({len(cutoffs)}, {_fmt(cutoffs[:1])}..{_fmt(cutoffs[-1:])}) with "
                    f"{n_validation} validation cutoff(s), {'purged' if purge else 'NOT purged'}"
                )
                if purge:
                    why = "the coarsest grid on which the purged time split has train, validation and test cutoffs"
                else:
                    why = (
                        f"no grid allows a purged split with {horizons[-1]}-day labels on data from "
                        f"{pd.Timestamp(first_ts).date()} to {pd.Timestamp(last_ts).date()} (it needs about "
                        f"{horizons[0] + 2 * horizons[-1]} days); training labels overlap the validation and test "
                        f"periods, so test metrics are optimistic"
                    )
                rejected = f" (rejected: {'; '.join(tried)})" if tried else ""
                return SchedulePlan(frequency, tuple(cutoffs), n_validation, purge, f"{chosen}: {why}{rejected}")
            tried.append(f"{frequency}{' purged' if purge else ''}: {failure or 'no cutoff'}")
    raise ValueError(
        f"no cutoff schedule fits data from {pd.Timestamp(first_ts).date()} to {pd.Timestamp(last_ts).date()} with "
        f"{', '.join(map(str, horizons))}-day labels ({'; '.join(tried)}): use more data or shorter "
        f"labels.*_horizon_days."
    )
