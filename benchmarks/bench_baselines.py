"""Benchmark: the three baselines (recency rule, RFM, BG/NBD + Gamma-Gamma) at 1,000,000 customers.

Usage:
    python benchmarks/bench_baselines.py --features-dir DIR   # DIR holds panel.parquet + scoring.parquet
                                                              # (`churn features` on the 1M shop)

Two targets, each timed with ``models.baselines.fit_predict_baselines``:

- ``panel``: the panel's latest cutoff with a complete churn label, history = the earlier cutoffs whose
  churn horizon ends by then (their CLV label is nulled where its horizon does not), as the evaluation
  stage calls it;
- ``scoring``: every customer at the end of the data (``scoring.parquet``, 1,000,000 rows on the 1M shop)
  with the same history, i.e. fitting BG/NBD + Gamma-Gamma on the whole customer base.

Prints wall time per target and the process's peak RSS. Target (issue 5): well inside the pipeline's time
budget, i.e. seconds, not minutes.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from churn_pipeline.btyd import BGNBD
from churn_pipeline.models.baselines import bgnbd_inputs, fit_predict_baselines

COLUMNS = ["customer_id", "cutoff", "recency_days", "frequency", "tenure_days", "orders_total", "monetary_value"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features-dir", type=Path, required=True)
    args = parser.parse_args()
    manifest = json.loads((args.features_dir / "panel.features.json").read_text())
    h_churn, h_clv = manifest["churn_horizon_days"], manifest["clv_horizon_days"]
    panel = pq.read_table(args.features_dir / "panel.parquet", columns=[*COLUMNS, "churned", "future_revenue"])
    panel = panel.to_pandas()
    labelled = panel.loc[panel["churned"].notna(), "cutoff"]
    c = labelled.max()
    history = panel[panel["cutoff"] + pd.Timedelta(days=h_churn) <= c].copy()
    late = history["cutoff"] + pd.Timedelta(days=h_clv) > c
    history["future_revenue"] = history["future_revenue"].mask(late)
    targets = {
        "panel": panel[panel["cutoff"] == c],
        "scoring": pq.read_table(args.features_dir / "scoring.parquet", columns=COLUMNS).to_pandas(),
    }
    del panel
    print(f"history: {len(history):,} rows at {history['cutoff'].nunique()} cutoffs before {c.date()}")
    for name, target in targets.items():
        start = time.perf_counter()
        out = fit_predict_baselines(history, target, h_churn, h_clv)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        bg = BGNBD().fit(**bgnbd_inputs(target))
        bg_seconds = time.perf_counter() - start
        params = ", ".join(f"{k} {v:.3g}" for k, v in bg.params_.items())
        mean_p = out["bgnbd"]["churn_probability"].mean()
        print(
            f"{name}: {len(target):,} target rows: fit_predict_baselines {seconds:.1f} s "
            f"(BG/NBD fit alone {bg_seconds:.1f} s, {bg.n_iter_} iterations; {params}; "
            f"mean P(no order) {mean_p:.3f})"
        )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB")


if __name__ == "__main__":
    main()
