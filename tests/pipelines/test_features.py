"""``churn features`` end to end on a validated directory: the panel and scoring tables, one cutoff, failures.

The commands run in-process through the real entry point (``pipelines.cli.main``), so exit codes and the
one-paragraph messages are what a user sees; one test runs the installed ``churn`` script as a subprocess.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn_pipeline.features.build import LABELS, build_feature_table
from churn_pipeline.features.derive import NEXT_ORDER_LABELS
from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop
from churn_pipeline.pipelines import features as stage
from churn_pipeline.pipelines.cli import main
from churn_pipeline.pipelines.console import console

PARAMS = """\
features:
  cutoffs:
    frequency: monthly
    count: 3
    dates: []
    scoring_date: null
  windows_days: [30, 90]
  max_recency_days: 365
labels:
  churn_horizon_days: 60
  clv_horizon_days: 120
"""
NON_FEATURES = {"customer_id", "cutoff", "is_lapsed", *LABELS}
CHURN_CLV_LABELS = [n for n in LABELS if n not in NEXT_ORDER_LABELS]
CHANNEL_FEATURES = ["web_order_share", "app_order_share", "store_order_share"]
GRID = [14, 30, 60, 90, 120, 180]
FAMILIES = {"purchase", "bgnbd", "engagement", "experience", "loyalty", "attributes", "calendar"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The synthetic shop as Parquet: already contract-clean (what `churn validate` writes)."""
    directory = tmp_path_factory.mktemp("validated")
    for name, table in generate_shop(SyntheticShopConfig(customers=2000, seed=7)).items():
        pq.write_table(table, directory / f"{name}.parquet", store_schema=False)
    return directory


