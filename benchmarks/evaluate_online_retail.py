"""Real-data check: the LightGBM models against the classic baselines on UCI Online Retail II.

Usage:
    python benchmarks/evaluate_online_retail.py                       # the data in ../shared/data/online_retail_ii
    python benchmarks/evaluate_online_retail.py --source FILE_OR_DIR --keep DIR --set train.n_validation=2

Runs the real stages in a temporary directory, with MLflow in a throw-away SQLite store there:
``import online-retail`` -> ``validate`` -> ``features`` -> ``train`` (-> ``evaluate`` when the stage is
present and ``--evaluate`` is given), from a copy of the project's ``params.yaml`` with these overrides:

- ``labels``: churn and CLV horizons of 182 days (half a year: the shop sells seasonal gift-ware to
  wholesalers, who order every few months);
- ``validate.max_timestamp``: 2012-01-01 (the data ends 2011-12-09; nothing later is plausible);
- ``features.cutoffs``: the 18 latest month starts whose 182-day labels are complete, 2010-01-01..2011-06-01
  (the data starts 2009-12-01; earlier cutoffs would see almost no history);
- ``train.n_validation``: 1, so that the purged split exists: train 2010-01-01..2010-06-01, validation
  2010-12-01, test 2011-06-01 (every label window ends before the next split's first cutoff).

Everything else, the churn calibration included, is the project's ``params.yaml``: with the default
``calibration: auto`` the model keeps the BG/NBD prior's level here because the booster's level learnt on the
training cutoffs loses to it on the validation cutoff (``churn_pipeline/models/churn.py``); the line "churn calibration"
says which was chosen.

``--set section.key=value`` (repeatable, YAML values) overrides any other parameter, for experiments.

Prints the rows and churn rate per cutoff, then one table on the test cutoff's rows: the registered LightGBM
models and the baselines of ``models.baselines`` (fitted on the panel's earlier rows whose label windows end
by the test cutoff, later labels masked), with churn ROC AUC and Brier score, and CLV normalised Gini,
Spearman, MAE (GBP) and total bias (%), and whether LightGBM beats every baseline on each (issue 5: all five
metrics, and a total bias within +-10 %). With ``--evaluate`` also the evaluate stage's backtest (mean and
standard deviation over its folds). About 15 s, 2 minutes with ``--evaluate``.
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

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "online_retail_ii"
HORIZON_DAYS = 182
OVERRIDES = {
    "labels": {"churn_horizon_days": HORIZON_DAYS, "clv_horizon_days": HORIZON_DAYS},
    "validate": {"max_timestamp": "2012-01-01"},
    "features": {"cutoffs": {"frequency": "monthly", "count": 18, "dates": [], "scoring_date": None}},
    "train": {"n_validation": 1, "purge": True, "experiment": "online-retail"},
}
# (metric key, header, higher is better)
COLUMNS = (
    ("roc_auc", "churn AUC", True),
    ("brier", "Brier", False),
    ("normalized_gini", "CLV Gini", True),
    ("spearman", "Spearman", True),
    ("mae", "MAE", False),
    ("total_bias_pct", "bias %", None),
)
BACKTEST_METRICS = ("roc_auc", "brier", "normalized_gini", "spearman")


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def apply_set(params: dict, assignment: str) -> None:
    key, _, value = assignment.partition("=")
    *path, last = key.split(".")
    node = params
    for p in path:
        node = node.setdefault(p, {})
    node[last] = yaml.safe_load(value)


def baseline_history(panel: pd.DataFrame, cutoff: pd.Timestamp, h_churn: int, h_clv: int) -> pd.DataFrame:
    """Rows of earlier cutoffs, labels masked where their window runs past ``cutoff`` (not known yet)."""
    history = panel[panel["cutoff"] < cutoff].copy()
    history["churned"] = (
        history["churned"].astype("boolean").mask(history["cutoff"] + pd.Timedelta(days=h_churn) > cutoff)
    )
    history["future_revenue"] = (
        history["future_revenue"].astype("Float64").mask(history["cutoff"] + pd.Timedelta(days=h_clv) > cutoff)
    )
    return history


def comparison(panel: pd.DataFrame, manifest: dict, train_summary: dict) -> tuple[pd.DataFrame, dict]:
    """One row per model: churn metrics at the churn test cutoff, CLV metrics at the CLV test cutoff; and the
    registered churn model's calibration report (which calibration it chose and why)."""
    import mlflow

    from churn_pipeline.models import metrics as mx
    from churn_pipeline.models.baselines import fit_predict_baselines

    h_churn, h_clv = manifest["churn_horizon_days"], manifest["clv_horizon_days"]
    preds: dict[str, dict[str, np.ndarray]] = {}
    truth = {}
    calibration: dict = {}
    for kind, label, column in (("churn", "churned", "churn_probability"), ("clv", "future_revenue", "predicted_clv")):
        cutoff = pd.Timestamp(train_summary[kind]["test_cutoff"])
        rows = panel[(panel["cutoff"] == cutoff) & panel[label].notna()]
        # The held-out twin: the deployed model used the test cutoff for early stopping and calibration.
        served = mlflow.pyfunc.load_model(f"models:/{kind}/{train_summary[kind]['version']}").unwrap_python_model()
        model = served.holdout_estimator or served.estimator
        preds.setdefault("lightgbm", {})[kind] = (
            model.predict_proba(rows)[:, 1] if kind == "churn" else model.predict(rows)
        )
        if kind == "churn":
            calibration = model.calibration_report_
        history = baseline_history(panel, cutoff, h_churn, h_clv)
        for name, frame in fit_predict_baselines(history, rows, h_churn, h_clv).items():
            preds.setdefault(name, {})[kind] = frame[column].to_numpy()
        truth[kind] = rows[label].astype(bool if kind == "churn" else float).to_numpy()
    table = []
    for name, p in preds.items():
        y, r = truth["churn"], truth["clv"]
        table.append(
            {
                "model": name,
                "roc_auc": mx.roc_auc(y, p["churn"]),
                "brier": mx.brier(y, p["churn"]),
                "normalized_gini": mx.normalized_gini(r, p["clv"]),
                "spearman": mx.spearman(r, p["clv"]),
                "mae": mx.mae(r, p["clv"]),
                "total_bias_pct": 100.0 * mx.bias(r, p["clv"], relative=True),
            }
        )
    return pd.DataFrame(table).set_index("model"), calibration


