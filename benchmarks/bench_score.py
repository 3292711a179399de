"""Benchmark: scoring plus CRM export of the 1,000,000-customer shop (features included).

Usage:
    python benchmarks/bench_score.py --validated DIR   # a `churn validate` output of the big shop
    python benchmarks/bench_score.py --raw DIR         # the big shop's raw tables: validated first (not timed)
    python benchmarks/bench_score.py                   # generates the 1M shop, validates it (not timed)
    python benchmarks/bench_score.py --validated DIR --engine spark   # scoring on local Spark (CHURN_SPARK_*)

Models are trained first, untimed, on a small shop from the same generator (``--train-customers``, default
20,000, the default pipeline's shop) into a throw-away MLflow store, so their features match the big shop's.
Then one child process runs `churn score` (features at the end of the data, both models, reasons, actions,
control group, drift, schema validation, Parquet) and `churn export --format csv`, and reports the wall time
of each and the child's peak RSS. Target (issue 6): at most 90 s and 6 GB on 2 cores.
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


def child(validated: Path, params_path: Path, out_dir: Path, engine: str) -> None:
    from churn_pipeline.pipelines import export, score

    start = time.perf_counter()
    score.run(data=validated, out=out_dir / "scores.parquet", params_path=params_path, engine=engine)
    scored = time.perf_counter()
    export.run(scores=out_dir / "scores.parquet", fmt="csv", out=out_dir / "scores.csv", params_path=params_path)
    done = time.perf_counter()
    manifest = json.loads((out_dir / "scores.csv.manifest.json").read_text())
    print(
        json.dumps(
            {
                "score_s": scored - start,
                "export_s": done - scored,
                "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                "rows": manifest["rows"],
                "csv_mb": manifest["bytes"] / 1e6,
            }
        )
    )


def _cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> None:
    subprocess.run([sys.executable, "-m", "churn_pipeline", *args], check=True, env=env, cwd=cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--validated", type=Path, help="validated data directory of the big shop")
    parser.add_argument("--raw", type=Path, help="raw data directory of the big shop (validated first, untimed)")
    parser.add_argument("--customers", type=int, default=1_000_000, help="size of the generated shop")
    parser.add_argument("--train-customers", type=int, default=20_000)
    parser.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*(Path(a) for a in args.child[:3]), args.child[3])
        return
    with tempfile.TemporaryDirectory(prefix="bench_score_") as tmp_dir:
        tmp = Path(tmp_dir)
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["train"]["experiment"] = "bench-score"
        params_path = tmp / "params.yaml"
        params_path.write_text(yaml.safe_dump(params))
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}

        print("untimed: training models on a small shop ...", file=sys.stderr)
        small = tmp / "small"
        _cli(
            "generate",
            "--out",
            str(small / "raw"),
            "--customers",
            str(args.train_customers),
            "--params",
            str(params_path),
        )
        _cli("validate", "--data", str(small / "raw"), "--out", str(small / "validated"), "--params", str(params_path))
        _cli(
            "features",
            "--data",
            str(small / "validated"),
            "--out-dir",
            str(small / "features"),
            "--params",
            str(params_path),
        )
        _cli(
            "train",
            "--panel",
            str(small / "features" / "panel.parquet"),
            "--metrics",
            str(small / "train.json"),
            "--params",
            str(params_path),
            env=env,
            cwd=tmp,
        )

        validated = args.validated
        if validated is None:
            raw = args.raw
            if raw is None:
                print(f"untimed: generating the {args.customers:,}-customer shop ...", file=sys.stderr)
                raw = tmp / "big_raw"
                _cli("generate", "--out", str(raw), "--customers", str(args.customers), "--params", str(params_path))
            print("untimed: validating the big shop ...", file=sys.stderr)
            validated = tmp / "big_validated"
            _cli("validate", "--data", str(raw), "--out", str(validated), "--params", str(params_path))

        print("timed: churn score + churn export ...", file=sys.stderr)
        out_dir = tmp / "out"
        out_dir.mkdir()
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(validated), str(params_path), str(out_dir), args.engine],
            capture_output=True,
            text=True,
            cwd=tmp,
            env=env,
        )
        sys.stderr.write(proc.stderr[-4000:])
        if proc.returncode != 0:
            raise SystemExit("scoring failed")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
    total = r["score_s"] + r["export_s"]
    peak = f"peak {r['peak_rss_gb']:.2f} GB" + (" (Python driver only, not the JVM)" if args.engine == "spark" else "")
    print(
        f"{args.engine}: score + export of {r['rows']:,} customers: {total:.1f} s (score {r['score_s']:.1f} s, "
        f"export csv {r['export_s']:.1f} s, {r['csv_mb']:.0f} MB), {peak} (targets: 90 s, 6 GB)"
    )


if __name__ == "__main__":
    main()
