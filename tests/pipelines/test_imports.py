"""What the stages load: a DuckDB run never imports PySpark (its import costs time and prints a FutureWarning)."""

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


def test_pyspark_still_imports_after_the_schemas_module_when_installed():
    code = (
        "import importlib.util, sys\n"
        "import churn_pipeline.features.schemas\n"
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
        "from churn_pipeline.features.schemas import pa\n"
        "import mlflow.types.schema\n"
        "pa.DataFrameSchema({'a': pa.Column(int, pa.Check.ge(0))}).validate(pd.DataFrame({'a': [1]}))\n"
        "assert 'pyspark.pandas' not in sys.modules\n"
    )
    flag = "error:PySpark does not yet:FutureWarning"
    run = subprocess.run([sys.executable, "-W", flag, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
