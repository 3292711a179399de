"""UCI Online Retail II transactions → data contract v1 (``orders``, ``returns``, ``customers``).

A pure transform: :func:`online_retail_to_contract` takes the published table (one row per invoice line) and
returns the contract tables plus an :class:`ImportReport` saying what happened to every input line. No I/O.

Source grain, time and units
----------------------------
One row per invoice line: ``Invoice``, ``StockCode``, ``Quantity`` (units, negative on cancellations),
``Price`` (GBP per unit, up to 3 decimals), ``InvoiceDate`` (UK wall-clock time, no zone, minute precision),
``Customer ID`` (integer), ``Country``. An ``Invoice`` starting with ``C`` is a cancellation (credit note).
The data covers 1 Dec 2009 to 9 Dec 2011: customers active on 1 Dec 2009 were already customers before it.

Rules, applied to every line
----------------------------
Each input line gets exactly one outcome: kept (it feeds an output row) or dropped for one reason. Reasons
are tested in this order and the first that applies wins, so ``kept + dropped == input rows``:

1. ``unreadable``: Invoice, StockCode, Quantity, InvoiceDate or Price missing or unparseable, a fractional
   quantity, or a Customer ID that is not a whole number.
2. ``no_customer``: no Customer ID. Such a line cannot be attributed to anybody, so it is unusable for churn.
3. ``conflicting_customer``: the line's invoice carries more than one Customer ID (none in the published
   file); the whole invoice is dropped rather than guessing whose it is.
4. ``non_sales_invoice``: an invoice number that is neither digits nor ``C`` + digits (the ``A`` invoices,
   "Adjust bad debt").
5. ``non_product:<kind>``: a line that sells no merchandise, recognised by its StockCode
   (:data:`NON_PRODUCT_KINDS`): postage and carriage (``POST``, ``DOT``, ``C2``, ``C3``), manual entries
   (``M``), bank charges, Amazon fees, CRUK commission, adjustments (``ADJUST*``, ``B``), samples (``S``),
   test products (``TEST*``), gift vouchers (``gift_*``) and cushion pads given at 0.001 (``PADS``). Postage
   is shipping, not merchandise, so it is excluded from order amounts; its value is reported. Manual entries
   mix price corrections and unnamed goods and cannot be told apart, so they are excluded on both sides
   (invoices and cancellations), as are fees and adjustments. Discount lines (``D``) are not dropped here.
6. ``zero_quantity``, ``negative_quantity_on_invoice`` (stock write-offs such as "damaged"),
   ``positive_quantity_on_cancellation``, ``zero_price`` (free goods and stock moves), ``negative_price``.
7. What is left is a product or discount line with the expected sign:

   - a product line on an invoice is kept in its order (``order_product_line``);
   - a discount line on an invoice that has kept product lines is kept as that order's discount
     (``order_discount_line``); on an invoice without any it is dropped (``discount_without_order``);
   - a product line or discount credit on a cancellation is a refund, matched to the order it refunds:
     first the same customer's most recent order at or before the cancellation holding the same StockCode
     (``return_line_same_stockcode``; ``merge_asof`` by customer and StockCode), else the customer's most
     recent order at or before it (``return_line_previous_order``; always the case for discount credits),
     else dropped (``unmatched_cancellation``: typically cancellations of purchases made before the data
     starts). "At or before" because times have minute precision and an order can be cancelled in the
     minute it was placed. A discount credit (``D`` on a cancellation) is money handed back after the sale,
     so it is treated as a refund of the customer's previous order, like a partial return.

Exact duplicate lines (same invoice, code, quantity, price, time) are kept: nothing in the file tells a
double entry from the same item keyed twice on one invoice. Their number is reported.

Output tables
-------------
- ``orders``: one row per invoice with at least one kept product line. ``order_id`` = Invoice,
  ``order_ts`` = the invoice's earliest line, ``amount`` = merchandise value Σ Quantity × Price over its
  kept product lines minus ``discount_amount`` (Σ Quantity × Price over its discount lines, 0 if none),
  floored at 0; ``items`` = Σ Quantity over kept product lines. GBP; postage and fees excluded. No
  ``channel``: the data has none.
- ``returns``: one row per (cancellation invoice, refunded order). ``return_ts`` = the cancellation's
  earliest line, ``amount`` = refunded value Σ −Quantity × Price over its matched lines (> 0, GBP).
  Amounts are not capped at the order's amount; :attr:`ImportReport.returns_above_order_amount` counts those
  that exceed it (a customer can cancel units bought across several invoices).
- ``customers``: one row per customer with at least one order. ``customer_id`` = the integer id as a
  string ("12346"); ``signup_ts`` = the customer's first line of any kind in the file (a proxy: the data
  has no sign-up date, and it is left-censored at 1 Dec 2009); ``country`` = the customer's most frequent
  country over all their lines ("Unspecified" read as missing; ties go to the most recently seen, then the
  alphabetically first).

No ``events`` table: the data has none.

Time: ``InvoiceDate`` is localised to Europe/London and converted to naive UTC (GMT in winter, BST = UTC+1
in summer). The repeated hour when clocks go back is read as BST (the first occurrence); a time in the
skipped hour when clocks go forward is shifted forward to the first valid instant. Input that is already
zone-aware is converted to UTC as is. All timestamps are ``datetime64[us]``; ids use pandas' default
string dtype; amounts are float64 rounded to 4 decimals (prices have at most 3, so only summation noise
goes); ``items`` is Int64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from churn_pipeline.errors import DataContractError

SOURCE_TZ = "Europe/London"
CANCELLATION_PREFIX = "C"
UNSPECIFIED_COUNTRY = "Unspecified"
AMOUNT_DECIMALS = 4

# Columns the transform reads; Description is not needed (the StockCode decides what a line is).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "Invoice",
    "StockCode",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
)

# Non-product StockCodes, matched case-insensitively against the whole code. Everything else is a product
# (5 digits plus an optional letter suffix in the vast majority; also DCGS* and SP* goods).
NON_PRODUCT_KINDS: tuple[tuple[str, str], ...] = (
    ("postage", r"POST|DOT|C\d"),
    ("discount", r"D"),
    ("manual", r"M"),
    ("bank_charges", r"BANK CHARGES"),
    ("marketplace_fee", r"AMAZONFEE"),
    ("commission", r"CRUK"),
    ("adjustment", r"ADJUST\d*|B"),
    ("samples", r"S"),
    ("test_product", r"TEST\d*"),
    ("gift_voucher", r"GIFT(_.*)?"),
    ("pads", r"PADS"),
)

KEPT_REASONS: dict[str, str] = {
    "order_product_line": "product line → order",
    "order_discount_line": "discount line → order discount",
    "return_line_same_stockcode": "cancelled line → return (order with same StockCode)",
    "return_line_previous_order": "cancelled line → return (customer's previous order)",
}

DROPPED_REASONS: dict[str, str] = {
    "unreadable": "missing or unparseable field",
    "no_customer": "no Customer ID",
    "conflicting_customer": "invoice with several Customer IDs",
    "non_sales_invoice": "non-sales invoice (e.g. A…, bad debt)",
    **{
        f"non_product:{kind}": f"non-product: {kind.replace('_', ' ')}"
        for kind, _ in NON_PRODUCT_KINDS
        if kind != "discount"
    },
    "zero_quantity": "zero quantity",
    "negative_quantity_on_invoice": "negative quantity on an invoice",
    "positive_quantity_on_cancellation": "positive quantity on a cancellation",
    "zero_price": "zero price",
    "negative_price": "negative price",
    "discount_without_order": "discount on an invoice without products",
    "unmatched_cancellation": "cancellation matching no earlier order",
}


@dataclass(frozen=True)
class LineCount:
    """Input lines with one outcome; ``value`` is their net Σ Quantity × Price, GBP (cancellations < 0)."""

    outcome: Literal["kept", "dropped"]
    reason: str
    rows: int
    value: float

    @property
    def label(self) -> str:
        return {**KEPT_REASONS, **DROPPED_REASONS}[self.reason]


@dataclass(frozen=True)
class ImportReport:
    """What the import did with every input line, and the size of what it produced.

    ``lines`` holds one :class:`LineCount` per outcome (kept reasons first, then dropped reasons in the order
    they are tested, zeros included), so ``kept_rows + dropped_rows == input_rows``.
    """

    input_rows: int
    lines: tuple[LineCount, ...]
    orders: int
    returns: int
    customers: int
    duplicate_lines_kept: int
    returns_above_order_amount: int
    customers_without_order: int

    @property
    def kept_rows(self) -> int:
        return sum(c.rows for c in self.lines if c.outcome == "kept")

    @property
    def dropped_rows(self) -> int:
        return sum(c.rows for c in self.lines if c.outcome == "dropped")

    def rows(self, reason: str) -> int:
        """Lines with outcome ``reason`` (a key of :data:`KEPT_REASONS` or :data:`DROPPED_REASONS`)."""
        for c in self.lines:
            if c.reason == reason:
                return c.rows
        raise KeyError(f"unknown reason {reason!r}")

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-able form, e.g. for a metrics file."""
        return {
            "input_rows": self.input_rows,
            "kept_rows": self.kept_rows,
            "dropped_rows": self.dropped_rows,
            "kept": {c.reason: c.rows for c in self.lines if c.outcome == "kept"},
            "dropped": {c.reason: c.rows for c in self.lines if c.outcome == "dropped"},
            "value_gbp": {c.reason: c.value for c in self.lines},
            "orders": self.orders,
            "returns": self.returns,
            "customers": self.customers,
            "duplicate_lines_kept": self.duplicate_lines_kept,
            "returns_above_order_amount": self.returns_above_order_amount,
            "customers_without_order": self.customers_without_order,
        }


