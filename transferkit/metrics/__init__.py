"""Metrics and evaluation reports: :class:`EvalReport` and :func:`compute_report`."""

from .classification import EvalReport, compute_report, expected_calibration_error

__all__ = ["EvalReport", "compute_report", "expected_calibration_error"]
