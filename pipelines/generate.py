"""Stage ``generate``: write the synthetic shop's contract tables to a directory.

Reads params section ``generate`` (any :class:`features.synthetic.SyntheticShopConfig` knob; command-line
``--customers`` / ``--seed`` win), generates the shop and writes ``customers``, ``orders``, ``returns`` and
``events`` as zstd Parquet files into ``out``. The directory is staged beside ``out`` and swapped in whole,
so a failure leaves either the previous complete directory or none, never a partial one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.parquet as pq

from features.contract import TABLE_ORDER
from features.synthetic import SyntheticShopConfig, generate_shop
from pipelines.console import step
from pipelines.errors import ParamsError
from pipelines.io import atomic_path
from pipelines.params import DEFAULT_PARAMS, load_section

SECTION = "generate"


def load_config(
    params_path: Path = DEFAULT_PARAMS, customers: int | None = None, seed: int | None = None
) -> SyntheticShopConfig:
    """The generator config: params section ``generate`` with the given overrides applied."""
    config = load_section(SyntheticShopConfig, SECTION, params_path)
    overrides = {k: v for k, v in (("customers", customers), ("seed", seed)) if v is not None}
    try:
        return dataclasses.replace(config, **overrides)
    except ValueError as exc:
        raise ParamsError(f"churn generate: {exc}.") from exc


def run(out: Path, params_path: Path = DEFAULT_PARAMS, customers: int | None = None, seed: int | None = None) -> None:
    """Generate the synthetic shop and write ``<out>/{customers,orders,returns,events}.parquet`` atomically.

    Prints one summary line (rows per table, time). Raises ParamsError for a bad params section or override.
    """
    config = load_config(params_path, customers, seed)
    with step("generate") as result:
        tables = generate_shop(config)
        counts = {name: tables[name].num_rows for name in TABLE_ORDER}
        with atomic_path(Path(out)) as staged:
            staged.mkdir()
            for name in TABLE_ORDER:
                # Without the stored Arrow schema, dictionary-encoded id and category columns read back as
                # plain strings, the contract's type; Parquet dictionary-encodes them on disk anyway.
                table = tables.pop(name)  # drop each table once written, to keep the peak memory down
                pq.write_table(table, staged / f"{name}.parquet", compression="zstd", store_schema=False)
                del table
        result.rows = sum(counts.values())
        result.detail = (
            f"{counts['customers']:,} customers, {counts['orders']:,} orders, {counts['returns']:,} returns, "
            f"{counts['events']:,} events (seed {config.seed}) → {out}"
        )