def _to_utc(raw_ts: pd.Series) -> pd.Series:
    """Parse and convert source wall-clock times to naive UTC ``datetime64[us]`` (NaT where unparseable)."""
    if pd.api.types.is_datetime64_any_dtype(raw_ts):
        ts = raw_ts
    else:
        ts = pd.to_datetime(raw_ts, errors="coerce", format="ISO8601")
    if getattr(ts.dt, "tz", None) is None:
        # BST for the repeated autumn hour (ambiguous=True); deterministic, unlike "infer" which depends on
        # the row order.
        ts = ts.dt.tz_localize(SOURCE_TZ, ambiguous=np.ones(len(ts), dtype=bool), nonexistent="shift_forward")
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).dt.as_unit("us")


def _normalise(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per input line with typed columns and an ``unreadable`` flag; row order kept."""
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataContractError(
            f"the Online Retail II table lacks column(s) {missing}; it has {list(raw.columns)}. "
            f"Give the file as published (columns {list(REQUIRED_COLUMNS)})."
        )
    invoice = raw["Invoice"].astype(str).str.strip()
    stock_code = raw["StockCode"].astype(str).str.strip()
    quantity = pd.to_numeric(raw["Quantity"], errors="coerce").astype("Float64")
    price = pd.to_numeric(raw["Price"], errors="coerce").astype("float64")
    ts = _to_utc(raw["InvoiceDate"].reset_index(drop=True))
    cust_num = pd.to_numeric(raw["Customer ID"], errors="coerce").astype("Float64")
    cust_given = raw["Customer ID"].notna().to_numpy()
    country = raw["Country"].astype(str).str.strip()

    bad_quantity = quantity.isna() | (quantity.round() != quantity)
    bad_customer = cust_given & (cust_num.isna() | (cust_num.round() != cust_num)).fillna(True).to_numpy()
    unreadable = (
        invoice.isna().to_numpy()
        | invoice.eq("").fillna(True).to_numpy()
        | stock_code.isna().to_numpy()
        | stock_code.eq("").fillna(True).to_numpy()
        | bad_quantity.fillna(True).to_numpy()
        | np.isnan(price.to_numpy())
        | ts.isna().to_numpy()
        | bad_customer
    )
    customer_id = cust_num.where(~pd.Series(bad_customer, index=cust_num.index)).astype("Int64")
    lines = pd.DataFrame(
        {
            "invoice": invoice.to_numpy(),
            "stock_code": stock_code.to_numpy(),
            "quantity": quantity.round().astype("Int64").to_numpy(),
            "price": price.to_numpy(),
            "ts": ts.to_numpy(),
            "customer_id": customer_id.astype("string").astype(str).to_numpy(),
            "country": country.where(country.ne(UNSPECIFIED_COUNTRY) & country.ne("")).to_numpy(),
            "unreadable": unreadable,
        }
    )
    lines["customer_id"] = lines["customer_id"].astype(str)
    lines["country"] = lines["country"].astype(str)
    lines["value"] = lines["quantity"].astype("float64") * lines["price"]
    return lines


def _line_kind(stock_code: pd.Series) -> np.ndarray:
    code = stock_code.str.upper()
    conditions = [code.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool) for _, pattern in NON_PRODUCT_KINDS]
    return np.select(conditions, [kind for kind, _ in NON_PRODUCT_KINDS], default="product")


def _match_returns(cancel: pd.DataFrame, order_lines: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """``cancel`` (one row per cancelled line, with ``return_ts``) with ``order_id`` and ``match`` added.

    ``match`` is the kept reason, or ``unmatched_cancellation`` with a missing ``order_id``.
    """
    left = cancel.sort_values(["return_ts", "line"], kind="stable")
    # Ties on order_ts are broken by order_id so the pick does not depend on input order.
    by_code = (
        order_lines[["customer_id", "stock_code", "order_ts", "order_id"]]
        .drop_duplicates()
        .sort_values(["order_ts", "order_id"], kind="stable")
    )
    first = pd.merge_asof(
        left,
        by_code,
        left_on="return_ts",
        right_on="order_ts",
        by=["customer_id", "stock_code"],
        direction="backward",
        allow_exact_matches=True,
    )
    hit = first["order_id"].notna()
    first.loc[hit, "match"] = "return_line_same_stockcode"

    by_customer = orders[["customer_id", "order_ts", "order_id"]].sort_values(["order_ts", "order_id"], kind="stable")
    rest = first.loc[~hit, cancel.columns]
    second = pd.merge_asof(
        rest,
        by_customer,
        left_on="return_ts",
        right_on="order_ts",
        by="customer_id",
        direction="backward",
        allow_exact_matches=True,
    )
    second["match"] = np.where(second["order_id"].notna(), "return_line_previous_order", "unmatched_cancellation")
    matched = pd.concat([first.loc[hit], second], ignore_index=True)
    return matched.drop(columns="order_ts")


def online_retail_to_contract(raw: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], ImportReport]:
    """Convert Online Retail II lines into contract tables ``orders``, ``returns``, ``customers``.

    See the module docstring for every rule. Returns the tables (sorted by time, then id; fresh
    RangeIndex) and the report accounting for every input line.
    """
    lines = _normalise(raw)
    lines["line"] = np.arange(len(lines))
    lines["kind"] = _line_kind(lines["stock_code"])
    is_cancel = lines["invoice"].str.upper().str.startswith(CANCELLATION_PREFIX).fillna(False).to_numpy(bool)
    sales_invoice = lines["invoice"].str.fullmatch(r"[Cc]?\d+").fillna(False).to_numpy(bool)
    has_customer = lines["customer_id"].notna().to_numpy()
    readable_customer = has_customer & ~lines["unreadable"].to_numpy()
    n_customers_on_invoice = (
        lines["customer_id"].where(readable_customer).groupby(lines["invoice"]).transform("nunique").to_numpy()
    )
    qty = lines["quantity"].fillna(0).to_numpy(dtype="int64")
    price = lines["price"].to_numpy()
    kind = lines["kind"].to_numpy()

    dropped_before_matching = [
        ("unreadable", lines["unreadable"].to_numpy()),
        ("no_customer", ~has_customer),
        ("conflicting_customer", n_customers_on_invoice > 1),
        ("non_sales_invoice", ~sales_invoice),
        *[(f"non_product:{k}", kind == k) for k, _ in NON_PRODUCT_KINDS if k != "discount"],
        ("zero_quantity", qty == 0),
        ("negative_quantity_on_invoice", ~is_cancel & (qty < 0)),
        ("positive_quantity_on_cancellation", is_cancel & (qty > 0)),
        ("zero_price", price == 0),
        ("negative_price", price < 0),
    ]
    reason = np.select(
        [c for _, c in dropped_before_matching], [r for r, _ in dropped_before_matching], default=""
    ).astype(object)
    usable = reason == ""
    is_product = kind == "product"
    is_discount = kind == "discount"

    inv_ts = lines.groupby("invoice")["ts"].transform("min")
    lines["invoice_ts"] = inv_ts

    order_line_mask = usable & ~is_cancel & is_product
    order_lines = lines.loc[order_line_mask].rename(columns={"invoice": "order_id", "invoice_ts": "order_ts"})
    reason[order_line_mask] = "order_product_line"
    orders = order_lines.groupby("order_id", as_index=False, sort=False).agg(
        customer_id=("customer_id", "first"),
        order_ts=("order_ts", "first"),
        merchandise=("value", "sum"),
        items=("quantity", "sum"),
    )

    discount_mask = usable & ~is_cancel & is_discount
    on_order = lines["invoice"].isin(orders["order_id"]).to_numpy()
    reason[discount_mask & on_order] = "order_discount_line"
    reason[discount_mask & ~on_order] = "discount_without_order"
    discounts = lines.loc[discount_mask & on_order].groupby("invoice")["value"].sum().rename("discount_amount")
    orders = orders.merge(discounts, left_on="order_id", right_index=True, how="left")
    orders["discount_amount"] = orders["discount_amount"].fillna(0.0).astype("float64")
    orders["amount"] = (orders["merchandise"] - orders["discount_amount"]).clip(lower=0.0)

    cancel_mask = usable & is_cancel & (is_product | is_discount)
    cancel = lines.loc[cancel_mask, ["line", "customer_id", "stock_code", "invoice", "invoice_ts", "value"]].rename(
        columns={"invoice_ts": "return_ts"}
    )
    matched = _match_returns(cancel, order_lines, orders)
    reason[matched["line"].to_numpy()] = matched["match"].to_numpy()
    refunds = matched.loc[matched["order_id"].notna()]
    returns = refunds.groupby(["customer_id", "invoice", "order_id"], as_index=False, sort=False).agg(
        return_ts=("return_ts", "first"), amount=("value", "sum")
    )
    returns["amount"] = -returns["amount"]

    orders = _finish_orders(orders)
    returns = _finish_returns(returns)
    customers, customers_without_order = _customers(lines.loc[readable_customer], orders)

    order_amount = orders.set_index("order_id")["amount"]
    above = int((returns["amount"] > returns["order_id"].map(order_amount) + 1e-9).sum())
    report = ImportReport(
        input_rows=len(lines),
        lines=_line_counts(reason, lines["value"].to_numpy()),
        orders=len(orders),
        returns=len(returns),
        customers=len(customers),
        duplicate_lines_kept=int(
            lines.loc[np.isin(reason, list(KEPT_REASONS))]
            .duplicated(["invoice", "stock_code", "quantity", "price", "ts", "customer_id"])
            .sum()
        ),
        returns_above_order_amount=above,
        customers_without_order=customers_without_order,
    )
    return {"orders": orders, "returns": returns, "customers": customers}, report


def _finish_orders(orders: pd.DataFrame) -> pd.DataFrame:
    out = orders.sort_values(["order_ts", "order_id"], kind="stable")
    return pd.DataFrame(
        {
            "customer_id": out["customer_id"].astype(str).to_numpy(),
            "order_id": out["order_id"].astype(str).to_numpy(),
            "order_ts": out["order_ts"].astype("datetime64[us]").to_numpy(),
            "amount": out["amount"].astype("float64").round(AMOUNT_DECIMALS).to_numpy(),
            "discount_amount": out["discount_amount"].astype("float64").round(AMOUNT_DECIMALS).to_numpy(),
            "items": out["items"].astype("Int64").array,
        }
    ).astype({"customer_id": str, "order_id": str})


def _finish_returns(returns: pd.DataFrame) -> pd.DataFrame:
    out = returns.sort_values(["return_ts", "customer_id", "order_id", "invoice"], kind="stable")
    return pd.DataFrame(
        {
            "customer_id": out["customer_id"].astype(str).to_numpy(),
            "order_id": out["order_id"].astype(str).to_numpy(),
            "return_ts": out["return_ts"].astype("datetime64[us]").to_numpy(),
            "amount": out["amount"].astype("float64").round(AMOUNT_DECIMALS).to_numpy(),
        }
    ).astype({"customer_id": str, "order_id": str})


def _customers(lines: pd.DataFrame, orders: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Customers with at least one order, and how many other customers the file names."""
    first_seen = lines.groupby("customer_id")["ts"].min()
    by_country = (
        lines.loc[lines["country"].notna()]
        .groupby(["customer_id", "country"], as_index=False)
        .agg(n=("ts", "size"), last=("ts", "max"))
        .sort_values(["customer_id", "n", "last", "country"], ascending=[True, False, False, True], kind="stable")
        .drop_duplicates("customer_id")
        .set_index("customer_id")["country"]
    )
    ids = pd.Index(orders["customer_id"].unique()).sort_values()
    customers = pd.DataFrame(
        {
            "customer_id": ids.to_numpy(),
            "signup_ts": first_seen.reindex(ids).astype("datetime64[us]").to_numpy(),
            "country": by_country.reindex(ids).to_numpy(),
        }
    ).astype({"customer_id": str, "country": str})
    return customers, int(first_seen.index.difference(ids).size)


def _line_counts(reason: np.ndarray, value: np.ndarray) -> tuple[LineCount, ...]:
    frame = pd.DataFrame({"reason": reason.astype(str), "value": np.nan_to_num(value)})
    agg = frame.groupby("reason")["value"].agg(["size", "sum"])
    unknown = set(agg.index) - set(KEPT_REASONS) - set(DROPPED_REASONS)
    if unknown:  # a rule left a line without an outcome: a bug, not a data problem
        raise AssertionError(f"lines without a known outcome: {sorted(unknown)}")
    counts = []
    for outcome, reasons in (("kept", KEPT_REASONS), ("dropped", DROPPED_REASONS)):
        for r in reasons:
            n = int(agg["size"].get(r, 0))
            counts.append(LineCount(outcome, r, n, round(float(agg["sum"].get(r, 0.0)), 2)))
    return tuple(counts)
