"""Benchmark: the features stage on Spark (local mode) beside the default DuckDB engine, on the same data.

Usage:
    python benchmarks/bench_spark.py --data DIR                 # a generated or validated shop directory
    python benchmarks/bench_spark.py --data DIR --cutoffs 12 --master 'local[2]'

Runs `churn features --out-dir` (the training panel over ``--cutoffs`` monthly cutoffs plus the scoring
table) once per engine, each in its own child process, and prints wall time, the peak resident memory of the
whole process tree (driver, JVM and Python workers, sampled every 0.5 s) and whether both engines wrote the
same tables (same rows and columns, values within 1e-6 relative). Make a 1,000,000-customer shop with
``churn generate --customers 1000000 --out DIR``. On 2 cores local Spark is expected to be slower: what it
buys is that the same definitions run on a cluster (CHURN_SPARK_MASTER).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_stage(engine: str, data: Path, out: Path, params: Path, env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of the process tree of one `churn features` run."""
    cmd = [sys.executable, "-m", "churn_pipeline", "features", "--data", str(data), "--out-dir", str(out)]
    cmd += ["--engine", engine, "--params", str(params)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    parent, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.5)
    if proc.returncode:
        raise SystemExit(f"{engine} run failed with exit code {proc.returncode}")
    return time.perf_counter() - start, peak / 1e9


def same_tables(a: Path, b: Path) -> str:
    ta, tb = pq.read_table(a), pq.read_table(b)
    if ta.column_names != tb.column_names or ta.num_rows != tb.num_rows:
        return f"NO: {ta.num_rows} vs {tb.num_rows} rows, columns equal {ta.column_names == tb.column_names}"
    worst = 0.0
    for name in ta.column_names:
        x, y = ta.column(name).combine_chunks(), tb.column(name).combine_chunks()
        if x.type != y.type and not (str(x.type).startswith("timestamp") and str(y.type).startswith("timestamp")):
            return f"NO: column {name} is {x.type} vs {y.type}"
        try:
            xn = x.to_numpy(zero_copy_only=False).astype(np.float64)
            yn = y.to_numpy(zero_copy_only=False).astype(np.float64)
        except (TypeError, ValueError):
            if not x.cast(y.type).equals(y):
                return f"NO: column {name} differs"
            continue
        if not np.array_equal(np.isnan(xn), np.isnan(yn)):
            return f"NO: column {name} has missing values in other rows"
        diff = np.abs(xn - yn) / np.maximum(1.0, np.abs(xn))
        worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
    return f"yes ({ta.num_rows:,} rows x {len(ta.column_names)} columns, largest relative difference {worst:.1e})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cutoffs", type=int, default=12)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--driver-memory", default="8g")
    args = parser.parse_args()
    import os

    env = {**os.environ, "CHURN_SPARK_MASTER": args.master, "CHURN_SPARK_DRIVER_MEMORY": args.driver_memory}
    with tempfile.TemporaryDirectory(prefix="bench_spark_") as tmp:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["features"]["cutoffs"]["count"] = args.cutoffs
        params_path = Path(tmp) / "params.yaml"
        params_path.write_text(yaml.safe_dump(params))
        results = {}
        for engine in ("duckdb", "spark"):
            results[engine] = run_stage(engine, args.data, Path(tmp) / engine, params_path, env)
            print(f"{engine:>6}: {results[engine][0]:7.1f} s, peak {results[engine][1]:.2f} GB (process tree)")
        ratio = results["spark"][0] / results["duckdb"][0]
        print(f"spark / duckdb time: {ratio:.1f}x on {os.cpu_count()} cores, master {args.master}")
        for table in ("panel", "scoring"):
            same = same_tables(*(Path(tmp) / engine / f"{table}.parquet" for engine in ("duckdb", "spark")))
            print(f"same {table}: {same}")


if __name__ == "__main__":
    main()
