"""Command ``churn contacts``: who was sent which action, and who was held out, as a ``contacts`` table.

Closes the loop from scores to measurement: ``churn score`` picks an action per customer and holds a random
control group out (``control_group``, ``recommended_action`` ``hold_out``), ``churn export`` hands that to the CRM,
the CRM sends; this command turns the export plus the day it was sent into the contract's optional ``contacts``
table (:data:`features.contract.CONTACTS`), which ``churn validate`` checks with the shop's other tables.

Input ``--scores``, one of:

- the CRM file of ``churn export`` (CSV or Parquet). Its manifest (``<file>.manifest.json``) is read when it is
  there: ``column_mapping`` turns CRM column names (``export.column_names``) back into the scores' names, and
  ``pseudonymised_ids`` says whether the ids can still be joined. An export split into parts is read whole when
  ``--scores`` names the export's ``--out`` (the manifest lists the parts), or one part when it names that part;
- the scores file of ``churn score`` (``data/scores/scores.parquet``, or a Spark scores directory).

Only ``customer_id``, ``intended_action``, ``control_group`` and, when present, ``recommended_action`` and
``as_of_date`` are read, so exports of earlier scores schema versions work too. Refused (DataContractError, exit
3): pseudonymised ids (the manifest says so, or every id is ``p`` + 16 hex digits: a pseudonym cannot be joined
to the shop's orders, validate would quarantine every row), a missing column, empty or unreadable values,
repeated customers, control-group rows whose ``recommended_action`` is not ``hold_out`` (a damaged file).

Output ``--out`` (``.parquet`` or ``.csv`` by its suffix, written atomically): one row per customer whose
``intended_action`` is not ``no_action``, in the file's order. From scores v1.3 on (a ``contact`` column) only the
contact list is sent: the treated customers are those with ``contact`` true, and the control customers those of
the control group whose intended action would have made the list (a real action with positive
``expected_profit``), so that treatment and control stay comparable:

- ``customer_id`` as the shop knows it: the export's formula escaping (a ``'`` before a leading ``= + - @``, tab or
  carriage return, models.crm) is undone, so ``'=A17`` is ``=A17`` again;
- ``contact_ts`` = ``--sent-on`` (a day is 00:00 UTC; a date and time with a zone is converted to UTC);
- ``action`` = ``intended_action``: what a control customer would have got, so treated and control customers of
  one action compare;
- ``group`` = ``control`` where ``control_group`` is true, else ``treatment``;
- ``campaign_id`` = ``--campaign-id``, or ``<sent-on day>-<action>`` (``2025-06-01-winback_email_coupon``);
- ``cost`` from ``--cost`` (``ACTION=AMOUNT`` per action, or one ``AMOUNT`` for all) for treatment rows; a control
  row, never contacted, costs 0 where its action has a cost (empty where not); ``channel`` is not known from an
  export.
  Optional columns without a single value are left out (validate would drop them with a warning).

``--append`` adds the rows to an existing contacts file (CSV or Parquet, as written here or by the shop in the
contract's form): a customer already in the file with the same ``campaign_id`` is not added again, so running
the same command twice changes nothing. Without ``--append`` an existing ``--out`` is refused (UsageError, exit 4),
since it may hold the history of earlier campaigns. A ``--sent-on`` that is not ISO 8601 or lies before the
scores' ``as_of_date`` is refused too (UsageError). Nothing is written when anything is refused.

Messages name files, columns, counts and row numbers, never a customer id.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from churn_pipeline.errors import DataContractError, UsageError
from churn_pipeline.features.contract import CONTACTS
from churn_pipeline.features.schemas import STRING_DTYPE
from churn_pipeline.models.contact_log import (
    MAX_EXAMPLES,
    build_contacts,
    checked_scores,
    contacts_summary,
    contacts_table,
    merge_contacts,
)
from churn_pipeline.models.scores_schema import METADATA_KEY
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.io import (
    atomic_path,
    check_file_target,
    export_manifest_path,
    read_csv_as_text,
    read_export_manifest,
)

__all__ = ["Source", "parse_costs", "parse_sent_on", "read_scores_file", "run"]

SUFFIXES = (".parquet", ".csv")
NEEDED = ("customer_id", "intended_action", "control_group")
OPTIONAL = ("recommended_action", "as_of_date", "contact", "expected_profit")
_PART = re.compile(r"(?P<stem>.+)\.part-\d{4,}(?P<suffix>\.[^.]+)")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?")
_EXPORT_AGAIN = "Give the file `churn export` wrote, or export the scores again."


@dataclass
class Source:
    """The scores or export file(s) read: the needed columns (scores names), where they came from."""

    frame: pd.DataFrame
    files: list[Path]
    exported: bool  # written by `churn export` (formula-escaped text), not by `churn score`
    manifest: dict[str, Any] | None


# ------------------------------------------------------------------------------------------------------------ arguments
def parse_sent_on(value: str) -> pd.Timestamp:
    """``--sent-on`` as naive UTC (microseconds): ``YYYY-MM-DD`` is 00:00 UTC; an ISO 8601 date and time without a
    zone is UTC, with one is converted. Anything else is a UsageError (``01/06/2025`` could be January or June)."""
    text = str(value).strip()
    try:
        if not (_ISO_DAY.fullmatch(text) or _ISO_INSTANT.fullmatch(text)):
            raise ValueError("not ISO 8601")
        ts = pd.Timestamp(text)
    except ValueError as exc:
        raise UsageError(
            f"--sent-on {value!r} is not a date in the form YYYY-MM-DD (e.g. 2025-06-01, read as 00:00 UTC) or an "
            f"ISO 8601 date and time (e.g. 2025-06-01T09:30:00Z or 2025-06-01T11:30:00+02:00; without a zone it is "
            f"UTC); other spellings such as 01/06/2025 are refused, since the order of day and month would be a "
            f"guess. Nothing was written."
        ) from exc
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("us")


def parse_costs(items: list[str] | None) -> tuple[float | None, dict[str, float]]:
    """``--cost`` values: ``ACTION=AMOUNT`` per action and at most one bare ``AMOUNT`` for every other action.
    Returns (the default or None, the per-action costs); UsageError for anything else or a negative amount."""
    default, per_action = None, {}
    for item in items or []:
        action, sep, amount = str(item).rpartition("=")
        action = action.strip()
        try:
            number = float(amount)
        except ValueError:
            number = math.nan
        if (sep and not action) or not math.isfinite(number) or number < 0:
            raise UsageError(
                f"--cost {item!r} is not ACTION=AMOUNT (e.g. --cost winback_email_coupon=2.5) or one AMOUNT for every "
                f"action (e.g. --cost 0.1): the amount is the cost of one contact in the shop's currency, a number "
                f">= 0 with a dot for decimals. Nothing was written."
            )
        if not sep:
            if default is not None:
                raise UsageError(f"--cost gives an amount for every action twice ({default:g} and {number:g}).")
            default = number
        elif per_action.setdefault(action, number) != number:
            raise UsageError(f"--cost gives action {action!r} two amounts ({per_action[action]:g} and {number:g}).")
    return default, per_action


# ------------------------------------------------------------------------------------- reading the scores or the export
def _manifest_of(path: Path) -> Path:
    """The manifest beside an export file; a part's is the export's (``scores.part-0002.csv`` -> ``scores.csv...``)."""
    part = _PART.fullmatch(path.name)
    return export_manifest_path(path.with_name(part["stem"] + part["suffix"]) if part else path)


def _files(path: Path, manifest: dict[str, Any] | None) -> list[Path]:
    if path.exists():
        return [path]
    parts = (manifest or {}).get("parts") or []
    if parts:
        files = [path.with_name(str(p["file"])) for p in parts]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise DataContractError(
                f"{path} was exported in {len(files)} parts, but {len(missing)} of them are gone "
                f"({', '.join(missing[:MAX_EXAMPLES])}). Run `churn export` again. Nothing was written."
            )
        return files
    raise DataContractError(
        f"--scores {path} does not exist: give the CRM file `churn export` wrote (e.g. data/export/scores.csv) or "
        f"the scores file of `churn score` (e.g. data/scores/scores.parquet). Nothing was written."
    )


def _read_one(path: Path, columns: dict[str, str]) -> tuple[pd.DataFrame, bool]:
    """The wanted columns of one file (renamed to the scores' names; absent ones left out) and whether the file
    came from `churn score` (a Parquet file or directory carrying the scores run summary)."""
    if path.suffix == ".csv":
        return read_csv_as_text(path, columns, fix=_EXPORT_AGAIN).rename(columns=columns), False
    try:
        if path.is_dir():
            import pyarrow.dataset as ds

            dataset = ds.dataset(path, format="parquet", partitioning="hive")
            names, scored = dataset.schema.names, True
            table = dataset.to_table(columns=[c for c in columns if c in names])
        else:
            schema = pq.read_schema(path)
            names, scored = schema.names, METADATA_KEY in (schema.metadata or {})
            table = pq.read_table(path, columns=[c for c in columns if c in names])
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataContractError(
            f"{path} is not a readable Parquet file ({exc}): give the file `churn export` or `churn score` wrote."
        ) from exc
    frame = table.to_pandas(types_mapper={pa.string(): STRING_DTYPE, pa.large_string(): STRING_DTYPE}.get)
    return frame.rename(columns=columns), scored


def read_scores_file(path: Path) -> Source:
    """The needed columns of a scores or export file (module docstring), under the scores' column names."""
    path = Path(path)
    if path.suffix not in SUFFIXES and not path.is_dir():
        raise UsageError(
            f"--scores {path} is neither a .csv nor a .parquet file: give the CRM file `churn export` wrote or the "
            f"scores file of `churn score`. Nothing was written."
        )
    manifest = read_export_manifest(_manifest_of(path))
    files = _files(path, manifest)
    mapping = {str(k): str(v) for k, v in ((manifest or {}).get("column_mapping") or {}).items()}
    crm_name = {name: mapping.get(name, name) for name in NEEDED + OPTIONAL}
    columns = {crm: name for name, crm in crm_name.items()}
    frames, scored = [], []
    for file in files:
        frame, from_score = _read_one(file, columns)
        missing = [crm_name[c] for c in NEEDED if c not in frame.columns]
        if missing:
            renamed = (
                ""
                if manifest is not None
                else (" If the export renamed its columns (export.column_names), keep its manifest beside it.")
            )
            raise DataContractError(
                f"{file} lacks column(s) {', '.join(missing)}, which say whom the CRM was to contact: give the CRM "
                f"file `churn export` wrote or the scores file of `churn score`.{renamed} Nothing was written."
            )
        frames.append(frame)
        scored.append(from_score)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return Source(frame, files, exported=not all(scored), manifest=manifest)


def _where(source: Source) -> str:
    first = source.files[0]
    return str(first) if len(source.files) == 1 else f"{first.parent}/{first.name} .. {source.files[-1].name}"


# ------------------------------------------------------------------------------------ building and writing the contacts
def _existing(out: Path) -> pa.Table:
    """The contacts file to append to, as it is (CSV as text), with the contract's required columns."""
    if out.suffix == ".csv":
        table = pa.Table.from_pandas(read_csv_as_text(out), preserve_index=False)
    else:
        try:
            table = pq.read_table(out)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataContractError(
                f"--out {out} is not a readable Parquet file ({exc}). Nothing was written."
            ) from exc
    missing = [c for c in CONTACTS.required_columns if c not in table.column_names]
    if missing:
        raise DataContractError(
            f"--out {out} ({table.num_rows:,} rows) lacks the contacts column(s) {', '.join(missing)}, so it is not a "
            f"contacts file to append to: give the contacts file of the shop (`churn contract` lists its columns), "
            f"or a new file. Nothing was written."
        )
    return table


def _merged(new: pd.DataFrame, out: Path) -> tuple[pa.Table, int]:
    """The table to write: the new contacts (:func:`models.contact_log.contacts_table`), on ``--append`` after the
    existing file's rows (:func:`models.contact_log.merge_contacts`); and the number of new rows left out because
    the file has them already."""
    fresh = contacts_table(new, csv=out.suffix == ".csv")
    if not out.exists():
        return fresh, 0
    return merge_contacts(_existing(out), fresh, f"--out {out}")


def _write(table: pa.Table, out: Path) -> None:
    """``table`` to ``out`` atomically: CSV with a header, or zstd Parquet, by the suffix."""
    with atomic_path(out, directory=False) as tmp:
        if out.suffix == ".csv":
            pacsv.write_csv(table, tmp, pacsv.WriteOptions(include_header=True, delimiter=","))
        else:
            pq.write_table(table, tmp, compression="zstd")


def run(
    scores: Path,
    sent_on: str,
    out: Path,
    *,
    campaign_id: str | None = None,
    cost: list[str] | None = None,
    append: bool = False,
    now: pd.Timestamp | None = None,
) -> dict[str, Any]:
    """Write the contacts of one send (module docstring); returns rows added, rows already there, per action and
    group. ``now`` (naive UTC) stands in for the clock in the future-date note."""
    out = Path(out)
    ts = parse_sent_on(sent_on)
    costs = parse_costs(cost)
    if campaign_id is not None and not campaign_id.strip():
        raise UsageError("--campaign-id is empty: give a campaign id, or leave the option out for <day>-<action>.")
    if out.suffix not in SUFFIXES:
        raise UsageError(
            f"--out {out} must end in .parquet or .csv (the contacts file's format follows its suffix). Nothing was "
            f"written."
        )
    check_file_target(out, "--out", "contacts.parquet")
    if out.exists() and not append:
        raise UsageError(
            f"--out {out} exists and may hold earlier campaigns: pass --append to add these contacts to it (a "
            f"customer already there with the same campaign_id is not added again), or give a new file. Nothing was "
            f"written."
        )
    with step("contacts") as s:
        source = read_scores_file(Path(scores))
        checked = checked_scores(
            source.frame,
            _where(source),
            exported=source.exported,
            flagged=(source.manifest or {}).get("pseudonymised_ids"),
        )
        if "as_of_date" in checked.columns and checked["as_of_date"].notna().any():
            as_of = checked["as_of_date"].max()
            if ts < as_of:
                raise UsageError(
                    f"--sent-on {sent_on} is before the scores' as_of_date {as_of.date()}: the scores say whom to "
                    f"contact from that day on, so no delivery before it can be theirs. Give the day the CRM sent the "
                    f"actions. Nothing was written."
                )
        frame = build_contacts(checked, ts, campaign_id.strip() if campaign_id else None, costs)
        unused = sorted(set(costs[1]) - set(frame["action"].unique()))
        if unused:
            console.print(
                f"[yellow]--cost names action(s) no contact has: {', '.join(unused)} (the actions are "
                f"{', '.join(sorted(frame['action'].unique())) or 'none'})[/yellow]",
                soft_wrap=True,
            )
        clock = now if now is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
        if ts > clock:
            console.print(
                f"[yellow]--sent-on {ts} is in the future: churn validate quarantines contacts after its "
                f"max_timestamp (by default the time of the run) until that time has passed[/yellow]",
                soft_wrap=True,
            )
        table, already = _merged(frame, out)
        _write(table, out)
        added = len(frame) - already
        s.rows = added
        again = f", {already:,} already in {out.name} not added again" if already else ""
        s.detail = f"{contacts_summary(frame)}{again} -> {out} ({table.num_rows:,} rows in the file)"
    counts = frame.groupby(["action", "group"], sort=True).size()
    return {
        "rows_added": added,
        "rows_already_there": already,
        "rows_in_file": table.num_rows,
        "by_action_group": {f"{a}/{g}": int(n) for (a, g), n in counts.items()},
        "out": str(out),
    }
