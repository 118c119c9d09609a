"""Evaluation of classifiers, detectors and segmenters: metrics, calibration (ECE, temperature scaling) and plots.

Segmentation metrics live in :mod:`visor.evaluate.segmentation` (its pixel ``confusion_matrix`` takes an
ignore index, unlike the classification one exported here).

Everything here is a pure function of numpy arrays; matplotlib is imported only when a
plot is drawn.
"""

from visor.evaluate.calibration import (
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
    softmax,
)
from visor.evaluate.detection import DetectionReport, evaluate_detections
from visor.evaluate.detection_plots import plot_detection_confusion, plot_pr_curves
from visor.evaluate.metrics import (
    ClassificationReport,
    ClassMetrics,
    classification_report,
    confusion_matrix,
    top_k_accuracy,
)
from visor.evaluate.plots import plot_confusion_matrix, plot_reliability_diagram, plot_training_curves
from visor.evaluate.segmentation import SegmentationOutcomes, SegmentationReport, segmentation_report

__all__ = [
    "ClassMetrics",
    "ClassificationReport",
    "DetectionReport",
    "SegmentationOutcomes",
    "SegmentationReport",
    "classification_report",
    "confusion_matrix",
    "evaluate_detections",
    "expected_calibration_error",
    "fit_temperature",
    "nll",
    "plot_confusion_matrix",
    "plot_detection_confusion",
    "plot_pr_curves",
    "plot_reliability_diagram",
    "plot_training_curves",
    "reliability_bins",
    "segmentation_report",
    "softmax",
    "top_k_accuracy",
]
