"""Issue 18: training must not put a bad model, a model of another target, or an experiment into production, and
must fail clearly on unusable panels. Small synthetic shop, MLflow in a temporary SQLite store."""

import io
import json
import shutil
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST

from churn_pipeline.errors import DataContractError, ParamsError, UsageError
from churn_pipeline.features.synthetic import SyntheticShopConfig, generate_shop
from churn_pipeline.models.gate import champion_decision
from churn_pipeline.pipelines import features as features_stage
from churn_pipeline.pipelines import registry
from churn_pipeline.pipelines import train as stage
from churn_pipeline.pipelines.console import console
from churn_pipeline.pipelines.params import GateParams, load_section
from churn_pipeline.pipelines.registry import git_commit, git_state

# Slow (`make test` runs them, `make test-fast` skips them): about a minute, a training for each gate scenario.
pytestmark = pytest.mark.slow

PARAMS = {
    "features": {"cutoffs": {"frequency": "monthly", "count": 24}, "windows_days": [30, 90, 365]},
    "labels": {"churn_horizon_days": 90, "clv_horizon_days": 180},
    "train": {
        "n_validation": 1,
        "experiment": "test-safety",
        "churn": {"n_estimators": 60, "early_stopping_rounds": 10},
        "clv": {"n_estimators": 60, "early_stopping_rounds": 10},
        "next_order": {"n_estimators": 60, "early_stopping_rounds": 10},
    },
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("safety")
    shop = root / "shop"
    shop.mkdir()
    for name, table in generate_shop(SyntheticShopConfig(customers=2500, seed=3)).items():
        pq.write_table(table, shop / f"{name}.parquet")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    features_stage.run(data=shop, out_dir=root / "features", params_path=root / "params.yaml")
    return root


def _registry(tmp_path: Path, monkeypatch) -> MlflowClient:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    monkeypatch.chdir(tmp_path)  # artifacts land beside the store
    return MlflowClient(tracking_uri=uri)


def _panel_copy(workspace: Path, tmp_path: Path, edit=None) -> Path:
    panel = pd.read_parquet(workspace / "features" / "panel.parquet")
    if edit is not None:
        panel = edit(panel)
    path = tmp_path / "panel.parquet"
    panel.to_parquet(path)
    shutil.copy(workspace / "features" / "panel.features.json", tmp_path / "panel.features.json")
    return path


def _train(workspace: Path, tmp_path: Path, panel: Path, name: str, params: Path | None = None) -> dict:
    out = tmp_path / f"{name}.json"
    stage.run(panel_path=panel, metrics_path=out, params_path=params or workspace / "params.yaml")
    return json.loads(out.read_text())


def _alias(client: MlflowClient, kind: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(kind, alias).version)
    except MlflowException:
        return None


@pytest.fixture(scope="module")
def trained(workspace, tmp_path_factory):
    """One normal training: churn v1 and clv v1 champions, with the printed progress."""
    tmp = tmp_path_factory.mktemp("trained")
    mp = pytest.MonkeyPatch()
    client = _registry(tmp, mp)
    panel = _panel_copy(workspace, tmp)
    shutil.copy(workspace / "params.yaml", tmp / "params.yaml")
    buffer = io.StringIO()
    original = console._file  # None: follow sys.stderr (and pytest's capture)
    console.file = buffer
    try:
        first = _train(tmp, tmp, panel, "first")
    finally:
        console._file = original
    yield tmp, client, panel, first, buffer.getvalue()
    mp.undo()


# ------------------------------------------------------------------ 1. minimum-quality bar


def test_a_first_version_that_does_not_beat_the_best_baseline_is_registered_but_not_promoted(
    workspace, tmp_path, monkeypatch
):
    client = _registry(tmp_path, monkeypatch)

    def perfect_recency_at_the_test_cutoff(panel: pd.DataFrame) -> pd.DataFrame:
        # The recency rule ranks the test cutoff perfectly (AUC 1): no model can beat it.
        last = panel.loc[panel["churned"].notna(), "cutoff"].max()
        at = (panel["cutoff"] == last) & panel["churned"].notna()
        panel.loc[at, "recency_days"] = panel.loc[at, "churned"].astype(float) * 300.0 + 1.0
        return panel

    first = _train(workspace, tmp_path, _panel_copy(workspace, tmp_path, perfect_recency_at_the_test_cutoff), "m")
    churn = first["churn"]
    assert churn["version"] == "1" and not churn["promoted"] and churn["champion"] is None
    assert churn["baselines"]["recency_rule"]["roc_auc"] == 1.0
    assert any("vs best baseline recency_rule 1.0000: worse than it by more than" in r for r in churn["gate"])
    assert any("churn promote churn 1" in r for r in churn["gate"])
    assert _alias(client, "churn", "challenger") == "1" and _alias(client, "churn", "champion") is None
    # The CLV model beats BG/NBD here: promoted, and the bar is recorded.
    assert first["clv"]["promoted"] and "bgnbd" in first["clv"]["baselines"]
    assert any("vs best baseline bgnbd" in r and r.endswith(": ok") for r in first["clv"]["gate"])


def test_a_normal_first_version_beats_the_baselines_and_is_champion(trained):
    _, client, _, first, _ = trained
    for kind in ("churn", "clv"):
        assert first[kind]["promoted"] and _alias(client, kind, "champion") == "1"
        assert any("best baseline bgnbd" in r for r in first[kind]["gate"])
    assert first["churn"]["roc_auc"] > max(v["roc_auc"] for v in first["churn"]["baselines"].values())


# ------------------------------------------------------------------ 3. one-class panels


@pytest.mark.parametrize("value", [True, False])
def test_a_panel_with_one_churn_class_fails_naming_the_cutoffs_and_counts(workspace, tmp_path, monkeypatch, value):
    _registry(tmp_path, monkeypatch)

    def one_class(panel: pd.DataFrame) -> pd.DataFrame:
        panel["churned"] = panel["churned"].where(panel["churned"].isna(), value)
        return panel

    with pytest.raises(DataContractError) as err:
        _train(workspace, tmp_path, _panel_copy(workspace, tmp_path, one_class), "m")
    message = str(err.value)
    assert err.value.exit_code == 3
    assert "one class" in message and "train cutoffs 20" in message and "test cutoffs" in message
    assert ("0 stayers" if value else "0 churners") in message and "labels.churn_horizon_days" in message
    assert not (tmp_path / "m.json").exists()


# ------------------------------------------------------------------ 2. champion artefacts gone


def test_a_champion_with_deleted_artefacts_is_kept_loudly_and_the_challenger_is_not_promoted(trained, capsys):
    tmp, _, panel, _, _ = trained
    sub = tmp / "broken"
    sub.mkdir()
    store = sub / "mlflow.db"
    shutil.copy(tmp / "mlflow.db", store)
    shutil.copytree(tmp / "mlruns", sub / "mlruns")
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
        mp.chdir(sub)
        broken = MlflowClient(tracking_uri=f"sqlite:///{store}")
        # The copied store's artifact paths point at tmp/mlruns: delete those of churn v1 there, in the copy only.
        mv = broken.get_model_version("churn", "1")
        model_id = mv.source.removeprefix("models:/")  # MLflow 3: the version's source is its logged model
        location = Path(mlflow.get_logged_model(model_id).artifact_location.removeprefix("file://"))
        moved = sub / "churn_v1_artifacts"
        shutil.move(location, moved)
        try:
            # score: a UsageError (exit 4) naming the URI and the fixes, not an MlflowException trace.
            with pytest.raises(UsageError) as err:
                registry.load_models([], "champion")
            message = str(err.value)
            assert err.value.exit_code == 4 and "models:/churn@champion" in message
            assert "No such artifact" in message or "No such file" in message
            assert "churn promote churn VERSION" in message and "--model-uri" in message and "Retrain" in message
            # train: the challenger is registered, not promoted; the champion alias stays where it was.
            second = _train(tmp, sub, panel, "second")
        finally:
            shutil.move(moved, location)
    finally:
        mp.undo()
    assert second["churn"]["version"] == "2" and not second["churn"]["promoted"]
    assert second["churn"]["champion"] == "1"
    assert any("cannot be loaded" in r and "churn promote churn 2" in r for r in second["churn"]["gate"])
    assert _alias(broken, "churn", "champion") == "1" and _alias(broken, "churn", "challenger") == "2"
    assert "NOT promoted" in capsys.readouterr().err


def test_any_other_error_while_loading_the_champion_propagates(trained, monkeypatch):
    _, client, *_ = trained

    def bug(*args, **kwargs):
        raise RuntimeError("a bug, not a missing file")

    monkeypatch.setattr(mlflow.pyfunc, "load_model", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        registry.load_champion(client, "churn")
    # A registry error other than "no such model" is not "no champion" (which would promote blindly).
    denied = MlflowException("database is locked", error_code=INTERNAL_ERROR)

    class Client:
        def get_registered_model(self, name):
            raise denied

    with pytest.raises(MlflowException, match="locked"):
        registry._champion_version(Client(), "churn")
    missing = MlflowException("Registered Model with name=churn not found", error_code=RESOURCE_DOES_NOT_EXIST)

    class Empty:
        def get_registered_model(self, name):
            raise missing

    assert registry._champion_version(Empty(), "churn") is None


def test_a_champion_that_fails_while_being_scored_fails_training_and_is_never_replaced(trained, monkeypatch):
    """Issue 17: the gate cannot be bypassed. A champion whose held-out estimator raises an unexpected error while
    the gate scores it (a bug, not missing files) stops `churn train`: the error propagates, no alias moves, no
    metrics are written; the challenger is registered but never promoted for want of a comparison."""
    tmp, _, panel, _, _ = trained
    sub = tmp / "scoring_bug"
    sub.mkdir()
    store = sub / "mlflow.db"
    shutil.copy(tmp / "mlflow.db", store)  # a copy: the module's store keeps its aliases
    shutil.copytree(tmp / "mlruns", sub / "mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.chdir(sub)
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    kinds = ("churn", "clv", "next_order")
    before = {(kind, alias): _alias(client, kind, alias) for kind in kinds for alias in ("champion", "challenger")}
    assert before[("churn", "champion")] is not None

    class Exploding:
        """The champion's held-out estimator, but scoring it raises (its features and the rest are intact)."""

        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def predict_proba(self, frame):
            raise RuntimeError("a bug while scoring the champion")

        predict = predict_orders = predict_proba

    real_load = mlflow.pyfunc.load_model

    def load_with_a_bug(uri, *args, **kwargs):
        pyfunc = real_load(uri, *args, **kwargs)
        served = pyfunc.unwrap_python_model()
        if getattr(served, "holdout_estimator", None) is not None:
            served.holdout_estimator = Exploding(served.holdout_estimator)
        return pyfunc

    monkeypatch.setattr(mlflow.pyfunc, "load_model", load_with_a_bug)
    with pytest.raises(RuntimeError, match="a bug while scoring the champion"):
        _train(tmp, sub, panel, "bug")
    assert not (sub / "bug.json").exists()
    # The challenger was registered (the gate runs after registration) but no alias moved, champion nor challenger.
    versions = [int(v.version) for v in client.search_model_versions("name='churn'")]
    assert max(versions) > int(before[("churn", "champion")])
    assert {key: _alias(client, *key) for key in before} == before


# ------------------------------------------------------------------ 4. experiments and provenance


def test_inside_a_dvc_experiment_auto_promotion_acts_as_manual(trained, monkeypatch, capsys):
    tmp, client, panel, _, _ = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("DVC_EXP_NAME", "sappy-bass")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123456789abcdef")
    out = tmp / "exp.json"
    stage.run(panel_path=panel, metrics_path=out, params_path=tmp / "params.yaml")
    exp = json.loads(out.read_text())
    for kind in ("churn", "clv"):
        version = exp[kind]["version"]
        assert not exp[kind]["promoted"] and exp[kind]["promote_mode"] == "manual"
        assert exp[kind]["champion"] == _alias(client, kind, "champion") != version
        assert _alias(client, kind, "challenger") == version
        assert any(f"churn promote {kind} {version}" in r and "sappy-bass" in r for r in exp[kind]["gate"])
        assert client.get_model_version(kind, version).tags["label_horizon_days"] == str(
            PARAMS["labels"][f"{kind}_horizon_days"]
        )
    run = client.get_run(exp["run_id"])
    assert run.data.tags["dvc_exp_name"] == "sappy-bass"
    assert run.data.tags["dvc_exp_baseline_rev"] == "0123456789abcdef"
    assert "promotion is manual" in capsys.readouterr().err


def test_a_champion_of_another_label_horizon_is_kept(trained):
    tmp, client, panel, first, _ = trained
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    champion, version, broken, target = registry.load_champion(client, "churn")
    assert broken is None and target == {"label_horizon_days": 90}
    test = pd.read_parquet(panel)
    test = test[(test["cutoff"] == pd.Timestamp(first["churn"]["test_cutoff"])) & test["churned"].notna()]
    great = {"roc_auc": 0.99, "brier": 0.01}
    decision = champion_decision(
        "churn", champion, version, great, test, GateParams(),
        target={"label_horizon_days": 60}, champion_target=target,
    )  # fmt: skip
    assert not decision.promote and "label_horizon_days 90 (champion) vs 60 (challenger)" in decision.summary()


def test_promote_param_is_checked(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"promote": "sometimes"}}))
    with pytest.raises(ParamsError) as err:
        load_section(stage.TrainParams, "train", path)
    assert err.value.exit_code == 4 and "promote" in str(err.value)
    path.write_text(yaml.safe_dump({"train": {"promote": "manual"}}))
    manual, why = stage.promote_mode(load_section(stage.TrainParams, "train", path))
    assert manual and "manual" in why


