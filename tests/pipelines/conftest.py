"""Fixtures shared by the stage tests."""

import pytest

from churn_pipeline.pipelines.console import console


@pytest.fixture
def wide_console(monkeypatch):
    """Rich wraps lines at 80 columns off a terminal; 400 keeps a message or rule name on one line to match."""
    monkeypatch.setattr(console, "_width", 400)
