"""churn-pipeline: churn, lifetime value and retention decisions for an online shop.

One package name in front of every module (``churn_pipeline.features``, ``churn_pipeline.models``,
``churn_pipeline.pipelines``) so that the code MLflow ships beside a registered model cannot collide with
another project's ``models`` or ``features`` package.
"""
