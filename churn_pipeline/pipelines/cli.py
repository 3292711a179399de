"""The ``churn`` command line: one command per pipeline stage, the same code that ``dvc repro`` runs.

Every command reads its defaults from its ``params.yaml`` section; options given on the command line win.
Failures print one paragraph and exit non-zero; ``--traceback`` (or ``CHURN_TRACEBACK=1``) shows the trace.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
import typer._click.exceptions as typer_click_exceptions

from churn_pipeline.errors import ChurnError
from churn_pipeline.pipelines.console import console

app = typer.Typer(
    name="churn",
    help="Churn and CLV pipeline for online shops: generate or import data, validate it, build features, "
    "train, evaluate, score and export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(help="Convert an external data set into the data contract.", no_args_is_help=True)
app.add_typer(import_app, name="import")

_state = {"traceback": os.environ.get("CHURN_TRACEBACK", "") not in ("", "0")}

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read defaults from.")]


@app.callback()
def _root(
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the full Python traceback when a command fails.")
    ] = False,
) -> None:
    if traceback:
        _state["traceback"] = True


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Directory to write the synthetic shop's tables to.")],
    customers: Annotated[
        int | None, typer.Option(help="Number of customers (default: params generate.customers).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: params generate.seed).")] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Also write the ground truth of the past campaigns' effects (one row per contact) to this Parquet "
            "file, outside --out."
        ),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Generate a synthetic shop (orders, returns, customers, events, contacts) in the data contract, reproducibly."""
    from churn_pipeline.pipelines import generate as stage

    stage.run(out=out, params_path=params, customers=customers, seed=seed, truth=truth)


@import_app.command("online-retail")
def import_online_retail(
    out: Annotated[Path, typer.Option(help="Directory to write the contract tables to.")],
    source: Annotated[
        Path, typer.Option(help="The UCI Online Retail II file (.parquet or .csv) or the directory holding it.")
    ] = Path("../shared/data/online_retail_ii"),
) -> None:
    """Convert the UCI Online Retail II transactions into the data contract (orders, returns, customers)."""
    from churn_pipeline.pipelines import import_online_retail as stage

    stage.run(source=source, out=out)


