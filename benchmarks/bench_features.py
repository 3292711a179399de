"""Benchmark: the 12-cutoff training panel against one hand-written single-cutoff DuckDB query.

Usage:
    python benchmarks/bench_features.py                      # generates the 1,000,000-customer shop first
    python benchmarks/bench_features.py --data DIR           # reuse a generated/validated shop directory

Prints wall time and peak RSS of (a) the yardstick: one plain SQL aggregation of comparable features at
one cutoff over the same Parquet files, and (b) `churn features --out-dir` (12 monthly cutoffs + the
scoring table, written to Parquet). Each runs in its own child process so the peaks are its own.
Targets (issue 3): panel time <= 3x the yardstick, panel peak <= 6 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WINDOWS = (30, 90, 180, 365)
EVENT_TYPES = ("session", "page_view", "add_to_cart", "email_sent", "email_open", "email_click", "support_ticket")


def yardstick_sql(data: Path, cutoff: str) -> str:
    """One cutoff, the obvious way: filter rows before c and aggregate per customer with FILTER clauses."""
    c = f"TIMESTAMP '{cutoff}'"
    o = ",\n".join(
        f"count(*) FILTER (WHERE order_ts >= {c} - INTERVAL {w} DAY) AS orders_{w}d, "
        f"sum(amount) FILTER (WHERE order_ts >= {c} - INTERVAL {w} DAY) AS revenue_{w}d"
        for w in WINDOWS
    )
    e = ",\n".join(
        f"count(*) FILTER (WHERE event_type = '{t}' AND event_ts >= {c} - INTERVAL {w} DAY) AS {t}_{w}d"
        for t in EVENT_TYPES
        for w in WINDOWS
    )
    return f"""
COPY (
  WITH o AS (
    SELECT customer_id, count(*) AS orders_total, sum(amount) AS revenue_total,
           max(order_ts) AS last_order_ts, min(order_ts) AS first_order_ts, {o}
    FROM read_parquet('{data}/orders.parquet') WHERE order_ts < {c} GROUP BY customer_id),
  r AS (
    SELECT customer_id, count(*) AS returns_total, sum(amount) AS returns_value
    FROM read_parquet('{data}/returns.parquet') WHERE return_ts < {c} GROUP BY customer_id),
  e AS (
    SELECT customer_id,
           max(event_ts) FILTER (WHERE event_type = 'session') AS last_session_ts,
           max(event_ts) FILTER (WHERE event_type = 'email_open') AS last_open_ts,
           avg(value) FILTER (WHERE event_type = 'nps') AS nps_avg,
           avg(value) FILTER (WHERE event_type = 'review') AS review_avg, {e}
    FROM read_parquet('{data}/events.parquet') WHERE event_ts < {c} GROUP BY customer_id)
  SELECT * FROM o LEFT JOIN r USING (customer_id) LEFT JOIN e USING (customer_id)
) TO '{{out}}' (FORMAT parquet)"""


def child_yardstick(data: Path, cutoff: str, out: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    start = time.perf_counter()
    con.execute(yardstick_sql(data, cutoff).replace("{out}", str(out)))
    rows = con.sql(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()[0][0]
    return {"seconds": time.perf_counter() - start, "rows": rows}


def child_panel(data: Path, out: Path) -> dict:
    import yaml

    from churn_pipeline.pipelines import features as stage

    # The yardstick is the 12-cutoff panel, whatever count params.yaml uses for the default shop.
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["features"]["cutoffs"]["count"] = 12
    params_path = out.parent / "bench_params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    start = time.perf_counter()
    stage.run(data=data, out_dir=out, params_path=params_path)
    seconds = time.perf_counter() - start
    manifest = json.loads((out / "panel.features.json").read_text())
    return {
        "seconds": seconds,
        "rows": sum(manifest["rows_per_cutoff"].values()),
        "features": len(manifest["features"]),
        "cutoffs": manifest["cutoffs"],
    }


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"child {args[0]} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="existing shop directory (default: generate one)")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        result = (
            child_yardstick(Path(rest[0]), rest[1], Path(rest[2]))
            if kind == "yardstick"
            else child_panel(Path(rest[0]), Path(rest[1]))
        )
        result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "shop"
            print(f"generating {args.customers:,} customers ...", flush=True)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "churn_pipeline",
                    "generate",
                    "--out",
                    str(data),
                    "--customers",
                    str(args.customers),
                ],
                check=True,
                cwd=ROOT,
            )
        panel = run_child("panel", str(data), str(Path(tmp) / "features"))
        last_cutoff = panel["cutoffs"][-1]
        yard = run_child("yardstick", str(data), last_cutoff, str(Path(tmp) / "yardstick.parquet"))
    ratio = panel["seconds"] / yard["seconds"]
    print(
        f"yardstick (1 cutoff {last_cutoff}, plain DuckDB SQL): {yard['seconds']:.1f} s, "
        f"{yard['rows']:,} rows, peak {yard['peak_rss_gb']:.2f} GB"
    )
    print(
        f"panel ({len(panel['cutoffs'])} cutoffs + scoring table, churn features): {panel['seconds']:.1f} s, "
        f"{panel['rows']:,} rows x {panel['features']} features, peak {panel['peak_rss_gb']:.2f} GB"
    )
    print(
        f"panel / yardstick time: {ratio:.2f}x (target <= 3x); panel peak {panel['peak_rss_gb']:.2f} GB "
        f"(target <= 6 GB)"
    )


if __name__ == "__main__":
    main()
