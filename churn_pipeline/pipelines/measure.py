"""Stage `measure`: what each retention campaign achieved, treated against control contacts (models.measure).

Reads params sections ``measure`` (this stage: ``min_group_size``, ``confidence``), ``labels`` (the windows:
retention over ``churn_horizon_days``, net revenue over ``clv_horizon_days`` from the contact on), ``evaluate``
(``value_margin``: profit per unit of revenue) and ``score`` (the rule table's action names, ``score.actions``).
Input: a ``churn validate`` output directory; its optional ``contacts.parquet`` is measured against its orders
and returns. The end of the data is the day after the last order (as the features stage has it).

Output ``--metrics`` (JSON, every number): ``status``, ``contacts``, the params used, the summary of what was left
out and why (``models.measure.measurement_summary``) and one record per campaign and per action
(``models.measure.measure_effects``); ``--table`` (optional) the same records as CSV. Both are written atomically.
A rich table on the terminal: action, campaign, contacts measured, retention difference and profit per contacted
customer with their intervals, verdict.

Without a contacts table (or with an empty one) the metrics say ``{"contacts": 0, "status": "no contacts table"}``
(or ``"contacts table is empty"``), the table has its header only, and the run succeeds: a shop that records no
campaigns runs the pipeline as before. A directory that is not validated data (no ``orders.parquet``, a
contacts CSV, a contacts table without its required columns or with groups other than treatment/control) is a
DataContractError (exit 3).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.table import Table

from churn_pipeline.errors import DataContractError, validate_first
from churn_pipeline.features.contract import CONTACTS, KNOWN_ACTIONS
from churn_pipeline.features.cutoffs import data_end
from churn_pipeline.models.measure import EFFECT_COLUMNS, GROUPS, contact_outcomes, measure_effects, measurement_summary
from churn_pipeline.pipelines.console import console, step
from churn_pipeline.pipelines.io import atomic_path, check_file_target, find_table, write_json
from churn_pipeline.pipelines.params import EvaluateParams, LabelsParams, ScoreParams, load_section

__all__ = ["MeasureParams", "effect_records", "known_actions", "read_inputs", "run"]

NO_CONTACTS = "no contacts table"
EMPTY_CONTACTS = "contacts table is empty"
MEASURED = "measured"
VERDICT_STYLES = {"pays": "green", "does not pay": "red", "too small to tell": "yellow", "no control group": "magenta"}


@dataclass(frozen=True)
class MeasureParams:
    """params.yaml ``measure`` (comments there)."""

    min_group_size: int = 200
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.min_group_size < 2:
            raise ValueError(f"min_group_size must be >= 2 (a variance needs two contacts), got {self.min_group_size}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), e.g. 0.95, got {self.confidence}")


def known_actions(rule_actions: list[str]) -> list[str]:
    """The contact actions the rule table can hand out: its rules' actions, and with a ``most_profitable`` rule
    (the uplift model picks among the contract's actions) ``features.contract.KNOWN_ACTIONS`` too."""
    names = set(rule_actions)
    if "most_profitable" in names:
        names |= set(KNOWN_ACTIONS)
    return sorted(names - {"most_profitable"})


def _timestamp_column(path: Path, column: str) -> None:
    field = pq.read_schema(path).field(column) if column in pq.read_schema(path).names else None
    if field is None or not pa.types.is_timestamp(field.type):
        raise DataContractError(
            f"{path}: column {column} is {field.type if field else 'missing'}, expected a naive-UTC timestamp. "
            f"{validate_first(path.parent)}"
        )


def _read(path: Path, columns: list[str], ts: str, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """``columns`` of a validated table, rows with ``ts >= since`` only (None: every row)."""
    _timestamp_column(path, ts)
    filters = None if since is None else [(ts, ">=", since.to_pydatetime())]
    return pq.read_table(path, columns=columns, filters=filters).to_pandas()


def read_inputs(data: Path) -> tuple[pd.DataFrame | None, pd.DataFrame, pd.DataFrame | None, pd.Timestamp]:
    """The contacts (None without a contacts table), the orders and returns from the first contact on (returns
    None without a returns table) and the end of the data (the day after the last order) of a validated
    directory; DataContractError when it is not one."""
    data = Path(data)
    orders_path = data / "orders.parquet"
    if not data.is_dir() or not orders_path.is_file():
        raise DataContractError(f"{data} holds no orders.parquet: it is not validated data. {validate_first(data)}")
    _timestamp_column(orders_path, "order_ts")
    last = pq.read_table(orders_path, columns=["order_ts"]).column("order_ts")
    if len(last) == 0:
        raise DataContractError(f"{orders_path} has no rows: nothing to measure the contacts against.")
    end = data_end(pd.Timestamp(pc.max(last).as_py()))
    contacts_path = find_table(data, "contacts")
    if contacts_path is None:
        return None, pd.DataFrame(columns=["customer_id", "order_ts", "amount"]), None, end
    if contacts_path.suffix != ".parquet":
        raise DataContractError(f"{contacts_path} is not validated (a CSV). {validate_first(data, raw=True)}")
    names = pq.read_schema(contacts_path).names
    missing = [c for c in CONTACTS.required_columns if c not in names]
    if missing:
        raise DataContractError(f"{contacts_path} lacks the required column(s) {missing}. {validate_first(data)}")
    _timestamp_column(contacts_path, "contact_ts")
    contacts = pq.read_table(contacts_path, columns=[c for c in CONTACTS.column_names if c in names]).to_pandas()
    bad = ~contacts["group"].isin(GROUPS)
    if bad.any():
        raise DataContractError(
            f"{contacts_path}: {int(bad.sum()):,} of {len(contacts):,} rows have a group other than {list(GROUPS)}. "
            f"{validate_first(data)}"
        )
    since = pd.Timestamp(contacts["contact_ts"].min()) if len(contacts) else None
    orders = _read(orders_path, ["customer_id", "order_ts", "amount"], "order_ts", since)
    returns_path = data / "returns.parquet"
    returns = (
        _read(returns_path, ["customer_id", "return_ts", "amount"], "return_ts", since)
        if returns_path.is_file()
        else None
    )
    return contacts, orders, returns, end


def _plain(value: Any) -> Any:
    """A JSON value: floats rounded to 6 decimals, NaN/inf null, timestamps as ISO dates, numpy as Python."""
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else str(value.date())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return round(float(value), 6) if np.isfinite(value) else None
    if value is None or value is pd.NaT:
        return None
    return value


def effect_records(effects: pd.DataFrame) -> list[dict[str, Any]]:
    """The effects table as JSON records (one per campaign and per action, columns in order)."""
    columns = {c: effects[c].tolist() for c in EFFECT_COLUMNS}
    return [{c: _plain(columns[c][i]) for c in EFFECT_COLUMNS} for i in range(len(effects))]


def _interval(value: float, low: float, high: float, spec: str, unit: str = "") -> str:
    if not np.isfinite(value):
        return "–"
    return f"{value:{spec}}{unit} [{low:{spec}}, {high:{spec}}]"


def _print_table(effects: pd.DataFrame, params: MeasureParams) -> None:
    table = Table(
        title=f"What the campaigns achieved ({params.confidence:.0%} intervals, treatment minus control)",
        title_justify="left",
    )
    for name, justify in (
        ("action", "left"),
        ("campaign", "left"),
        ("n treated / control", "right"),
        ("retention diff [CI]", "right"),
        ("profit / customer [CI]", "right"),
        ("verdict", "left"),
    ):
        table.add_column(name, justify=justify)
    columns = {c: effects[c].tolist() for c in EFFECT_COLUMNS}
    for i in range(len(effects)):  # one line per campaign and action, never per customer
        verdict = columns["verdict"][i]
        table.add_row(
            columns["action"][i],
            columns["campaign_id"][i] if columns["level"][i] == "campaign" else "[bold]all[/bold]",
            f"{columns['n_treatment'][i]:,} / {columns['n_control'][i]:,}",
            _interval(
                columns["retention_diff_pp"][i],
                columns["retention_diff_pp_low"][i],
                columns["retention_diff_pp_high"][i],
                "+.1f",
                " pp",
            ),
            _interval(columns["profit_per_customer"][i], columns["profit_low"][i], columns["profit_high"][i], "+,.2f"),
            f"[{VERDICT_STYLES.get(verdict, 'white')}]{verdict}[/]",
        )
    console.print(table)


def _write(document: dict[str, Any], effects: pd.DataFrame, metrics: Path, table: Path | None) -> None:
    if table is not None:
        frame = effects.copy()
        for column in ("first_contact", "last_contact"):
            frame[column] = pd.to_datetime(frame[column]).dt.strftime("%Y-%m-%d")
        with atomic_path(table, directory=False) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6f")
    write_json(document, metrics)


def run(data: Path, metrics: Path, params_path: Path, table: Path | None = None) -> dict[str, Any]:
    """Measure the contacts of ``data`` (module docstring); returns the metrics document written."""
    params = load_section(MeasureParams, "measure", params_path)
    labels = load_section(LabelsParams, "labels", params_path)
    margin = load_section(EvaluateParams, "evaluate", params_path).value_margin
    rules = known_actions([rule.action for rule in load_section(ScoreParams, "score", params_path).actions])
    check_file_target(Path(metrics), "--metrics", "measure.json")
    if table is not None:
        check_file_target(Path(table), "--table", "measure.csv")
    used = {
        **asdict(params),
        "retention_days": labels.churn_horizon_days,
        "revenue_days": labels.clv_horizon_days,
        "value_margin": margin,
    }
    with step("measure: contacts, orders, returns") as s:
        contacts, orders, returns, end = read_inputs(data)
        s.rows = 0 if contacts is None else len(contacts)
        s.detail = (
            f"{len(orders):,} orders from the first contact on, data end {end.date()}"
            if contacts is not None
            else f"no contacts table, data end {end.date()}"
        )
    if contacts is None or contacts.empty:
        status = NO_CONTACTS if contacts is None else EMPTY_CONTACTS
        document = {"contacts": 0, "status": status, "params": used, "data_end": str(end.date())}
        _write(document, pd.DataFrame(columns=list(EFFECT_COLUMNS)), metrics, table)
        console.print(f"measure: {status} in {data}: nothing to measure; wrote {metrics}.", soft_wrap=True)
        return document
    with step("measure: treatment against control") as s:
        outcomes = contact_outcomes(contacts, orders, returns, end, labels.churn_horizon_days, labels.clv_horizon_days)
        effects = measure_effects(outcomes, margin, params.min_group_size, params.confidence, rules)
        summary = measurement_summary(outcomes, effects, rules)
        s.detail = (
            f"{summary['measured']:,} of {summary['contacts']:,} contacts measured; {summary['campaigns']} "
            f"campaign(s), {effects['action'].nunique()} action(s)"
        )
    document = {
        "contacts": summary["contacts"],
        "status": MEASURED,
        "data_end": str(end.date()),
        "params": used,
        "summary": summary,
        "effects": effect_records(effects),
    }
    json.dumps(document)  # every value is plain JSON (a bug here must not leave a half-written file)
    _write(document, effects, metrics, table)
    for message in summary["messages"]:
        console.print(f"[yellow]{message}[/yellow]", soft_wrap=True)
    _print_table(effects, params)
    return document
