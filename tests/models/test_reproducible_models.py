"""The same feature table gives the same churn and CLV predictions, byte for byte, on any machine.

The feature table already is (``tests/features/test_reproducible.py``); the models on top of it must not
reintroduce CPU-dependent rounding: numpy's AVX-512 ``exp``/``log`` kernels (offset log-odds and log-prior,
sigmoid, the CLV prior added back) and OpenBLAS kernels chosen per CPU (Platt scaling). As there, another
machine is emulated in a fresh interpreter: numpy's AVX-512 dispatch switched off (``NPY_DISABLE_CPU_FEATURES``)
and OpenBLAS told to use another CPU's kernels (``OPENBLAS_CORETYPE``). The reference fit runs here on one
LightGBM thread, the emulated machines on two: LightGBM (``deterministic=True``, ``force_row_wise=True``) must
not depend on the thread count either.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn_pipeline.models.churn import ChurnClassifier, _Isotonic, _Platt
from churn_pipeline.models.clv import CLVRegressor

ROOT = Path(__file__).resolve().parents[2]
CHURN_OFFSET, CLV_OFFSET = "bgnbd_churn_probability", "bgnbd_clv"

pytestmark = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")),
    reason="emulates other x86-64 CPUs (numpy dispatch targets, OpenBLAS core types)",
)

OTHER_MACHINES = {
    "numpy without AVX-512 kernels": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL"},
    # Prescott (SSE3) kernels run on every x86-64 CPU, and sum in another order than AVX2 / AVX-512 ones.
    "OpenBLAS with another CPU's kernels": {"OPENBLAS_CORETYPE": "Prescott"},
}


def predictions(data: Path, n_jobs: int) -> dict[str, np.ndarray]:
    """Fit a ChurnClassifier and a CLVRegressor (both with their BG/NBD offset) on the tables in ``data``: their
    predictions on the test rows (float64), and the churn calibration report's numbers."""
    args = json.loads((data / "features.json").read_text())
    common = {**args, "n_estimators": 300, "n_jobs": n_jobs}
    train, valid, test = (pd.read_parquet(data / f"churn_{name}.parquet") for name in ("train", "valid", "test"))
    churn = ChurnClassifier(**common, offset=CHURN_OFFSET).fit(train, train["churned"], valid, valid["churned"])
    margin_valid, margin_test = churn.predict_margin(valid), churn.predict_margin(test)
    y_valid = valid["churned"].to_numpy(dtype=np.int8)
    out = {
        "churn margin": margin_test,
        "churn probability": churn.predict_proba(test)[:, 1],
        "churn uncalibrated": churn.predict_uncalibrated(test),
        # Both calibrators on all validation rows, whichever the fit chose.
        "churn platt": _Platt().fit(margin_valid, y_valid).predict(margin_test),
        "churn isotonic": _Isotonic().fit(margin_valid, y_valid).predict(margin_test),
        "churn report": np.array([v for _, v in sorted(churn.calibration_report_.items()) if isinstance(v, float)]),
    }
    train, valid, test = (pd.read_parquet(data / f"clv_{name}.parquet") for name in ("train", "valid", "test"))
    clv = CLVRegressor(**common, offset=CLV_OFFSET).fit(
        train, train["future_revenue"], valid, valid["future_revenue"], train["future_orders"], valid["future_orders"]
    )
    out["clv revenue"] = clv.predict(test)
    out["clv orders"] = clv.predict_orders(test)
    return out


def _quarter(ids: pd.Series) -> np.ndarray:
    """0..3 per row from a fixed hash of its customer id (its bits above the one behind the calibration halves)."""
    return pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy() // np.uint64(2) % np.uint64(4)


@pytest.fixture(scope="module")
def tables(tmp_path_factory, churn_frames, clv_frames, feature_args) -> Path:
    """A quarter of the fixture panel's customers, as Parquet files a fresh interpreter reads."""
    data = tmp_path_factory.mktemp("model_tables")
    keep = [*feature_args["features"], "customer_id", "churned", "future_revenue", "future_orders"]
    for model, frames in (("churn", churn_frames), ("clv", clv_frames)):
        for name, frame in zip(("train", "valid", "test"), frames, strict=True):
            rows = frame[_quarter(frame["customer_id"]) == 0]
            rows[[c for c in keep if c in rows.columns]].to_parquet(data / f"{model}_{name}.parquet")
    (data / "features.json").write_text(json.dumps(feature_args))
    return data


def sha256(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """SHA-256 of each array's float64 bytes."""
    return {
        k: hashlib.sha256(np.ascontiguousarray(v, dtype=np.float64).tobytes()).hexdigest() for k, v in arrays.items()
    }


def _in_subprocess(data: Path, env: dict[str, str], n_jobs: int) -> dict[str, str]:
    """:func:`sha256` of :func:`predictions` in a fresh interpreter (where ``env`` acts on numpy and OpenBLAS)."""
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, __file__, str(data), str(n_jobs)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow  # three fits of both models: ~7 s (far longer on a busy machine, with 2 LightGBM threads)
def test_model_predictions_are_the_same_on_another_cpu_and_thread_count(tables):
    here = sha256(predictions(tables, n_jobs=1))
    for machine, env in OTHER_MACHINES.items():
        there = _in_subprocess(tables, env, n_jobs=2)
        differ = sorted(k for k in here if there[k] != here[k])
        assert not differ, f"{machine} ({env}), 2 LightGBM threads instead of 1, gives other {differ}"


if __name__ == "__main__":  # one fit in a fresh interpreter: python this_file.py DATA_DIR N_JOBS
    print(json.dumps(sha256(predictions(Path(sys.argv[1]), int(sys.argv[2])))))
