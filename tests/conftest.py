"""Fixtures shared across test folders: one local Spark session for the tests marked ``spark``."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def spark():
    """A local Spark session on 2 threads, shared by every Spark test (starting one costs ~5 s)."""
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        pytest.fail("the Spark tests need Java 17+ on PATH (or JAVA_HOME): install a JDK, or deselect -m 'not spark'")
    os.environ.setdefault("CHURN_SPARK_MASTER", "local[2]")
    # Test data is a few thousand rows: a handful of shuffle partitions, not Spark's 200 (which the stages keep
    # for real data, where adaptive execution coalesces what it does not need).
    os.environ.setdefault("CHURN_SPARK_SHUFFLE_PARTITIONS", "4")
    from churn_pipeline.pipelines.spark import spark_session

    session = spark_session("churn-pipeline-tests")
    yield session
    session.stop()