@pytest.fixture
def params(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(console, "_width", 400)


@pytest.fixture
def churn(tmp_path, monkeypatch, capsys):
    """``churn features ARGS`` in-process through ``main``, in ``tmp_path``: returns (exit code, stderr)."""

    def run(*args: str | Path) -> tuple[int, str]:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["churn", "features", *map(str, args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        code = exit_info.value.code
        return (0 if code is None else int(code)), capsys.readouterr().err

    return run


def manifest(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def check_table_and_manifest(table: pa.Table, info: dict) -> None:
    produced = [c for c in table.column_names if c not in NON_FEATURES]
    assert info["features"] == produced
    assert table.column_names[:3] == ["customer_id", "cutoff", "is_lapsed"]
    assert table.column_names[-len(LABELS) :] == list(LABELS)
    assert info["labels"] == list(LABELS) and info["next_order_days"] == GRID
    assert info["categorical"] == ["country", "acquisition_channel"]
    assert set(CHANNEL_FEATURES) <= set(info["features"])
    assert info["skipped_sources"] == []
    assert set(info["families"].values()) == FAMILIES
    assert table.schema.field("customer_id").type == pa.string()
    assert table.schema.field("cutoff").type == pa.timestamp("us")


def outputs(tmp_path: Path) -> list[str]:
    """What a failed command left in its working directory, besides the inputs."""
    return sorted(p.name for p in tmp_path.iterdir() if p.name not in ("params.yaml", "shop"))


# ---- pipeline mode: panel + scoring ---------------------------------------------------------------------------


def test_out_dir_writes_panel_and_scoring(tmp_path, data, params, churn):
    out = tmp_path / "features"
    code, err = churn("--data", data, "--out-dir", out, "--params", params)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "panel.features.json",
        "panel.parquet",
        "scoring.features.json",
        "scoring.parquet",
    ]
    assert "features (training panel + scoring table)" in err and "scoring table" in err

    panel, info = pq.read_table(out / "panel.parquet"), manifest(out / "panel.features.json")
    check_table_and_manifest(panel, info)
    # The data ends 2026-01-01; with a 60-day churn horizon the latest month start is 2025-11-01.
    assert info["cutoffs"] == ["2025-09-01", "2025-10-01", "2025-11-01"]
    assert info["data_end"] == "2026-01-01"
    assert (info["churn_horizon_days"], info["clv_horizon_days"], info["windows_days"]) == (60, 120, [30, 90])
    frame = panel.to_pandas()
    counts = frame["cutoff"].dt.strftime("%Y-%m-%d").value_counts().to_dict()
    assert info["rows_per_cutoff"] == counts and min(counts.values()) > 100
    assert frame["churned"].notna().all()
    # the 120-day CLV horizon is complete only at 2025-09-01 (to 2025-12-30)
    complete = frame["cutoff"] == pd.Timestamp("2025-09-01")
    assert frame.loc[complete, "future_orders"].notna().all()
    assert frame.loc[~complete, "future_orders"].isna().all()
    assert not frame["is_lapsed"].any()
    assert not frame.duplicated(["customer_id", "cutoff"]).any()
    # next-order follow-up: the largest grid edge before the end of the data (122, 91 and 61 days away)
    followup = frame.groupby(frame["cutoff"].dt.strftime("%Y-%m-%d"))["next_order_followup_days"].unique()
    assert {k: v.tolist() for k, v in followup.items()} == {"2025-09-01": [120], "2025-10-01": [90], "2025-11-01": [60]}
    event = frame["next_order_days"]
    assert event.notna().any() and event.isna().any()
    assert event.dropna().isin(GRID).all()
    assert (event.dropna() <= frame.loc[event.notna(), "next_order_followup_days"]).all()
    # an event within the churn horizon (60 days) is exactly a customer who did not churn
    assert ((event <= 60).fillna(False) == ~frame["churned"].astype(bool)).all()
    shares = frame[CHANNEL_FEATURES]
    assert shares.sum(axis=1).round(6).eq(1.0).all()  # the synthetic shop sells via web, app and store only

    scoring, sinfo = pq.read_table(out / "scoring.parquet"), manifest(out / "scoring.features.json")
    check_table_and_manifest(scoring, sinfo)
    sframe = scoring.to_pandas()
    assert set(sframe["cutoff"]) == {pd.Timestamp("2026-01-01")}
    assert sinfo["cutoffs"] == ["2026-01-01"]
    # nothing is known after the end of the data: labels null, next-order follow-up 0
    assert sframe[[*CHURN_CLV_LABELS, "next_order_days"]].isna().all().all()
    assert (sframe["next_order_followup_days"] == 0).all()
    assert sframe["is_lapsed"].any() and not sframe["is_lapsed"].all()
    assert sframe["customer_id"].is_unique


def test_panel_matches_the_library_on_the_same_directory(tmp_path, data, params, churn):
    out = tmp_path / "features"
    assert churn("--data", data, "--out-dir", out, "--params", params)[0] == 0
    _, config = stage.load_params(params)
    cutoffs = [pd.Timestamp(c) for c in manifest(out / "panel.features.json")["cutoffs"]]
    expected, _ = build_feature_table(stage.connect(data), cutoffs, pd.Timestamp("2026-01-01"), config, True)
    assert pq.read_table(out / "panel.parquet").equals(expected)


def test_panel_is_written_one_row_group_per_cutoff(tmp_path, data, params, churn):
    out = tmp_path / "features"
    assert churn("--data", data, "--out-dir", out, "--params", params)[0] == 0
    panel = pq.ParquetFile(out / "panel.parquet")
    per_group = [panel.read_row_group(i, columns=["cutoff"]).column(0).unique() for i in range(panel.num_row_groups)]
    assert [len(cutoffs) for cutoffs in per_group] == [1, 1, 1]
    assert [str(c[0].as_py().date()) for c in per_group] == manifest(out / "panel.features.json")["cutoffs"]


def test_a_build_that_fails_midway_leaves_no_table_behind(tmp_path, data, params, churn, monkeypatch):
    made = stage.build_feature_blocks

    def fails_after_the_first_block(*args, **kwargs):
        blocks = made(*args, **kwargs)
        yield next(blocks)
        raise MemoryError("out of memory while making the second block")

    monkeypatch.setattr(stage, "build_feature_blocks", fails_after_the_first_block)
    out = tmp_path / "features"
    out.mkdir()
    with pytest.raises(MemoryError):
        stage.run(data, out, params)
    assert list(out.iterdir()) == []


# ---- one cutoff ------------------------------------------------------------------------------------------------


def test_as_of_writes_one_cutoff(tmp_path, data, params, churn):
    out = tmp_path / "nested" / "scores_input.parquet"
    code, err = churn("--data", data, "--as-of", "2025-06-01", "--out", out, "--params", params)
    assert code == 0, err
    assert sorted(p.name for p in out.parent.iterdir()) == ["scores_input.features.json", "scores_input.parquet"]
    table, info = pq.read_table(out), manifest(out.with_name("scores_input.features.json"))
    check_table_and_manifest(table, info)
    frame = table.to_pandas()
    assert set(frame["cutoff"]) == {pd.Timestamp("2025-06-01")}
    assert info["cutoffs"] == ["2025-06-01"]
    assert frame[CHURN_CLV_LABELS].notna().all().all()  # 2025-06-01 + 120 days is inside the data
    assert (frame["next_order_followup_days"] == 180).all()  # and so is + 180 (the data end 2026-01-01)
    assert frame["is_lapsed"].any()  # one cutoff is a scoring table: lapsed customers stay, flagged
    assert (frame["recency_days"] > 0).all()


def test_out_without_as_of_is_the_end_of_the_data(tmp_path, data, params, churn):
    out = tmp_path / "now.parquet"
    code, err = churn("--data", data, "--out", out, "--params", params)
    assert code == 0, err
    assert pq.read_table(out).column("cutoff").unique().to_pylist() == [pd.Timestamp("2026-01-01").to_pydatetime()]
    assert (tmp_path / "now.features.json").is_file()


# ---- failures: non-zero exit, one message, nothing written -----------------------------------------------------


def test_missing_data_directory(tmp_path, params, churn):
    code, err = churn("--data", tmp_path / "nowhere", "--out-dir", tmp_path / "o", "--params", params)
    assert code == 3
    assert "does not exist" in err and "Traceback" not in err
    assert outputs(tmp_path) == []


def test_directory_without_orders(tmp_path, data, params, churn):
    shop = tmp_path / "shop"
    shop.mkdir()
    shutil.copy(data / "customers.parquet", shop / "customers.parquet")
    code, err = churn("--data", shop, "--out", tmp_path / "f.parquet", "--params", params)
    assert code == 3
    assert "has no orders.parquet" in err and "churn validate" in err
    assert outputs(tmp_path) == []


def test_unvalidated_timestamps_are_refused(tmp_path, params, churn):
    shop = tmp_path / "shop"
    shop.mkdir()
    orders = pa.table({"customer_id": ["1"], "order_id": ["A"], "order_ts": ["2024-01-01"], "amount": [1.0]})
    pq.write_table(orders, shop / "orders.parquet")
    code, err = churn("--data", shop, "--out", tmp_path / "f.parquet", "--params", params)
    assert code == 3
    assert "expected naive-UTC TIMESTAMP" in err
    assert outputs(tmp_path) == []


def test_repeated_customer_ids_are_refused_by_name(tmp_path, data, params, churn):
    shop = tmp_path / "shop"
    shutil.copytree(data, shop)
    customers = pq.read_table(shop / "customers.parquet")
    pq.write_table(pa.concat_tables([customers, customers.slice(0, 3)]), shop / "customers.parquet")
    code, err = churn("--data", shop, "--out-dir", tmp_path / "features", "--params", params)
    assert code == 3
    assert "customers.parquet: column customer_id repeats in 3 of 2,003 rows" in err and "churn validate" in err
    assert outputs(tmp_path) == []


@pytest.mark.parametrize("as_of", ["2022-06-01", "2023-01-01"])
def test_as_of_not_after_the_first_order(tmp_path, data, params, churn, as_of):
    # the first order is on 2023-01-01 (00:47): a cutoff on that day has nothing before it
    code, err = churn("--data", data, "--as-of", as_of, "--out", tmp_path / "f.parquet", "--params", params)
    assert code == 3
    assert f"--as-of {as_of} is not after the first order (2023-01-01)" in err
    assert outputs(tmp_path) == []


def test_params_with_a_bad_key(tmp_path, data, churn):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.replace("windows_days:", "window_days:"), encoding="utf-8")
    code, err = churn("--data", data, "--out-dir", tmp_path / "o", "--params", params)
    assert code == 4
    assert "unknown key(s) ['window_days']" in err
    assert outputs(tmp_path) == []


def test_next_order_grid_comes_from_params(tmp_path, data, churn):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS + "  next_order_days: [7, 28, 56]\n", encoding="utf-8")
    out = tmp_path / "features"
    code, err = churn("--data", data, "--out-dir", out, "--params", params)
    assert code == 0, err
    info = manifest(out / "panel.features.json")
    assert info["next_order_days"] == [7, 28, 56]
    frame = pq.read_table(out / "panel.parquet", columns=list(NEXT_ORDER_LABELS)).to_pandas()
    assert set(frame["next_order_followup_days"]) == {56.0}
    assert set(frame["next_order_days"].dropna()) == {7.0, 28.0, 56.0}


@pytest.mark.parametrize(
    ("grid", "message"),
    [("[30, 14]", "strictly increasing"), ("[0, 30]", "positive"), ("[14, 14]", "duplicates"), ("[14.5]", "whole")],
)
def test_params_with_a_bad_next_order_grid(tmp_path, data, churn, grid, message):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS + f"  next_order_days: {grid}\n", encoding="utf-8")
    code, err = churn("--data", data, "--out-dir", tmp_path / "o", "--params", params)
    assert code == 4
    assert "next_order_days" in err and message in err
    assert outputs(tmp_path) == []


