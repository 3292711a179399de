"""Real-data holdout: the default pipeline on Online Retail II up to 2011-06-09, judged on the half-year after.

Usage:
    python benchmarks/real_data_holdout.py                 # 2009-12-01..2011-06-09 (18 months of history)
    python benchmarks/real_data_holdout.py --months 12     # 2010-06-10..2011-06-09 (the last 12 months only)
    python benchmarks/real_data_holdout.py --keep DIR      # keep the work directory (project copy, MLflow store)

What it does, as a new user would:

1. Cuts the raw UCI invoices (``../shared/data/online_retail_ii``) to those before ``AS_OF`` = 2011-06-10 (and,
   with ``--months N``, on or after ``AS_OF - N months``) and runs ``churn import online-retail`` on them.
2. Copies the project (its git-tracked files) into a work directory and changes only ``data.path`` and the two
   label horizons (182 days) in ``params.yaml``; runs ``dvc repro`` there (real DVC, real MLflow store in the
   work directory), then ``churn score --as-of 2011-06-10``.
3. Truth: the same import of the *full* raw file; per customer scored, churned = no order in
   ``[AS_OF, AS_OF + 182 d)``, revenue = orders minus refunds in that window (the pipeline's label definitions).
4. Baseline: BG/NBD + Gamma-Gamma fitted on the same history at ``AS_OF``, in weekly units as in ``lifetimes``
   (``frequency`` = weeks with an order - 1, ``recency`` and ``T`` in whole weeks from the first such week, spend
   = mean revenue of the repeat weeks; customers without a repeat week get the population mean spend).

Prints, for the project's scores and for the baseline, on every customer with an order before ``AS_OF``: churn
ROC AUC and Brier score, CLV normalised Gini, Spearman, MAE (GBP) and total bias (%), and customers without a
score; then whether the project beats the baseline on each (issue 14's acceptance). A few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "online_retail_ii" / "online_retail_ii.parquet"
AS_OF = pd.Timestamp("2011-06-10")
HORIZON_DAYS = 182
# The grid edges the scores carry P(an order within) for (order_probability_30d/90d/180d).
TIMING_DAYS = (30, 90, 180)
WEEK = pd.Timedelta(days=7)
# (metric key, header, higher is better; None: |value| <= 10 is the criterion): the columns of the other
# real-data benchmark, which sits beside this script.
from evaluate_online_retail import COLUMNS as METRICS  # noqa: E402


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Run a command, echoing it; stop the benchmark with its output when it fails."""
    print(f"$ {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    sys.stdout.write(done.stdout[-6000:])
    if done.returncode != 0:
        sys.stdout.write(done.stderr[-6000:])
        raise SystemExit(f"{cmd[0]} {cmd[1]} failed with exit code {done.returncode}")


def cut_source(source: Path, out: Path, months: int | None) -> tuple[pd.Timestamp, int]:
    """The raw invoices before ``AS_OF`` (and from ``AS_OF - months`` on), written as Parquet; first day, rows."""
    raw = pd.read_parquet(source)
    keep = raw["InvoiceDate"] < AS_OF
    if months:
        keep &= raw["InvoiceDate"] >= AS_OF - pd.DateOffset(months=months)
    cut = raw.loc[keep]
    cut.to_parquet(out, index=False)
    return pd.Timestamp(cut["InvoiceDate"].min()).floor("D"), len(cut)


def project_copy(work: Path) -> Path:
    """The project's tracked files in ``work/project``, with DVC told there is no git."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    project = work / "project"
    for name in files:
        if name.startswith(("data/", "mlruns/")) or name in ("dvc.lock",):
            continue
        target = project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return project


def truth(full: Path, customers: pd.Index) -> pd.DataFrame:
    """Per customer: churned (no order in the horizon after AS_OF) and net revenue in it, from the full import."""
    end = AS_OF + pd.Timedelta(days=HORIZON_DAYS)
    orders = pd.read_parquet(full / "orders.parquet", columns=["customer_id", "order_ts", "amount"])
    returns = pd.read_parquet(full / "returns.parquet", columns=["customer_id", "return_ts", "amount"])
    o = orders[(orders["order_ts"] >= AS_OF) & (orders["order_ts"] < end)]
    r = returns[(returns["return_ts"] >= AS_OF) & (returns["return_ts"] < end)]
    frame = pd.DataFrame(index=customers)
    frame["orders"] = o.groupby("customer_id").size().reindex(customers, fill_value=0)
    revenue = o.groupby("customer_id")["amount"].sum().sub(r.groupby("customer_id")["amount"].sum(), fill_value=0)
    frame["revenue"] = revenue.reindex(customers, fill_value=0.0)
    frame["churned"] = frame["orders"] == 0
    # Next order on the scores' grid: the first edge e with an order in [AS_OF, AS_OF + e), followed up 180 days.
    first = o.groupby("customer_id")["order_ts"].min().reindex(customers)
    days = (first - AS_OF) / pd.Timedelta(days=1)
    edges = np.array(TIMING_DAYS, dtype=float)
    idx = np.searchsorted(edges, days.to_numpy(), side="right")
    frame["next_order_days"] = np.where(idx < edges.size, edges[np.minimum(idx, edges.size - 1)], np.nan)
    frame["next_order_followup_days"] = float(TIMING_DAYS[-1])
    return frame


def bgnbd_gamma_gamma(history: Path) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma at AS_OF in weekly units (lifetimes' conventions), per customer of the history."""
    from churn_pipeline.btyd import BGNBD, GammaGamma

    orders = pd.read_parquet(history / "orders.parquet", columns=["customer_id", "order_ts", "amount"])
    returns = pd.read_parquet(history / "returns.parquet", columns=["customer_id", "return_ts", "amount"])
    orders = orders[orders["order_ts"] < AS_OF]
    origin = orders["order_ts"].min().floor("D")
    orders = orders.assign(week=((orders["order_ts"] - origin) // WEEK).astype(np.int64))
    weekly = orders.groupby(["customer_id", "week"], as_index=False)["amount"].sum()
    # Refunds lower the spend of the week they happen in (net revenue, like the truth); weeks without an order
    # are not purchase periods.
    returns = returns[returns["return_ts"] < AS_OF]
    refunds = returns.assign(week=((returns["return_ts"] - origin) // WEEK).astype(np.int64))
    refunds = refunds.groupby(["customer_id", "week"])["amount"].sum().rename("refund")
    weekly = weekly.join(refunds, on=["customer_id", "week"]).fillna({"refund": 0.0})
    weekly["net"] = weekly["amount"] - weekly["refund"]
    first = weekly.groupby("customer_id")["week"].transform("min")
    per = (
        weekly.assign(first=first)
        .groupby("customer_id")
        .agg(first=("first", "first"), last=("week", "max"), periods=("week", "size"))
    )
    repeat = weekly[weekly["week"] > first].groupby("customer_id")["net"].mean()
    end_week = int((AS_OF - pd.Timedelta(days=1) - origin) // WEEK)
    x = (per["periods"] - 1).to_numpy(np.float64)
    t_x = (per["last"] - per["first"]).to_numpy(np.float64)
    big_t = (end_week - per["first"]).to_numpy(np.float64)
    bg = BGNBD().fit(x, t_x, big_t)
    horizon_weeks = HORIZON_DAYS / 7.0
    spend = repeat.reindex(per.index)
    fit_rows = spend.notna() & (spend > 0)
    gg = GammaGamma().fit(x[fit_rows.to_numpy()], spend[fit_rows].to_numpy())
    value = np.full(len(per), gg.population_mean_)
    value[fit_rows.to_numpy()] = gg.expected_order_value(x[fit_rows.to_numpy()], spend[fit_rows].to_numpy())
    return pd.DataFrame(
        {
            "churn_probability": bg.p_no_order(horizon_weeks, x, t_x, big_t),
            "predicted_clv": bg.expected_orders(horizon_weeks, x, t_x, big_t) * value,
            **{f"order_probability_{d}d": 1.0 - bg.p_no_order(d / 7.0, x, t_x, big_t) for d in TIMING_DAYS},
        },
        index=per.index,
    )


def judge(pred: pd.DataFrame, actual: pd.DataFrame) -> dict[str, float]:
    from churn_pipeline.models import metrics as mx

    p = pred.reindex(actual.index)
    scored = p["churn_probability"].notna() & p["predicted_clv"].notna()
    y, r = actual.loc[scored, "churned"].to_numpy(), actual.loc[scored, "revenue"].to_numpy(np.float64)
    prob, clv = p.loc[scored, "churn_probability"].to_numpy(), p.loc[scored, "predicted_clv"].to_numpy(np.float64)
    return {
        "roc_auc": mx.roc_auc(y, prob),
        "brier": mx.brier(y, prob),
        "normalized_gini": mx.normalized_gini(r, clv),
        "spearman": mx.spearman(r, clv),
        "mae": mx.mae(r, clv),
        "total_bias_pct": 100.0 * mx.bias(r, clv, relative=True),
        "customers": float(len(actual)),
        "without_score": float((~scored).sum()),
    }


def judge_timing(pred: pd.DataFrame, actual: pd.DataFrame) -> dict[str, float]:
    """Concordance and integrated Brier score of P(an order within 30/90/180 days) against the next order."""
    from churn_pipeline.models.survival import concordance_index, integrated_brier_score

    p = pred.reindex(actual.index)
    columns = [f"order_probability_{d}d" for d in TIMING_DAYS]
    scored = p[columns].notna().all(axis=1)
    survival = 1.0 - p.loc[scored, columns].to_numpy(np.float64)
    y = actual.loc[scored, ["next_order_days", "next_order_followup_days"]]
    return {
        "concordance": concordance_index(y, survival, TIMING_DAYS),
        "integrated_brier": integrated_brier_score(y, survival, TIMING_DAYS),
        **{f"order_rate_{d}d": float((y["next_order_days"] <= d).mean()) for d in TIMING_DAYS},
        **{f"mean_p_{d}d": float(1.0 - survival[:, k].mean()) for k, d in enumerate(TIMING_DAYS)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the raw Online Retail II file")
    parser.add_argument("--months", type=int, default=None, help="keep only this many months before AS_OF")
    parser.add_argument("--keep", type=Path, help="work in this directory (kept) instead of a temporary one")
    args = parser.parse_args()

    work = (args.keep or Path(tempfile.mkdtemp(prefix="real_data_holdout_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the project copy's own sqlite:///mlflow.db
    start = time.perf_counter()
    try:
        project = project_copy(work)
        first_day, n_rows = cut_source(args.source, work / "history.parquet", args.months)
        print(f"history: {n_rows:,} invoice lines from {first_day.date()} to {(AS_OF - pd.Timedelta(days=1)).date()}")
        run(
            [
                "churn",
                "import",
                "online-retail",
                "--source",
                str(work / "history.parquet"),
                "--out",
                str(project / "data" / "online_retail"),
            ],
            project,
            env,
        )
        run(
            ["churn", "import", "online-retail", "--source", str(args.source), "--out", str(work / "full")],
            project,
            env,
        )
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["data"]["path"] = "data/online_retail"
        params["labels"] = {"churn_horizon_days": HORIZON_DAYS, "clv_horizon_days": HORIZON_DAYS}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(["dvc", "config", "core.no_scm", "true"], project, env)
        run(["dvc", "repro", "export"], project, env)
        run(
            [
                "churn",
                "score",
                "--data",
                "data/validated",
                "--as-of",
                str(AS_OF.date()),
                "--out",
                str(work / "as_of.parquet"),
            ],
            project,
            env,
        )
        scores = pd.read_parquet(work / "as_of.parquet").set_index("customer_id")
        history = pd.read_parquet(project / "data" / "online_retail" / "orders.parquet", columns=["customer_id"])
        customers = pd.Index(history["customer_id"].unique(), name="customer_id").sort_values()
        actual = truth(work / "full", customers)
        baseline = bgnbd_gamma_gamma(project / "data" / "online_retail")
        table = pd.DataFrame(
            {
                "churn-pipeline": judge(scores[["churn_probability", "predicted_clv"]], actual),
                "BG/NBD + Gamma-Gamma (weekly)": judge(baseline, actual),
            }
        ).T
        timing = pd.DataFrame(
            {"churn-pipeline": judge_timing(scores, actual), "BG/NBD (weekly)": judge_timing(baseline, actual)}
        ).T
        held_out = json.loads((project / "metrics" / "train.json").read_text())["next_order"]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    months = f"last {args.months} months" if args.months else "all"
    print(
        f"\nOnline Retail II, history {months} ({first_day.date()}..{(AS_OF - pd.Timedelta(days=1)).date()}), scored "
        f"as of {AS_OF.date()}, judged on [{AS_OF.date()}, {(AS_OF + pd.Timedelta(days=HORIZON_DAYS)).date()}); "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(f"churn rate {actual['churned'].mean():.3f}, revenue {actual['revenue'].sum():,.0f} GBP")
    shown = table.rename(columns={k: h for k, h, _ in METRICS})
    print(shown.to_string(float_format=lambda v: f"{v:.4f}"))
    ours, base = table.iloc[0], table.iloc[1]
    for key, header, higher in METRICS:
        if higher is None:
            ok = abs(ours[key]) <= 10.0
            print(f"{'ok ' if ok else 'NO '} {header}: |{ours[key]:+.1f}| <= 10")
        else:
            ok = ours[key] > base[key] if higher else ours[key] < base[key]
            print(f"{'ok ' if ok else 'NO '} {header}: {ours[key]:.4f} vs BG/NBD+GG {base[key]:.4f}")
    ok = ours["without_score"] == 0
    print(
        f"{'ok ' if ok else 'NO '} every customer scored: {int(ours['without_score'])} of "
        f"{int(ours['customers'])} without a score"
    )
    print(f"\nnext order after {AS_OF.date()} (issue 16): P(an order within 30/90/180 days) against the first order")
    print(timing.to_string(float_format=lambda v: f"{v:.4f}"))
    mine, theirs = timing.iloc[0], timing.iloc[1]
    ok = mine["concordance"] >= theirs["concordance"]
    print(f"{'ok ' if ok else 'NO '} concordance {mine['concordance']:.4f} vs BG/NBD {theirs['concordance']:.4f}")
    ok = mine["integrated_brier"] <= theirs["integrated_brier"]
    print(
        f"{'ok ' if ok else 'NO '} integrated Brier {mine['integrated_brier']:.4f} vs BG/NBD "
        f"{theirs['integrated_brier']:.4f}"
    )
    base = held_out["baselines"]["bgnbd"]
    print(
        f"the pipeline's own held-out test (train stage, cutoff {held_out['test_cutoff']}, full grid): concordance "
        f"{held_out['concordance']:.4f} (BG/NBD {base['concordance']:.4f}), integrated Brier "
        f"{held_out['integrated_brier']:.4f} (BG/NBD {base['integrated_brier']:.4f})"
    )


if __name__ == "__main__":
    main()
