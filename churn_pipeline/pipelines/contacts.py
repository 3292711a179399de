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

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from churn_pipeline.errors import DataContractError, UsageError
from churn_pipeline.features.contract import CONTACTS
from churn_pipeline.features.schemas import STRING_DTYPE, arrow_schema
from churn_pipeline.features.validation import BOOL_TOKENS
from churn_pipeline.models.actions import DEFAULT_ACTION
from churn_pipeline.models.scores_schema import HOLD_OUT, METADATA_KEY
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.export import manifest_path
from churn_pipeline.pipelines.io import atomic_path, check_file_target, read_csv_as_text

__all__ = ["PSEUDONYM_PATTERN", "build_contacts", "parse_costs", "parse_sent_on", "read_scores_file", "run"]

SUFFIXES = (".parquet", ".csv")
NEEDED = ("customer_id", "intended_action", "control_group")
OPTIONAL = ("recommended_action", "as_of_date", "contact", "expected_profit")
# models.crm.pseudonymise: "p" + 16 lowercase hex digits.
PSEUDONYM_PATTERN = r"p[0-9a-f]{16}"
# models.crm.neutralise_formulas puts a "'" before these leading characters.
_ESCAPED_FORMULA = r"^'(?=[=+\-@\t\r])"
_PART = re.compile(r"(?P<stem>.+)\.part-\d{4,}(?P<suffix>\.[^.]+)")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?")
MAX_EXAMPLES = 5


@dataclass
class Source:
    """The scores or export file(s) read: the needed columns (scores names), where they came from."""

    frame: pd.DataFrame
    files: list[Path]
    exported: bool  # written by `churn export` (formula-escaped text), not by `churn score`
    manifest: dict[str, Any] | None


# --------------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Reading the scores or the export
# --------------------------------------------------------------------------------------------------------


def _manifest_of(path: Path) -> Path:
    """The manifest beside an export file; a part's is the export's (``scores.part-0002.csv`` -> ``scores.csv...``)."""
    part = _PART.fullmatch(path.name)
    return manifest_path(path.with_name(part["stem"] + part["suffix"]) if part else path)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise DataContractError(
            f"{path} is not a readable export manifest ({exc}). Run `churn export` again, or remove the damaged "
            f"manifest if the export beside it uses the scores' own column names and ids."
        ) from exc
    if not isinstance(manifest, dict):
        raise DataContractError(f"{path} is not an export manifest (not a JSON object). Run `churn export` again.")
    return manifest


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


