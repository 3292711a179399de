"""Point-in-time features of campaign contacts: the scoring-mode feature build at each contact's cutoff.

Grain: one row per (customer_id, cutoff) asked for that has features; the cutoff is a day at midnight (naive
UTC, microseconds), e.g. a contact's day, so the features see only rows with timestamp ``< cutoff`` (the time
bounds of :mod:`features.build`). Lapsed customers are kept (``training=False``, flagged ``is_lapsed``); a
customer without an order before the cutoff has no row. No labels: the outcome columns of the panel are dropped.
Durations are in days, money in the shop's currency (as :mod:`features.build`).
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn_pipeline.features.build import LABELS, FeatureConfig, build_feature_blocks


def contact_features(
    con: duckdb.DuckDBPyConnection, keys: pd.DataFrame, end: pd.Timestamp, config: FeatureConfig
) -> tuple[pd.DataFrame, dict]:
    """Features (no labels) of each (customer_id, cutoff) in ``keys`` that has one: the scoring-mode feature build
    (``training=False``) at the distinct cutoffs, one cutoff block at a time, each cut down to the customers
    wanted at it before it is converted (memory: one block of the whole customer base at a time). ``con`` exposes
    the views :func:`features.build.build_feature_blocks` reads; ``end`` is the end of the data. Returns the
    features (``customer_id`` as text, ``cutoff`` as ``datetime64[us]``) and the feature manifest."""
    cutoffs = sorted(pd.Timestamp(c) for c in keys["cutoff"].unique())
    wanted = keys.groupby("cutoff")["customer_id"].unique()
    parts, manifest = [], {}
    for cutoff, block, made in build_feature_blocks(con, cutoffs, end, config, training=False):
        manifest = made
        ids = pa.array(wanted.loc[cutoff].astype(str).tolist(), type=pa.string())
        kept = block.filter(pc.is_in(block["customer_id"].cast(pa.string()), value_set=ids))
        parts.append(kept.drop_columns([c for c in LABELS if c in kept.column_names]))
    table = pa.concat_tables(parts)
    frame = table.to_pandas()
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us]")
    return frame, manifest
