"""Shared fixtures: one realistic feature panel from the synthetic shop, its splits and fitted models.

The panel is built once per session the way ``churn features`` builds it: a 20,000-customer synthetic shop
(export window 2023-01-01..2026-01-01), its tables registered in DuckDB as views, and
``build_feature_table`` at 18 monthly cutoffs 2024-05-01..2025-10-01 with the default windows and horizons
(churn 90 days, CLV 180 days): about 143,000 rows x 114 features. 18 rather than 12 cutoffs so that a
*purged* CLV split exists (180-day labels need half a year between train and validation and between
validation and test). Boosters are capped at 300 trees so the whole suite stays fast.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from churn_pipeline.features.build import FeatureConfig, build_feature_table
from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop
from churn_pipeline.models.churn import ChurnClassifier
from churn_pipeline.models.clv import CLVRegressor
from churn_pipeline.models.split import TimeSplit, split_frame, time_split

CUTOFFS = list(pd.date_range("2024-05-01", "2025-10-01", freq="MS"))
END = pd.Timestamp("2026-01-01")
CONFIG = FeatureConfig()  # windows 30/90/180/365 days, churn horizon 90, CLV horizon 180
FAST = {"n_estimators": 300, "n_jobs": 2}
# The settings the shared churn and CLV fixtures were written for, pinned since the estimators' defaults became
# params.yaml's (train.churn / train.clv: BG/NBD offsets, AUC / Gini stopping): no offset prior, log-loss /
# deviance early stopping, learning rate 0.05, 255 histogram bins, Tweedie power 1.3.
CHURN_SETTINGS = {"offset": None, "early_stopping_metric": "logloss", "learning_rate": 0.05, "max_bin": 255}
CLV_SETTINGS = {
    "offset": None,
    "early_stopping_metric": "deviance",
    "tweedie_variance_power": 1.3,
    "learning_rate": 0.05,
    "max_bin": 255,
}


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns as plain strings: the validated contract's types."""
    return pa.table(
        {
            name: col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col
            for name, col in zip(table.column_names, table.columns, strict=True)
        }
    )


@pytest.fixture(scope="session")
def panel_and_manifest() -> tuple[pd.DataFrame, dict]:
    shop = generate_shop(SyntheticShopConfig(customers=20_000, seed=42))
    con = duckdb.connect()
    for name in ("orders", "returns", "customers", "events"):
        con.register(f"{name}_src", _plain(shop[name]))
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_src")
    table, manifest = build_feature_table(con, CUTOFFS, END, CONFIG, training=True)
    return table.to_pandas(), manifest


@pytest.fixture(scope="session")
def panel(panel_and_manifest) -> pd.DataFrame:
    return panel_and_manifest[0]


@pytest.fixture(scope="session")
def manifest(panel_and_manifest) -> dict:
    return panel_and_manifest[1]


@pytest.fixture(scope="session")
def fast() -> dict:
    """Booster settings that keep the suite fast: at most 300 trees, 2 threads."""
    return dict(FAST)


@pytest.fixture(scope="session")
def feature_args(manifest) -> dict:
    return {"features": manifest["features"], "categorical": manifest["categorical"]}


# ---------------------------------------------------------------- churn
@pytest.fixture(scope="session")
def churn_split(panel, manifest) -> TimeSplit:
    labelled = panel.loc[panel["churned"].notna(), "cutoff"].unique()
    return time_split(labelled, manifest["churn_horizon_days"], n_validation=2)


@pytest.fixture(scope="session")
def churn_frames(panel, churn_split) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return split_frame(panel[panel["churned"].notna()], churn_split)


@pytest.fixture(scope="session")
def churn_model(churn_frames, feature_args) -> ChurnClassifier:
    train, valid, _ = churn_frames
    model = ChurnClassifier(**feature_args, **FAST, **CHURN_SETTINGS)
    return model.fit(train, train["churned"], valid, valid["churned"])


# ------------------------------------------------------------------ CLV
@pytest.fixture(scope="session")
def clv_split(panel, manifest) -> TimeSplit:
    labelled = panel.loc[panel["future_revenue"].notna(), "cutoff"].unique()
    return time_split(labelled, manifest["clv_horizon_days"], n_validation=1)


@pytest.fixture(scope="session")
def clv_frames(panel, clv_split) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return split_frame(panel[panel["future_revenue"].notna()], clv_split)


@pytest.fixture(scope="session")
def fit_clv(clv_frames, feature_args):
    """A function fitting a CLVRegressor on the CLV split with the fast settings plus ``params``."""

    def fit(**params) -> CLVRegressor:
        train, valid, _ = clv_frames
        return CLVRegressor(**feature_args, **{**FAST, **CLV_SETTINGS, **params}).fit(
            train,
            train["future_revenue"],
            valid,
            valid["future_revenue"],
            train["future_orders"],
            valid["future_orders"],
        )

    return fit


@pytest.fixture(scope="session")
def clv_model(fit_clv) -> CLVRegressor:
    return fit_clv()