def verdict(table: pd.DataFrame) -> list[str]:
    """Which of the done-criteria hold for LightGBM."""
    lines = []
    ours, others = table.loc["lightgbm"], table.drop(index="lightgbm")
    for key, header, higher in COLUMNS:
        if higher is None:
            ok = abs(ours[key]) <= 10.0
            lines.append(f"{'ok ' if ok else 'NO '} {header}: |{ours[key]:+.1f}| <= 10")
            continue
        best = others[key].max() if higher else others[key].min()
        ok = ours[key] > best if higher else ours[key] < best
        lines.append(f"{'ok ' if ok else 'NO '} {header}: lightgbm {ours[key]:.4f} vs best baseline {best:.4f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--keep", type=Path, help="work in this directory (kept) instead of a temporary one")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--evaluate", action="store_true", help="also run the evaluate stage (adds its backtest)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="online_retail_eval_"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow puts artifacts under ./mlruns of the working directory: keep them in the work directory.
    os.chdir(work)
    from churn_pipeline.pipelines import features, import_online_retail, train, validate

    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), OVERRIDES)
    for assignment in args.set:
        apply_set(params, assignment)
    params_path = work / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))

    start = time.perf_counter()
    try:
        raw, valid, feats = work / "online_retail", work / "validated", work / "features"
        for d in (raw, valid, feats):
            shutil.rmtree(d, ignore_errors=True)
        import_online_retail.run(args.source, raw)
        validate.run(raw, valid, params_path=params_path)
        features.run(valid, feats, params_path)
        train.run(feats / "panel.parquet", work / "train.json", params_path)
        summary = json.loads((work / "train.json").read_text())
        backtest = None
        if args.evaluate:
            from churn_pipeline.pipelines import evaluate

            evaluate.run(
                panel_path=feats / "panel.parquet",
                train_metrics=work / "train.json",
                metrics_path=work / "evaluate.json",
                plots_dir=work / "plots",
                report_path=work / "report.html",
                params_path=params_path,
            )
            backtest = json.loads((work / "evaluate.json").read_text())["backtest"]
        panel = pd.read_parquet(feats / "panel.parquet")
        manifest = json.loads((feats / "panel.features.json").read_text())
        per_cutoff = panel.groupby("cutoff").agg(
            rows=("customer_id", "size"),
            churn_rate=("churned", lambda s: s.astype("Float64").mean()),
            mean_future_revenue=("future_revenue", "mean"),
        )
        table, calibration = comparison(panel, manifest, summary)
    finally:
        if args.keep is None:
            os.chdir(ROOT)
            shutil.rmtree(work, ignore_errors=True)

    pd.set_option("display.width", 160)
    print(
        f"\nOnline Retail II, horizons {HORIZON_DAYS} days; {time.perf_counter() - start:.0f} s; overrides {args.set}"
    )
    print(per_cutoff.to_string(float_format=lambda v: f"{v:.3f}"))
    for kind in ("churn", "clv"):
        print(f"{kind}: test cutoff {summary[kind]['test_cutoff']}, model version {summary[kind]['version']}")
    level_check = (
        f" (validation Brier: booster's level {calibration['brier_uncalibrated']:.4f}, prior level "
        f"{calibration['brier_prior']:.4f})"
        if "brier_prior" in calibration
        else ""
    )
    print(f"churn calibration: {calibration['method']}{level_check}")
    print(f"test rows: churn {int(per_cutoff.loc[pd.Timestamp(summary['churn']['test_cutoff']), 'rows'])}")
    shown = table.rename(columns={k: h for k, h, _ in COLUMNS})
    print(shown.to_string(float_format=lambda v: f"{v:.4f}"))
    for line in verdict(table):
        print(line)
    if backtest is not None:
        print(
            f"\nevaluate stage backtest ({backtest.pop('folds')} latest labelled cutoffs, models refitted): mean (std)"
        )
        rows = {
            name: {m: f"{v[m]['mean']:.4f} ({v[m]['std']:.4f})" for m in BACKTEST_METRICS if m in v}
            for name, v in backtest.items()
            if isinstance(v, dict) and "roc_auc" in v
        }
        print(pd.DataFrame(rows).T.to_string())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
