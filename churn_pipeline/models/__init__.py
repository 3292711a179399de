"""Pure model logic: estimators, calibration, evaluation."""