def _read_csv(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    """The wanted columns of a CSV, every one as text (ids keep their zeros), as pipelines.io reads CSVs."""
    try:
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8",
            encoding_errors="strict",
            usecols=lambda c: c in columns,
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except UnicodeDecodeError as exc:
        raise DataContractError(
            f"{path} is not valid UTF-8 (byte {exc.start}): give the file `churn export` wrote."
        ) from exc
    except pd.errors.ParserError as exc:
        raise DataContractError(f"{path} is not a well-formed CSV: {exc}. Export the scores again.") from exc


def _read_one(path: Path, columns: dict[str, str]) -> tuple[pd.DataFrame, bool]:
    """The wanted columns of one file (renamed to the scores' names; absent ones left out) and whether the file
    came from `churn score` (a Parquet file or directory carrying the scores run summary)."""
    if path.suffix == ".csv":
        return _read_csv(path, columns).rename(columns=columns), False
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
    manifest = _read_manifest(_manifest_of(path))
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


def _row_examples(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)[:MAX_EXAMPLES]
    return ", ".join(f"row {r}" for r in rows)


def _text(values: pd.Series) -> pd.Series:
    """A column as stripped text, missing where empty."""
    text = values.astype(STRING_DTYPE).str.strip()
    return text.mask(text == "")


def _flags(values: pd.Series, where: str) -> np.ndarray:
    """``control_group`` as booleans (Parquet bools, or CSV text such as ``true``/``false``)."""
    if pd.api.types.is_bool_dtype(values.dtype):
        flags = values.astype("boolean")
    else:
        flags = _text(values).str.lower().map(BOOL_TOKENS)
    bad = flags.isna().to_numpy()
    if bad.any():
        raise DataContractError(
            f"{where}: column control_group is empty or not true/false in {int(bad.sum()):,} of {len(values):,} rows "
            f"({_row_examples(bad)}; data rows from 0). Export the scores again with `churn export`. Nothing was "
            f"written."
        )
    return flags.astype(bool).to_numpy()


def _checked(source: Source) -> pd.DataFrame:
    """customer_id (formula escaping undone), intended_action, control_group (bool) and recommended_action (when
    present), every rule of the module docstring checked; DataContractError otherwise."""
    where, frame = _where(source), source.frame
    ids = _text(frame["customer_id"])
    if source.exported:
        ids = ids.str.replace(_ESCAPED_FORMULA, "", regex=True)
    flagged = (source.manifest or {}).get("pseudonymised_ids")
    looks = bool(len(ids)) and bool(ids.str.fullmatch(PSEUDONYM_PATTERN).fillna(False).all())
    if flagged is True or (flagged is None and looks):
        why = "its manifest says pseudonymised_ids: true" if flagged else "every id is 'p' + 16 hex digits"
        raise DataContractError(
            f"{where}: the customer ids are pseudonymised ({why}; params export.pseudonymise_ids), so contacts made "
            f"from it cannot be joined to the shop's orders and customers (churn validate would quarantine every "
            f"row). Make the contacts from the scores file `churn score` wrote (e.g. --scores "
            f"data/scores/scores.parquet) or from an export with pseudonymise_ids: false. Nothing was written."
        )
    actions = _text(frame["intended_action"])
    for name, values in (("customer_id", ids), ("intended_action", actions)):
        empty = values.isna().to_numpy()
        if empty.any():
            raise DataContractError(
                f"{where}: column {name} is empty in {int(empty.sum()):,} of {len(frame):,} rows "
                f"({_row_examples(empty)}; data rows from 0). A file of `churn score` or `churn export` has none: "
                f"export the scores again. Nothing was written."
            )
    repeated = ids.duplicated().to_numpy()
    if repeated.any():
        raise DataContractError(
            f"{where}: column customer_id repeats in {int(repeated.sum()):,} of {len(frame):,} rows "
            f"({_row_examples(repeated)}); a scores file has one row per customer. Export the scores again. Nothing "
            f"was written."
        )
    control = _flags(frame["control_group"], where)
    out = pd.DataFrame({"customer_id": ids, "intended_action": actions, "control_group": control})
    if "recommended_action" in frame.columns:
        held = (_text(frame["recommended_action"]) == HOLD_OUT).fillna(False).to_numpy(dtype=bool)
        wrong = held != control
        if wrong.any():
            raise DataContractError(
                f"{where}: {int(wrong.sum()):,} of {len(frame):,} rows have control_group and recommended_action "
                f"{HOLD_OUT!r} out of step ({_row_examples(wrong)}): `churn score` holds out exactly the control "
                f"group, so the file was changed after scoring. Export the scores again. Nothing was written."
            )
    if "contact" in frame.columns and "expected_profit" in frame.columns:  # scores v1.3: the contact list
        out["contact"] = _flags(frame["contact"], where)
        out["expected_profit"] = pd.to_numeric(frame["expected_profit"], errors="coerce").to_numpy(np.float64)
    if "as_of_date" in frame.columns:
        out["as_of_date"] = pd.to_datetime(_text(frame["as_of_date"].astype(STRING_DTYPE)), errors="coerce")
    return out


# --------------------------------------------------------------------------------------------------------
# Building and writing the contacts
# --------------------------------------------------------------------------------------------------------


def build_contacts(
    scores: pd.DataFrame,
    sent_on: pd.Timestamp,
    campaign_id: str | None = None,
    costs: tuple[float | None, dict[str, float]] = (None, {}),
) -> pd.DataFrame:
    """The contacts of one send (module docstring): ``scores`` as :func:`_checked` returns it, ``sent_on`` naive UTC.
    Typed as validated contacts; optional columns without any value are left out."""
    send = (scores["intended_action"] != DEFAULT_ACTION).to_numpy(dtype=bool)
    if "contact" in scores.columns:
        # Scores v1.3: the CRM sends to the contact list only, so those are the treated customers, and the control
        # customers to compare them with are those the list would have held (a real action expected to pay).
        pays = (scores["expected_profit"].to_numpy(np.float64) > 0) & send
        send = scores["contact"].to_numpy(dtype=bool) | (scores["control_group"].to_numpy(dtype=bool) & pays)
    chosen = scores[send]
    action = chosen["intended_action"].astype(STRING_DTYPE).reset_index(drop=True)
    n = len(action)
    campaign = (
        pd.Series(campaign_id, index=action.index, dtype=STRING_DTYPE)
        if campaign_id
        else f"{sent_on.date().isoformat()}-" + action
    )
    default, per_action = costs
    cost = action.map(per_action).astype("float64")
    if default is not None:
        cost = cost.fillna(default)
    held_out = chosen["control_group"].to_numpy(dtype=bool)
    cost = cost.mask(held_out & cost.notna().to_numpy(), 0.0)  # a control customer was never contacted
    frame = pd.DataFrame(
        {
            "customer_id": chosen["customer_id"].astype(STRING_DTYPE).reset_index(drop=True),
            "contact_ts": pd.Series(np.full(n, sent_on.to_datetime64()), dtype="datetime64[us]"),
            "action": action,
            "group": pd.Series(np.where(held_out, "control", "treatment"), dtype=STRING_DTYPE),
            "campaign_id": campaign.astype(STRING_DTYPE),
            "cost": cost,
        }
    )
    empty = [c for c in frame.columns if not CONTACTS.column(c).required and frame[c].isna().all()]
    return frame.drop(columns=empty)


def _as_text(table: pa.Table) -> pa.Table:
    """The contacts as CSV text: ISO 8601 timestamps without a zone (naive = UTC, seconds unless finer), costs as
    decimal numbers."""
    arrays = []
    for name in table.column_names:
        values = table[name]
        if name == "contact_ts":
            values = pc.replace_substring_regex(pc.strftime(values, "%Y-%m-%dT%H:%M:%S"), r"\.0+$", "")
        arrays.append(pc.cast(values, pa.string()))
    return pa.Table.from_arrays(arrays, names=table.column_names)


def _keys(customer: pa.Array | pa.ChunkedArray, campaign: pa.Array | pa.ChunkedArray | None) -> pa.Array:
    """customer_id + campaign_id per row as one text key (null without a campaign: it matches nothing)."""
    customer = pc.utf8_trim_whitespace(pc.cast(customer, pa.string()))
    if campaign is None:
        return pa.nulls(len(customer), pa.string())
    campaign = pc.utf8_trim_whitespace(pc.cast(campaign, pa.string()))
    return pc.binary_join_element_wise(customer, campaign, "\x1f")


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
    """The table to write: the existing file's rows (``--append``) and the new rows whose customer and campaign are
    not in it yet, in the existing file's column order; returns it and the number of new rows left out."""
    fresh = pa.Table.from_pandas(new, schema=arrow_schema("contacts", list(new.columns)), preserve_index=False)
    if out.suffix == ".csv":
        fresh = _as_text(fresh)
    if not out.exists():
        return fresh, 0
    old = _existing(out)
    old_keys = _keys(old["customer_id"], old["campaign_id"] if "campaign_id" in old.column_names else None)
    seen = pc.fill_null(pc.is_in(_keys(fresh["customer_id"], fresh["campaign_id"]), value_set=old_keys), False)
    fresh = fresh.filter(pc.invert(seen))
    names = old.column_names + [c for c in fresh.column_names if c not in old.column_names]
    arrays = []
    for name in names:
        kind = old.schema.field(name).type if name in old.column_names else fresh.schema.field(name).type
        top = old[name] if name in old.column_names else pa.nulls(old.num_rows, kind)
        bottom = fresh[name] if name in fresh.column_names else pa.nulls(fresh.num_rows, kind)
        try:
            bottom = pc.cast(bottom, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataContractError(
                f"--out {out} stores column {name} as {kind}, which the new contacts ({fresh.schema.field(name).type}) "
                f"cannot be converted to: append to a contacts file `churn contacts` wrote, or write a new file and "
                f"hand both to the shop's data directory as one table. Nothing was written."
            ) from exc
        arrays.append(pa.chunked_array(_chunks(top) + _chunks(bottom), type=kind))
    return pa.Table.from_arrays(arrays, names=names), int(pc.sum(seen).as_py() or 0)


def _chunks(values: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(values.chunks) if isinstance(values, pa.ChunkedArray) else [values]


def _write(table: pa.Table, out: Path) -> None:
    with atomic_path(out, directory=False) as tmp:
        if out.suffix == ".csv":
            pacsv.write_csv(table, tmp, pacsv.WriteOptions(include_header=True, delimiter=","))
        else:
            pq.write_table(table, tmp, compression="zstd")


def _summary(frame: pd.DataFrame) -> str:
    """``winback_email_coupon 90 treatment / 10 control; onboarding ...`` (a handful of actions, not rows)."""
    if not len(frame):
        return "no contacts"
    counts = frame.pivot_table(index="action", columns="group", aggfunc="size", fill_value=0)
    counts = counts.reindex(columns=["treatment", "control"], fill_value=0)
    treated, held = counts["treatment"].to_numpy(), counts["control"].to_numpy()
    return "; ".join(
        f"{a} {t:,} treatment / {c:,} control" for a, t, c in zip(counts.index, treated, held, strict=True)
    )


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
        checked = _checked(source)
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
        s.detail = f"{_summary(frame)}{again} -> {out} ({table.num_rows:,} rows in the file)"
    counts = frame.groupby(["action", "group"], sort=True).size()
    return {
        "rows_added": added,
        "rows_already_there": already,
        "rows_in_file": table.num_rows,
        "by_action_group": {f"{a}/{g}": int(n) for (a, g), n in counts.items()},
        "out": str(out),
    }
