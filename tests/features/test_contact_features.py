"""Point-in-time features of contacts: only the (customer, cutoff) pairs asked for, from data before the cutoff."""

from __future__ import annotations

import duckdb
import pandas as pd

from churn_pipeline.features.build import LABELS, FeatureConfig
from churn_pipeline.features.contact_features import contact_features


def orders_connection(orders: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("orders_df", orders)
    con.execute("CREATE VIEW orders AS SELECT * FROM orders_df")
    return con


def test_each_key_with_an_earlier_order_gets_its_features_from_data_before_its_cutoff_and_no_labels():
    orders = pd.DataFrame(
        {
            "customer_id": ["A", "A", "B", "C"],
            "order_id": ["a1", "a2", "b1", "c1"],
            "order_ts": pd.to_datetime(["2025-01-10", "2025-03-01", "2025-02-01", "2025-01-20"]),
            "amount": [10.0, 500.0, 20.0, 30.0],
        }
    )
    keys = pd.DataFrame(
        {
            "customer_id": ["A", "B", "A", "C"],
            "cutoff": pd.to_datetime(["2025-03-01", "2025-03-01", "2025-04-01", "2025-01-15"]),
        }
    )
    end = pd.Timestamp("2025-06-01")
    frame, manifest = contact_features(orders_connection(orders), keys, end, FeatureConfig())
    # C has no order before 2025-01-15; C is not asked for at any other cutoff, B only at 2025-03-01.
    got = sorted(zip(frame["customer_id"], frame["cutoff"].dt.strftime("%Y-%m-%d"), strict=True))
    assert got == [("A", "2025-03-01"), ("A", "2025-04-01"), ("B", "2025-03-01")]
    assert frame["cutoff"].dtype == "datetime64[us]" and frame["customer_id"].map(type).eq(str).all()
    assert not set(frame.columns) & set(LABELS)
    assert set(manifest["features"]) <= set(frame.columns)
    # The order at exactly 2025-03-01 is not a feature at that cutoff.
    at = frame.set_index(["customer_id", frame["cutoff"].dt.strftime("%Y-%m-%d")])
    assert at.loc[("A", "2025-03-01"), "orders_total"] == 1 and at.loc[("A", "2025-04-01"), "orders_total"] == 2
