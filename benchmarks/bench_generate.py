"""Benchmark ``churn generate``: wall time, peak memory, rows and bytes per table at a given size.

Runs the real command (``python -m pipelines.cli generate``) in a child process into a temporary directory,
so the figures include interpreter start-up, generation and the Parquet writes, and the peak resident set
size is the child's alone (``getrusage(RUSAGE_CHILDREN).ru_maxrss``).

    .venv/bin/python benchmarks/bench_generate.py                  # 1,000,000 customers
    .venv/bin/python benchmarks/bench_generate.py --customers 20000 --keep data/bench

Exits 1 when a target (default: 180 s and 8 GiB) is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLES = ("customers", "orders", "returns", "events", "contacts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=None, help="default: params generate.seed")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml", help="params for other knobs")
    parser.add_argument("--keep", type=Path, default=None, help="write and keep the output here")
    parser.add_argument("--max-seconds", type=float, default=180.0)
    parser.add_argument("--max-gib", type=float, default=8.0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        out = args.keep if args.keep is not None else Path(tmp) / "shop"
        command = [
            sys.executable,
            "-m",
            "churn_pipeline",
            "generate",
            "--out",
            str(out),
            "--customers",
            str(args.customers),
            "--params",
            str(args.params),
        ]
        if args.seed is not None:
            command += ["--seed", str(args.seed)]
        print("$ " + " ".join(command), flush=True)
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=REPO, check=False)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            print(f"churn generate failed with exit code {proc.returncode}", file=sys.stderr)
            return proc.returncode
        # Linux reports ru_maxrss in KiB.
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20

        import pyarrow.parquet as pq  # after the child ran, so nothing here competes with it

        print(f"\nmachine       : {platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}")
        print(f"customers     : {args.customers:,}")
        print(f"wall time     : {wall:.1f} s   (target <= {args.max_seconds:.0f} s)")
        print(f"peak RSS      : {peak_gib:.2f} GiB   (target <= {args.max_gib:.0f} GiB)")
        total_rows = total_bytes = 0
        for name in TABLES:
            path = out / f"{name}.parquet"
            rows, size = pq.read_metadata(path).num_rows, path.stat().st_size
            total_rows, total_bytes = total_rows + rows, total_bytes + size
            print(f"{name:<14}: {rows:>12,} rows  {size / 2**20:>9.1f} MiB")
        print(f"{'total':<14}: {total_rows:>12,} rows  {total_bytes / 2**20:>9.1f} MiB")

    ok = wall <= args.max_seconds and peak_gib <= args.max_gib
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


if __name__ == "__main__":
    sys.exit(main())
