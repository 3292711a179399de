"""Stage `features`: the training panel (customer x cutoff, features + labels) and the scoring table.

Reads params sections ``features`` (cutoff schedule, windows, eligibility) and ``labels`` (horizons, the
next-order grid).
Input is a validated data directory (``churn validate`` output): Parquet tables with naive-UTC timestamps.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn_pipeline.errors import (
    DataContractError,
    ParamsError,
)
from churn_pipeline.features.build import FeatureConfig, build_feature_blocks, build_feature_table
from churn_pipeline.features.cutoffs import data_end, scoring_cutoff, training_cutoffs
from churn_pipeline.models.split import plan_schedule
from churn_pipeline.pipelines.console import console, format_seconds, step
from churn_pipeline.pipelines.io import (
    atomic_path,
    check_tables,
    connect,
    data_span,
    manifest_path,
    parse_day,
    write_json,
)
from churn_pipeline.pipelines.params import FeaturesParams, check_engine, load_params
from churn_pipeline.pipelines.spark import spark_span


# Snappy, dictionaries for the text columns only and statistics for the keys only: writing a 5 M x 120 panel
# is then about twice as fast as the zstd default, for ~25 % more bytes.
def _write_options(schema: pa.Schema) -> dict:
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    return {"compression": "snappy", "use_dictionary": strings, "write_statistics": ["customer_id", "cutoff"]}


def _write(table: pa.Table, manifest: dict, out: Path) -> None:
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, **_write_options(table.schema))
    write_json(manifest, manifest_path(out))






def _report_cutoffs(rows: dict[str, int], cutoffs: list[pd.Timestamp], manifest: dict) -> None:
    per = {str(c.date()): int(rows.get(str(c.date()), 0)) for c in cutoffs}
    manifest["rows_per_cutoff"] = per
    for c, n in per.items():
        if n == 0:
            console.print(f"[yellow]cutoff {c} skipped: no eligible customers at it[/yellow]")


def schedule(
    feats: FeaturesParams, config: FeatureConfig, first: pd.Timestamp, last: pd.Timestamp
) -> tuple[list[pd.Timestamp], pd.Timestamp, pd.Timestamp, dict]:
    """The training cutoffs whose shortest label horizon fits the data (dropped ones are printed), the end of
    the data, the scoring cutoff, and the schedule record for the manifest (``frequency: auto``: the grid,
    validation count and purge chosen by ``models.split.plan_schedule``, printed with the reason, which
    ``train`` follows when its ``n_validation`` / ``purge`` are ``auto``). DataContractError when no training
    cutoff fits."""
    horizons = (config.churn_horizon_days, config.clv_horizon_days)
    min_h = min(horizons)
    if feats.cutoffs.frequency == "auto" and not feats.cutoffs.dates:
        try:
            plan = plan_schedule(first, last, horizons, feats.cutoffs.count)
        except ValueError as exc:
            raise DataContractError(f"features.cutoffs.frequency auto: {exc}") from exc
        colour = "cyan" if plan.purge else "yellow"
        console.print(f"[{colour}]cutoff schedule (auto): {plan.reason}[/{colour}]", soft_wrap=True)
        cutoffs, record = list(plan.cutoffs), plan.as_dict()
    else:
        cutoffs, messages = training_cutoffs(feats.cutoffs, first, last, min_h)
        for m in messages:
            console.print(f"[yellow]{m}[/yellow]")
        frequency = "dates" if feats.cutoffs.dates else feats.cutoffs.frequency
        record = {"frequency": frequency, "n_validation": None, "purge": None, "reason": "set in params.yaml"}
    if not cutoffs:
        raise DataContractError(
            f"no training cutoff fits the data ({first.date()} to {last.date()}) with a {min_h}-day label "
            f"horizon: use more data, shorter labels.*_horizon_days, or explicit features.cutoffs.dates."
        )
    return cutoffs, data_end(last), scoring_cutoff(feats.cutoffs, last), record


def run(data: Path | str, out_dir: Path, params_path: Path, engine: str | None = None) -> None:
    """DVC mode: the training panel over the scheduled cutoffs and the scoring table at the end of the data.

    ``engine`` (default: params ``features.engine``): ``duckdb`` on this machine, or ``spark``
    (:mod:`pipelines.spark`), which writes each table as a Parquet directory.
    """
    feats, config = load_params(params_path)
    engine = check_engine(engine or feats.engine)
    if engine == "spark":
        return _run_spark(str(data), Path(out_dir), feats, config)
    con = connect(Path(data))
    cutoffs, end, as_of, plan = schedule(feats, config, *data_span(con))
    out_dir = Path(out_dir)
    if as_of in cutoffs:
        # A scoring date equal to a training cutoff needs lapsed customers there too: two passes.
        passes = [
            (build_feature_blocks(con, cutoffs, end, config, training=True), "panel"),
            (build_feature_blocks(con, [as_of], end, config, training=False), "scoring"),
        ]
    else:
        # One pass over the data for both: the scoring cutoff keeps lapsed customers (flagged).
        passes = [(build_feature_blocks(con, [*cutoffs, as_of], end, config, True, keep_lapsed_at=(as_of,)), None)]
    blocks = len(cutoffs) + 1
    console.print(
        f"features: {blocks} cutoff blocks ({len(cutoffs)} training + scoring) from {source_rows(Path(data))}; "
        f"reading the source rows first",
        soft_wrap=True,
    )
    with step("features (training panel + scoring table)") as s:
        with atomic_path(out_dir / "panel.parquet") as panel_tmp, atomic_path(out_dir / "scoring.parquet") as score_tmp:
            made = _stream(passes, as_of, {"panel": panel_tmp, "scoring": score_tmp}, _Progress(blocks))
            if not sum(made["panel"]["rows"].values()):
                raise DataContractError("no customer is eligible at any training cutoff: the panel would be empty.")
        manifests = {}
        for name, when in (("panel", cutoffs), ("scoring", [as_of])):
            manifests[name] = {**made[name]["manifest"], "cutoffs": [str(c.date()) for c in when]}
            if name == "panel":
                manifests[name]["schedule"] = plan
            _report_cutoffs(made[name]["rows"], when, manifests[name])
        s.rows = sum(made["panel"]["rows"].values())
        span = f"{cutoffs[0].date()}..{cutoffs[-1].date()}"
        s.detail = (
            f"{len(cutoffs)} cutoffs {span}, {len(manifests['panel']['features'])} features; "
            f"scoring table {sum(made['scoring']['rows'].values()):,} rows as of {as_of.date()}"
        )
    for name, manifest in manifests.items():
        write_json(manifest, manifest_path(out_dir / f"{name}.parquet"))


def source_rows(data: Path) -> str:
    """``12,345 orders, 678 returns, ...``: the rows of each table, from the Parquet footers (no data read)."""
    parts = []
    for name in ("orders", "returns", "customers", "events"):
        path = Path(data) / f"{name}.parquet"
        if path.is_file():
            parts.append(f"{pq.ParquetFile(path).metadata.num_rows:,} {name}")
    return ", ".join(parts)


class _Progress:
    """One line per cutoff block on stderr (the scans before the first block are the long wait, so the first
    line says how long reading the source rows took): progress a scheduler's log shows too."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.last = self.start

    def block(self, table: str, cutoff: pd.Timestamp, rows: int) -> None:
        now = time.perf_counter()
        if self.done == 0:
            console.print(f"  source rows read and rolled up in {format_seconds(now - self.start)}", soft_wrap=True)
        self.done += 1
        console.print(
            f"  {table} cutoff {cutoff.date()} ({self.done}/{self.total}): {rows:,} rows in "
            f"{format_seconds(now - self.last)}",
            soft_wrap=True,
        )
        self.last = now


