"""Metrics on hand-computed cases, including a class that is never predicted."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from training.metrics import classification_report, confusion_matrix, report_from_predictions


def test_confusion_matrix_counts_true_rows_and_predicted_columns() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(labels, predictions, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_hand_computed_precision_recall_f1() -> None:
    # true:  0 0 1 2 2 2 ; predicted: 0 1 1 2 0 2
    report = report_from_predictions(torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2]), 3)
    assert report.precision == pytest.approx([1 / 2, 1 / 2, 1.0])
    assert report.recall == pytest.approx([1 / 2, 1.0, 2 / 3])
    assert report.f1 == pytest.approx([1 / 2, 2 / 3, 0.8])
    assert report.support == [2, 1, 3]
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.macro_precision == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert report.macro_recall == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    assert report.macro_f1 == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)


def test_class_never_predicted_has_zero_precision_and_no_warning() -> None:
    labels = np.array([0, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1])  # class 2 is never predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            report = report_from_predictions(labels, predictions, 3)
    assert report.precision == pytest.approx([1.0, 1 / 3, 0.0])
    assert report.recall == pytest.approx([1.0, 1.0, 0.0])
    assert report.f1 == pytest.approx([1.0, 0.5, 0.0])
    assert not any(np.isnan(report.precision + report.recall + report.f1))


def test_class_absent_from_labels_has_zero_recall() -> None:
    report = classification_report(np.array([[3, 0], [0, 0]]))
    assert report.recall == [1.0, 0.0] and report.precision == [1.0, 0.0] and report.f1 == [1.0, 0.0]


def test_empty_and_mismatched_inputs() -> None:
    assert classification_report(np.zeros((2, 2))).accuracy == 0.0
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        confusion_matrix([0, 1, 1], [0, 1], 2)
    with pytest.raises(ValueError, match="predictions must lie in 0..1"):
        confusion_matrix([0, 1], [0, 5], 2)
