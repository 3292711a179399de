"""Benchmark: the next-order (survival) model against BG/NBD on the default shop's test cutoff.

Usage:
    python benchmarks/next_order.py              # the built-in synthetic shop, default params
    python benchmarks/next_order.py --keep DIR   # keep the work directory (project copy, MLflow store)

Copies the project (its git-tracked files) into a work directory, runs ``dvc repro evaluate`` there with the
shipped params (real DVC, real MLflow store in the work directory) and prints, from ``metrics/evaluate.json``, the
next-order model's held-out twin against BG/NBD's P(no order within t) fitted on the same rows, at the train
stage's next-order test cutoff (the latest cutoff followed up over the whole grid): concordance index, integrated
Brier score, Brier score and mean predicted against observed share ordering within 30, 90 and 180 days. Then
whether the model's concordance is at least BG/NBD's (issue 16's acceptance). Online Retail II:
``benchmarks/real_data_holdout.py`` prints the same figures out of time. About three minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data_holdout import project_copy, run

KEYS = (
    "concordance",
    "integrated_brier",
    "brier_30d",
    "brier_90d",
    "brier_180d",
    "order_rate_30d",
    "mean_order_probability_30d",
    "order_rate_90d",
    "mean_order_probability_90d",
    "order_rate_180d",
    "mean_order_probability_180d",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="work in this directory (kept) instead of a temporary one")
    args = parser.parse_args()
    work = (args.keep or Path(tempfile.mkdtemp(prefix="next_order_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the project copy's own sqlite:///mlflow.db
    start = time.perf_counter()
    try:
        project = project_copy(work)
        run(["dvc", "config", "core.no_scm", "true"], project, env)
        run(["dvc", "repro", "evaluate"], project, env)
        timing = json.loads((project / "metrics" / "evaluate.json").read_text())["next_order"]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    table = pd.DataFrame({"next-order model": timing["model"], "BG/NBD": timing["bgnbd"]}, index=list(KEYS)).T
    print(
        f"\ndefault shop, next-order test cutoff {timing['cutoff']}, {timing['rows']:,} customers, grid "
        f"{timing['grid_days']} days; {time.perf_counter() - start:.0f} s"
    )
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    model, base = timing["model"], timing["bgnbd"]
    ok = model["concordance"] >= base["concordance"]
    print(f"{'ok ' if ok else 'NO '} concordance {model['concordance']:.4f} vs BG/NBD {base['concordance']:.4f}")
    ok = model["integrated_brier"] <= base["integrated_brier"]
    print(
        f"{'ok ' if ok else 'NO '} integrated Brier {model['integrated_brier']:.4f} vs BG/NBD "
        f"{base['integrated_brier']:.4f}"
    )


if __name__ == "__main__":
    main()
