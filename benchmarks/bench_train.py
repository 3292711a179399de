"""Benchmark: training the three models on the 1,000,000-customer shop's 12-cutoff panel.

Usage:
    python benchmarks/bench_train.py --panel PANEL.parquet   # a panel from `churn features` (manifest beside it)
    python benchmarks/bench_train.py                          # generates the shop and builds the 12-cutoff panel

Runs the `train` stage (the churn, CLV and next-order LightGBM models, MLflow logging into a throw-away SQLite
store, registry and gate) in a child process and prints its wall time and peak RSS. Target (issue 4): every
model in under 10 minutes and 8 GB on 2 cores. A 12-cutoff monthly panel is too short for a purged 180-day CLV split, so
the benchmark trains with `train.purge: false` (the default pipeline uses 24 cutoffs and purges).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def child(panel: Path, params_path: Path, metrics: Path) -> None:
    from churn_pipeline.pipelines import train as stage

    start = time.perf_counter()
    stage.run(panel_path=panel, metrics_path=metrics, params_path=params_path)
    result = json.loads(metrics.read_text())
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - start,
                "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                "churn_auc": result["churn"]["roc_auc"],
                "clv_gini": result["clv"]["normalized_gini"],
                "next_order_concordance": result["next_order"]["concordance"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panel", type=Path)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*(Path(a) for a in args.child))
        return
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp_dir:
        tmp = Path(tmp_dir)
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["features"]["cutoffs"]["count"] = 12
        params["train"]["purge"] = False
        params["train"]["experiment"] = "bench-train"
        params_path = tmp / "params.yaml"
        params_path.write_text(yaml.safe_dump(params))
        panel = args.panel
        if panel is None:
            shop = tmp / "shop"
            cli = [sys.executable, "-m", "churn_pipeline"]
            subprocess.run([*cli, "generate", "--out", str(shop), "--customers", str(args.customers)], check=True)
            subprocess.run(
                [
                    *cli,
                    "features",
                    "--data",
                    str(shop),
                    "--out-dir",
                    str(tmp / "features"),
                    "--params",
                    str(params_path),
                ],
                check=True,
            )
            panel = tmp / "features" / "panel.parquet"
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(panel), str(params_path), str(tmp / "train.json")],
            capture_output=True,
            text=True,
            cwd=tmp,
            env=env,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-5000:])
            raise SystemExit("training failed")
        sys.stderr.write(proc.stderr[-3000:])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"train (churn + CLV + next order, MLflow logging and registry): {r['seconds']:.1f} s, peak "
        f"{r['peak_rss_gb']:.2f} GB (targets: 600 s, 8 GB); churn test AUC {r['churn_auc']:.3f}, CLV test Gini "
        f"{r['clv_gini']:.3f}, next-order test concordance {r['next_order_concordance']:.3f}"
    )


if __name__ == "__main__":
    main()