def test_orders_without_a_channel_column_build_without_channel_shares(tmp_path, data, params, churn):
    shop = tmp_path / "shop"
    shutil.copytree(data, shop)
    orders = pq.read_table(shop / "orders.parquet")
    pq.write_table(orders.drop_columns(["channel"]), shop / "orders.parquet")
    out = tmp_path / "features"
    code, err = churn("--data", shop, "--out-dir", out, "--params", params)
    assert code == 0, err
    info = manifest(out / "panel.features.json")
    assert not set(CHANNEL_FEATURES) & set(info["features"]) and "orders.channel" in info["skipped_sources"]
    panel = pq.read_table(out / "panel.parquet")
    assert not set(CHANNEL_FEATURES) & set(panel.column_names)
    # everything else is what the shop with channels gets
    full = tmp_path / "full"
    assert churn("--data", data, "--out-dir", full, "--params", params)[0] == 0
    assert pq.read_table(full / "panel.parquet").drop_columns(CHANNEL_FEATURES).equals(panel)


def test_params_with_a_bad_value(tmp_path, data, churn):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.replace("churn_horizon_days: 60", "churn_horizon_days: 0"), encoding="utf-8")
    code, err = churn("--data", data, "--out", tmp_path / "f.parquet", "--params", params)
    assert code == 4
    assert "horizons must be positive" in err
    assert outputs(tmp_path) == []


