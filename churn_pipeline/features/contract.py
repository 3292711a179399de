"""Input data contract v1: the tables a shop hands the pipeline, their columns and types.

Grain and units
---------------
- ``orders``: one row per order. ``amount`` is the order value in the shop's currency (>= 0), after
  discounts; ``discount_amount`` is the discount granted on it (>= 0), ``items`` the item count.
- ``returns``: one row per refund. ``amount`` is the refunded value (> 0), ``order_id`` the refunded order.
- ``customers``: one row per customer. ``signup_ts`` is when the account was created.
- ``events``: one row per engagement event (a web session, a page view, an e-mail sent/opened/clicked, a
  support ticket, a review, ...). ``value`` carries the event's number where it has one (see
  :data:`KNOWN_EVENT_TYPES`).
- ``contacts``: one row per customer per campaign contact, treatment or control. ``cost`` is what the contact
  and its incentive cost (shop currency, >= 0; null = unknown).

Time
----
Every timestamp is read as UTC: a naive timestamp is taken to be UTC already, a zone-aware one is converted
to UTC. Validated tables store timestamps as naive UTC (``timestamp[us]``), so every engine downstream
(pandas, DuckDB, Spark) compares them without a session time zone getting in the way.

This module holds definitions only: no I/O and no work at import time beyond building constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CONTRACT_VERSION = "1"

ColumnKind = Literal["id", "string", "timestamp", "float", "int", "bool"]


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract table.

    ``kind`` is the logical type: ``id`` is a string identifier whose leading zeros matter (never parsed as a
    number); ``timestamp`` is parsed to naive UTC; ``float``/``int``/``bool`` are parsed from text in CSVs.
    """

    name: str
    kind: ColumnKind
    required: bool
    description: str
    nullable: bool = False


@dataclass(frozen=True)
class TableSpec:
    """One table of the contract: its columns, its key (unique columns) and its main timestamp."""

    name: str
    required: bool
    columns: tuple[ColumnSpec, ...]
    description: str
    key: str | None = None
    timestamp: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")


# Event types the feature code knows by name. Unknown types are kept and counted generically.
# The value column means: review -> rating 1..5, nps -> score 0..10, loyalty_points_* -> points,
# loyalty_tier_change -> new tier level (0 = none), coupon_redeemed -> coupon value; otherwise unused.
KNOWN_EVENT_TYPES: tuple[str, ...] = (
    "session",
    "page_view",
    "add_to_cart",
    "email_sent",
    "email_open",
    "email_click",
    "unsubscribe",
    "support_ticket",
    "review",
    "nps",
    "loyalty_points_earned",
    "loyalty_points_redeemed",
    "loyalty_tier_change",
    "coupon_redeemed",
)

# Closed ranges for event values where the type fixes one; values outside are quarantined.
EVENT_VALUE_RANGES: dict[str, tuple[float, float]] = {
    "review": (1.0, 5.0),
    "nps": (0.0, 10.0),
    "loyalty_points_earned": (0.0, float("inf")),
    "loyalty_points_redeemed": (0.0, float("inf")),
    "loyalty_tier_change": (0.0, 10.0),
    "coupon_redeemed": (0.0, float("inf")),
}

LOYALTY_TIERS: tuple[str, ...] = ("none", "bronze", "silver", "gold")

ORDERS = TableSpec(
    name="orders",
    required=True,
    key="order_id",
    timestamp="order_ts",
    description="One row per order.",
    columns=(
        ColumnSpec("customer_id", "id", True, "Customer identifier; a string, leading zeros kept."),
        ColumnSpec("order_id", "id", True, "Order identifier, unique across the table."),
        ColumnSpec("order_ts", "timestamp", True, "When the order was placed (UTC)."),
        ColumnSpec("amount", "float", True, "Order value after discounts, >= 0, shop currency."),
        ColumnSpec("discount_amount", "float", False, "Discount granted on the order, >= 0.", nullable=True),
        ColumnSpec("items", "int", False, "Number of items in the order, >= 0.", nullable=True),
        ColumnSpec("channel", "string", False, "Sales channel, e.g. web, app, store.", nullable=True),
    ),
)