def _stream(passes: list, as_of: pd.Timestamp, paths: dict[str, Path], progress: _Progress | None = None) -> dict:
    """Write the blocks of each pass to their tables (``panel``, or ``scoring`` for the scoring cutoff when a
    pass is not fixed to one table), each cutoff in Parquet row groups of its own. Parquet encoding releases
    the GIL: a writer thread stores each block while the next is made. Returns per table the rows per cutoff
    and the manifest."""
    made: dict[str, dict] = {name: {"rows": {}, "manifest": None} for name in paths}
    writers: dict[str, pq.ParquetWriter] = {}
    # One writer thread per table, so the scoring table is stored while the panel's last blocks still are.
    with ThreadPoolExecutor(max_workers=len(paths), thread_name_prefix="churn-write") as pool:
        writing: dict[str, Future] = {}
        try:
            for blocks, fixed in passes:
                for cutoff, block, manifest in blocks:
                    name = fixed or ("scoring" if cutoff == as_of else "panel")
                    if name not in writers:
                        writers[name] = pq.ParquetWriter(paths[name], block.schema, **_write_options(block.schema))
                    made[name]["rows"][str(cutoff.date())] = block.num_rows
                    made[name]["manifest"] = manifest
                    if progress is not None:
                        progress.block(name, cutoff, block.num_rows)
                    if name in writing:
                        writing[name].result()
                    writing[name] = pool.submit(writers[name].write_table, block)
                    del block
            for done in writing.values():
                done.result()
        finally:
            wait(writing.values())
            for writer in writers.values():
                writer.close()
    return made


