"""What the stages load: a DuckDB run never imports PySpark (its import costs time and prints a FutureWarning), and
importing a module does no work on the process (no pandera import, no os.environ change, no warnings filter)."""

import os
import subprocess
import sys

STAGES = ("validate", "features", "train", "evaluate", "score", "export", "cli")


def test_no_stage_imports_pyspark_unless_the_engine_is_spark():
    code = (
        "import sys, importlib\n"
        f"for stage in {STAGES!r}:\n"
        "    importlib.import_module('churn_pipeline.pipelines.' + stage)\n"
        "loaded = sorted(m for m in sys.modules if m == 'pyspark' or m.startswith('pyspark.'))\n"
        "assert not loaded, loaded\n"
    )
    run = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_pyspark_still_imports_after_pandera_was_loaded_when_installed():
    code = (
        "import importlib.util, sys\n"
        "from churn_pipeline.pandera_shim import pandera\n"
        "pandera()\n"
        "if importlib.util.find_spec('pyspark') is not None:\n"
        "    import pyspark.sql\n"
        "    assert sys.modules['pyspark'] is not None\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_a_pandera_validation_after_mlflow_loaded_pyspark_does_not_load_pyspark_pandas():
    # The score stage loads MLflow (which imports pyspark) before it validates the scores with pandera.
    code = (
        "import sys\n"
        "import pandas as pd\n"
        "from churn_pipeline.pandera_shim import pandera\n"
        "import mlflow.types.schema\n"
        "pa = pandera()\n"
        "pa.DataFrameSchema({'a': pa.Column(int, pa.Check.ge(0))}).validate(pd.DataFrame({'a': [1]}))\n"
        "assert 'pyspark.pandas' not in sys.modules\n"
    )
    flag = "error:PySpark does not yet:FutureWarning"
    run = subprocess.run([sys.executable, "-W", flag, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh interpreter, without pandera's two variables unless ``env`` sets them."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYARROW_IGNORE_TIMEZONE", "SPARK_LOCAL_IP")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**environ, **(env or {})})


def test_importing_the_schema_modules_neither_imports_pandera_nor_touches_the_environment():
    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import churn_pipeline.features.schemas, churn_pipeline.features.validation\n"
        "import churn_pipeline.models.scores_schema\n"
        "assert dict(os.environ) == before\n"
        "loaded = sorted(m for m in sys.modules if m == 'pandera' or m.startswith('pandera.'))\n"
        "assert not loaded, loaded\n"
        "assert 'pyspark' not in sys.modules\n"
    )
    run = run_python(code)
    assert run.returncode == 0, run.stderr


def test_loading_pandera_leaves_pyarrow_ignore_timezone_and_spark_local_ip_as_they_were():
    code = (
        "import os\n"
        "from churn_pipeline.features.schemas import table_schema\n"
        "table_schema('orders')\n"
        "assert 'PYARROW_IGNORE_TIMEZONE' not in os.environ, os.environ.get('PYARROW_IGNORE_TIMEZONE')\n"
        "assert os.environ['SPARK_LOCAL_IP'] == '10.1.2.3', os.environ['SPARK_LOCAL_IP']\n"
    )
    run = run_python(code, {"SPARK_LOCAL_IP": "10.1.2.3"})
    assert run.returncode == 0, run.stderr


def test_importing_the_spark_helpers_adds_no_warnings_filter():
    # Third-party imports (numpy, pandas, DuckDB) add filters of their own: import those first.
    code = (
        "import warnings\n"
        "import churn_pipeline.pipelines.io\n"
        "before = list(warnings.filters)\n"
        "import churn_pipeline.pipelines.spark\n"
        "assert warnings.filters == before, [f for f in warnings.filters if f not in before]\n"
    )
    run = run_python(code)
    assert run.returncode == 0, run.stderr
