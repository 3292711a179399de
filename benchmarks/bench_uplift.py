"""Benchmark: the uplift model on the synthetic shop's past campaigns, against its ground truth.

Usage:
    python benchmarks/bench_uplift.py                                   # generates the default shop (20,000)
    python benchmarks/bench_uplift.py --data VALIDATED --truth TRUTH    # an existing validated shop + its truth
    python benchmarks/bench_uplift.py --set learner=x --set revenue_objective=l2   # params.yaml uplift overrides

Runs the uplift stage's own steps (``pipelines/uplift.py``: outcomes, point-in-time features, the held-out model
fitted on the earlier campaigns, each action's latest campaign held out) and prints per action on the held-out
campaign:

- the normalised Qini coefficient on retention and on revenue of the uplift model, of random targeting (0; the
  95th percentile of 200 shuffled rankings) and of targeting by churn risk (``models:/churn@champion`` from
  ``MLFLOW_TRACKING_URI`` when it loads, else the ``bgnbd_churn_probability`` feature: printed);
- the Qini of the *true* uplift used as the ranking ("truth"): the most a model could show on these contacts;
- Spearman between the predicted and the true per-customer uplift (``true_uplift_retention_<churn horizon>d``,
  ``true_uplift_revenue_<CLV horizon>d`` of the ground truth);
- the true profit (shop currency) of three target lists among the campaign's contacts: sum over the targeted of
  margin (``evaluate.value_margin``) x true revenue uplift - cost (the contact's cost; a control contact is charged
  its campaign's mean treated cost): the uplift model's (predicted margin x revenue uplift - the action's mean cost
  > 0), the same number by churn risk, everyone; and the oracle's (true profit > 0), the best any list can do;

plus the wall time of each step and the process's peak RSS (which includes generating and validating the shop when
no ``--data`` is given).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop  # noqa: E402
from churn_pipeline.models.metrics import spearman  # noqa: E402
from churn_pipeline.models.uplift import qini_coefficient  # noqa: E402
from churn_pipeline.models.uplift_evaluation import (  # noqa: E402
    evaluate_held_out,
    fit_on_contacts,
    held_out_plan,
    held_out_rows,
)
from churn_pipeline.pipelines import uplift as stage  # noqa: E402
from churn_pipeline.pipelines import validate as validate_stage  # noqa: E402
from churn_pipeline.pipelines.params import load_section, read_params  # noqa: E402


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def make_shop(tmp: Path, customers: int, seed: int, params: Path) -> tuple[Path, Path]:
    raw = tmp / "raw"
    raw.mkdir()
    shop = generate_shop(SyntheticShopConfig(customers=customers, seed=seed))
    for name, table in shop.items():
        table = table if isinstance(table, pa.Table) else pa.Table.from_pandas(table, preserve_index=False)
        pq.write_table(table, tmp / "truth.parquet" if name == "campaign_truth" else raw / f"{name}.parquet")
    validate_stage.run(data=raw, out=tmp / "validated", params_path=params)
    return tmp / "validated", tmp / "truth.parquet"


def overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def profits(test: pd.DataFrame, predicted: pd.DataFrame, risk: np.ndarray, model, action: str, margin: float) -> dict:
    """True profit of the uplift model's list, the same number by churn risk, everyone and the oracle."""
    rows = (test["action"] == action).to_numpy()
    part = test[rows]
    treated = part["group"].eq("treatment").to_numpy()
    cost = pd.to_numeric(part["cost"], errors="coerce").to_numpy(np.float64) if "cost" in part else np.zeros(len(part))
    mean_cost = np.nanmean(cost[treated]) if np.isfinite(cost[treated]).any() else 0.0
    cost = np.where(treated & np.isfinite(cost), cost, mean_cost)
    true_profit = margin * part["true_revenue"].to_numpy(np.float64) - cost
    known = model.cost_.get(action, np.nan)
    expected = margin * predicted[f"uplift_revenue__{action}"].to_numpy()[rows] - (known if np.isfinite(known) else 0)
    chosen = expected > 0
    k = int(chosen.sum())
    by_risk = np.zeros(len(part), dtype=bool)
    by_risk[np.argsort(-risk[rows], kind="stable")[:k]] = True
    return {
        "targeted": k,
        "contacts": len(part),
        "uplift": float(true_profit[chosen].sum()),
        "churn_risk": float(true_profit[by_risk].sum()),
        "everyone": float(true_profit.sum()),
        "oracle": float(true_profit[true_profit > 0].sum()),
        "oracle_targeted": int((true_profit > 0).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a validated data directory with contacts.parquet")
    parser.add_argument("--truth", type=Path, help="its ground truth (campaign_effects.parquet)")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an uplift param")
    args = parser.parse_args()
    if (args.data is None) != (args.truth is None):
        parser.error("give both --data and --truth, or neither (the default shop is generated)")

    with tempfile.TemporaryDirectory(prefix="bench_uplift_") as tmp_dir:
        tmp = Path(tmp_dir)
        start = time.perf_counter()
        if args.data is None:
            data, truth_path = make_shop(tmp, args.customers, args.seed, args.params)
            print(f"shop: {args.customers:,} customers, seed {args.seed}, generated and validated in "
                  f"{time.perf_counter() - start:.1f} s")  # fmt: skip
        else:
            data, truth_path = args.data, args.truth
        params = dataclasses.replace(load_section(stage.UpliftParams, "uplift", args.params), **overrides(args.set))
        margin = float(read_params(args.params).get("evaluate", {}).get("value_margin", 0.3))

        start = time.perf_counter()
        prepared = stage.prepare(data, args.params)
        prep_s = time.perf_counter() - start
        frame, config = prepared.frame, prepared.config
        print(f"outcomes and point-in-time features: {prepared.counts} in {prep_s:.1f} s, peak RSS {peak_gb():.2f} GB")

        truth = pq.read_table(truth_path).to_pandas()
        ret_col = f"true_uplift_retention_{config.churn_horizon_days}d"
        rev_col = f"true_uplift_revenue_{config.clv_horizon_days}d"
        truth = truth[["customer_id", "campaign_id", ret_col, rev_col]].rename(
            columns={ret_col: "true_retention", rev_col: "true_revenue"}
        )
        truth["customer_id"] = truth["customer_id"].astype(str)
        plan = held_out_plan(frame)
        held = held_out_rows(frame, plan)
        train, test = frame[~held], frame[held].reset_index(drop=True)
        test = test.merge(truth, on=["customer_id", "campaign_id"], how="left", validate="many_to_one")
        if test["true_revenue"].isna().any():
            raise SystemExit(f"{int(test['true_revenue'].isna().sum())} held-out contacts have no ground truth")

        start = time.perf_counter()
        model = fit_on_contacts(params.estimator(prepared.manifest, config), train)
        fit_s = time.perf_counter() - start
        print(f"held-out model ({params.learner}-learner, revenue {params.revenue_objective}): {len(train):,} "
              f"contacts, fitted in {fit_s:.1f} s, peak RSS {peak_gb():.2f} GB")  # fmt: skip
        risk, source = stage.churn_risk(test, params.churn_model_alias)
        print(f"churn risk: {source}")
        report, predicted = evaluate_held_out(model, test, risk, plan, params.shuffles, params.seed)

        print()
        print(f"{'action':<22} {'held out':<30} {'n_t':>5} {'n_c':>5} | {'Qini retention':^30} | "
              f"{'Qini revenue':^30} | {'Spearman':^13}")  # fmt: skip
        print(f"{'':<22} {'':<30} {'':>5} {'':>5} | {'uplift':>7} {'rnd95':>6} {'churn':>7} {'truth':>7} | "
              f"{'uplift':>7} {'rnd95':>6} {'churn':>7} {'truth':>7} | {'ret':>6} {'rev':>6}")  # fmt: skip
        money = {}
        for action, entry in report.items():
            if not entry.get("evaluated"):
                print(f"{action:<22} not evaluated: {entry['why']}")
                continue
            rows = (test["action"] == action).to_numpy()
            r, v = entry["retention"], entry["revenue"]
            s_ret = spearman(test["true_retention"].to_numpy()[rows], predicted[f"uplift_retention__{action}"][rows])
            s_rev = spearman(test["true_revenue"].to_numpy()[rows], predicted[f"uplift_revenue__{action}"][rows])
            t = test["group"].eq("treatment").to_numpy()[rows]
            truth_q = [
                qini_coefficient(test[c].to_numpy()[rows], t, test[y].to_numpy(np.float64)[rows])
                for c, y in (("true_retention", "retained"), ("true_revenue", "net_revenue"))
            ]
            print(
                f"{action:<22} {entry['held_out_campaign']:<30} {entry['treated']:>5} {entry['control']:>5} | "
                f"{r['uplift']['qini']:>+7.3f} {r['random']['qini_shuffled_q95']:>6.3f} "
                f"{r['churn_risk']['qini']:>+7.3f} {truth_q[0]:>+7.3f} | {v['uplift']['qini']:>+7.3f} "
                f"{v['random']['qini_shuffled_q95']:>6.3f} "
                f"{v['churn_risk']['qini']:>+7.3f} {truth_q[1]:>+7.3f} | {s_ret:>+6.3f} {s_rev:>+6.3f}"
            )
            money[action] = profits(test, predicted, risk, model, action, margin)
        print()
        print(f"true profit of targeting (margin {margin} x true revenue uplift - cost), shop currency:")
        print(f"{'action':<22} {'targeted':>12} {'uplift':>10} {'churn risk':>11} {'everyone':>10} {'oracle':>16}")
        for action, m in money.items():
            print(
                f"{action:<22} {m['targeted']:>5,} / {m['contacts']:<5,} {m['uplift']:>10,.0f} "
                f"{m['churn_risk']:>11,.0f} {m['everyone']:>10,.0f} {m['oracle']:>9,.0f} ({m['oracle_targeted']:,})"
            )
        total = {k: sum(m[k] for m in money.values()) for k in ("uplift", "churn_risk", "everyone", "oracle")}
        print(f"{'all actions':<22} {'':>12} {total['uplift']:>10,.0f} {total['churn_risk']:>11,.0f} "
              f"{total['everyone']:>10,.0f} {total['oracle']:>9,.0f}")  # fmt: skip

        start = time.perf_counter()
        deployed = fit_on_contacts(params.estimator(prepared.manifest, config), frame)
        print()
        print(f"deployed model: {len(frame):,} contacts, actions {', '.join(deployed.actions_)}, fitted in "
              f"{time.perf_counter() - start:.1f} s; peak RSS {peak_gb():.2f} GB")  # fmt: skip


if __name__ == "__main__":
    main()