RETURNS = TableSpec(
    name="returns",
    required=False,
    timestamp="return_ts",
    description="One row per refund of (part of) an order.",
    columns=(
        ColumnSpec("customer_id", "id", True, "Customer identifier."),
        ColumnSpec("order_id", "id", True, "The order refunded."),
        ColumnSpec("return_ts", "timestamp", True, "When the refund happened (UTC)."),
        ColumnSpec("amount", "float", True, "Refunded value, > 0, shop currency."),
    ),
)

CUSTOMERS = TableSpec(
    name="customers",
    required=False,
    key="customer_id",
    timestamp="signup_ts",
    description="One row per customer.",
    columns=(
        ColumnSpec("customer_id", "id", True, "Customer identifier, unique across the table."),
        ColumnSpec("signup_ts", "timestamp", True, "When the account was created (UTC)."),
        ColumnSpec("country", "string", False, "Country (free text or ISO code).", nullable=True),
        ColumnSpec("acquisition_channel", "string", False, "How the customer came.", nullable=True),
        ColumnSpec("email_opt_in", "bool", False, "Whether the customer accepts marketing e-mail.", nullable=True),
        ColumnSpec("loyalty_tier", "string", False, "Loyalty tier at export time.", nullable=True),
    ),
)

EVENTS = TableSpec(
    name="events",
    required=False,
    timestamp="event_ts",
    description="One row per engagement event.",
    columns=(
        ColumnSpec("customer_id", "id", True, "Customer identifier."),
        ColumnSpec("event_ts", "timestamp", True, "When the event happened (UTC)."),
        ColumnSpec("event_type", "string", True, "One of KNOWN_EVENT_TYPES, or any other name."),
        ColumnSpec("value", "float", False, "The event's number where its type has one.", nullable=True),
    ),
)

# Retention actions the pipeline knows by name (the default rule table in models/actions.py). A contact with any
# other action is kept and counted: a shop may run campaigns the rule table does not recommend.
KNOWN_ACTIONS: tuple[str, ...] = (
    "onboarding",
    "personal_outreach",
    "winback_email_coupon",
    "loyalty_points_boost",
    "cross_sell_upsell",
)
CONTACT_GROUPS: tuple[str, ...] = ("treatment", "control")

CONTACTS = TableSpec(
    name="contacts",
    required=False,
    timestamp="contact_ts",
    description=(
        "One row per customer and campaign contact: who was sent (treatment) or deliberately not sent (control) "
        "a retention action, and when. `churn export` output plus the delivery date is such a file "
        "(`churn contacts`)."
    ),
    columns=(
        ColumnSpec("customer_id", "id", True, "Customer identifier."),
        ColumnSpec("contact_ts", "timestamp", True, "When the action was delivered, or would have been (UTC)."),
        ColumnSpec("action", "string", True, "The retention action, e.g. winback_email_coupon (KNOWN_ACTIONS)."),
        ColumnSpec("group", "string", True, "treatment (contacted) or control (held out at random)."),
        ColumnSpec(
            "campaign_id", "string", False, "Campaign identifier; contacts of one send share it.", nullable=True
        ),
        ColumnSpec("channel", "string", False, "Contact channel, e.g. email, phone, app.", nullable=True),
        ColumnSpec("cost", "float", False, "Contact and incentive cost, >= 0, shop currency.", nullable=True),
    ),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (ORDERS, RETURNS, CUSTOMERS, EVENTS, CONTACTS)}
TABLE_ORDER: tuple[str, ...] = ("customers", "orders", "returns", "events", "contacts")


def contract_markdown() -> str:
    """The contract as a Markdown table per table, for the docs and ``churn validate --explain``."""
    lines = [f"Data contract v{CONTRACT_VERSION}", ""]
    for name in TABLE_ORDER:
        t = TABLES[name]
        need = "required" if t.required else "optional"
        lines += [
            f"### `{t.name}` ({need})",
            "",
            t.description,
            "",
            "| column | type | required | meaning |",
            "|---|---|---|---|",
        ]
        for c in t.columns:
            lines.append(f"| `{c.name}` | {c.kind} | {'yes' if c.required else 'no'} | {c.description} |")
        lines.append("")
    return "\n".join(lines)