def run_one(data: Path | str, as_of: str | None, out: Path | str, params_path: Path, engine: str | None = None) -> None:
    """Features (and labels where their horizon is complete) for every customer at one cutoff."""
    feats, config = load_params(params_path)
    if check_engine(engine or feats.engine) == "spark":
        from churn_pipeline.features.spark import build_feature_table_spark
        from churn_pipeline.pipelines.spark import read_tables, spark_session, write_parquet, write_text

        if "://" not in str(data) and Path(data).is_dir():
            check_tables(Path(data))  # a local directory: the same contract checks as the DuckDB engine
        spark = spark_session()
        tables = read_tables(spark, data)
        first, last = spark_span(tables["orders"])
        cutoff = _one_cutoff(as_of, feats, first, last)
        with step("features (spark)") as s:
            frame, manifest = build_feature_table_spark(spark, tables, [cutoff], data_end(last), config, False)
            write_parquet(frame, out)
            s.rows = manifest["rows_per_cutoff"] = _spark_rows(spark, out, [cutoff])[str(cutoff.date())]
            s.detail = f"as of {cutoff.date()}, {len(manifest['features'])} features, written to {out}"
        write_text(spark, json.dumps(manifest, indent=2), f"{str(out).removesuffix('.parquet')}.features.json")
        return
    con = connect(Path(data))
    first, last = data_span(con)
    cutoff = _one_cutoff(as_of, feats, first, last)
    console.print(f"features as of {cutoff.date()} from {source_rows(Path(data))}", soft_wrap=True)
    with step("features") as s:
        frame, manifest = build_feature_table(con, [cutoff], data_end(last), config, training=False)
        s.rows = frame.num_rows
        s.detail = f"as of {cutoff.date()}, {len(manifest['features'])} features"
    _write(frame, manifest, Path(out))


def _one_cutoff(as_of: str | None, feats: FeaturesParams, first: pd.Timestamp, last: pd.Timestamp) -> pd.Timestamp:
    """``--as-of``, else the scoring cutoff of the DVC mode (features.cutoffs.scoring_cutoff, as `churn score`)."""
    day = parse_day(as_of, "--as-of") if as_of is not None else None
    return scoring_cutoff(feats.cutoffs, last, as_of=day, first_ts=first)






def _spark_rows(spark, out: Path | str, cutoffs: list[pd.Timestamp]) -> dict[str, int]:
    """Rows per cutoff of a table Spark wrote (reads its cutoff column only)."""
    counts = spark.read.parquet(str(out)).groupBy("cutoff").count().collect()
    seen = {str(pd.Timestamp(c).date()): n for c, n in counts}
    return {str(c.date()): int(seen.get(str(c.date()), 0)) for c in cutoffs}


