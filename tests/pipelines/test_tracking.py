import hashlib

from churn_pipeline.pipelines.tracking import DEFAULT_TRACKING_URI, file_fingerprint, flatten, git_commit, tracking_uri


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
