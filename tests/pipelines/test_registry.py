"""pipelines.registry, the one MLflow module: tracking store and run identity, and the gate's alias moves (fake
registry clients, no MLflow store)."""

import hashlib

import mlflow
import pytest

from churn_pipeline.errors import ParamsError
from churn_pipeline.models.gate import Decision
from churn_pipeline.pipelines import registry
from churn_pipeline.pipelines.registry import DEFAULT_TRACKING_URI, file_fingerprint, flatten, git_commit, tracking_uri


def test_flatten_joins_nested_keys_with_dots():
    nested = {"train": {"churn": {"num_leaves": 31, "learning_rate": 0.05}, "seed": 1}, "labels": {"h": 90}}
    assert flatten(nested) == {
        "train.churn.num_leaves": 31,
        "train.churn.learning_rate": 0.05,
        "train.seed": 1,
        "labels.h": 90,
    }


def test_tracking_uri_defaults_to_the_project_sqlite_store_and_env_overrides(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000"


def test_file_fingerprint_is_the_sha256_of_the_bytes_whatever_the_chunk_size(tmp_path):
    path = tmp_path / "panel.parquet"
    payload = bytes(range(256)) * 1000
    path.write_bytes(payload)
    assert file_fingerprint(path, chunk_bytes=7) == hashlib.sha256(payload).hexdigest() == file_fingerprint(path)


def test_git_commit_outside_a_repository_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"


def test_a_missing_sqlite_store_is_an_error_for_loading_and_nothing_to_remove_for_uplift(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'absent.db'}")
    with pytest.raises(ParamsError, match="no MLflow store at"):
        registry.load_models([], "champion")
    assert registry.remove_uplift_champion() is None
    assert not (tmp_path / "absent.db").exists()


class AliasRecorder:
    """A registry client that records alias moves."""

    def __init__(self):
        self.moves: list[tuple[str, str, str]] = []

    def set_registered_model_alias(self, name, alias, version):
        self.moves.append((name, alias, version))


@pytest.fixture
def recorder(monkeypatch) -> AliasRecorder:
    client = AliasRecorder()
    monkeypatch.setattr(mlflow, "MlflowClient", lambda: client)
    monkeypatch.setattr(registry, "load_champion", lambda c, kind: ("estimator", "3", None, {"label_horizon_days": 90}))
    return client


def test_the_gate_asks_the_verdict_about_the_loaded_champion_then_moves_the_aliases(recorder):
    asked = []

    def verdict(*champion):
        asked.append(champion)
        return Decision(True, ("ok",))

    decision, champion = registry.gate_champion("churn", "4", verdict)
    assert asked == [("estimator", "3", None, {"label_horizon_days": 90})]
    assert decision.promote and champion == "4"
    assert recorder.moves == [("churn", "challenger", "4"), ("churn", "champion", "4")]


def test_a_refused_challenger_gets_only_the_challenger_alias(recorder):
    decision, champion = registry.gate_champion("clv", "4", lambda *c: Decision(False, ("worse",)))
    assert not decision.promote and champion == "3"
    assert recorder.moves == [("clv", "challenger", "4")]


def test_an_error_while_scoring_the_champion_propagates_and_moves_no_alias(recorder):
    def verdict(*champion):
        raise RuntimeError("a bug while scoring the champion")

    with pytest.raises(RuntimeError, match="a bug"):
        registry.gate_champion("churn", "4", verdict)
    assert recorder.moves == []
