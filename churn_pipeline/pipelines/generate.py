"""Stage ``generate``: write the synthetic shop's contract tables to a directory, and its campaigns' ground truth.

Reads params section ``generate`` (any :class:`features.synthetic.SyntheticShopConfig` knob; command-line
``--customers`` / ``--seed`` win), generates the shop and writes ``customers``, ``orders``, ``returns``,
``events`` and ``contacts`` as zstd Parquet files into ``out``. The directory is staged beside ``out`` and swapped
in whole, so a failure leaves either the previous complete directory or none, never a partial one. With ``truth``
the ground truth of the past campaigns' effects (one row per contact, ``docs/synthetic_shop.md``) goes to that
Parquet file, staged too and renamed into place just before the directory, so a failed run replaces neither.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.parquet as pq

from churn_pipeline.errors import ParamsError, UsageError
from churn_pipeline.features.contract import TABLE_ORDER
from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop
from churn_pipeline.pipelines.console import step
from churn_pipeline.pipelines.io import atomic_path, check_file_target
from churn_pipeline.pipelines.params import DEFAULT_PARAMS, load_section

SECTION = "generate"
TRUTH_TABLE = "campaign_truth"


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


def _check_truth_target(out: Path, truth: Path) -> None:
    """UsageError (before anything is written) when ``truth`` is a directory or lies inside ``out``, which is
    replaced whole."""
    check_file_target(truth, what="--truth", example="campaign_effects.parquet")
    out_dir, truth_file = out.resolve(), truth.resolve()
    if truth_file == out_dir or out_dir in truth_file.parents:
        raise UsageError(
            f"--truth {truth} lies inside --out {out}, which is replaced whole: write the ground truth beside the "
            f"data, e.g. {out.parent / (out.name + '_truth') / 'campaign_effects.parquet'}. Nothing was written."
        )


def run(
    out: Path,
    params_path: Path = DEFAULT_PARAMS,
    customers: int | None = None,
    seed: int | None = None,
    truth: Path | None = None,
) -> None:
    """Generate the synthetic shop and write ``<out>/{customers,orders,returns,events,contacts}.parquet``
    atomically, and the campaigns' ground truth to ``truth`` (a Parquet file) when given.

    Prints one summary line (rows per table, time). Raises ParamsError for a bad params section or override,
    UsageError for a ``truth`` path that is a directory or inside ``out``.
    """
    out = Path(out)
    config = load_config(params_path, customers, seed)
    if truth is not None:
        truth = Path(truth)
        _check_truth_target(out, truth)
    with step("generate") as result:
        tables = generate_shop(config)
        counts = {name: tables[name].num_rows for name in TABLE_ORDER}
        truth_table = tables.pop(TRUTH_TABLE)
        with atomic_path(out) as staged:
            staged.mkdir()
            for name in TABLE_ORDER:
                # Without the stored Arrow schema, dictionary-encoded id and category columns read back as
                # plain strings, the contract's type; Parquet dictionary-encodes them on disk anyway.
                table = tables.pop(name)  # drop each table once written, to keep the peak memory down
                pq.write_table(table, staged / f"{name}.parquet", compression="zstd", store_schema=False)
                del table
            if truth is not None:
                # Inside the directory's staging, so a failure in either leaves both as they were.
                with atomic_path(truth, directory=False) as staged_truth:
                    pq.write_table(truth_table, staged_truth, compression="zstd", store_schema=False)
        result.rows = sum(counts.values())
        result.detail = (
            f"{counts['customers']:,} customers, {counts['orders']:,} orders, {counts['returns']:,} returns, "
            f"{counts['events']:,} events, {counts['contacts']:,} contacts (seed {config.seed}) → {out}"
            + (f"; campaign truth → {truth}" if truth is not None else "")
        )
