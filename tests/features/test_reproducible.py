"""The same data gives the same feature table, byte for byte, on any machine.

A fresh clone's `make run` once gave another panel (and a churn model with best iteration 66 instead of 59)
on a machine without AVX-512: the per-cutoff BG/NBD fits behind the ``bgnbd_*`` features took numpy's AVX-512
``exp``/``log`` kernels on one machine and the C library's on the other, and scipy's L-BFGS-B ran on
OpenBLAS kernels chosen per CPU; a flat likelihood turned those last-bit differences into features that differ
in the 5th digit. Another machine is emulated here in a subprocess: numpy's CPU dispatch switched off
(``NPY_DISABLE_CPU_FEATURES``: the baseline kernels of a CPU without AVX2 or AVX-512) and OpenBLAS told to use
another CPU's kernels (``OPENBLAS_CORETYPE``). DuckDB's thread count and the order the source rows come in
must not matter either (every sum is an integer sum, :func:`features.definitions.exact_sum`).
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn_pipeline.features.build import FeatureConfig, build_feature_table
from churn_pipeline.features.cutoffs import data_end
from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop
from churn_pipeline.pipelines.io import connect, data_span

ROOT = Path(__file__).resolve().parents[2]
# Twelve monthly cutoffs of a 3,000-customer shop: twelve BG/NBD fits, a few seconds per build.
CUTOFFS = [str(c.date()) for c in pd.date_range("2024-06-01", periods=12, freq="MS")]
CONFIG = {"windows_days": (30, 90, 180, 365), "churn_horizon_days": 90, "clv_horizon_days": 180}

# One build in a fresh interpreter (the environment variables act when numpy and OpenBLAS load): the SHA-256 of
# the feature table written as Parquet.
BUILD = """
import hashlib, io, sys
import pandas as pd, pyarrow.parquet as pq
from churn_pipeline.features.build import FeatureConfig, build_feature_table
from churn_pipeline.features.cutoffs import data_end
from churn_pipeline.pipelines.features import connect, data_span
con = connect(sys.argv[1])
table, _ = build_feature_table(
    con, [pd.Timestamp(c) for c in sys.argv[2].split(",")], data_end(data_span(con)[1]),
    FeatureConfig(windows_days=(30, 90, 180, 365), churn_horizon_days=90, clv_horizon_days=180), training=True,
)
buf = io.BytesIO()
pq.write_table(table, buf, compression="snappy")
print(hashlib.sha256(buf.getvalue()).hexdigest())
"""


def _write_shop(out: Path, shuffle_seed: int | None = None) -> Path:
    """The synthetic shop as the generate stage writes it (rows shuffled within each table if asked)."""
    out.mkdir()
    for name, table in generate_shop(SyntheticShopConfig(customers=3000, seed=11)).items():
        if shuffle_seed is not None:
            table = table.take(np.random.default_rng(shuffle_seed).permutation(table.num_rows))
        pq.write_table(table, out / f"{name}.parquet", store_schema=False)
    return out


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return _write_shop(tmp_path_factory.mktemp("shop") / "data")


def _parquet_sha(table: pa.Table) -> str:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _build(data: Path, threads: int) -> pa.Table:
    con = connect(data)
    con.execute(f"SET threads = {threads}")
    end = data_end(data_span(con)[1])
    return build_feature_table(con, [pd.Timestamp(c) for c in CUTOFFS], end, FeatureConfig(**CONFIG), True)[0]


def test_duckdb_threads_and_source_row_order_do_not_change_a_byte(shop, tmp_path):
    one_thread = _build(shop, threads=1)
    shuffled = _build(_write_shop(tmp_path / "shuffled", shuffle_seed=5), threads=4)
    assert one_thread.num_rows > 10_000 and one_thread.column("bgnbd_churn_probability").null_count == 0
    assert _parquet_sha(shuffled) == _parquet_sha(one_thread)


def _dispatch_targets() -> str:
    """Every SIMD target numpy may dispatch a kernel to on this machine (beyond its baseline): switching them
    all off gives the kernels of the oldest CPU numpy supports."""
    from numpy.lib.introspect import opt_func_info

    targets = {
        t
        for signatures in opt_func_info().values()
        for kernels in signatures.values()
        for t in kernels["available"].split()
        if not t.startswith("baseline")
    }
    return " ".join(sorted(targets))


def _other_machines() -> dict[str, dict[str, str]]:
    machines = {"numpy without AVX2 or AVX-512 kernels": {"NPY_DISABLE_CPU_FEATURES": _dispatch_targets()}}
    if platform.machine().lower() in ("x86_64", "amd64") and sys.platform.startswith("linux"):
        # Prescott (SSE3) kernels run on every x86-64 CPU, and sum in another order than AVX2 / AVX-512 ones.
        machines["OpenBLAS with another CPU's kernels"] = {"OPENBLAS_CORETYPE": "Prescott"}
    return machines


def _sha_in_subprocess(data: Path, env: dict[str, str]) -> str:
    run_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(data), ",".join(CUTOFFS)],
        env=run_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()[-1]


@pytest.mark.slow  # three fresh interpreters: ~10 s
def test_the_feature_table_is_the_same_on_another_cpu(shop):
    here = _sha_in_subprocess(shop, {})
    assert _parquet_sha(_build(shop, threads=2)) == here  # the subprocess builds what this process builds
    for machine, env in _other_machines().items():
        assert _sha_in_subprocess(shop, env) == here, f"{machine} ({env}) gives another feature table"
