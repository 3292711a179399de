"""Experiments must not change production (issue 18): `dvc exp run -S labels.churn_horizon_days=60` registers
new versions as `challenger` only; `models:/churn@champion` stays the version `dvc repro` made.

A copy of the project's DVC pipeline (dvc.yaml, params.yaml, the stages' code as deps) in a fresh git repository,
on a 1,500-customer synthetic shop, run up to the `train` stage only (evaluate, score and export add nothing
here). The `churn` CLI on PATH is this checkout's (editable install). About a minute on 2 cores.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", "churn_pipeline")


def _run(repo: Path, env: dict, *args: str) -> str:
    proc = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_dvc_experiment_registers_a_challenger_and_leaves_the_champion(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["generate"]["customers"] = 1500
    params["features"]["windows_days"] = [30, 90, 365]  # fewer features: a faster panel and fits
    for kind in ("churn", "clv"):
        params["train"][kind].update({"n_estimators": 100, "early_stopping_rounds": 20})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))},
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": store,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    dvc = str(Path(bin_dir) / "dvc")
    _run(repo, env, "git", "init", "-q")
    _run(repo, env, "git", "add", ".")
    _run(repo, env, "git", "commit", "-qm", "pipeline")
    _run(repo, env, dvc, "repro", "train")
    client = MlflowClient(tracking_uri=store)
    champion = {k: str(client.get_model_version_by_alias(k, "champion").version) for k in ("churn", "clv")}
    assert champion == {"churn": "1", "clv": "1"}

    out = _run(repo, env, dvc, "exp", "run", "-S", "labels.churn_horizon_days=60", "train")

    after = {k: str(client.get_model_version_by_alias(k, "champion").version) for k in ("churn", "clv")}
    assert after == champion, out
    challenger = client.get_model_version_by_alias("churn", "challenger")
    assert str(challenger.version) == "2" and challenger.tags["label_horizon_days"] == "60"
    assert "churn promote churn 2" in out
    run = client.get_run(challenger.run_id)
    assert run.data.tags.get("dvc_exp_name")  # DVC_EXP_NAME, set by `dvc exp run`
    assert run.data.params["labels.churn_horizon_days"] == "60"
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
