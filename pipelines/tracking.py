"""MLflow plumbing for the stages: where runs go, and what identifies a run's code and data.

By default MLflow writes to a SQLite store inside the project (``mlflow.db``, artifacts under ``mlruns/``,
both git-ignored); ``MLFLOW_TRACKING_URI`` overrides it (a server, another database). Browse with
``mlflow ui --backend-store-uri sqlite:///mlflow.db``.
"""

from __future__ import annotations

import hashlib
import os
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


def git_commit(cwd: Path | None = None) -> str:
    """The checked-out commit, suffixed ``-dirty`` when tracked files have uncommitted changes, or ``unknown``."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
