"""``python -m churn_pipeline`` is the ``churn`` command (for environments where the script is not on PATH)."""

from churn_pipeline.pipelines.cli import main

if __name__ == "__main__":
    main()
