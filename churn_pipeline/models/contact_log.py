"""The contacts of one send, from the scores or CRM export it was made from (``churn contacts``), and the
append-merge into a contacts file's rows: data in, data out (the stage ``pipelines/contacts.py`` reads and writes).

Grain: the scores in are one row per customer (``customer_id``, ``intended_action``, ``control_group`` and,
when present, ``recommended_action``, ``contact``, ``expected_profit``, ``as_of_date``); the contacts out are one
row per customer contacted or held out in one send, in the scores' order, typed as the contract's ``contacts``
table (:data:`features.contract.CONTACTS`). Time: ``contact_ts`` is the send time as naive UTC (microseconds);
in CSV text ISO 8601 without a zone. Units: ``cost`` per contact in the shop's currency (0 for a control row).

Messages name the file, columns, counts and row numbers (data rows from 0), never a customer id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn_pipeline.errors import DataContractError
from churn_pipeline.features.contract import CONTACTS
from churn_pipeline.features.schemas import STRING_DTYPE, arrow_schema
from churn_pipeline.features.validation import BOOL_TOKENS
from churn_pipeline.models.actions import DEFAULT_ACTION
from churn_pipeline.models.scores_schema import HOLD_OUT

__all__ = [
    "MAX_EXAMPLES",
    "PSEUDONYM_PATTERN",
    "build_contacts",
    "checked_scores",
    "contacts_summary",
    "contacts_table",
    "merge_contacts",
]

# models.crm.pseudonymise: "p" + 16 lowercase hex digits.
PSEUDONYM_PATTERN = r"p[0-9a-f]{16}"
# models.crm.neutralise_formulas puts a "'" before these leading characters.
_ESCAPED_FORMULA = r"^'(?=[=+\-@\t\r])"
# Row numbers named in a message at most.
MAX_EXAMPLES = 5


def _row_examples(mask: np.ndarray) -> str:
    """``row 3, row 7`` for the first :data:`MAX_EXAMPLES` rows where ``mask`` is true (data rows from 0)."""
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


def checked_scores(frame: pd.DataFrame, where: str, *, exported: bool, flagged: object = None) -> pd.DataFrame:
    """customer_id (formula escaping undone when ``exported``: written by `churn export`), intended_action,
    control_group (bool) and, when present, contact (bool), expected_profit and as_of_date, every rule of the
    stage's docstring checked; DataContractError otherwise. ``where`` names the file(s) in messages; ``flagged`` is
    the export manifest's ``pseudonymised_ids`` (None without a manifest or the key: then ids that all look like
    pseudonyms are refused)."""
    ids = _text(frame["customer_id"])
    if exported:
        ids = ids.str.replace(_ESCAPED_FORMULA, "", regex=True)
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


def build_contacts(
    scores: pd.DataFrame,
    sent_on: pd.Timestamp,
    campaign_id: str | None = None,
    costs: tuple[float | None, dict[str, float]] = (None, {}),
) -> pd.DataFrame:
    """The contacts of one send (the stage's docstring): ``scores`` as :func:`checked_scores` returns it, ``sent_on``
    naive UTC, ``costs`` as ``(the cost for every action or None, per-action costs)``. Typed as validated contacts;
    optional columns without any value are left out."""
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


def contacts_table(new: pd.DataFrame, csv: bool) -> pa.Table:
    """The contacts of :func:`build_contacts` as Arrow, typed as the contract's ``contacts`` columns, or as CSV
    text when ``csv``."""
    fresh = pa.Table.from_pandas(new, schema=arrow_schema("contacts", list(new.columns)), preserve_index=False)
    return _as_text(fresh) if csv else fresh


def merge_contacts(old: pa.Table, fresh: pa.Table, where: str) -> tuple[pa.Table, int]:
    """The table to write on ``--append``: the existing file's rows (``old``, as read) and the rows of ``fresh``
    (:func:`contacts_table`) whose customer and campaign are not in it yet, in the existing file's column order
    and types; returns it and the number of new rows left out. ``where`` names the file in messages."""
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
                f"{where} stores column {name} as {kind}, which the new contacts ({fresh.schema.field(name).type}) "
                f"cannot be converted to: append to a contacts file `churn contacts` wrote, or write a new file and "
                f"hand both to the shop's data directory as one table. Nothing was written."
            ) from exc
        arrays.append(pa.chunked_array(_chunks(top) + _chunks(bottom), type=kind))
    return pa.Table.from_arrays(arrays, names=names), int(pc.sum(seen).as_py() or 0)


def _chunks(values: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    """The chunks of an array (one for a plain array)."""
    return list(values.chunks) if isinstance(values, pa.ChunkedArray) else [values]


def contacts_summary(frame: pd.DataFrame) -> str:
    """``winback_email_coupon 90 treatment / 10 control; onboarding ...`` (a handful of actions, not rows)."""
    if not len(frame):
        return "no contacts"
    counts = frame.pivot_table(index="action", columns="group", aggfunc="size", fill_value=0)
    counts = counts.reindex(columns=["treatment", "control"], fill_value=0)
    treated, held = counts["treatment"].to_numpy(), counts["control"].to_numpy()
    return "; ".join(
        f"{a} {t:,} treatment / {c:,} control" for a, t, c in zip(counts.index, treated, held, strict=True)
    )
