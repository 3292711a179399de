"""Stage ``generate`` and ``churn generate``: params and overrides, the files written, atomic replacement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churn_pipeline.errors import ParamsError, UsageError
from churn_pipeline.features.contract import TABLE_ORDER, TABLES
from churn_pipeline.features.synthetic import TRUTH_COLUMNS, SyntheticShopConfig, generate_shop
from churn_pipeline.pipelines import generate
from churn_pipeline.pipelines.cli import app

REPO = Path(__file__).resolve().parents[2]


def _params(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_cli_writes_the_contract_tables_and_the_truth_with_overrides_winning(tmp_path: Path) -> None:
    params = _params(tmp_path, "generate:\n  customers: 500\n  seed: 1\n  initial_share: 0.5\n")
    out = tmp_path / "data" / "synthetic"
    truth = tmp_path / "data" / "synthetic_truth" / "campaign_effects.parquet"
    args = ["generate", "--out", str(out), "--customers", "1500", "--seed", "3", "--params", str(params)]
    result = CliRunner().invoke(app, [*args, "--truth", str(truth)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.parquet" for name in TABLE_ORDER)
    assert sorted(p.name for p in truth.parent.iterdir()) == ["campaign_effects.parquet"]

    expected = generate_shop(SyntheticShopConfig(customers=1500, seed=3, initial_share=0.5))
    for name in TABLE_ORDER:
        table = pq.read_table(out / f"{name}.parquet")
        assert tuple(table.column_names) == TABLES[name].column_names
        assert table.num_rows == expected[name].num_rows, name
        for column in TABLES[name].columns:
            if column.kind in ("id", "string"):
                # Dictionary-encoded in memory, plain strings on disk: the contract's type for any reader.
                assert table.schema.field(column.name).type == pa.string(), f"{name}.{column.name}"
    customers = pq.read_table(out / "customers.parquet").to_pandas()
    assert customers["customer_id"].iloc[0] == "0000001"
    orders = pq.read_table(out / "orders.parquet")
    assert orders.column("order_id").equals(expected["orders"].column("order_id"))
    assert orders.schema.field("order_ts").type == pa.timestamp("us")

    # The ground truth: one row per contact, plain strings on disk, the contacts' keys in their order.
    written = pq.read_table(truth)
    assert tuple(written.column_names) == TRUTH_COLUMNS
    assert written.num_rows == expected["campaign_truth"].num_rows == expected["contacts"].num_rows > 0
    assert written.schema.field("customer_id").type == pa.string()
    contacts = pq.read_table(out / "contacts.parquet")
    for key in ("customer_id", "campaign_id", "contact_ts"):
        assert written.column(key).equals(contacts.column(key)), key


def test_params_section_gives_the_defaults(tmp_path: Path) -> None:
    params = _params(tmp_path, "generate:\n  customers: 300\n  seed: 9\n")
    config = generate.load_config(params)
    assert (config.customers, config.seed) == (300, 9)
    generate.run(out=tmp_path / "shop", params_path=params)
    assert pq.read_metadata(tmp_path / "shop" / "customers.parquet").num_rows == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "shop"], "no truth unless asked for"
    # Campaigns are knobs like any other: none gives an empty contacts table.
    generate.run(out=tmp_path / "plain", params_path=_params(tmp_path, "generate:\n  customers: 300\n  campaigns: 0\n"))
    assert pq.read_metadata(tmp_path / "plain" / "contacts.parquet").num_rows == 0
    # An absent params file means every knob takes its default.
    assert generate.load_config(tmp_path / "missing.yaml") == SyntheticShopConfig()


def test_bad_params_and_overrides_raise_params_errors_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="custmers"):
        generate.load_config(_params(tmp_path, "generate:\n  custmers: 10\n"))
    with pytest.raises(ParamsError, match="return_prob"):
        generate.load_config(_params(tmp_path, "generate:\n  return_prob: 2.0\n"))
    with pytest.raises(ParamsError, match="customers must be >= 1"):
        generate.load_config(_params(tmp_path, "generate: {}\n"), customers=0)


def test_cli_failure_is_one_paragraph_and_a_params_exit_code(tmp_path: Path) -> None:
    params = _params(tmp_path, "generate:\n  custmers: 10\n")
    out = tmp_path / "shop"
    env = {k: v for k, v in os.environ.items() if k != "CHURN_TRACEBACK"}
    proc = subprocess.run(
        [sys.executable, "-m", "churn_pipeline", "generate", "--out", str(out), "--params", str(params)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == ParamsError.exit_code
    assert "custmers" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_failure_leaves_no_partial_directory_and_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _params(tmp_path, "generate:\n  customers: 200\n")
    out = tmp_path / "shop"
    real_write = pq.write_table
    written: list[str] = []

    def write_then_fail(table: pa.Table, where: Path, **kwargs: object) -> None:
        if written:
            raise OSError("disk full")
        written.append(Path(where).name)
        real_write(table, where, **kwargs)

    monkeypatch.setattr(generate.pq, "write_table", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        generate.run(out=out, params_path=params)
    assert written == ["customers.parquet"]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [params], "no staging directory left behind"

    # A previous complete output survives a failed run untouched ...
    monkeypatch.setattr(generate.pq, "write_table", real_write)
    generate.run(out=out, params_path=params, seed=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    written.clear()
    monkeypatch.setattr(generate.pq, "write_table", write_then_fail)
    with pytest.raises(OSError):
        generate.run(out=out, params_path=params, seed=2)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    # ... and a successful run replaces the whole directory, stale files included.
    monkeypatch.setattr(generate.pq, "write_table", real_write)
    (out / "stale.csv").write_text("old\n", encoding="utf-8")
    generate.run(out=out, params_path=params, seed=2)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.parquet" for name in TABLE_ORDER)


def test_a_truth_path_inside_the_output_or_that_is_a_directory_is_refused_before_writing(tmp_path: Path) -> None:
    params = _params(tmp_path, "generate:\n  customers: 200\n")
    out = tmp_path / "shop"
    with pytest.raises(UsageError, match="inside --out"):
        generate.run(out=out, params_path=params, truth=out / "truth.parquet")
    (tmp_path / "truth_dir").mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        generate.run(out=out, params_path=params, truth=tmp_path / "truth_dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "truth_dir"]


def test_a_failed_run_keeps_the_previous_data_and_truth_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _params(tmp_path, "generate:\n  customers: 200\n")
    out, truth = tmp_path / "shop", tmp_path / "truth" / "effects.parquet"
    generate.run(out=out, params_path=params, seed=1, truth=truth)
    before = {p.name: p.read_bytes() for p in (*out.iterdir(), truth)}
    real_write = pq.write_table

    def fail_on_truth(table: pa.Table, where: Path, **kwargs: object) -> None:
        if Path(where).name == truth.name:  # the last file written
            raise OSError("disk full")
        real_write(table, where, **kwargs)

    monkeypatch.setattr(generate.pq, "write_table", fail_on_truth)
    with pytest.raises(OSError, match="disk full"):
        generate.run(out=out, params_path=params, seed=2, truth=truth)
    assert {p.name: p.read_bytes() for p in (*out.iterdir(), truth)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "shop", "truth"], "no staging left"
    assert sorted(p.name for p in truth.parent.iterdir()) == ["effects.parquet"]