def _run_spark(data: str, out_dir: Path, feats: FeaturesParams, config: FeatureConfig) -> None:
    """The DVC mode on Spark: one pass over the data for the panel and the scoring table, each written as
    a Parquet directory sorted by cutoff and customer_id, with the same manifests as the DuckDB engine."""
    from churn_pipeline.features.spark import build_feature_table_spark
    from churn_pipeline.pipelines.spark import read_tables, spark_session, write_parquet

    if "://" not in data and Path(data).is_dir():
        check_tables(Path(data))  # a local directory: the same contract checks as the DuckDB engine
    spark = spark_session()
    tables = read_tables(spark, data)
    cutoffs, end, as_of, plan = schedule(feats, config, *spark_span(tables["orders"]))
    with step("features on spark (training panel + scoring table)") as s:
        if as_of in cutoffs:
            panel, manifest = build_feature_table_spark(spark, tables, cutoffs, end, config, training=True)
            scoring, smanifest = build_feature_table_spark(spark, tables, [as_of], end, config, training=False)
        else:
            both, manifest = build_feature_table_spark(
                spark, tables, [*cutoffs, as_of], end, config, training=True, keep_lapsed_at=(as_of,)
            )
            # Both tables come from one computation: kept (memory, spilling to disk) until both are written.
            both = both.persist()
            from pyspark.sql import functions as sf

            at_scoring = sf.to_date("cutoff") == sf.lit(as_of.date())
            panel, scoring = both.filter(~at_scoring), both.filter(at_scoring)
            smanifest = {**manifest, "cutoffs": [str(as_of.date())]}
            manifest = {**manifest, "cutoffs": [str(c.date()) for c in cutoffs]}
        manifest["schedule"] = plan
        write_parquet(panel, out_dir / "panel.parquet")
        write_parquet(scoring, out_dir / "scoring.parquet")
        manifest["rows_per_cutoff"] = _spark_rows(spark, out_dir / "panel.parquet", cutoffs)
        smanifest["rows_per_cutoff"] = _spark_rows(spark, out_dir / "scoring.parquet", [as_of])
        for c, n in manifest["rows_per_cutoff"].items():
            if n == 0:
                console.print(f"[yellow]cutoff {c} skipped: no eligible customers at it[/yellow]")
        s.rows = sum(manifest["rows_per_cutoff"].values())
        if s.rows == 0:
            raise DataContractError("no customer is eligible at any training cutoff: the panel would be empty.")
        s.detail = f"{len(cutoffs)} cutoffs, {len(manifest['features'])} features, written by Spark"
    write_json(manifest, manifest_path(out_dir / "panel.parquet"))
    write_json(smanifest, manifest_path(out_dir / "scoring.parquet"))


def sample(panel: str, out: Path, rows_per_cutoff: int, seed: int = 0) -> None:
    """Write a training sample of a (large) panel, drawn on Spark and stratified by cutoff
    (:func:`features.spark.sample_panel`), with the panel's manifest and the rows kept per cutoff."""
    from churn_pipeline.features.spark import sample_panel
    from churn_pipeline.pipelines.spark import spark_session, write_parquet

    source = manifest_path(Path(panel))
    if not source.is_file():
        raise DataContractError(
            f"{panel} has no manifest {source.name} beside it: sample a panel `churn features` wrote."
        )
    if rows_per_cutoff < 1:
        raise ParamsError(f"--rows-per-cutoff must be >= 1, got {rows_per_cutoff}.")
    spark = spark_session()
    with step("sample panel (spark)") as s:
        frame = spark.read.parquet(str(panel))
        write_parquet(sample_panel(frame, rows_per_cutoff, seed), out)
        manifest = json.loads(source.read_text())
        cutoffs = [pd.Timestamp(c) for c in manifest["cutoffs"]]
        manifest["rows_per_cutoff"] = _spark_rows(spark, out, cutoffs)
        manifest["sample"] = {"source": str(panel), "rows_per_cutoff": rows_per_cutoff, "seed": seed}
        s.rows = sum(manifest["rows_per_cutoff"].values())
        s.detail = f"at most ~{rows_per_cutoff:,} rows per cutoff -> {out}"
    write_json(manifest, manifest_path(Path(out)))
