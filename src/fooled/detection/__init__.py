"""Detection: anomaly scores of inputs, thresholds calibrated on clean validation data, metrics, and OOD sets."""

from .detectors import DETECTORS, DetectorContext, available_detectors, differentiable_score, fit_context, score_all
from .guard import Guard
from .metrics import auroc, calibrate_threshold, flagged, neg_log_prob, roc, tpr_at_threshold

__all__ = ["DETECTORS", "DetectorContext", "Guard", "auroc", "available_detectors", "calibrate_threshold", "differentiable_score",
           "fit_context", "flagged", "neg_log_prob", "roc", "score_all", "tpr_at_threshold"]
