"""pandera's pandas API, imported without its side effects on the process (a leaf: imports no project module).

Call :func:`pandera` where a schema is built or a validation error is caught; importing this module does nothing
(no pandera import, no change to ``os.environ`` or ``sys.modules``). The first call imports ``pandera.pandas``
and undoes what that import does to the process; later calls return the same module.

On import, pandera sets PYARROW_IGNORE_TIMEZONE=1 and SPARK_LOCAL_IP=127.0.0.1 and, when PySpark is installed
(the `spark` extra), imports pyspark.pandas, which warns that it does not support pandas 3. With the first flag
pyarrow reads zone-aware Python datetimes as if their wall time were UTC (10:00+01:00 becomes 10:00Z), silently,
in this process and every child process; the second would bind a Spark driver to loopback, which a cluster's
executors cannot reach. Only pandas-on-Spark needs them, and nothing in the project uses it: both are put back
as they were, and the warning is not shown.

pyspark itself is kept out of the import: a None entry in sys.modules makes pandera's `import pyspark.pandas`
fail at once (pandera then treats pyspark as absent), so DuckDB runs never load it (0.1 s, and its warning); the
spark engine imports it later as usual. When it is already loaded, the warning is silenced instead.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from types import ModuleType

__all__ = ["pandera"]

_SPARK_ENV_NAMES = ("PYARROW_IGNORE_TIMEZONE", "SPARK_LOCAL_IP")


@functools.cache
def pandera() -> ModuleType:
    """The ``pandera.pandas`` module (``pa`` in pandera's docs), imported on the first call with the process's
    environment variables and pyspark state left as they were (module docstring)."""
    saved = {name: os.environ.get(name) for name in _SPARK_ENV_NAMES}
    block_pyspark = "pyspark" not in sys.modules
    if block_pyspark:
        sys.modules["pyspark"] = None  # type: ignore[assignment]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
            )
            # pandera's checks module tries `import pyspark.pandas` once, at the first validation, whenever
            # pyspark is loaded by then (MLflow imports it): imported here, it sees pyspark blocked.
            import pandera.backends.pandas.builtin_checks  # noqa: F401
            import pandera.pandas as pa
    finally:
        if block_pyspark:
            del sys.modules["pyspark"]
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return pa
