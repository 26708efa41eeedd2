"""Metrics and evaluation reports: :class:`EvalReport` and :func:`compute_report`."""

from .classification import EvalReport, compute_report, expected_calibration_error
from .image import psnr, ssim

__all__ = ["EvalReport", "compute_report", "expected_calibration_error", "psnr", "ssim"]
