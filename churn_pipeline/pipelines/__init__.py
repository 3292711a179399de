"""Thin DVC stages and the ``churn`` CLI: argument parsing, params, file I/O. Logic lives in features/ and models/."""
