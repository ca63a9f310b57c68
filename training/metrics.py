"""Classification metrics from predictions: confusion matrix, per-class precision/recall/F1.

For K classes and the confusion matrix C (rows: true class, columns: predicted),

    precision_k = C[k, k] / sum_i C[i, k]        (0 when class k is never predicted)
    recall_k    = C[k, k] / sum_j C[k, j]        (0 when class k never occurs)
    f1_k        = 2 p r / (p + r)                (0 when p + r = 0)
    macro_*     = mean over the K classes
    accuracy    = trace(C) / sum(C)

The zero conventions match scikit-learn's `zero_division=0`, without its warnings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from torch import Tensor


def confusion_matrix(labels: Tensor | np.ndarray, predictions: Tensor | np.ndarray, num_classes: int = 10) -> np.ndarray:
    """C[i, j] = number of examples of true class i predicted as j, (K, K) int64."""
    labels_np = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels, dtype=np.int64).ravel()
    predictions_np = np.asarray(
        predictions.cpu() if isinstance(predictions, Tensor) else predictions, dtype=np.int64
    ).ravel()
    if labels_np.shape != predictions_np.shape:
        raise ValueError(f"{labels_np.size} labels but {predictions_np.size} predictions")
    for name, values in (("labels", labels_np), ("predictions", predictions_np)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels_np, predictions_np), 1)
    return matrix


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    result = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=result, where=denominator != 0)
    return result


@dataclass(frozen=True)
class ClassificationReport:
    accuracy: float  # fraction in [0, 1]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    macro_precision: float
    macro_recall: float
    macro_f1: float

    def to_json(self) -> dict:
        return asdict(self)


def classification_report(matrix: np.ndarray) -> ClassificationReport:
    """Per-class and macro precision, recall and F1 from a confusion matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, actual)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    total = matrix.sum()
    return ClassificationReport(
        accuracy=float(true_positive.sum() / total) if total else 0.0,
        precision=precision.tolist(),
        recall=recall.tolist(),
        f1=f1.tolist(),
        support=actual.astype(np.int64).tolist(),
        macro_precision=float(precision.mean()),
        macro_recall=float(recall.mean()),
        macro_f1=float(f1.mean()),
    )


def report_from_predictions(labels: Tensor, predictions: Tensor, num_classes: int = 10) -> ClassificationReport:
    return classification_report(confusion_matrix(labels, predictions, num_classes))