@app.command()
def validate(
    data: Annotated[Path, typer.Option(help="Directory with the contract tables (orders is required).")],
    out: Annotated[
        Path,
        typer.Option(
            help="Directory for the clean tables, quarantine/ and the report. It is replaced whole, so it must "
            "stand apart from --data (not --data itself, inside it or around it)."
        ),
    ],
    metrics: Annotated[Path | None, typer.Option(help="Also write the row counts as a DVC metrics file.")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Validate a data directory against the contract; quarantine bad rows with their reason, keep the rest."""
    from churn_pipeline.pipelines import validate as stage

    stage.run(data=data, out=out, metrics=metrics, params_path=params)


@app.command()
def features(
    data: Annotated[
        str,
        typer.Option(
            help="Validated data directory (the output of `churn validate`); with --engine spark any path Spark "
            "reads (s3a://, abfss://, hdfs://)."
        ),
    ],
    out: Annotated[
        str | None, typer.Option(help="One-cutoff mode: the Parquet file to write features at --as-of to.")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="One-cutoff mode: the cutoff date (default: end of the data).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(help="Pipeline mode: write panel.parquet (training) and scoring.parquet here."),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="duckdb (this machine) or spark (CHURN_SPARK_MASTER, default local[*]); default: params."),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Point-in-time features and labels: the training panel over many cutoffs, or one cutoff.

    Features at cutoff c use only data before c; labels use [c, c + horizon). The feature list is written
    next to each table as <name>.features.json.
    """
    from churn_pipeline.pipelines import features as stage

    if as_of is not None:
        stage.parse_day(as_of, "--as-of")  # UsageError (exit 4) before any data is read
    if (out is None) == (out_dir is None):
        raise typer.BadParameter("give exactly one of --out (one cutoff) or --out-dir (training panel + scoring).")
    if out_dir is not None:
        if as_of is not None:
            raise typer.BadParameter("--as-of goes with --out; the pipeline mode takes its cutoffs from params.yaml.")
        stage.run(data=data, out_dir=out_dir, params_path=params, engine=engine)
    else:
        stage.run_one(data=data, as_of=as_of, out=out, params_path=params, engine=engine)


@app.command()
def train(
    panel: Annotated[Path, typer.Option(help="Training panel from `churn features` (its .features.json beside it).")],
    metrics: Annotated[Path, typer.Option(help="JSON file for the test metrics, baselines and gate decisions.")],
    registered: Annotated[
        Path | None,
        typer.Option(help="Also write a record of the registered model versions and the MLflow store here."),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Train the LightGBM churn and CLV models, log them to MLflow, register them and run the champion gate.

    A new version becomes champion only if it is no worse than the champion on the same test rows (a first
    version: than the panel's baselines), within train.gate's tolerances; a champion of another label horizon,
    or whose files are gone, stays. train.promote manual, or any `dvc exp run`, registers the challenger only
    (then `churn promote`). Exit 3 for a panel that cannot train (one class), 4 for bad params. MLflow goes to
    MLFLOW_TRACKING_URI, or to sqlite:///mlflow.db in the current directory.
    """
    from churn_pipeline.pipelines import train as stage

    stage.run(panel_path=panel, metrics_path=metrics, params_path=params, registered_path=registered)


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="Registered model: churn or clv.")],
    version: Annotated[str, typer.Argument(help="Version to make champion (`mlflow ui` lists them).")],
) -> None:
    """Make a registered version the champion by hand, overriding the train gate (e.g. after a deliberate
    change of the feature set). MLflow: MLFLOW_TRACKING_URI, or sqlite:///mlflow.db in the current directory."""
    from churn_pipeline.pipelines import registry

    registry.promote(model, version)


@app.command()
def uplift(
    data: Annotated[
        Path, typer.Option(help="Validated data (`churn validate` output); its contacts.parquet trains the model.")
    ],
    metrics: Annotated[
        Path, typer.Option(help="JSON file for the held-out Qini/AUUC per action (model, random, churn risk).")
    ],
    registered: Annotated[
        Path, typer.Option(help="JSON record of the registered uplift version (or why there is none).")
    ],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Train per-action uplift models (retention and net revenue, treatment against control) on the contact
    history, judge them on each action's latest campaign against random and churn-risk targeting, and register
    the model as `uplift` (champion when its held-out retention Qini beats random for an action).

    Without a contacts table, or with too few contacts, no model: both files say why, the uplift champion alias
    is removed (scoring uses the rule table) and the run succeeds. Exit 3 for data that is not validated."""
    from churn_pipeline.pipelines import uplift as stage

    stage.run(data=data, metrics_path=metrics, registered_path=registered, params_path=params)


@app.command()
def evaluate(
    panel: Annotated[Path, typer.Option(help="Training panel from `churn features` (its .features.json beside it).")],
    train_metrics: Annotated[
        Path, typer.Option(help="metrics/train.json from `churn train`: model versions, test cutoffs, run id.")
    ],
    metrics: Annotated[Path, typer.Option(help="JSON file for every evaluation metric (also logged to MLflow).")],
    plots_dir: Annotated[Path, typer.Option(help="Directory for the plot data files (DVC plots).")],
    report: Annotated[Path, typer.Option(help="The self-contained HTML report to write.")],
    headline: Annotated[
        Path | None, typer.Option(help="JSON file for the headline numbers (DVC metrics: `dvc metrics show`).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Validated data (`churn validate` output): adds the retention views (cohorts, periods)."),
    ] = None,
    measure: Annotated[
        Path | None,
        typer.Option(help="`churn measure` metrics: adds the section on what the campaigns achieved."),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Evaluate the trained models against baselines: metrics, money, backtest, DVC plots and an HTML report.

    The report, metrics and plot files are also logged to the training run in MLflow.
    """
    from churn_pipeline.pipelines import evaluate as stage

    stage.run(
        panel_path=panel,
        train_metrics=train_metrics,
        metrics_path=metrics,
        plots_dir=plots_dir,
        report_path=report,
        params_path=params,
        headline_path=headline,
        data=data,
        measure_path=measure,
    )


@app.command()
def measure(
    data: Annotated[
        Path, typer.Option(help="Validated data (`churn validate` output); its contacts.parquet is measured.")
    ],
    metrics: Annotated[
        Path, typer.Option(help="JSON file for every number (per campaign and action, what was left out).")
    ],
    table: Annotated[Path | None, typer.Option(help="Also write the per-campaign table as CSV.")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """What each retention campaign achieved: treated against control contacts, per campaign and per action.

    Retention over labels.churn_horizon_days and net revenue over labels.clv_horizon_days from each contact, their
    differences with confidence intervals, profit per contacted customer (evaluate.value_margin x revenue difference
    - mean cost) and a verdict: pays, does not pay, too small to tell, no control group. Without a contacts table
    the metrics say so and the run succeeds. Exit 3 for data that is not validated."""
    from churn_pipeline.pipelines import measure as stage

    stage.run(data=data, metrics=metrics, params_path=params, table=table)


@app.command("sample-panel")
def sample_panel(
    panel: Annotated[str, typer.Option(help="A training panel `churn features` wrote (file or Spark directory).")],
    out: Annotated[Path, typer.Option(help="Where to write the sample (a Parquet directory + .features.json).")],
    rows_per_cutoff: Annotated[int, typer.Option(help="At most about this many rows of each cutoff.")] = 400_000,
    seed: Annotated[int, typer.Option(help="Which customers the hash keeps; the same seed, the same sample.")] = 0,
) -> None:
    """Draw a training sample of a large panel on Spark, stratified by cutoff, for `churn train --panel OUT`:
    how a shop with tens of millions of customers keeps LightGBM on one machine (README, Running on Spark)."""
    from churn_pipeline.pipelines import features as stage

    stage.sample(panel=panel, out=out, rows_per_cutoff=rows_per_cutoff, seed=seed)


@app.command()
def score(
    data: Annotated[
        str,
        typer.Option(
            help="Validated data directory (the output of `churn validate`); with --engine spark any path Spark reads."
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            help="Parquet file for the scores (schema v1.1), <stem>.drift.json beside it; with --engine spark a "
            "directory partitioned by as_of_date, <stem>.summary.json beside it."
        ),
    ],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Scoring date YYYY-MM-DD: features use data before it (default: end of data)."),
    ] = None,
    model_uri: Annotated[
        list[str] | None,
        typer.Option(
            "--model-uri",
            help="A registry model to use instead of models:/<kind>@<score.model_alias>: models:/NAME@ALIAS or "
            "models:/NAME/VERSION. Repeat it for both models; each model's logged kind (churn or clv) says which "
            "one it replaces.",
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="duckdb (this machine) or spark (mlflow spark_udf on CHURN_SPARK_MASTER); default: params."),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Score every customer with an order before the as-of date: churn probability, risk tier, CLV, value at
    risk, three reasons, a recommended action and the control-group flag, plus a drift check.

    Models come from the MLflow registry at MLFLOW_TRACKING_URI (default sqlite:///mlflow.db). Exit codes:
    3 = the data is unusable (not validated, empty, as-of date before the data, features the model needs are
    missing), 4 = params or model URI wrong (unknown model, alias or version) or --as-of not YYYY-MM-DD.
    """
    from churn_pipeline.pipelines import score as stage
    from churn_pipeline.pipelines.io import parse_day

    if as_of is not None:
        parse_day(as_of, "--as-of")  # UsageError (exit 4) before models or data are loaded
    stage.run(data=data, out=out, params_path=params, as_of=as_of, model_uris=model_uri, engine=engine)


@app.command()
def export(
    scores: Annotated[Path, typer.Option(help="Scores file from `churn score`.")],
    out: Annotated[Path, typer.Option(help="The CRM file to write; <out>.manifest.json is written beside it.")],
    format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Write the scores as a CRM-ready CSV or Parquet file (fixed columns, formula-safe text, optional CRM
    column names and pseudonymised ids) with a manifest: rows, sha256, model versions, as-of date, schema.

    More rows than export.max_rows_per_file are split into <stem>.part-0001<suffix>, ... (listed in the
    manifest). Every value is re-checked first: exit 3 for a scores file with NaN or out-of-range values, 4 for
    an --out that is a directory; nothing is written then."""
    from churn_pipeline.pipelines import export as stage

    stage.run(scores=scores, fmt=format, out=out, params_path=params)


@app.command()
def contacts(
    scores: Annotated[
        Path,
        typer.Option(
            help="The CRM file `churn export` wrote (CSV or Parquet; its manifest beside it is read; a split export "
            "by its --out name, or one part) or the scores file of `churn score`."
        ),
    ],
    sent_on: Annotated[
        str,
        typer.Option(
            "--sent-on",
            help="When the CRM delivered the actions: YYYY-MM-DD (00:00 UTC) or an ISO 8601 date and time "
            "(without a zone: UTC).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="The contacts file to write, .parquet or .csv (e.g. contacts.parquet in the shop's raw data "
            "directory, for `churn validate`)."
        ),
    ],
    campaign_id: Annotated[
        str | None, typer.Option("--campaign-id", help="campaign_id of every row (default: <sent-on day>-<action>).")
    ] = None,
    cost: Annotated[
        list[str] | None,
        typer.Option(
            "--cost",
            help="Cost of one contact, shop currency: ACTION=AMOUNT (repeat per action) or AMOUNT for every action; "
            "default: empty (unknown).",
        ),
    ] = None,
    append: Annotated[
        bool,
        typer.Option(
            "--append",
            help="Add to an existing contacts file; a customer already there with the same campaign_id is not added "
            "again. Without it an existing --out is refused.",
        ),
    ] = False,
) -> None:
    """Record a send as the contract's contacts table: one row per customer whose intended_action is not no_action,
    group control for the control group (recommended_action hold_out), else treatment, dated --sent-on.

    Exit 3 for a file whose ids are pseudonymised (they cannot be joined to the shop's data) or that lacks the
    columns, 4 for a --sent-on that is not ISO 8601 or lies before the scores' as_of_date, a bad --cost, or an
    existing --out without --append. Nothing is written then."""
    from churn_pipeline.pipelines import contacts as stage

    stage.run(scores=scores, sent_on=sent_on, out=out, campaign_id=campaign_id, cost=cost, append=append)


@app.command()
def contract() -> None:
    """Print the input data contract (tables, columns, types) as Markdown."""
    from churn_pipeline.features.contract import contract_markdown

    typer.echo(contract_markdown())


def _fail(message: str, code: int) -> None:
    console.print(f"[bold red]error:[/bold red] {message}", soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app, turning expected failures into one paragraph and an exit code."""
    try:
        rc = app(standalone_mode=False)
    except (click.exceptions.Exit, typer.Exit) as exc:
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        _fail("aborted.", 130)
    # typer bundles its own copy of click, whose usage errors are not click's classes.
    except (click.exceptions.ClickException, typer_click_exceptions.ClickException) as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ChurnError as exc:
        if _state["traceback"]:
            raise
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; nothing partial was written.", 130)
    except Exception as exc:
        if _state["traceback"]:
            raise
        _fail(
            f"unexpected {type(exc).__name__}: {exc}. This is a bug or an unforeseen input; "
            f"run again with `churn --traceback ...` and report the trace.",
            1,
        )
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