def test_the_run_records_the_plain_commit_and_its_source_dirtiness(trained):
    _, client, _, first, _ = trained
    tags = client.get_run(first["run_id"]).data.tags
    commit, changed = git_state()
    assert tags["mlflow.source.git.commit"] == commit and "-dirty" not in tags["mlflow.source.git.commit"]
    assert tags["git_commit"] == commit + ("-dirty" if changed else "")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_pipeline_outputs_and_params_do_not_make_the_commit_dirty_but_source_does(tmp_path):
    _git(tmp_path, "init", "-q")
    for name in ("dvc.lock", "params.yaml", "metrics/train.json", "churn_pipeline/models/churn.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    # What `dvc repro` / `dvc exp run -S` rewrite before train runs.
    for name in ("dvc.lock", "params.yaml", "metrics/train.json"):
        (tmp_path / name).write_text("v2\n")
    commit = git_commit(tmp_path)
    assert len(commit) == 40 and not commit.endswith("-dirty")
    (tmp_path / "churn_pipeline" / "models" / "churn.py").write_text("v2\n")
    assert git_commit(tmp_path) == commit + "-dirty"
    assert git_state(tmp_path)[1] == ["churn_pipeline/models/churn.py"]


# ------------------------------------------------------------------ 5. progress


def test_training_says_what_it_trains_on_for_each_fit(trained):
    *_, printed = trained
    for kind in ("churn", "clv"):
        for phase in ("held out", "deployed"):
            lines = [line for line in printed.splitlines() if line.startswith(f"{kind} ({phase}): training on")]
            assert len(lines) == 1, printed
            assert "rows (cutoffs 20" in lines[0] and "validating on" in lines[0]
            assert f"{kind} ({phase}): fitted" in printed
    assert "churn (held out): test AUC" in printed and "baselines: bgnbd roc_auc" in printed