def test_installed_script_exit_code_for_bad_params(tmp_path, data):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.replace("frequency: monthly", "frequency: monthly\n    every: 2"), encoding="utf-8")
    script = Path(sys.executable).with_name("churn")
    cmd = [str(script), "features", "--data", str(data), "--out-dir", str(tmp_path / "o"), "--params", str(params)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 4, proc.stderr
    assert "unknown key(s) ['every']" in proc.stderr and "Traceback" not in proc.stderr
    assert outputs(tmp_path) == []


def test_out_and_out_dir_together_writes_nothing(tmp_path, data, params, churn):
    code, err = churn("--data", data, "--out", tmp_path / "f.parquet", "--out-dir", tmp_path / "o", "--params", params)
    assert code != 0
    assert "give exactly one of --out (one cutoff) or --out-dir" in err
    code, err = churn("--data", data, "--out-dir", tmp_path / "o", "--as-of", "2025-06-01", "--params", params)
    assert code != 0
    assert "--as-of goes with --out" in err
    assert outputs(tmp_path) == []


def test_usage_errors_exit_2_without_calling_themselves_a_bug(tmp_path, data, params, churn):
    code, err = churn("--data", data, "--out", tmp_path / "f.parquet", "--out-dir", tmp_path / "o", "--params", params)
    assert code == 2
    assert "unexpected" not in err and "This is a bug" not in err
