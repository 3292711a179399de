"""MLflow plumbing for the stages: where runs go, and what identifies a run's code and data.

By default MLflow writes to a SQLite store inside the project (``mlflow.db``, artifacts under ``mlruns/``,
both git-ignored); ``MLFLOW_TRACKING_URI`` overrides it (a server, another database). Browse with
``mlflow ui --backend-store-uri sqlite:///mlflow.db``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def configure_mlflow(experiment: str) -> None:
    """Point MLflow at the tracking store and experiment; quiet its progress bars in logs."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"churn": {"num_leaves": 31}}}`` -> ``{"train.churn.num_leaves": 31}`` (MLflow params)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def file_fingerprint(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes, read in chunks: identifies the exact data a model was trained on.

    A directory (a Parquet dataset written by Spark) hashes its data files' relative paths and bytes in path
    order; hidden and ``_``-prefixed files (``_SUCCESS``, checksums) are not data and are left out."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted(
            f
            for f in path.rglob("*")
            if f.is_file() and not any(part.startswith((".", "_")) for part in f.relative_to(path).parts)
        )
    else:
        files = [path]
    for f in files:
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with f.open("rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
    return digest.hexdigest()


# What counts as the code of a run, for its commit's ``-dirty`` flag: the packages, the pipeline definition and the
# dependency pins. Left out on purpose: what the pipeline writes itself and git tracks (``dvc.lock``, ``metrics/``,
# ``plots/``, ``reports/``) -- `dvc repro` rewrites dvc.lock after every stage and the earlier stages' metrics
# before train runs, which marked every `make run` from a clean checkout dirty -- and ``params.yaml``, which a
# `dvc exp run -S` edits by design and whose values every run logs in full as MLflow params.
SOURCE_PATHS = (
    "churn_pipeline",
    "scripts",
    "benchmarks",
    "dvc.yaml",
    "pyproject.toml",
    "constraints.txt",
    "Makefile",
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def git_state(cwd: Path | None = None) -> tuple[str, list[str]]:
    """``(commit, changed)``: ``git rev-parse HEAD`` of the repository at ``cwd`` (default: the one holding this
    code) and the tracked source files (:data:`SOURCE_PATHS`) with uncommitted changes. ``("unknown", [])``
    outside a repository or without git."""
    where = PROJECT_ROOT if cwd is None else cwd
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *(f":(top){p}" for p in SOURCE_PATHS)],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown", []
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    return head.stdout.strip(), changed


def git_commit(cwd: Path | None = None) -> str:
    """The checked-out commit, suffixed ``-dirty`` when tracked source files (:data:`SOURCE_PATHS`, not the
    pipeline's own outputs nor params.yaml) have uncommitted changes, or ``unknown``."""
    commit, changed = git_state(cwd)
    return commit + ("-dirty" if changed and commit != "unknown" else "")


def dvc_experiment() -> dict[str, str]:
    """The DVC experiment this process runs in: ``dvc exp run`` sets ``DVC_EXP_NAME`` and ``DVC_EXP_BASELINE_REV``
    in every stage command's environment (dvc/repo/experiments/queue/base.py; a plain `dvc repro` sets neither,
    only ``DVC_ROOT`` and ``DVC_STAGE``). Empty outside an experiment."""
    found = {
        "name": os.environ.get("DVC_EXP_NAME", ""),
        "baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
    }
    return {k: v for k, v in found.items() if v}


def unloadable(exc: BaseException) -> bool:
    """Whether ``exc``, raised while loading a registered model, says its files are missing or unreadable:
    MLflow's "No such artifact" (RESOURCE_DOES_NOT_EXIST), an OS error (a deleted or unreadable file), a truncated
    or corrupt pickle. Anything else (a bug, a database error) is not this and must propagate."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        text = str(exc)
        return exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "No such artifact" in text or "No such file" in text
    return isinstance(exc, (OSError, EOFError, pickle.UnpicklingError))


def input_schema(features: list[str], categorical: list[str] | tuple[str, ...], frame: Any) -> tuple[Any, Any]:
    """An explicit MLflow input schema for a model's ``features`` and a five-row input example from ``frame``:
    count features are ``long``, other numbers ``double`` (NaN allowed), ``categorical`` ones ``string`` (never
    pandas ``category``, which MLflow signatures cannot hold). Inferring it from a few rows would mark columns that
    happen to have no NaN there as unable to hold one, and int32 columns as int32."""
    import pandas as pd
    from mlflow.types import ColSpec, Schema

    example = frame[list(features)].head(5).copy()
    specs = []
    for c in example.columns:
        if c in categorical:
            example[c] = example[c].astype(object)
            specs.append(ColSpec("string", c))
        elif pd.api.types.is_integer_dtype(example[c]):
            example[c] = example[c].astype("int64")
            specs.append(ColSpec("long", c))
        else:
            example[c] = example[c].astype("float64")
            specs.append(ColSpec("double", c))
    return Schema(specs), example
